"""The gateway's start in two halves: the port answers first, the slow half follows.

`python -m gateway.server` opens its port once the cheap parts are built (config, store, the
Flask app, the channels' routes): `/healthz` answers from then on, which is what `moltbot
gateway start`, the tray and service managers wait for. The half that takes seconds
(`Gateway.start`: jieba's dictionary, the knowledge and memory indexes, the skill hosts
loading the skills, the watcher, the channels that connect out) runs after, in a greenlet.

Every other request waits at the gate until that half is done: a message needs the skills to
be routed and the knowledge index to be grounded, so the first question is answered as it
would be a minute later, only later (no silent answer without the knowledge). A start that
takes longer than `WAIT` answers 503 with Retry-After; a start that fails answers 503 and
stops the process (exit 1), as a failed start did before the port opened.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import gevent
from flask import request
from flask.typing import ResponseReturnValue
from gevent.event import Event

from gateway.web.errors import error_response

log = logging.getLogger(__name__)

WAIT = 60.0  # seconds a request waits for the start before it is told to come back
STOP_GRACE = 10.0  # seconds a stop asked for while starting lets the start finish first
ANSWERED_AT_ONCE = ("/healthz",)  # liveness: says the process runs, needs nothing loaded


class Starting:
    """The gate (`gate`, a Flask `before_request`) and the greenlet behind it (`run`)."""

    def __init__(self) -> None:
        self.done = Event()
        self.failed = False  # the start raised: the process stops with exit code 1
        # (code, message) for the requests at the gate once it opens on a failed or cut start
        self.refusal: tuple[str, str] | None = None
        self._waiting_told = False
        self._greenlet: gevent.Greenlet | None = None

    def gate(self) -> ResponseReturnValue | None:
        """Let a request through once the start is done; until then it waits (up to WAIT)."""
        if (self.done.is_set() and not self.refusal) or request.path in ANSWERED_AT_ONCE:
            return None
        if not self._waiting_told:  # once per start: tests wait for this line, people see why
            self._waiting_told = True
            log.info("requests wait for the start to finish (skills, knowledge): %s %s",
                     request.method, request.path)
        if not self.done.wait(WAIT):
            return error_response("unavailable", "The gateway is still starting (loading the "
                                  "skills and the knowledge index); try again shortly.",
                                  retry_after=5)
        if self.refusal:
            return error_response(*self.refusal)
        return None

    def run(self, start: Callable[[], None], started: Callable[[], None],
            failed: Callable[[], None]) -> None:
        """`start()` in a greenlet; then `started()`, or `failed()` if it raised."""
        began = time.monotonic()

        def work() -> None:
            try:
                start()
            except Exception:
                log.exception("the gateway could not finish starting; stopping")
                self.failed = True
                self.refusal = ("unavailable", "The gateway failed to start and is stopping; "
                                "data/logs/error.log says why.")
                self.done.set()
                failed()
                return
            self.done.set()
            log.info("started: skills, knowledge and channels ready %.2f s after the port "
                     "opened", time.monotonic() - began)
            started()

        self._greenlet = gevent.spawn(work)

    def stop(self, grace: float = STOP_GRACE) -> None:
        """A stop asked for while starting: the requests at the gate are turned away, and the
        start may finish (up to `grace` seconds: cut anywhere, a skill host being spawned
        would be left behind) before `Gateway.stop` stops what it started."""
        if self._greenlet is None or self.done.is_set():
            return
        self.refusal = ("shutting_down", "The gateway is stopping; try again once it is "
                        "back.")
        self._greenlet.join(grace)
        if not self._greenlet.dead:
            log.warning("stopping before the start finished (after %.0f s); cutting it short",
                        grace)
            self._greenlet.kill()
        self.done.set()
