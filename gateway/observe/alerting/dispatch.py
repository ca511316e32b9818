"""Delivering notices off the message path: one worker per sender, retries with backoff.

`submit` only appends to each sender's queue and wakes its worker, so it never waits on a
network. Each sender has its own worker, so a mail server that hangs for its whole time-out
does not hold back the robot message. A queue holds at most `queue_size` notices; beyond that
the oldest is dropped (and logged): an alert storm must not grow memory without bound.

Workers are started with `spawn` (default: a daemon `threading.Thread`, which is a greenlet
once gevent has patched threading; the composition root may pass `gevent.spawn`). Failures
are logged under this package's logger, which the error-mail handler ignores, so a failing
mail server cannot mail about itself in a loop.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

from gateway.observe.alerting.rules import Notice
from gateway.observe.alerting.senders import Sender, SendError

log = logging.getLogger(__name__)


class Joinable(Protocol):
    def join(self, timeout: float | None = None) -> Any: ...


Spawn = Callable[[Callable[[], None]], Joinable]


def spawn_thread(target: Callable[[], None]) -> Joinable:
    thread = threading.Thread(target=target, daemon=True, name="moltbot-alerts")
    thread.start()
    return thread


class RetryPolicy:
    """`attempts` tries, waiting `backoff`, then twice as long each time, at most `max_wait`."""

    def __init__(self, attempts: int = 4, backoff: float = 1.0, max_wait: float = 30.0) -> None:
        if attempts < 1:
            raise ValueError("at least one attempt")
        self.attempts = attempts
        self.backoff = backoff
        self.max_wait = max_wait

    def run(self, attempt: Callable[[], None], what: str, stop: threading.Event) -> bool:
        """True once `attempt` succeeds; False after the last try (or when `stop` is set)."""
        for n in range(1, self.attempts + 1):
            try:
                attempt()
                return True
            except SendError as e:
                problem = str(e)
            except Exception as e:  # a bug in a sender must not end its worker
                log.exception("%s failed unexpectedly", what)
                problem = f"{type(e).__name__}: {e}"
            if n == self.attempts or stop.is_set():
                break
            wait = min(self.max_wait, self.backoff * 2 ** (n - 1))
            log.warning("%s failed (attempt %d of %d), retrying in %.1fs: %s", what, n,
                        self.attempts, wait, problem)
            if stop.wait(wait):
                break
        log.error("%s failed, giving up after %d attempt(s): %s", what, n, problem)
        return False


class _Worker:
    def __init__(self, sender: Sender, policy: RetryPolicy, queue_size: int,
                 stop: threading.Event) -> None:
        self.sender = sender
        self.policy = policy
        self.stop = stop
        self.queue: deque[Notice] = deque()
        self.queue_size = queue_size
        self.ready = threading.Condition()
        self.delivered = 0

    def put(self, notice: Notice) -> None:
        with self.ready:
            if len(self.queue) >= self.queue_size:
                dropped = self.queue.popleft()
                log.warning("%s is behind; dropped the %s notice of %s", self.sender.name,
                            dropped.state, dropped.rule)
            self.queue.append(notice)
            self.ready.notify()

    def run(self) -> None:
        while True:
            with self.ready:
                while not self.queue and not self.stop.is_set():
                    self.ready.wait()
                if not self.queue:
                    return
                notice = self.queue.popleft()
            what = f"alert {notice.rule} {notice.state} via {self.sender.name}"
            if self.policy.run(partial(self.sender.send, notice), what, self.stop):
                self.delivered += 1
                log.info("%s delivered", what)


class Delivery:
    def __init__(self, senders: list[Sender], *, policy: RetryPolicy | None = None,
                 queue_size: int = 100, spawn: Spawn = spawn_thread) -> None:
        self._stop = threading.Event()
        self.workers = [_Worker(s, policy or RetryPolicy(), queue_size, self._stop)
                        for s in senders]
        self.spawn = spawn
        self._running: list[Joinable] = []

    def start(self) -> None:
        self._running = [self.spawn(w.run) for w in self.workers]

    def submit(self, notice: Notice) -> None:
        """Queue `notice` for every sender; returns at once."""
        for worker in self.workers:
            worker.put(notice)

    def stop(self, timeout: float = 5.0) -> None:
        """What is queued gets one more attempt each (no retries) within `timeout`."""
        self._stop.set()
        for worker in self.workers:
            with worker.ready:
                worker.ready.notify_all()
        for running in self._running:
            running.join(timeout)
