"""`moltbot doctor`: each check says what it found and, when it fails, what to do about it."""

from __future__ import annotations

import socket
import tempfile

import httpx
import psutil

from gateway.config import Config, ConfigError, load_config
from gateway.models.base import ModelError
from gateway.models.registry import build_providers
from gateway.secrets import lookup_secret
from gateway.workspace import Workspace

Check = tuple[bool, str, str]


def run_checks(ws: Workspace) -> list[Check]:
    try:
        config = load_config(ws.config_path, lookup_secret)
    except ConfigError as e:
        return [(False, f"config {ws.config_path}: " + "; ".join(e.problems),
                 "edit config.yaml as each problem says")]
    results: list[Check] = [(True, f"config {ws.config_path} is valid", "")]
    results.append(check_workspace(ws))
    results.append(check_port(ws, config))
    if not config.models:
        results.append((False, "no model configured", "add one under models: in config.yaml"))
    for name, cfg in config.models.items():
        for provider in build_providers(name, cfg):
            try:
                detail = provider.ping()
                results.append((True, f"model {name} at {provider.url}: {detail}", ""))
            except ModelError as e:
                results.append((False, f"model {name} at {provider.url}: {e}",
                                f"start the model server, or fix models.{name}.endpoint"))
            finally:
                provider.close()
    return results


def check_workspace(ws: Workspace) -> Check:
    try:
        ws.data.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=ws.data):
            pass
    except OSError as e:
        return (False, f"workspace {ws.root} is not writable ({e})",
                f"fix the permissions of {ws.root} or set MOLTBOT_HOME elsewhere")
    return (True, f"workspace {ws.root} is writable", "")


def check_port(ws: Workspace, config: Config) -> Check:
    host, port = config.gateway.host, config.gateway.port
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return (True, f"port {port} on {host} is free", "")
        except OSError:
            pass
    if _is_ours(ws, port, host):
        return (True, f"port {port} is served by this Moltbot gateway", "")
    return (False, f"port {port} on {host} is used by another program",
            f"stop it, or set gateway.port in config.yaml (or start with --port {port + 1})")


def _is_ours(ws: Workspace, port: int, host: str) -> bool:
    try:
        pid = int(ws.pid_path(port).read_text(encoding="utf-8"))
        psutil.Process(pid)
        return httpx.get(f"http://{host}:{port}/healthz", timeout=2).status_code == 200
    except (OSError, ValueError, psutil.Error, httpx.HTTPError):
        return False
