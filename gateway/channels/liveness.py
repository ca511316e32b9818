"""Whether a channel really works, from what flowed on it rather than from its socket.

A connected socket proves little: a broker can keep answering keepalives while the
subscription that carries every message is gone (an ACL changed, a bridge died). So a channel
keeps evidence: when its server last answered anything (keepalives included), when a message
last came in and went out, and when its own probe (a message it sends to itself through the
same path the senders' messages take) last came back. A channel with no message in and no
probe back for longer than its bound is *stale*; the episode ends only when something flows
again, so a restart that did not help leaves it stale (and the channel restarts once per
episode, never in a loop). `Liveness` is the bookkeeping; the channel decides what to probe.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def ago(seconds: float) -> str:
    """`3 s ago`, `2 min ago`, `1.5 h ago`: a status line's way of saying when."""
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


class Liveness:
    """Evidence of flow on one channel, in `clock` seconds (monotonic by default)."""

    def __init__(self, bound: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.bound = bound
        self.clock = clock
        self.connected_at: float | None = None
        self.heard: float | None = None  # the server answered anything (a keepalive too)
        self.came_in: float | None = None  # a sender's message arrived
        self.went_out: float | None = None  # a message was taken by the server
        self.probe_sent: float | None = None
        self.probe_back: float | None = None
        self.stale_since: float | None = None
        self.restarted = False  # the one restart of this stale episode was spent

    # -- evidence --------------------------------------------------------------------------
    def connected(self) -> None:
        self.connected_at = self.heard = self.clock()

    def disconnected(self) -> None:
        self.connected_at = None

    def mark_heard(self) -> None:
        self.heard = self.clock()

    def mark_in(self) -> None:
        self.came_in = self.heard = self.clock()
        self._flowed()

    def mark_out(self) -> None:
        self.went_out = self.heard = self.clock()

    def mark_probe_sent(self) -> None:
        self.probe_sent = self.clock()

    def mark_probe_back(self) -> None:
        self.probe_back = self.heard = self.clock()
        self._flowed()

    def _flowed(self) -> None:
        self.stale_since = None
        self.restarted = False

    # -- judgement -------------------------------------------------------------------------
    def silent_for(self) -> float | None:
        """Seconds since the last evidence that messages reach the channel (or since it
        connected); None while it is not connected."""
        if self.connected_at is None:
            return None
        last = max(t for t in (self.connected_at, self.came_in, self.probe_back)
                   if t is not None)
        return self.clock() - last

    def check(self) -> bool:
        """Judge now; True when a stale episode starts (the caller restarts once)."""
        silent = self.silent_for()
        if silent is None or silent <= self.bound or self.stale_since is not None:
            return False
        self.stale_since = self.clock()
        return True

    @property
    def is_stale(self) -> bool:
        return self.stale_since is not None

    def stale_for(self) -> float | None:
        return None if self.stale_since is None else self.clock() - self.stale_since

    def stale_detail(self, channel: str) -> str:
        """Why `channels.<channel>` is stale, for its status line."""
        return (f"nothing came back for over {self.bound:g} s (channels.{channel}.stale_after); "
                f"{'restarted once' if self.restarted else 'restarting'}; {self.describe()}")

    def describe(self) -> str:
        """The evidence as one line for `channels list` and the console."""
        now = self.clock()
        parts = []
        for label, at in (("probe back", self.probe_back), ("last in", self.came_in),
                          ("last out", self.went_out), ("server heard", self.heard)):
            if at is not None:
                parts.append(f"{label} {ago(now - at)}")
        return ", ".join(parts) or "nothing has flowed yet"
