"""Log files under `data/logs/`, rotated: gateway.log (all, for people), error.log (errors)
and access.log (every message in and out, every HTTP request) as JSON lines with ECS field
names, so Filebeat/Logstash/Elasticsearch take them as they are; audit.log is
`gateway.observe.audit`'s.

A redacting filter sits on every handler, so a token that slips into a message (a pasted
Authorization header, a URL with a key) is masked before it reaches a file or the terminal.

access.log, a line or two for every message, is written off the event loop: a logging call
only makes its record and appends it to a deque (`Enqueue`, a few microseconds); one native
thread looks every `WRITE_EVERY` seconds, formats, redacts and writes what is there and
flushes once per batch. gateway.log and error.log (no line per message at `info`) are written
at the call, so a line is on disk when the call returns. That thread is a real OS thread
(gevent's originals, not the patched `threading`, sleeping in the original `time.sleep`)
taking from a deque the loop only ever appends to: the thread rule's case of CPU work that
takes no lock the loop holds (its handlers' locks are native and only it takes them). At exit
the lines still queued are written before the process ends.
"""

from __future__ import annotations

import atexit
import json
import logging
import sys
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

from gevent import monkey

from gateway.observe.audit import attach_audit_file
from gateway.observe.redact import redact

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ACCESS_LOGGER = "moltbot.access"
# The WSGI environ key of a request answered with its message's reply (`logged_by_message`)
MESSAGE_LINE = "moltbot.message_line"
# How often the writer thread looks for queued lines. It is never woken: a wake-up per
# message, from the loop to a sleeping native thread, cost more than the line itself.
WRITE_EVERY = 0.05


def logged_by_message(environ: dict[str, Any], msg_id: str) -> None:
    """One access line per message: a request answered with its message's reply is said by
    the message's line (`core.pipeline`: id, channel, chat, route, outcome, duration, address),
    so the server writes no request line for it (`server.httpserver`). A request refused
    before it became a message (no `msg_id`) keeps its request line."""
    if msg_id:
        environ[MESSAGE_LINE] = True


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class EcsFormatter(logging.Formatter):
    """One JSON object a line: `@timestamp`, `log.level`, `log.logger`, `message`, the
    traceback as `error.stack_trace`, and the record's `ecs` extra (e.g. `moltbot.msg_id`)."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "@timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"),
            "log.level": record.levelname.lower(), "log.logger": record.name,
            "message": record.getMessage(),
        }
        event.update(getattr(record, "ecs", {}))
        if record.exc_info and not record.exc_text:  # queued records carry the text
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            event["error.stack_trace"] = record.exc_text
        return redact(json.dumps(event, ensure_ascii=False, default=str))


class RotatingFile(RotatingFileHandler):
    """A rotating file that formats each record once (Python 3.11's `shouldRollover`
    formats it a second time to measure it); `batched`: flushing is the writer's, per batch."""

    batched = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
            if self.stream is None:
                self.stream = self._open()
            if self.maxBytes > 0:
                self.stream.seek(0, 2)  # another process may have written: as the stock check
                if self.stream.tell() + len(line) >= self.maxBytes:
                    self.doRollover()
            self.stream.write(line)
            if not self.batched:
                self.stream.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


class Enqueue(logging.Handler):
    """Appends (its handlers, the record) to the writer's queue. Only what may change after
    the call returns is fixed here (the arguments merged into the message, a traceback as
    text); the formatting is the writer's."""

    def __init__(self, writer: LogWriter, handlers: Sequence[logging.Handler]) -> None:
        super().__init__()
        self.queue = writer.queue
        self.handlers = tuple(handlers)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record.msg, record.args = record.getMessage(), None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None  # no frames kept alive while queued
            self.queue.append((self.handlers, record))
        except Exception:
            self.handleError(record)


class LogWriter:
    """The native thread that writes the queued records (module docstring)."""

    def __init__(self) -> None:
        self.queue: deque[tuple[tuple[logging.Handler, ...], logging.LogRecord]] = deque()
        self._stopping = False
        self._running = monkey.get_original("_thread", "allocate_lock")()
        self._running.acquire()  # released when the thread has written its last line
        monkey.get_original("_thread", "start_new_thread")(self._run, ())
        atexit.register(self.close)

    def _run(self) -> None:
        sleep = monkey.get_original("time", "sleep")
        while True:
            stopping = self._stopping  # read before the last batch: nothing is left behind
            self._write_queued()
            if stopping:
                break
            sleep(WRITE_EVERY)
        self._running.release()

    def _write_queued(self) -> None:
        touched: set[logging.Handler] = set()
        while self.queue:
            handlers, record = self.queue.popleft()
            for handler in handlers:
                if record.levelno >= handler.level:
                    handler.handle(record)
                    touched.add(handler)
        for handler in touched:
            handler.flush()

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop (at exit: nothing logs after it)."""
        self._stopping = True
        if self._running.acquire(timeout=timeout):
            self._running.release()


def _file(path: Path, level: int, max_bytes: int, backups: int,
          formatter: logging.Formatter | None = None, queued: bool = False) -> logging.Handler:
    handler = RotatingFile(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    if queued:  # only the writer thread takes its lock: a native one, not gevent's
        handler.lock = monkey.get_original("_thread", "RLock")()
        handler.batched = True
    handler.setLevel(level)
    handler.setFormatter(formatter or logging.Formatter(FORMAT))
    if not isinstance(formatter, EcsFormatter):  # that one redacts the whole line itself
        handler.addFilter(RedactingFilter())
    return handler


def setup_logging(logs_dir: Path, level: str, *, terminal: bool, max_bytes: int,
                  backups: int) -> None:
    """Attach the gateway's handlers once (a second call does not duplicate them)."""
    logs_dir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    if any(getattr(h, "_moltbot", False) for h in root.handlers):
        return
    numeric = getattr(logging, level.upper())
    handlers = [_file(logs_dir / "gateway.log", numeric, max_bytes, backups),
                _file(logs_dir / "error.log", logging.ERROR, max_bytes, backups,
                      EcsFormatter())]
    if terminal:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter(FORMAT))
        stream.addFilter(RedactingFilter())
        handlers.append(stream)
    for handler in handlers:
        handler._moltbot = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(numeric)

    access = logging.getLogger(ACCESS_LOGGER)
    access.propagate = False
    access.setLevel(logging.INFO)
    access.addHandler(Enqueue(LogWriter(), [_file(
        logs_dir / "access.log", logging.INFO, max_bytes, backups, EcsFormatter(), queued=True)]))
    attach_audit_file(logs_dir, max_bytes, backups)
    for noisy in ("httpx", "httpcore", "urllib3", "jieba", "watchdog"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))

