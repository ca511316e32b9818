"""`moltbot trace`, `logs`, `top`, `doctor`, `skills list`, `channels list` and `mcp list`:
seeing what the gateway does, from the running gateway when there is one, else from the
workspace."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import click

from gateway.cli.shared import (
    EXIT_CONFIG,
    EXIT_NOT_RUNNING,
    _ask_gateway,
    _config,
    _fail,
    _running_gateway,
    _target_ports,
)
from gateway.common.options import ConfigError
from gateway.common.workspace import Workspace, default_workspace
from gateway.config import Config, for_skills
from gateway.ops.control import (
    RunningGateway,
)
from gateway.ops.probe import base_url


@click.command()
@click.argument("msg_id")
@click.option("--json", "as_json", is_flag=True)
def trace(msg_id: str, as_json: bool) -> None:
    """Show each step a message took (step, start offset, duration, outcome) and what the
    gateway sent for it, attempt by attempt; an outbound id shows that delivery alone."""
    from gateway.core.outbox import outbound_lines
    from gateway.core.outbox_store import OutboxStore
    from gateway.core.store import Store

    ws = default_workspace()
    if not Path(ws.data / "moltbot.db").exists():
        _fail(f"No message store in {ws.data}: the gateway has not run in this workspace.")
    store = Store(ws.db_url)
    try:
        rows = OutboxStore(store)
        stored = store.get_message(msg_id)
        spans = store.get_trace(msg_id)
        files = {way: store.files_of(msg_id, way) for way in ("in", "out")}
        alone = rows.get(msg_id) if stored is None else None
        deliveries = [alone] if alone else rows.for_message(msg_id)
    finally:
        store.close()
    if stored is None and alone is None:
        _fail(f"No message {msg_id} in {ws.data / 'moltbot.db'} (nor an outbound message "
              "of that id).")
    if as_json:
        click.echo(json.dumps({"id": msg_id, "status": stored.status if stored else None,
                               "route": stored.route if stored else None,
                               "spans": [asdict(s) for s in spans],
                               "files": {way: [asdict(f) for f in found]
                                         for way, found in files.items()},
                               "deliveries": [d.as_dict() for d in deliveries]},
                              ensure_ascii=False))
        return
    if stored is not None:
        at = datetime.fromtimestamp(stored.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        click.echo(f"{msg_id}  {stored.channel}/{stored.chat}  {at} UTC  "
                   f"status={stored.status}  route={stored.route or '-'}")
    for s in spans:
        detail = f"  {s.detail}" if s.detail else ""
        click.echo(f"  {s.step:<9} +{s.start_ms:8.2f} ms  {s.duration_ms:8.2f} ms  "
                   f"{s.outcome}{detail}")
    for way, found in files.items():
        for f in found:
            click.echo(f"  file {way:<4} {f.id}  {f.name} ({f.media_type}, {f.size} bytes)  "
                       f"{f.path}")
    for line in outbound_lines(deliveries):
        click.echo(line)

@click.group()
def skills() -> None:
    """The skills in the workspace."""

@skills.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.option("--port", type=int, help="Which gateway (default: the one running).")
def skills_list(as_json: bool, port: int | None) -> None:
    """Every skill with how to reach it, and every file that failed to load (exit 1 if any)."""
    ws = default_workspace()
    config = _config(ws)
    rows, errors = (_running_skills(ws, _running_gateway(ws, port, config))
                    or _load_skills_here(ws, config))
    if as_json:
        click.echo(json.dumps({"skills": rows, "errors": errors}, ensure_ascii=False))
    else:
        for row in rows:
            if row.get("intent"):
                keywords = ", ".join(row.get("keywords") or []) or "-"
                click.echo(f"{row['command']:<16} {row['kind']:<7} {row['source']:<28} "
                           f"keywords: {keywords}  {row.get('description') or ''}".rstrip())
        for source, problem in errors.items():
            click.echo(f"ERROR {source}: {problem}")
    if errors:
        sys.exit(1)

def _running_skills(ws: Workspace, running: RunningGateway | None
                    ) -> tuple[list, dict] | None:
    """Ask the running gateway what it has loaded now."""
    data = _ask_gateway(ws, running, "/api/v1/skills")
    return (data["skills"], data["errors"]) if data else None

def _load_skills_here(ws: Workspace, config: Config) -> tuple[list, dict]:
    """No gateway running: load the skills folder the way the gateway would."""
    from gateway.skills.catalog import SkillLoader, SkillSet
    from gateway.skills.hostpool import SkillHostPool

    hosts = SkillHostPool(ws.root, 1, for_skills(config))
    try:
        current = SkillLoader(ws.root, hosts, config.skills.timeout).build(SkillSet())
    finally:
        hosts.close()
    return current.listing(), current.errors

@click.command()
@click.option("--file", "which", type=click.Choice(["gateway", "error", "access"]),
              default="gateway", show_default=True, help="Which log.")
@click.option("-n", "--lines", default=50, show_default=True, help="How many lines to show.")
@click.option("--grep", "keyword", help="Only lines containing this text (e.g. a msg_id).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
def logs(which: str, lines: int, keyword: str | None, follow: bool) -> None:
    """Show the gateway's logs (secrets are already masked in them)."""
    path = default_workspace().logs / f"{which}.log"
    if not path.exists():
        _fail(f"No {path} yet: start the gateway with `moltbot gateway start`.")
    with path.open(encoding="utf-8", errors="replace") as f:
        matching = [line for line in f if not keyword or keyword in line]
        for line in matching[-lines:]:
            click.echo(line, nl=False)
        while follow:
            line = f.readline()
            if not line:
                time.sleep(0.2)
            elif not keyword or keyword in line:
                click.echo(line, nl=False)

