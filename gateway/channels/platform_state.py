"""A platform channel's state line for `channels list` and the console: its own account of
the connection (connecting, connected, retrying: why, since when) and, while connected, what
its evidence of flow says (`channels.liveness`): stale past its bound, with the one restart."""

from __future__ import annotations

import time
from typing import Literal, cast

from gateway.channels.base import ChannelStatus
from gateway.channels.liveness import Liveness

State = Literal["connected", "connecting", "retrying", "stale", "stopped"]


class StateLine:
    def __init__(self) -> None:
        self.state: State = "stopped"
        self.detail = ""
        self.since = time.time()
        self.stale_wall: float | None = None  # when the current stale episode began

    def set(self, state: str, detail: str) -> None:
        """A new state or reason; `since` moves only when the state itself changes."""
        if state != self.state:
            self.since = time.time()
        self.state, self.detail = cast(State, state), detail

    def judge(self, liveness: Liveness) -> bool:
        """`liveness.check()`, remembering when a stale episode began."""
        if liveness.check():
            self.stale_wall = time.time()
            return True
        return False

    def status(self, liveness: Liveness, bound_key: str, bound: float) -> ChannelStatus:
        """The line while the channel runs; `bound_key` names the option that sets `bound`."""
        if self.state == "connected" and liveness.is_stale:
            return ChannelStatus("stale", f"nothing came back for over {bound:g} s "
                                 f"({bound_key}); "
                                 f"{'restarted once' if liveness.restarted else 'restarting'}"
                                 f"; {liveness.describe()}", self.stale_wall)
        detail = self.detail
        if self.state == "connected":
            detail = f"{detail}; {liveness.describe()}"
        return ChannelStatus(self.state, detail, self.since)
