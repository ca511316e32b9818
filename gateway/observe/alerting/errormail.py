"""The error log by email (the guide's section 5.1): a logging handler for ERROR records.

The first error goes out at once; errors that follow within `interval` are gathered into the
next mail, so a failure repeating on every message sends one mail per interval, not thousands.
`emit` only appends to a list: the mail is sent by a worker, never on the logging thread.
A mail holds exactly what the log line holds (message and traceback), with the log files'
redaction applied again to all of it. Records from the alerting package itself are skipped,
so a broken mail server is logged, not mailed about in a loop. `close()` sends what is still
gathered, so errors logged just before a stop are not lost.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from gateway.observe.alerting.dispatch import Joinable, RetryPolicy, Spawn, spawn_thread
from gateway.observe.logs import FORMAT
from gateway.observe.redact import redact

SKIPPED = "gateway.observe.alerting"
MAX_RECORDS = 100  # per mail; beyond it the mail says how many more there were


class Mailer(Protocol):
    def send_mail(self, subject: str, body: str) -> None: ...


class ErrorMailHandler(logging.Handler):
    def __init__(self, mailer: Mailer | None, interval: float, *, policy: RetryPolicy | None = None,
                 spawn: Spawn = spawn_thread, clock: Callable[[], float] = time.monotonic,
                 host: str | None = None) -> None:
        super().__init__(level=logging.ERROR)
        self.setFormatter(logging.Formatter(FORMAT))
        self.mailer = mailer  # None: off (config changes swap it without touching the logger)
        self.interval = interval
        self.policy = policy or RetryPolicy()
        self.spawn = spawn
        self.clock = clock
        self.host = host or socket.gethostname()
        self._pending: deque[str] = deque(maxlen=MAX_RECORDS)
        self._missed = 0
        self._next_at = 0.0
        self._ready = threading.Condition()
        self._stop = threading.Event()
        self._worker: Joinable | None = None
        self.sent = 0

    def start(self) -> ErrorMailHandler:
        self._worker = self.spawn(self._run)
        return self

    def emit(self, record: logging.LogRecord) -> None:
        if self.mailer is None or record.name.startswith(SKIPPED):
            return
        try:
            text = redact(self.format(record))
        except Exception:
            self.handleError(record)
            return
        with self._ready:
            if len(self._pending) == MAX_RECORDS:
                self._missed += 1
            self._pending.append(text)
            self._ready.notify()

    def _take(self) -> tuple[list[str], int] | None:
        """Wait for records and for the interval to pass; None once stopped and empty."""
        with self._ready:
            while True:
                if self._pending and (self._stop.is_set() or self.clock() >= self._next_at):
                    batch, missed = list(self._pending), self._missed
                    self._pending.clear()
                    self._missed = 0
                    self._next_at = self.clock() + self.interval
                    return batch, missed
                if self._stop.is_set():
                    return None
                wait = self._next_at - self.clock() if self._pending else None
                self._ready.wait(wait)

    def _run(self) -> None:
        while (taken := self._take()) is not None:
            mailer = self.mailer
            if mailer is not None:
                self._send(mailer, *taken)

    def _send(self, mailer: Mailer, batch: list[str], missed: int) -> None:
        first = batch[0].splitlines()[0] if batch[0] else ""
        count = len(batch) + missed
        subject = f"[Moltbot] {count} error{'s' if count > 1 else ''} on {self.host}: {first}"
        body = "\n\n".join(batch)
        if missed:
            body += f"\n\n... and {missed} more error(s) not shown (see data/logs/error.log)"
        if self.policy.run(lambda: mailer.send_mail(subject, body), "error log mail",
                           self._stop):
            self.sent += 1

    def close(self) -> None:
        self._stop.set()
        with self._ready:
            self._ready.notify_all()
        if self._worker is not None:
            self._worker.join(30)
        super().close()
