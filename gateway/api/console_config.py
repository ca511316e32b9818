"""config.yaml in the console: check a draft (each problem at its line), apply it (write the
file; the reloader takes it within a second, or refuses it and keeps the last good config),
and every applied version kept with its diff, who and when, for a one-click rollback."""

from __future__ import annotations

import difflib
import re
import time
from pathlib import Path
from typing import Any

import yaml
from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from gateway.channels.base import Services
from gateway.channels.table import channel_options
from gateway.common.options import ConfigError
from gateway.common.secrets import lookup_secret
from gateway.common.yaml_reader import read_yaml, yaml_problem
from gateway.config import parse_config
from gateway.live.reload import Reloader
from gateway.observe.audit import audit
from gateway.web.door import client_address, guarded
from gateway.web.errors import error_response

APPLY_WAIT = 10.0  # seconds to wait for the reloader's verdict on a written file
_PATH_PART = re.compile(r"[^.\[\]]+|\[(\d+)\]")


def key_line(root: yaml.Node | None, path: str) -> int | None:
    """The 1-based line of the deepest node of `root` on the key path `a.b[0].c` (or
    `a.b.0.c`, as pydantic writes it): a problem is shown at the key it names, or at the
    nearest parent that exists in the file."""
    node, line = root, None
    for m in _PATH_PART.finditer(path):
        part = m.group(1) or m.group(0)
        at: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if getattr(k, "value", None) == part),
                        None)
            at, node = pair if pair else (None, None)
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(
                node.value):
            at = node = node.value[int(part)]
        if at is None:
            break
        line = at.start_mark.line + 1
    return line


def check(text: str) -> tuple[Any, list[dict[str, Any]]]:
    """(the Config, []) or (None, problems as {line, message})."""
    try:
        data = read_yaml(text)  # first: it refuses what would be costly to compose
        root = yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        return None, [{"line": mark.line + 1 if mark else None, "message": yaml_problem(e)}]
    try:
        config = parse_config(data, "config.yaml", lookup_secret)
        channel_options(config, "config.yaml")  # each channel checks its own options
        return config, []
    except ConfigError as e:
        problems = []
        for problem in e.problems:
            path = problem.split(":", 1)[0] if ": " in problem else ""
            problems.append({"line": key_line(root, path) if path else None,
                             "message": problem})
        return None, problems


def diff(before: str, after: str) -> str:
    return "".join(difflib.unified_diff(before.splitlines(keepends=True),
                                        after.splitlines(keepends=True),
                                        "config.yaml (before)", "config.yaml (after)"))


def await_verdict(reloader: Reloader, before: Any, error_before: str | None,
                  config: Any) -> str | None:
    """Wait for the reloader to take the written file: None once it runs, the refusal's
    text if the running gateway refused it (a channel option only it can check)."""
    deadline = time.monotonic() + APPLY_WAIT
    while time.monotonic() < deadline:
        if reloader.config is not before and reloader.config == config:
            return None
        if reloader.config_error and reloader.config_error != error_before:
            return reloader.config_error
        time.sleep(0.1)
    if reloader.config == config:
        return None
    return ("the gateway did not pick the file up within "
            f"{APPLY_WAIT:.0f}s; check data/logs/gateway.log")


def build_console_config(services: Services, channel: str) -> Blueprint:
    bp = Blueprint("console_config", __name__)
    bp.before_request(guarded(services.entry, channel))
    store, reloader = services.store, services.reloader
    path: Path = reloader.workspace.config_path

    def current() -> str:
        return path.read_text(encoding="utf-8") if path.exists() else ""

    def versions() -> list[dict[str, Any]]:
        return [{"version": v.version, "who": v.who, "source": v.source,
                 "created_at": v.created_at, "diff": v.diff}
                for v in store.config_versions()]

    def keep_outside_edit(on_disk: str) -> None:
        """Before the console's first edit, and after any edit by hand, the file as it is
        becomes a version too, so every rollback target is in the list."""
        latest = store.config_versions(1)
        if latest and latest[0].text == on_disk:
            return
        if latest:
            store.add_config_version(on_disk, diff(latest[0].text, on_disk), "config.yaml",
                                     "edited outside the console")
        else:
            store.add_config_version(on_disk, "", "config.yaml", "before the console")

    def apply(text: str, source: str) -> ResponseReturnValue:
        config, problems = check(text)
        if problems:
            return jsonify({"applied": False, "problems": problems}), 422
        on_disk = current()
        if text == on_disk:
            return jsonify({"applied": True, "version": None, "diff": "", "error": None})
        keep_outside_edit(on_disk)
        before, error_before = reloader.config, reloader.config_error
        tmp = path.with_name(f".{path.name}.console")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)  # one rename: the reloader never reads half a file
        refused = await_verdict(reloader, before, error_before, config)
        who, change = request.environ["moltbot.principal"], diff(on_disk, text)
        version = store.add_config_version(text, change, who,
                                           f"{source} (refused)" if refused else source)
        audit("config.edited", actor=who, actor_id=request.environ["moltbot.credential"],
              source=client_address(services.entry, request),
              version=version, via=source, outcome="refused" if refused else "applied")
        return jsonify({"applied": refused is None, "version": version, "diff": change,
                        "error": refused})

    def body_text() -> str | None:
        data = request.get_json(silent=True)
        text = data.get("text") if isinstance(data, dict) else None
        return text if isinstance(text, str) else None

    @bp.get("/api/v1/config")
    def show() -> ResponseReturnValue:
        return jsonify({"text": current(), "config_error": reloader.config_error,
                        "versions": versions()})

    @bp.post("/api/v1/config/check")
    def check_draft() -> ResponseReturnValue:
        text = body_text()
        if text is None:
            return error_response("bad_request", 'Send {"text": "<config.yaml>"} as JSON.')
        return jsonify({"problems": check(text)[1]})

    @bp.post("/api/v1/config")
    def apply_draft() -> ResponseReturnValue:
        text = body_text()
        if text is None:
            return error_response("bad_request", 'Send {"text": "<config.yaml>"} as JSON.')
        return apply(text, "console")

    @bp.get("/api/v1/config/versions/<int:version>")
    def version_text(version: int) -> ResponseReturnValue:
        found = store.config_version(version)
        if found is None:
            return error_response("not_found", f"No config version {version}.")
        return jsonify({"version": found.version, "text": found.text, "diff": found.diff,
                        "who": found.who, "created_at": found.created_at})

    @bp.post("/api/v1/config/rollback")
    def rollback() -> ResponseReturnValue:
        data = request.get_json(silent=True)
        version = data.get("version") if isinstance(data, dict) else None
        found = store.config_version(version) if isinstance(version, int) else None
        if found is None:
            return error_response("not_found", f"No config version {version!r}; pick one "
                                  "from GET /api/v1/config.")
        return apply(found.text, f"rollback to v{found.version}")

    return bp
