"""The audit log, `data/logs/audit.log`: who changed what, from where, when, as JSON lines
with ECS field names (`@timestamp`, `event.action`, `user.name`, `source.address`) so Filebeat
and Elasticsearch take them as they are.

What is audited: config changes (the keys that changed, secrets masked), tokens created,
revoked and rotated, pairing decisions, console logins, lockouts, messages scripts start
through `POST /api/v1/send` and failed ones queued again by hand. The gateway and the CLI both
write here (appends of one short line each, which POSIX keeps whole); secrets never are.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

from gateway.common.options import is_secret_key
from gateway.observe.redact import mask_urls

AUDIT_LOGGER = "moltbot.audit"

log = logging.getLogger(AUDIT_LOGGER)


def attach_audit_file(logs_dir: Path, max_bytes: int = 10 * 1024 * 1024,
                      backups: int = 5) -> None:
    """Send audit events to `logs_dir/audit.log` (once per process)."""
    log.propagate = False
    log.setLevel(logging.INFO)
    if any(getattr(h, "_moltbot_audit", False) for h in log.handlers):
        return
    logs_dir.mkdir(parents=True, exist_ok=True)
    handler = RotatingFileHandler(logs_dir / "audit.log", maxBytes=max_bytes,
                                  backupCount=backups, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler._moltbot_audit = True  # type: ignore[attr-defined]
    log.addHandler(handler)


def audit(action: str, *, actor: str, source: str = "", actor_id: str = "",
          **details: Any) -> None:
    """One audit event: `action` such as `token.revoked`, by `actor` from `source`.

    `actor` is a principal the gateway named (`token:<name>`, `jwt:<sub>`, `cli:<user>`),
    never a secret, so it is written as it is: masked, every token user read `token:***`.
    `actor_id` tells apart credentials of one name: a token's id as `moltbot token list`
    shows it (`user.id`). The details are masked value by value: URLs lose their query
    values (webhook keys), then the usual redaction.
    """
    event: dict[str, Any] = {
        "@timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "event.action": action, "event.kind": "event", "user.name": actor,
        "source.address": source, "moltbot": _masked(details)}
    if actor_id:
        event["user.id"] = actor_id
    log.info(json.dumps(event, ensure_ascii=False, default=str))


def _masked(value: Any) -> Any:
    """A detail as the audit log may keep it: every string in it masked, numbers as they are,
    anything else masked as its text."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {str(k): _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked(v) for v in value]
    return mask_urls(str(value))


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[Any]]:
    """`{"gateway.port": [18789, 18790], ...}` for every key that changed; secret values
    (tokens, keys, passwords) show only as "***"."""
    before, after = _flatten(old), _flatten(new)
    changed: dict[str, list[Any]] = {}
    for key in sorted(before.keys() | after.keys()):
        if before.get(key) != after.get(key):
            hide = any(is_secret_key(part) for part in key.split("."))
            changed[key] = (["***", "***"] if hide else [before.get(key), after.get(key)])
    return changed


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: data}
