"""Log files under `data/logs/`, rotated: gateway.log (all, for people), error.log (errors)
and access.log (every message in and out, every HTTP request) as JSON lines with ECS field
names, so Filebeat/Logstash/Elasticsearch take them as they are; audit.log is
`gateway.observe.audit`'s.

A redacting filter sits on every handler, so a token that slips into a message (a pasted
Authorization header, a URL with a key) is masked before it reaches a file or the terminal.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

from gateway.observe.audit import attach_audit_file
from gateway.observe.redact import redact

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ACCESS_LOGGER = "moltbot.access"

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
        if record.exc_info:
            event["error.stack_trace"] = self.formatException(record.exc_info)
        return redact(json.dumps(event, ensure_ascii=False, default=str))


def _file(path: Path, level: int, max_bytes: int, backups: int,
          formatter: logging.Formatter | None = None) -> logging.Handler:
    handler = RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups,
                                  encoding="utf-8")
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
    access.addHandler(_file(logs_dir / "access.log", logging.INFO, max_bytes, backups,
                            EcsFormatter()))
    attach_audit_file(logs_dir, max_bytes, backups)
    for noisy in ("httpx", "httpcore", "urllib3", "jieba", "watchdog"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))

