"""Faults the test suite switches on to see the gateway's defences work; off for users.

`MOLTBOT_TEST_FAULTS` is a comma-separated list:
- `block-loop=SECONDS`: SIGUSR2 makes the event loop call the unpatched `time.sleep(SECONDS)`,
  which is what a library stuck in C does to the gateway;
- `block-start=SECONDS`: the same, once, while the gateway starts (as watchdog 7.1.1 did);
- `hold-outbox`: the outbox stores what it is given but starts no sender, so a test can kill
  the gateway between storing a message and sending it.
The tests use them to check that the loop monitor reports the stack, that a start that never
answers says where it hangs, that the tray and the systemd watchdog restart a gateway that
stops answering, and that a stored message is sent after a crash. Without the variable nothing
is installed.
"""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger(__name__)

VARIABLE = "MOLTBOT_TEST_FAULTS"
HELD: set[str] = set()  # parts a fault holds still ("outbox")


def holding(part: str) -> bool:
    """Whether a test fault holds `part` still (see the module docstring)."""
    return part in HELD


def install_faults() -> None:
    for fault in filter(None, os.environ.get(VARIABLE, "").split(",")):
        name, _, value = fault.partition("=")
        if name == "block-loop":
            _install_block_loop(float(value or 5))
        elif name == "block-start":
            _blocking_sleep(float(value or 5))
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
