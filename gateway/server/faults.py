"""Faults the test suite switches on to see the gateway's defences work; off for users.

`MOLTBOT_TEST_FAULTS` is a comma-separated list:
- `block-loop=SECONDS`: SIGUSR2 makes the event loop call the unpatched `time.sleep(SECONDS)`,
  which is what a library stuck in C does to the gateway;
- `block-start=SECONDS`: the same, once, while the gateway starts (as watchdog 7.1.1 did);
- `hold-lock=SECONDS`: SIGUSR1 starts a real thread that spends about SECONDS in one C call
  holding Python's lock, as jieba's `marshal.load` did on the thread pool;
- `hold-outbox`: the outbox stores what it is given but starts no sender, so a test can kill
  the gateway between storing a message and sending it;
- `hold-start=PATH`: the slow half of the start (`Gateway.start`: indexes, skills, channels)
  waits until a file exists at PATH, so a test asks its question while the gateway is still
  starting and knows the answer could not have been ready yet;
- `clock=PATH`: the scheduler's time (reminders, schedules) is the Unix time written in the
  file at PATH, and the scheduler looks again whenever the file changes, so a test moves time
  to a reminder's minute instead of sleeping until it.
The tests use them to check that the loop monitor reports the stack, that a start that never
answers says where it hangs, that the tray and the systemd watchdog restart a gateway that
stops answering, and that a stored message is sent after a crash. Without the variable nothing
is installed.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

VARIABLE = "MOLTBOT_TEST_FAULTS"
HELD: set[str] = set()  # parts a fault holds still ("outbox")
RELEASED_BY: dict[str, Path] = {}  # parts a `hold-PART=PATH` fault holds until PATH exists
CLOCK_LOOK = 0.05  # how often the test clock's file is read for a change


def holding(part: str) -> bool:
    """Whether a test fault holds `part` still (see the module docstring)."""
    return part in HELD


def wait_for_release(part: str) -> None:
    """Wait (cooperatively) while a `hold-PART=PATH` fault holds `part` and PATH is missing."""
    path = RELEASED_BY.get(part)
    if path is None:
        return
    import gevent

    while not path.exists():
        gevent.sleep(CLOCK_LOOK)


def install_faults() -> None:
    for fault in filter(None, os.environ.get(VARIABLE, "").split(",")):
        name, _, value = fault.partition("=")
        if name == "block-loop":
            _install_block_loop(float(value or 5))
        elif name == "hold-lock":
            _install_hold_lock(float(value or 5))
        elif name == "block-start":
            _blocking_sleep(float(value or 5))
        elif name == "clock":
            pass  # read by fault_clock() when the scheduler is built
        elif name == "hold-start":
            RELEASED_BY["start"] = Path(value)
            log.warning("test fault: the start waits for %s", value)
        elif name == "hold-outbox":
            HELD.add("outbox")
            log.warning("test fault: the outbox sends nothing")
        else:
            log.error("%s: unknown fault %r ignored", VARIABLE, name)


def _blocking_sleep(seconds: float) -> None:
    from gevent import monkey

    log.warning("test fault: blocking the event loop for %.1fs", seconds)
    monkey.get_original("time", "sleep")(seconds)


def _install_block_loop(seconds: float) -> None:
    import gevent

    gevent.signal_handler(signal.SIGUSR2, _blocking_sleep, seconds)
    log.warning("test faults on: SIGUSR2 blocks the event loop for %.1fs", seconds)


def _holding_the_lock(seconds: float) -> None:
    """One `sum` over a range: a loop in C that never lets Python's lock go, sized from a
    short sample to take about `seconds` of CPU (CPU, not wall time: a busy machine must not
    make the sample look slow and the hold short)."""
    sample = 2_000_000
    started = time.thread_time()
    sum(range(sample))
    per_item = max(time.thread_time() - started, 1e-6) / sample
    sum(range(int(seconds / per_item)))


def _install_hold_lock(seconds: float) -> None:
    import gevent
    from gevent import monkey

    start_thread = monkey.get_original("_thread", "start_new_thread")
    gevent.signal_handler(signal.SIGUSR1, lambda: start_thread(_holding_the_lock, (seconds,)))
    log.warning("test faults on: SIGUSR1 holds Python's lock in a thread for %.1fs", seconds)


class FileClock:
    """Test-only: the time written in a file (Unix seconds), for the scheduler."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.last = time.time()  # until the file holds a time
        self.last = self._read()

    def _read(self) -> float:
        try:
            return float(self.path.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return self.last

    def __call__(self) -> float:
        return self._read()

    def watch(self, on_change: Callable[[], None]) -> None:
        """Call `on_change` (on a greenlet) whenever the file's time changes."""

        def look() -> None:
            while True:
                time.sleep(CLOCK_LOOK)
                now = self._read()
                if now != self.last:
                    self.last = now
                    on_change()

        threading.Thread(target=look, name="test-clock", daemon=True).start()


def fault_clock() -> FileClock | None:
    """The `clock=PATH` fault's clock, or None (then the scheduler uses `time.time`)."""
    for fault in filter(None, os.environ.get(VARIABLE, "").split(",")):
        name, _, value = fault.partition("=")
        if name == "clock" and value:
            log.warning("test fault: the scheduler's time is read from %s", value)
            return FileClock(Path(value))
    return None
