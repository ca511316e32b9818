"""`moltbot gateway start|stop|status`, `moltbot dashboard` and `moltbot tray`: running the
gateway and opening it."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime

import click

from gateway.cli.shared import (
    EXIT_CONFIG,
    EXIT_NOT_RUNNING,
    _config,
    _config_or_warn,
    _fail,
    _running_gateway,
    _target_ports,
)
from gateway.common.options import is_loopback, parse_duration
from gateway.common.workspace import Workspace, default_workspace, ensure_workspace
from gateway.config import Config, bind_problem
from gateway.ops.control import (
    DEFAULTS,
    START_WAIT,
    ControlError,
    PortBusy,
    RunningGateway,
    check_port_free,
    find_gateway,
    gateway_argv,
    gateway_env,
    loop_report,
    start_detached,
    stop_gateway,
)
from gateway.ops.probe import base_url, is_healthy


@click.group()
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

@click.command()
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

@click.command()
@click.option("--port", type=int, help="Gateway port (default: gateway.port).")
@click.option("--start", is_flag=True, help="Start the gateway at once.")
def tray(port: int | None, start: bool) -> None:
    """The tray icon: start and stop the gateway, open the console signed in."""
    from desktop.__main__ import main as tray_main

    sys.exit(tray_main([*(["--port", str(port)] if port else []),
                        *(["--start"] if start else [])]))
