"""`moltbot doctor`: each check says what it found and, when it fails, the fix for that failure.

A newcomer runs it before anything works, so a check never stops at "failed": it says which of
the possible states it found (our gateway on the port, another program, nobody) and gives the
one fix that matches (start the model server, or pull the model, or name one it has).
"""

from __future__ import annotations

import tempfile

import httpx

from gateway.config import Config, ConfigError, ModelConfig, load_config
from gateway.observe.logs import redact
from gateway.probe import (
    base_url,
    describe_process,
    gateway_pid,
    is_port_free,
    listener_pid,
    read_health,
)
from gateway.secrets import keyring_status, lookup_secret
from gateway.tools.sandbox import doctor_check as check_sandbox
from gateway.workspace import Workspace

Check = tuple[bool, str, str]
LIST_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


def run_checks(ws: Workspace) -> list[Check]:
    try:
        config = load_config(ws.config_path, lookup_secret)
    except ConfigError as e:
        return [(False, f"config {ws.config_path}: " + "; ".join(e.problems), _config_fix(e))]
    results: list[Check] = [(True, f"config {ws.config_path} is valid", "")]
    results.append(check_workspace(ws))
    results.append(check_port(ws, config))
    results.append(check_sandbox("command" in config.tools.offer_to_model))
    if not config.models:
        results.append((False, "no model configured", "add one under models: in config.yaml"))
    for name, cfg in config.models.items():
        results.extend(check_model(name, cfg, url) for url in cfg.all_endpoints())
    # What doctor prints gets pasted into chats and issues: no endpoint's user:password@.
    return [(ok, redact(what), redact(fix)) for ok, what, fix in results]


def _config_fix(e: ConfigError) -> str:
    """Edit as each problem says; a missing keyring secret needs a keyring, so say if there
    is none rather than send the user to a command that cannot work here."""
    if not any("OS keyring" in p for p in e.problems):
        return "edit config.yaml as each problem says"
    return keyring_status() or ("store each missing secret with the `moltbot secret set NAME` "
                                "its problem names; edit config.yaml for any other problem")


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
    """Which of: free (the gateway is stopped), our gateway, another workspace's gateway, or
    another program; only the last two fail, as they keep this gateway from starting."""
    host, port = config.gateway.host, config.gateway.port
    other_port = f"set gateway.port in config.yaml (or start with --port {port + 1})"
    if is_port_free(host, port):
        elsewhere = _running_elsewhere(ws, port)
        if elsewhere:
            return (True, f"port {port} on {host} is free: this workspace's gateway runs on "
                          f"{elsewhere} instead", "")
        return (True, f"port {port} on {host} is free: the gateway is stopped (start it with "
                      f"`moltbot gateway start`)", "")
    health = read_health(base_url(host, port))
    version = f", version {health.get('version', '?')}" if health else ""
    pid = gateway_pid(ws, port)
    if pid and health:
        return (True, f"port {port}: this workspace's Moltbot gateway is running "
                      f"(pid {pid}{version})", "")
    if pid:
        return (False, f"port {port}: this workspace's gateway (pid {pid}) does not answer "
                       f"/healthz", f"see {ws.logs / 'gateway.log'}, then restart it: "
                                    f"`moltbot gateway stop` and `moltbot gateway start`")
    holder = listener_pid(port)
    name, home = describe_process(holder) if holder else ("unknown", None)
    # A process we can see is ours only if it runs gateway.server: many programs answer
    # /healthz. One we cannot see (another user's) is judged by its /healthz alone.
    if home or (health and not holder):
        where = f", workspace {home}" if home else ""
        shown = f"pid {holder}" if holder else "pid unknown"
        return (False, f"port {port} on {host} is used by a Moltbot gateway of another "
                       f"workspace ({shown}{version}{where})",
                f"stop it (`MOLTBOT_HOME={home or '...'} moltbot gateway stop --port {port}`), "
                f"or {other_port}")
    who = f" (pid {holder}: {name})" if holder else ""
    return (False, f"port {port} on {host} is used by another program{who}",
            f"stop it, or {other_port}")


def _running_elsewhere(ws: Workspace, port: int) -> str:
    """"port N (pid P)" for each gateway of this workspace on another port ("" if none)."""
    found = []
    for path in sorted(ws.data.glob("gateway-*.pid")):
        other = path.stem.removeprefix("gateway-")
        if other.isdigit() and int(other) != port and (pid := gateway_pid(ws, int(other))):
            found.append(f"port {other} (pid {pid})")
    return ", ".join(found)


def check_model(name: str, cfg: ModelConfig, url: str) -> Check:
    """Ask the server which models it has, over the endpoint's documented listing API."""
    provider = cfg.provider_for(url)
    model = cfg.model or name
    what = f"model {name} at {url}"
    ollama = provider == "ollama"
    listing = f"{url}/api/tags" if ollama else f"{url}/models"
    headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
    try:
        response = httpx.get(listing, headers=headers, timeout=LIST_TIMEOUT)
    except httpx.TimeoutException:
        return (False, f"{what}: timed out", f"the server at {url} accepted but did not "
                f"answer; check that it is not stuck, or fix models.{name}.endpoint")
    except httpx.TransportError as e:
        reason = "connection refused" if "refused" in str(e).lower() else str(e)
        start = "`ollama serve`" if ollama else f"the OpenAI-compatible server for {url}"
        return (False, f"{what}: {reason}",
                f"start the model server ({start}), or fix models.{name}.endpoint")
    if response.status_code in (401, 403):
        return (False, f"{what}: HTTP {response.status_code}, the server refused the key",
                f"set models.{name}.api_key to the key this server expects (as ${{VAR}} or "
                f"${{keyring:NAME}}, stored with `moltbot secret set NAME`)")
    if response.status_code >= 500:
        return (False, f"{what}: HTTP {response.status_code} from {listing}",
                "the model server is failing: see its log, and restart it")
    names = _model_names(response, ollama)
    if names is None:
        return (False, f"{what}: {listing} answered HTTP {response.status_code}, not a model "
                       f"list", f"check that models.{name}.endpoint points at "
                            f"{'Ollama' if ollama else 'an OpenAI-compatible API (…/v1)'}")
    known = {n for full in names for n in (full, full.split(":")[0])} if ollama else set(names)
    if model in known:
        kind = "ollama" if ollama else "openai-compatible"
        return (True, f"{what}: {kind}, serves {model} ({len(names)} models)", "")
    listed = f"it lists {', '.join(names[:8])}" if names else "it lists no model"
    pick = f"set models.{name}.model to one it lists ({', '.join(names[:3])})"
    if ollama:
        fix = f"`ollama pull {model}`" + (f", or {pick}" if names else "")
    else:
        fix = pick if names else f"load {model} in the server at {url}"
    return (False, f"{what}: model '{model}' is not {'pulled' if ollama else 'served'} "
                   f"there ({listed})", fix)


def _model_names(response: httpx.Response, ollama: bool) -> list[str] | None:
    """Names from Ollama's `{"models": [{"name"}]}` or OpenAI's `{"data": [{"id"}]}`."""
    try:
        data = response.json()
    except ValueError:
        return None
    if response.status_code != 200 or not isinstance(data, dict):
        return None
    items = data.get("models" if ollama else "data")
    if not isinstance(items, list):
        return None
    key = "name" if ollama else "id"
    return [str(i[key]) for i in items if isinstance(i, dict) and i.get(key)]
