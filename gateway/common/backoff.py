"""How long to wait before starting a child process again that ended: 1 s, doubling to a cap.

A child that ran `steady` seconds before it ended was healthy, so its next failure starts the
backoff at 1 s again; one that keeps dying at once waits longer each time, up to the cap.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Backoff:
    def __init__(self, cap: float, steady: float = 60.0) -> None:
        self.cap = cap
        self.steady = steady
        self.failures = 0

    def after(self, ran: float) -> float:
        """The wait after a run of `ran` seconds that ended in a failure."""
        self.failures = 1 if ran > self.steady else self.failures + 1
        return min(self.cap, 2.0 ** (self.failures - 1))


def keep_running(run_once: Callable[[], str], stopped: threading.Event, cap: float,
                 ended: Callable[[str, float], None]) -> None:
    """Run `run_once` (one life of a child process; it returns why the child ended) again and
    again until `stopped` is set, waiting the backoff between lives; `ended(why, wait)` says
    each end (log it, show it)."""
    backoff = Backoff(cap)
    while not stopped.is_set():
        started = time.monotonic()
        why = run_once()
        if stopped.is_set():
            return
        wait = backoff.after(time.monotonic() - started)
        ended(why, wait)
        if stopped.wait(wait):
            return
