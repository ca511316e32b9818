"""What every verb group of `moltbot` shares: exit codes, reading config.yaml, finding the
gateway a command means, asking it over HTTP, and the store and audit log for offline verbs.

The CLI is the only place that turns errors into exit codes: 0 ok, 1 failed, 2 bad config or
usage, 3 not running (`gateway status`).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any, NoReturn

import click
import httpx

from gateway.common.options import ConfigError, parse_duration
from gateway.common.secrets import lookup_secret
from gateway.common.workspace import Workspace, default_workspace, ensure_workspace
from gateway.config import Config, load_config
from gateway.ops.control import (
    DEFAULTS,
    RunningGateway,
    find_gateway,
    find_gateways,
)
from gateway.ops.probe import is_healthy

EXIT_CONFIG = 2

EXIT_NOT_RUNNING = 3

def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(code)

def _config(ws: Workspace) -> Config:
    try:
        return load_config(ws.config_path, lookup_secret)
    except ConfigError as e:
        _fail(f"{e}\nFix config.yaml and run the command again.", EXIT_CONFIG)

def _config_or_warn(ws: Workspace) -> Config | None:
    """For commands that only talk to a running gateway or its pid file: an invalid config.yaml
    is a warning (with every problem), not a lock-out."""
    try:
        return load_config(ws.config_path, lookup_secret)
    except ConfigError as e:
        click.echo(f"Warning: {e}\nCarrying on without it; fix config.yaml before the next "
                   f"`moltbot gateway start`.", err=True)
        return None

def _target_ports(ws: Workspace, port: int | None, config: Config | None) -> list[int]:
    """Which gateways a command means: --port; else every gateway of this workspace that
    runs (found by its pid file, on any port; config.yaml's port first); else where `gateway
    start` would put one (config.yaml's port, or the default)."""
    if port:
        return [port]
    configured = (config.gateway if config else DEFAULTS).port
    running = sorted((g.port for g in find_gateways(ws)), key=lambda p: p != configured)
    return running or [configured]

def _running_gateway(ws: Workspace, port: int | None,
                     config: Config | None) -> RunningGateway | None:
    """The one gateway a command talks to (`_target_ports`' first), if it runs."""
    return find_gateway(ws, _target_ports(ws, port, config)[0])

def _ask_gateway(ws: Workspace, running: RunningGateway | None, path: str) -> dict | None:
    """GET an admin API path from the running gateway with a token valid for a minute, or
    None when no gateway runs."""
    from gateway.core.store import Store
    from gateway.guards.tokens import issue_token

    if running is None or not is_healthy(url := running.url):
        return None
    store = Store(ws.db_url)
    try:
        token, _ = issue_token(store, 60, label="cli")
    finally:
        store.close()
    data: dict = httpx.get(f"{url}{path}", headers={"Authorization": f"Bearer {token}"},
                           timeout=10).json()
    return data

def _utc(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

def _seconds(option: str, text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as e:
        _fail(f"{option}: {e}", EXIT_CONFIG)
    if seconds < 0:
        _fail(f"{option} must not be negative", EXIT_CONFIG)
    return seconds

def _audit(action: str, **details: Any) -> None:
    """An audit line from the command line: the OS user who ran it is the actor."""
    import getpass

    from gateway.observe.audit import attach_audit_file, audit

    attach_audit_file(default_workspace().logs)
    audit(action, actor=f"cli:{getpass.getuser()}", source="local", **details)

def _with_store(work: Any) -> Any:
    from gateway.core.store import Store

    ws = default_workspace()
    ensure_workspace(ws)
    store = Store(ws.db_url)
    try:
        return work(store)
    finally:
        store.close()
