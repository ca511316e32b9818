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
import re
import sys
from datetime import UTC, datetime
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ACCESS_LOGGER = "moltbot.access"

# Each pattern with the plain substrings (of the lowercased text) it cannot match without:
# most log lines hold none of them, and a substring test is a hundred times cheaper than the
# case-insensitive regular expressions (70 us for a 450-character access line, measured).
_SECRETS = [
    # "@", not "://": every link has "://", only one with a password has "@" too
    (("@",), re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/@\s:]*:[^/@\s]*@"), r"\1***@"),
    (("mb_",), re.compile(r"\bmb_[A-Za-z0-9_\-]{16,}"), "mb_***"),
    (("bearer",), re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/\-]{8,}=*"), r"\1***"),
    # a quote may be escaped (`\"`): the pattern also runs over JSON text, such as the model's
    # recorded input, where `api_key: "sk-..."` reads `api_key: \"sk-...\"`
    (("key", "token", "secret", "password"),
     re.compile(r"(?i)((?:api[_-]?key|token|secret|password)\\?[\"']?\s*[:=]\s*\\?[\"']?)"
                r"[^\s\"'&,\\]{4,}"), r"\1***"),
]
# Characters that (?i) matches to an ASCII letter but that lower() does not turn into one.
_FOLD = str.maketrans({"\u0131": "i", "\u017f": "s"})


def redact(text: str) -> str:
    lowered = text.lower()
    if not lowered.isascii():
        lowered = lowered.translate(_FOLD)
    for needles, pattern, replacement in _SECRETS:
        if any(n in lowered for n in needles):
            text = pattern.sub(replacement, text)
    return text


def mask_url(url: str) -> str:
    """The URL with every query-string value masked and the fragment dropped: webhooks carry
    their keys there (`?key=...`, `&access_token=...`), under any name."""
    parts = urlsplit(url)
    query = "&".join(f"{k}=***" for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


_URL = re.compile(r"(?i)\bhttps?://[^\s\"'<>]+")


def mask_urls(text: str) -> str:
    """Every http(s) URL in `text` through `mask_url` (only when it has a query or fragment),
    then the usual redaction (a password in the URL, a token elsewhere)."""
    if "://" in text:
        text = _URL.sub(lambda m: mask_url(m.group(0)) if any(c in m.group(0) for c in "?#")
                        else m.group(0), text)
    return redact(text)


def redact_arguments(arguments: dict[str, Any]) -> str:
    """A tool call's arguments as the trace may keep them: every header value and every
    query-string value masked (either may carry a key), then the usual redaction."""

    def clean(key: str, value: Any) -> Any:
        if key == "headers" and isinstance(value, dict):
            return {name: "***" for name in value}
        if key == "url" and isinstance(value, str):
            return mask_url(value)
        return value

    shown = {k: clean(k, v) for k, v in arguments.items()}
    return redact(json.dumps(shown, ensure_ascii=False, default=str))


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
    from gateway.observe.audit import attach_audit_file

    attach_audit_file(logs_dir, max_bytes, backups)
    for noisy in ("httpx", "httpcore", "urllib3", "jieba", "watchdog"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))

