"""`moltbot doctor`: each check says what it found and, when it fails, the fix for that failure.

A newcomer runs it before anything works, so a check never stops at "failed": it says which of
the possible states it found (our gateway on the port, another program, nobody) and gives the
one fix that matches (start the model server, or pull the model, or name one it has).
"""

from __future__ import annotations

import re
import sys
import tempfile
from collections.abc import Callable
from importlib import metadata, resources

import httpx

from gateway import DISTRIBUTION
from gateway.channels.table import channel_options
from gateway.common.options import ConfigError
from gateway.common.secrets import keyring_status, lookup_secret
from gateway.common.workspace import Workspace
from gateway.common.yaml_reader import read_yaml
from gateway.config import Config, load_config, parse_config
from gateway.models.base import ModelError
from gateway.models.card import CardUnavailable, ModelCard, read_card
from gateway.models.options import ModelConfig
from gateway.models.registry import build_providers
from gateway.models.window import size_window
from gateway.observe.redact import redact
from gateway.ops.control import find_gateways, loop_report
from gateway.ops.known_bad import KNOWN_BAD
from gateway.ops.probe import (
    base_url,
    describe_process,
    gateway_pid,
    is_port_free,
    listener_pid,
    read_health,
)
from gateway.tools.compose import doctor_check as check_compose
from gateway.tools.sandbox import doctor_check as check_sandbox

Check = tuple[bool, str, str]
LIST_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


def run_checks(ws: Workspace, port: int | None = None,
               tray: Callable[[], Check] | None = None) -> list[Check]:
    """Every check; the port one for `port`, else for this workspace's running gateway (on
    any port, config.yaml's first), else for config.yaml's port. `tray` is the desktop's own
    check (`desktop.backend.doctor_check`), handed in by the CLI: the desktop sits above."""
    try:
        config = load_config(ws.config_path, lookup_secret)
        channel_options(config, str(ws.config_path))  # each channel checks its own options
    except ConfigError as e:
        return [(False, f"config {ws.config_path}: " + "; ".join(e.problems), _config_fix(e)),
                *check_libraries()]
    results: list[Check] = [(True, f"config {ws.config_path} is valid", "")]
    results.append(check_workspace(ws))
    running = sorted(g.port for g in find_gateways(ws))
    configured = config.gateway.port
    results.append(check_port(ws, config, port or (
        configured if configured in running else next(iter(running), configured))))
    results.append(check_sandbox("command" in config.tools.offer_to_model))
    results.append(check_compose(config.tools.compose))
    if not config.models:
        results.append((False, "no model configured", "add one under models: in config.yaml"))
    for name, cfg in config.models.items():
        for url in cfg.all_endpoints():
            results.append(check_model(name, cfg, url))
            chats = name != config.knowledge.embedding_model  # an embedding model only embeds
            if chats and results[-1][0]:  # served there: what it takes and will be sent
                results.extend(check_fit(name, cfg, url, config, _has_skills(ws)))
    if config.knowledge.embedding_model:
        results.extend(check_embedding(config))
    if tray is not None:
        results.append(tray())
    results.extend(check_libraries())
    return [redact_check(check) for check in results]


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


