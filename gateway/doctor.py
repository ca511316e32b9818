"""`moltbot doctor`: each check says what it found and, when it fails, what to do about it."""

from __future__ import annotations

import tempfile

from gateway.config import Config, ConfigError, load_config
from gateway.models.base import ModelError
from gateway.models.registry import build_providers
from gateway.probe import base_url, gateway_pid, is_healthy, is_port_free
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
    if is_port_free(host, port):
        return (True, f"port {port} on {host} is free", "")
    if gateway_pid(ws, port) and is_healthy(base_url(host, port)):
        return (True, f"port {port} is served by this Moltbot gateway", "")
    return (False, f"port {port} on {host} is used by another program",
            f"stop it, or set gateway.port in config.yaml (or start with --port {port + 1})")