@click.command()
@click.option("--port", type=int, help="Which gateway (default: the one running).")
def doctor(port: int | None) -> None:
    """Check config, workspace, port, every model endpoint, the tray and the libraries'
    versions; say how to fix each problem."""
    from gateway.ops.doctor import run_checks

    ws = default_workspace()
    tray: Callable[[], tuple[bool, str, str]] | None
    try:
        from desktop.backend import doctor_check as tray
    except ImportError:  # a build without the desktop package
        tray = None
    results = run_checks(ws, port, tray)
    for ok, what, fix in results:
        click.echo(f"{'ok  ' if ok else 'FAIL'}  {what}" + ("" if ok else f"\n      fix: {fix}"))
    if not all(ok for ok, _, _ in results):
        sys.exit(1)

@click.group()
def channels() -> None:
    """Where messages come in: HTTP, WebSocket, the console, enterprise_im, MQTT."""

@channels.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.option("--port", type=int, help="Which gateway (default: the one running).")
def channels_list(as_json: bool, port: int | None) -> None:
    """Each channel, whether config.yaml enables it, and its status in the running gateway."""
    from gateway.channels.table import channel_options

    ws = default_workspace()
    config = _config(ws)
    data = _ask_gateway(ws, _running_gateway(ws, port, config), "/api/v1/channels")
    if data is None:
        try:
            options = channel_options(config, str(ws.config_path))
        except ConfigError as e:
            _fail(f"{e}\nFix config.yaml and run the command again.", EXIT_CONFIG)
    rows = data["channels"] if data else [
        {"name": name, "enabled": bool(getattr(chosen, "enabled", False)),
         "status": "stopped: the gateway is not running"} for name, chosen in options.items()]
    if as_json:
        click.echo(json.dumps({"channels": rows}))
        return
    for row in rows:
        click.echo(f"{row['name']:<10} {'on ' if row['enabled'] else 'off'}  {row['status']}")

@click.command()
@click.option("--once", is_flag=True, help="Print one frame and exit (for scripts).")
@click.option("--port", type=int, help="Which local gateway (default: the one running).")
@click.option("--url", help="A gateway elsewhere, e.g. http://10.0.0.5:18789 (with --token).")
@click.option("--token", envvar="MOLTBOT_TOKEN", help="Token for a gateway that wants one.")
@click.option("--window", default=60, show_default=True, type=click.IntRange(1, 600),
              help="Seconds the figures cover.")
def top(once: bool, port: int | None, url: str | None, token: str | None, window: int) -> None:
    """Live figures: messages/min, latency, errors, connections, models, busiest sessions."""
    from rich.console import Console

    from gateway.observe.top import StatsUnauthorized, StatsUnavailable, fetch_stats, render, watch

    ws = default_workspace()
    local = url is None
    if url is None:
        config = _config(ws)
        running = _running_gateway(ws, port, config)
        url = running.url if running else base_url(
            config.gateway.host, _target_ports(ws, port, config)[0])
    url = url.rstrip("/")
    try:
        try:
            stats = fetch_stats(url, token, window)
        except StatsUnauthorized:
            if not local or token:
                raise
            from gateway.core.store import Store
            from gateway.guards.tokens import issue_token

            store = Store(ws.db_url)  # our own gateway: a token for this session of top
            try:
                token, _ = issue_token(store, 12 * 3600, label="top")
            finally:
                store.close()
            stats = fetch_stats(url, token, window)
    except StatsUnauthorized as e:
        _fail(str(e))
    except StatsUnavailable as e:
        _fail(str(e), EXIT_NOT_RUNNING)
    console = Console()
    if once:
        console.print(render(stats, url))
        return
    watch(lambda: fetch_stats(url, token, window), url, console)

@click.group()
def mcp() -> None:
    """MCP tool servers (mcp_servers: in config.yaml): their state, tools and restarts."""

@mcp.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.option("--port", type=int, help="Which gateway (default: the one running).")
def mcp_list(as_json: bool, port: int | None) -> None:
    """Each server: running, starting or failed (and why), its tools, the ones the model is
    offered, and how often it was restarted."""
    ws = default_workspace()
    config = _config(ws)
    data = _ask_gateway(ws, _running_gateway(ws, port, config), "/api/v1/mcp")
    rows = data["servers"] if data else [
        {"name": name, "state": "stopped", "reason": "the gateway is not running",
         "transport": "stdio" if server.command else "http", "tools": [], "offered": [],
         "missing": [], "restarts": 0} for name, server in config.mcp_servers.items()]
    if as_json:
        click.echo(json.dumps({"servers": rows}))
        return
    if not rows:
        click.echo("No MCP servers: add them under mcp_servers: in config.yaml.")
    for row in rows:
        reason = row.get("reason") or ""
        if reason and row["state"] != "failed" and row["state"] != "stopped":
            reason = f"last failure: {reason}"
        state = row["state"] + (f" ({reason})" if reason else "")
        click.echo(f"{row['name']:<14} {row['transport']:<5} {state}")
        if row["tools"]:
            click.echo(f"{'':<14} tools: {', '.join(row['tools'])}")
        click.echo(f"{'':<14} model: {', '.join(row['offered']) or 'none offered'}"
                   + (f"; not on the server: {', '.join(row['missing'])}" if row["missing"]
                      else "") + f"; restarts: {row['restarts']}")
