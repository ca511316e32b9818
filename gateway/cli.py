"""`moltbot`: the command line. The only place that turns errors into exit codes.

Exit codes: 0 ok, 1 failed, 2 bad config or usage, 3 not running (`gateway status`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click
import httpx

from gateway import __version__
from gateway.common.options import ConfigError, is_loopback, parse_duration
from gateway.common.private import private_umask
from gateway.common.secrets import lookup_secret
from gateway.common.workspace import Workspace, default_workspace, ensure_workspace
from gateway.config import Config, bind_problem, for_skills, load_config
from gateway.ops.control import (
    DEFAULTS,
    START_WAIT,
    ControlError,
    PortBusy,
    RunningGateway,
    check_port_free,
    find_gateway,
    find_gateways,
    gateway_argv,
    gateway_env,
    loop_report,
    start_detached,
    stop_gateway,
)
from gateway.ops.probe import base_url, is_healthy

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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="moltbot")
def main() -> None:
    """Moltbot: your private AI assistant gateway."""
    private_umask()  # the workspace, the store and tokens it creates are the owner's alone


@main.group()
def gateway() -> None:
    """Start, stop and inspect the gateway."""


@gateway.command()
@click.option("--dev", is_flag=True, help="Run in the foreground with debug logs.")
@click.option("--port", type=int, help="Port (default: gateway.port, 18789).")
@click.option("--host", help="Address to bind (default: gateway.host, 127.0.0.1).")
@click.option("--foreground", is_flag=True, help="Do not detach; Ctrl-C stops it.")
@click.option("--wait", type=click.FloatRange(min=1), default=START_WAIT, show_default=True,
              help="Seconds to wait for it to answer; one that does not is stopped.")
def start(dev: bool, port: int | None, host: str | None, foreground: bool,
          wait: float) -> None:
    """Start the gateway; returns once it answers /healthz."""
    ws = default_workspace()
    config = _config(ws)  # a missing config.yaml is all defaults: nothing is written yet
    host = host or config.gateway.host
    port = port or config.gateway.port
    problem = bind_problem(host, config)
    if problem:
        _fail(problem, EXIT_CONFIG)
    running = find_gateway(ws, port)
    if running:
        click.echo(f"Moltbot is already running at {running.url} (pid {running.pid}).")
        return
    try:
        check_port_free(host, port)  # before the workspace is touched
    except PortBusy as e:
        _fail(str(e))
    created = ensure_workspace(ws)
    if created:
        click.echo(f"Created workspace {ws.root}: {', '.join(created)}")
    if dev or foreground:
        argv = gateway_argv(host, port, "--dev" if dev else "--foreground")
        os.execve(argv[0], argv, gateway_env(ws))
    try:
        proc = start_detached(ws, host, port, wait)
    except ControlError as e:
        _fail(str(e), e.exit_code)
    url = base_url(host, port)
    if not is_loopback(host):  # say where it really listens: beyond this machine
        click.echo(f"Moltbot listens on {host}:{port}: every address of this machine "
                   f"{'that' if host in ('0.0.0.0', '::') else 'named'} others can reach; "
                   "only tokens and the guards keep strangers out.")
    click.echo(f"Moltbot is running at {url} (pid {proc.pid}).\n"
               f"Console: {url}/  (sign in with a token from "
               f"`moltbot dashboard --token-gen --expire 8h`)\n"
               f"Logs: {ws.logs}")


@gateway.command()
@click.option("--port", type=int, help="Which gateway (default: gateway.port).")
def stop(port: int | None) -> None:
    """Stop the gateway gracefully (in-flight replies finish first)."""
    ws = default_workspace()
    config = _config_or_warn(ws)
    ports = _target_ports(ws, port, config)
    if len(ports) > 1:
        _fail(f"Gateways are running on ports {', '.join(map(str, ports))}: say which with "
              f"`moltbot gateway stop --port N`.", EXIT_CONFIG)
    grace = (config.gateway if config else DEFAULTS).shutdown_timeout
    stopped = stop_gateway(ws, ports[0], grace)
    if not stopped:
        click.echo(f"Moltbot is not running on port {ports[0]}.")
        return
    if stopped.killed:
        click.echo(f"The gateway (pid {stopped.pid}) did not stop in time and was killed.")
    click.echo(f"Moltbot stopped (pid {stopped.pid}).")


@gateway.command()
@click.option("--port", type=int, help="Which gateway (default: gateway.port).")
def status(port: int | None) -> None:
    """Exit 0 if the gateway is running and healthy, 3 if not."""
    ws = default_workspace()
    config = _config_or_warn(ws)
    answering = False
    for target in _target_ports(ws, port, config):
        running = find_gateway(ws, target)
        blocked = loop_report(ws, target, running.pid) if running else ""
        if running and is_healthy(running.url):
            click.echo(f"running: {running.url} (pid {running.pid}, workspace {ws.root})")
            if blocked:
                click.echo(blocked)
            answering = True
            continue
        if running:
            click.echo(f"not answering (pid {running.pid}): port {target}. "
                       f"{blocked or 'See ' + str(ws.logs / 'gateway.log')}\n"
                       f"Restart it: `moltbot gateway stop --port {target}` and `moltbot "
                       f"gateway start --port {target}`.")
            continue
        click.echo(f"not running: port {target}. Start it with `moltbot gateway start`.")
    if not answering:
        sys.exit(EXIT_NOT_RUNNING)


def _dashboard_gateway(ws: Workspace, port: int | None,
                       config: Config | None) -> tuple[RunningGateway | None, str]:
    """The gateway `dashboard` points at, and the URL to show: the running one's address
    (config.yaml's port first), else where `gateway start` would put it."""
    running = _running_gateway(ws, port, config)
    if running:
        return running, running.url + "/"
    settings = config.gateway if config else DEFAULTS
    return None, base_url(settings.host, port or settings.port) + "/"


@main.command()
@click.option("--token-gen", is_flag=True, help="Create a sign-in token.")
@click.option("--expire", default="8h", show_default=True, help="Lifetime, e.g. 30m, 8h, 7d.")
@click.option("--port", type=int, help="Which gateway (default: the one running).")
@click.option("--json", "as_json", is_flag=True, help="Print {token, expires_at, url, running}.")
def dashboard(token_gen: bool, expire: str, port: int | None, as_json: bool) -> None:
    """Print the console's address; with --token-gen, a token and a link that signs in."""
    from gateway.core.store import Store
    from gateway.guards.tokens import issue_token

    ws = default_workspace()
    ensure_workspace(ws)
    config = _config_or_warn(ws)
    running, url = _dashboard_gateway(ws, port, config)
    where = f"Console: {url}" + ("" if running else (
        f"\nNo gateway is running in {ws.root}: start it with `moltbot gateway start"
        f"{f' --port {port}' if port else ''}`."))
    if not token_gen:
        click.echo(f"{where}\nSign in with a token: moltbot dashboard --token-gen")
        return
    try:
        seconds = parse_duration(expire)
    except ValueError as e:
        _fail(f"--expire: {e}", EXIT_CONFIG)
    if seconds <= 0:
        _fail("--expire must be longer than 0", EXIT_CONFIG)
    store = Store(ws.db_url)
    try:
        token, expires_at = issue_token(store, seconds)
    finally:
        store.close()
    when = datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if as_json:
        click.echo(json.dumps({"token": token, "expires_at": when, "url": url,
                               "running": running is not None}))
        return
    click.echo(f"Token:   {token}\nExpires: {when} (in {expire})\n{where}")
    click.echo(f"Sign-in link (the token is in the #fragment, never sent to the server): "
               f"{url}#token={token}")


@main.command()
@click.option("--port", type=int, help="Gateway port (default: gateway.port).")
@click.option("--start", is_flag=True, help="Start the gateway at once.")
def tray(port: int | None, start: bool) -> None:
    """The tray icon: start and stop the gateway, open the console signed in."""
    from desktop.__main__ import main as tray_main

    sys.exit(tray_main([*(["--port", str(port)] if port else []),
                        *(["--start"] if start else [])]))


@main.command()
@click.argument("msg_id")
@click.option("--json", "as_json", is_flag=True)
def trace(msg_id: str, as_json: bool) -> None:
    """Show each step a message took: step, start offset, duration, outcome."""
    from gateway.core.store import Store

    ws = default_workspace()
    if not Path(ws.data / "moltbot.db").exists():
        _fail(f"No message store in {ws.data}: the gateway has not run in this workspace.")
    store = Store(ws.db_url)
    try:
        stored = store.get_message(msg_id)
        spans = store.get_trace(msg_id)
    finally:
        store.close()
    if stored is None:
        _fail(f"No message {msg_id} in {ws.data / 'moltbot.db'}.")
    if as_json:
        click.echo(json.dumps({"id": msg_id, "status": stored.status, "route": stored.route,
                               "spans": [asdict(s) for s in spans]}, ensure_ascii=False))
        return
    at = datetime.fromtimestamp(stored.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
    click.echo(f"{msg_id}  {stored.channel}/{stored.chat}  {at} UTC  status={stored.status}"
               f"  route={stored.route or '-'}")
    for s in spans:
        detail = f"  {s.detail}" if s.detail else ""
        click.echo(f"  {s.step:<9} +{s.start_ms:8.2f} ms  {s.duration_ms:8.2f} ms  "
                   f"{s.outcome}{detail}")


@main.group()
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


@main.command()
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


@main.group()
def secret() -> None:
    """Secrets in the OS keyring, for ${keyring:NAME} values in config.yaml."""


@secret.command("set")
@click.argument("name")
def secret_set(name: str) -> None:
    """Store NAME: typed twice with hidden input, or read from stdin when it is not a terminal."""
    from gateway.common.secrets import SERVICE, SecretStoreError, store_secret

    if sys.stdin.isatty():
        value = click.prompt(f"Value of {name}", hide_input=True, confirmation_prompt=True)
    else:
        value = sys.stdin.read().removesuffix("\n").removesuffix("\r")
    try:
        backend = store_secret(name, value)
    except SecretStoreError as e:
        _fail(f"Not stored: {e}")
    click.echo(f"Stored {name} in the OS keyring ({backend}, service {SERVICE}). "
               f"Use it in config.yaml as ${{keyring:{name}}}.")


@secret.command("delete")
@click.argument("name")
def secret_delete(name: str) -> None:
    """Remove NAME from the OS keyring."""
    from gateway.common.secrets import SecretStoreError, delete_secret

    try:
        delete_secret(name)
    except SecretStoreError as e:
        _fail(f"Not deleted: {e}")
    click.echo(f"Deleted {name} from the OS keyring.")


@main.command()
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


@main.group()
def token() -> None:
    """Bearer tokens for scripts, devices and the console: create, list, revoke, rotate.

    Only a token's hash is stored; its value is shown once, when it is made.
    """


@token.command("create")
@click.option("--name", required=True, help="What the token is for, e.g. phone or backup.")
@click.option("--expire", default="30d", show_default=True, help="Lifetime, e.g. 8h, 30d.")
@click.option("--json", "as_json", is_flag=True, help="Print {token, name, expires_at}.")
def token_create(name: str, expire: str, as_json: bool) -> None:
    """Make a new token; it works at once, also in a running gateway."""
    from gateway.core.store import Store
    from gateway.guards.tokens import issue_token

    seconds = _seconds("--expire", expire)
    if not seconds:
        _fail("--expire must be longer than 0", EXIT_CONFIG)
    ws = default_workspace()
    ensure_workspace(ws)
    store = Store(ws.db_url)
    try:
        value, expires_at = issue_token(store, seconds, label=name)
    finally:
        store.close()
    _audit("token.created", name=name, expires_at=_utc(expires_at))
    if as_json:
        click.echo(json.dumps({"token": value, "name": name, "expires_at": _utc(expires_at)}))
    else:
        click.echo(f"Token:   {value}\nName:    {name}\nExpires: {_utc(expires_at)}\n"
                   "It is shown only now: keep it somewhere safe.")


@token.command("list")
@click.option("--json", "as_json", is_flag=True)
def token_list(as_json: bool) -> None:
    """Every token that still works: its id, name, creation and expiry (never its value)."""
    rows = [{"id": r.id, "name": r.label, "created_at": _utc(r.created_at),
             "expires_at": _utc(r.expires_at)} for r in _token_rows()]
    if as_json:
        click.echo(json.dumps({"tokens": rows}))
        return
    for row in rows:
        click.echo(f"{row['id']}  {row['name']:<16} created {row['created_at']}  "
                   f"expires {row['expires_at']}")
    if not rows:
        click.echo("No tokens. Make one with `moltbot token create --name NAME`.")


@token.command("revoke")
@click.argument("name_or_id")
def token_revoke(name_or_id: str) -> None:
    """End every token with this name, or the one with this id, within a second."""
    _end_tokens(name_or_id, 0.0, "revoked")


@token.command("rotate")
@click.argument("name")
@click.option("--grace", default="1h", show_default=True,
              help="How long the old token keeps working, e.g. 0, 10m, 1d.")
@click.option("--expire", default="30d", show_default=True, help="The new token's lifetime.")
@click.option("--json", "as_json", is_flag=True)
def token_rotate(name: str, grace: str, expire: str, as_json: bool) -> None:
    """A new token for NAME; the old one(s) keep working for the grace period, then end."""
    from gateway.core.store import Store
    from gateway.guards.tokens import issue_token

    grace_s, expire_s = _seconds("--grace", grace), _seconds("--expire", expire)
    old = [r for r in _token_rows() if r.label == name]
    if not old:
        _fail(f"No token named {name!r}; `moltbot token list` shows the names.")
    ws = default_workspace()
    store = Store(ws.db_url)
    try:
        value, expires_at = issue_token(store, expire_s, label=name)
        store.expire_tokens([r.hash for r in old], time.time() + grace_s)
    finally:
        store.close()
    _audit("token.rotated", name=name, grace_s=grace_s, old=[r.id for r in old])
    if as_json:
        click.echo(json.dumps({"token": value, "name": name, "expires_at": _utc(expires_at),
                               "old_until": _utc(time.time() + grace_s)}))
    else:
        click.echo(f"Token:   {value}\nName:    {name}\nExpires: {_utc(expires_at)}\n"
                   f"The old token works until {_utc(time.time() + grace_s)}.")


def _token_rows() -> list:
    from gateway.core.store import Store

    ws = default_workspace()
    if not (ws.data / "moltbot.db").exists():
        return []
    store = Store(ws.db_url)
    try:
        return store.tokens(time.time())
    finally:
        store.close()


def _end_tokens(name_or_id: str, after: float, verb: str) -> None:
    from gateway.core.store import Store

    matching = [r for r in _token_rows() if name_or_id in (r.label, r.id)]
    if not matching:
        _fail(f"No token with the name or id {name_or_id!r}; `moltbot token list` shows them.")
    store = Store(default_workspace().db_url)
    try:
        store.expire_tokens([r.hash for r in matching], time.time() + after)
    finally:
        store.close()
    _audit(f"token.{verb}", match=name_or_id, ids=[r.id for r in matching])
    click.echo(f"{verb} {len(matching)} token(s): " + ", ".join(r.id for r in matching))


@main.group()
def pairing() -> None:
    """Chat-platform senders the stranger policy has met: list, approve, block, unblock.

    A sender is named "<channel>:<sender id>", e.g. enterprise_im:alice.
    """


@pairing.command("list")
@click.option("--json", "as_json", is_flag=True)
def pairing_list(as_json: bool) -> None:
    """Every sender met, with its state: pending (code sent), awaiting_owner, approved,
    blocked."""
    rows = [{"sender": r.key, "state": r.state, "since": _utc(r.updated_at)}
            for r in _with_store(lambda store: store.senders())]
    if as_json:
        click.echo(json.dumps({"senders": rows}, ensure_ascii=False))
        return
    for row in rows:
        click.echo(f"{row['sender']:<32} {row['state']:<15} since {row['since']}")
    if not rows:
        click.echo("No senders yet: strangers appear here when they first write.")


@pairing.command("approve")
@click.argument("sender")
def pairing_approve(sender: str) -> None:
    """Let this sender talk to the assistant (with or without a code)."""
    _set_sender(sender, "approved")


@pairing.command("block")
@click.argument("sender")
def pairing_block(sender: str) -> None:
    """Never answer this sender again."""
    _set_sender(sender, "blocked")


@pairing.command("unblock")
@click.argument("sender")
def pairing_unblock(sender: str) -> None:
    """Forget the sender: their next message is a stranger's again (a new code)."""
    channel, name = _sender_key(sender)
    forgotten = _with_store(lambda store: store.forget_sender(channel, name))
    _audit("pairing.unblocked", sender=sender, known=forgotten)
    click.echo(f"{sender} unblocked: their next message gets a new code." if forgotten
               else f"{sender} was not known; nothing to do.")


def _audit(action: str, **details: Any) -> None:
    """An audit line from the command line: the OS user who ran it is the actor."""
    import getpass

    from gateway.observe.audit import attach_audit_file, audit

    attach_audit_file(default_workspace().logs)
    audit(action, actor=f"cli:{getpass.getuser()}", source="local", **details)


def _sender_key(sender: str) -> tuple[str, str]:
    channel, _, name = sender.partition(":")
    if not channel or not name:
        _fail(f"Name the sender as <channel>:<sender id>, e.g. enterprise_im:alice "
              f"(`moltbot pairing list` shows them), not {sender!r}.", EXIT_CONFIG)
    return channel, name


def _set_sender(sender: str, state: str) -> None:
    from gateway.guards.stranger import SenderRow

    channel, name = _sender_key(sender)
    _with_store(lambda store: store.put_sender(SenderRow(channel, name, state,
                                                         updated_at=time.time())))
    _audit(f"pairing.{state}", sender=sender)
    click.echo(f"{sender}: {state}")


def _with_store(work: Any) -> Any:
    from gateway.core.store import Store

    ws = default_workspace()
    ensure_workspace(ws)
    store = Store(ws.db_url)
    try:
        return work(store)
    finally:
        store.close()


@main.group()
def channels() -> None:
    """Where messages come in: HTTP, WebSocket, the console (and chat platforms later)."""


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


@main.command()
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


if __name__ == "__main__":
    main()
