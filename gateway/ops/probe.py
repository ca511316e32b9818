"""Looking at a gateway from outside its process: is the port free, is ours running and healthy.

Used by the CLI and `moltbot doctor`; nothing here imports gevent, so it runs in any process.
"""

from __future__ import annotations

import socket
from typing import Any

import httpx
import psutil

from gateway.common.workspace import DEFAULT_HOME, Workspace


def base_url(host: str, port: int) -> str:
    """The URL a local client uses: a wildcard bind is reached on loopback."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def gateway_pid(ws: Workspace, port: int) -> int | None:
    """The pid of our gateway on `port`, or None (a stale pid file is removed)."""
    path = ws.pid_path(port)
    try:
        pid = int(path.read_text(encoding="utf-8").strip())
        if "gateway.server" in " ".join(psutil.Process(pid).cmdline()):
            return pid
    except (OSError, ValueError, psutil.Error):
        pass
    path.unlink(missing_ok=True)
    return None


def is_healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def read_health(url: str) -> dict[str, Any] | None:
    """What `/healthz` says (`{"status": "ok", "version": ...}`), or None if it says nothing
    a Moltbot gateway would: the way to tell our gateway from another program on the port."""
    try:
        response = httpx.get(f"{url}/healthz", timeout=2.0)
        data = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    if response.status_code != 200 or not isinstance(data, dict) or data.get("status") != "ok":
        return None
    return data


def listener_pid(port: int) -> int | None:
    """The pid listening on TCP `port`, if this user may see it (root sees every process)."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return None
    return next((c.pid for c in connections if c.status == psutil.CONN_LISTEN and c.laddr
                 and c.laddr.port == port and c.pid), None)


def describe_process(pid: int) -> tuple[str, str | None]:
    """A process's name, and its MOLTBOT_HOME when it is a Moltbot gateway (else None)."""
    try:
        process = psutil.Process(pid)
        name = process.name()
        if "gateway.server" not in " ".join(process.cmdline()):
            return name, None
    except psutil.Error:
        return "unknown", None
    try:
        return name, process.environ().get("MOLTBOT_HOME", DEFAULT_HOME)
    except psutil.Error:  # another user's gateway: its environment is private
        return name, "(a workspace of another user)"


def is_port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True