def check_port(ws: Workspace, config: Config, port: int | None = None) -> Check:
    """Which of: free (the gateway is stopped), our gateway, another workspace's gateway, or
    another program; only the last two fail, as they keep this gateway from starting."""
    host, port = config.gateway.host, port or config.gateway.port
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
    blocked = loop_report(ws, port, pid) if pid else ""
    if pid and health:
        if blocked:
            return (False, f"port {port}: this workspace's Moltbot gateway is running (pid "
                           f"{pid}{version}), but its {blocked}",
                    "every conversation waits while the loop is blocked: report the stack "
                    "above as a bug (it names the library or skill), or restart the gateway")
        return (True, f"port {port}: this workspace's Moltbot gateway is running "
                      f"(pid {pid}{version})", "")
    if pid:
        return (False, f"port {port}: this workspace's gateway (pid {pid}) does not answer "
                       f"/healthz" + (f"; its {blocked}" if blocked else ""),
                f"see {ws.logs / 'gateway.log'}, then restart it: "
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


def model_checks(ws: Workspace) -> list[Check]:
    """Each model endpoint the gateway will call: config.yaml's, or (before the first start
    writes it) the seeded template's. What `install.sh` reports at the end."""
    if ws.config_path.exists():
        config = load_config(ws.config_path, lookup_secret)
        where = str(ws.config_path)
    else:
        text = resources.files("gateway").joinpath("config_template.yaml").read_text("utf-8")
        config = parse_config(read_yaml(text), "config_template.yaml", lookup_secret)
        where = f"{ws.config_path} (as the first start will write it)"
    if not config.models:
        return [(False, "no model configured", f"add one under models: in {where}")]
    return [redact_check(check_model(name, cfg, url)) for name, cfg in config.models.items()
            for url in cfg.all_endpoints()]


def redact_check(check: Check) -> Check:
    """What doctor prints gets pasted into chats and issues: no endpoint's user:password@."""
    ok, what, fix = check
    return ok, redact(what), redact(fix)


def check_model(name: str, cfg: ModelConfig, url: str) -> Check:
    """Ask the server which models it has, over the endpoint's documented listing API."""
    provider = cfg.provider_for(url)
    model = cfg.model or name
    what = f"model {name} at {url}"
    ollama = provider == "ollama"
    listing = f"{url}/api/tags" if ollama else f"{url}/models"
    headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
    try:
        status, names = (_ollama_names(url, headers) if ollama
                         else _openai_names(listing, headers))
    except httpx.TimeoutException:
        return (False, f"{what}: timed out", f"the server at {url} accepted but did not "
                f"answer; check that it is not stuck, or fix models.{name}.endpoint")
    except (httpx.TransportError, ConnectionError) as e:
        reason = "connection refused" if "refused" in str(e).lower() or isinstance(
            e, ConnectionError) else str(e)
        start = "`ollama serve`" if ollama else f"the OpenAI-compatible server for {url}"
        return (False, f"{what}: {reason}",
                f"start the model server ({start}), or fix models.{name}.endpoint")
    if status in (401, 403):
        return (False, f"{what}: HTTP {status}, the server refused the key",
                f"set models.{name}.api_key to the key this server expects (as ${{VAR}} or "
                f"${{keyring:NAME}}, stored with `moltbot secret set NAME`)")
    if status >= 500:
        return (False, f"{what}: HTTP {status} from {listing}",
                "the model server is failing: see its log, and restart it")
    if names is None:
        return (False, f"{what}: {listing} answered HTTP {status}, not a model "
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


def check_embedding(config: Config) -> list[Check]:
    """Search by meaning: does each endpoint of `knowledge.embedding_model` embed a text?"""
    name = config.knowledge.embedding_model
    cfg = config.models[name]
    model = cfg.model or name
    checks: list[Check] = []
    for provider in build_providers(name, cfg):
        what = f"search by meaning: {model} at {provider.url}"
        try:
            vectors = provider.embed(["moltbot doctor"], timeout=LIST_TIMEOUT.read)
        except ModelError as e:
            checks.append((False, f"{what}: {e}", (
                f"start the model server, `ollama pull {model}`, or set models.{name}.model "
                "to an embedding model (nomic-embed-text; bge-m3 for Chinese); until then "
                "BM25 answers alone")))
            continue
        finally:
            provider.close()
        checks.append((True, f"{what}: embeds ({len(vectors[0]) if vectors else 0} "
                             "dimensions)", ""))
    return checks


def check_fit(name: str, cfg: ModelConfig, url: str, config: Config,
              skills: bool = False) -> list[Check]:
    """What the model takes (Ollama's /api/show, or config) and what it will be sent: its
    context, tool support and `num_ctx`; a failed line where the configured budget is more
    than it takes, or where skills or tools are configured for a model that cannot call them."""
    what = f"model {name} at {url}"
    card = ModelCard()
    if cfg.provider_for(url) == "ollama":
        try:
            card = read_card(url, cfg.model or name, cfg.api_key or None)
        except CardUnavailable as e:
            card = ModelCard(failed=str(e))
    budget = config.gateway.context_tokens
    window = size_window(name, cfg, [card], budget)
    tools = "can call tools" if window.tools else "cannot call tools"
    sent = (f"num_ctx {window.num_ctx} sent" if cfg.provider_for(url) == "ollama"
            else "no num_ctx (OpenAI API)")
    results: list[Check] = [(True, f"{what}: context {window.context or 'unknown'} "
                                   f"({window.source}), {tools}, {sent}, prompt budget "
                                   f"{window.prompt_tokens} tokens", "")]
    if card.failed:
        results.append((False, f"{what}: {card.failed}, so it is sized from config",
                        "upgrade Ollama (https://ollama.com/download), or set "
                        f"models.{name}.context_length and models.{name}.tools"))
    if window.prompt_tokens < budget:
        results.append((False, f"{what}: gateway.context_tokens {budget} is more than "
                               f"{window.model} takes ({window.context} tokens, {cfg.max_tokens} "
                               f"kept for its reply): it is sent {window.prompt_tokens}",
                        f"lower gateway.context_tokens to {window.prompt_tokens}, or use a "
                        "model with a longer context"))
    wanted = [w for w, on in (("skills", skills), ("tools.offer_to_model",
                                                     bool(config.tools.offer_to_model))) if on]
    if not window.tools and cfg.tools is None and wanted:
        results.append((False, f"{what}: {window.model} cannot call tools, so "
                               f"{' and '.join(wanted)} are not offered to it",
                        "use a model that can call tools (its `ollama show` lists "
                        f"\"tools\" under Capabilities), or set models.{name}.tools: false"))
    return results


def _has_skills(ws: Workspace) -> bool:
    """Whether the workspace has skill files the model would be offered."""
    return ws.skills.is_dir() and any(p.is_file() and not p.name.startswith((".", "_"))
                                      for p in ws.skills.iterdir())


def _ollama_names(url: str, headers: dict[str, str]) -> tuple[int, list[str] | None]:
    """Ollama's model list through the `ollama` package (the message path has its own lean
    client; listing and pulling are what the package is kept for)."""
    import ollama
    from pydantic import ValidationError

    client = ollama.Client(host=url, headers=headers, timeout=LIST_TIMEOUT)
    try:
        return 200, [str(m.model) for m in client.list().models if m.model]
    except ollama.ResponseError as e:
        return e.status_code, None
    except (ValidationError, ValueError):  # answered, but not with Ollama's listing
        return 200, None
    finally:
        client.close()


def _openai_names(listing: str, headers: dict[str, str]) -> tuple[int, list[str] | None]:
    """An OpenAI-compatible server's `{"data": [{"id"}]}`."""
    response = httpx.get(listing, headers=headers, timeout=LIST_TIMEOUT)
    try:
        data = response.json()
    except ValueError:
        return response.status_code, None
    items = data.get("data") if response.status_code == 200 and isinstance(data, dict) else None
    if not isinstance(items, list):
        return response.status_code, None
    return 200, [str(i["id"]) for i in items if isinstance(i, dict) and i.get("id")]


def check_libraries(path: list[str] | None = None,
                    known_bad: dict[str, dict[str, str]] = KNOWN_BAD) -> list[Check]:
    """The version of each library the gateway runs on (always "ok": it is what a bug report
    needs and what drifts between installs), then a failed check for each one missing or at a
    release `known_bad` lists.

    Read from installed package metadata, on `path` (default sys.path), the first found winning
    as for imports: the requirements of the `moltbot` distribution, without its extras.
    """
    path = sys.path if path is None else path
    installed = installed_versions(path)
    own = next(iter(metadata.distributions(name=DISTRIBUTION, path=path)), None)
    if own is None:
        return [(False, "libraries: no `moltbot` package metadata is installed, so their "
                        "versions are unknown", "install Moltbot with ./installers/install.sh "
                                                "(or pip), not by copying its files")]
    listed: dict[str, str | None] = {}
    for requirement in own.requires or []:
        if "extra ==" not in requirement.partition(";")[2]:   # test and tray are not run time
            name = canonical_name(re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0])
            listed[name] = installed.get(name)
    shown = ", ".join(f"{name} {version or 'MISSING'}" for name, version in sorted(listed.items()))
    results: list[Check] = [(True, f"libraries the gateway runs on: {shown}", "")]
    results.extend((False, f"library {name} is not installed (moltbot {own.version} needs it)",
                    _REINSTALL) for name, version in sorted(listed.items()) if version is None)
    for name, bad in sorted(known_bad.items()):
        version = installed.get(canonical_name(name))
        if version in bad:
            results.append((False, f"{name} {version} is a known-bad release: {bad[version]}",
                            f"pip install '{name}!={version}' in Moltbot's environment, or "
                            + _REINSTALL))
    return results


def installed_versions(path: list[str] | None = None) -> dict[str, str]:
    """Canonical name -> version of each distribution on `path` (default sys.path); where one
    is installed twice, the first found, which is the one `import` takes."""
    found: dict[str, str] = {}
    for dist in metadata.distributions(path=sys.path if path is None else path):
        if name := dist.metadata["Name"]:
            found.setdefault(canonical_name(name), dist.version)
    return found


_REINSTALL = ("reinstall with the locked versions: ./installers/install.sh (or pip install "
              "--require-hashes -r installers/lock/runtime.txt)")


def canonical_name(name: str) -> str:
    """PyPI's normalised name (PEP 503): `Flask_Sock` and `flask-sock` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()
