"""Skills and knowledge in the console: list and edit their files, try a question against
the knowledge, and see each save's load result (the hot reloader loads it; a file that fails
keeps its last good version running).

Paths are checked like the model's files tool: relative, no `..`, no NUL, and the resolved
path must stay inside `skills/` or `knowledge/` (a symlink out is refused).
"""

from __future__ import annotations

import os
import time
from pathlib import Path, PurePosixPath
from typing import Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from gateway.channels.base import Services
from gateway.live.reload import Reloader
from gateway.observe.audit import audit
from gateway.web.door import client_address, guarded
from gateway.web.errors import error_response

ROOTS = ("skills", "knowledge")
MAX_FILE = 1024 * 1024
LOAD_WAIT = 10.0
EDITABLE = (".py", ".md", ".txt", ".csv", ".yaml", ".yml", ".json", ".sh")


class PathRefused(ValueError):
    """A path the console may not touch; the text says why."""


def resolve(workspace: Path, root: str, path: str) -> Path:
    if root not in ROOTS:
        raise PathRefused(f"root must be one of {', '.join(ROOTS)}, got {root!r}")
    if not path or "\x00" in path or os.path.isabs(path):
        raise PathRefused(f"{path!r}: give a path relative to {root}/")
    parts = PurePosixPath(path).parts
    if ".." in parts:
        raise PathRefused(f"{path!r}: '..' is not allowed; stay inside {root}/")
    if root == "skills" and len(parts) > 1:
        raise PathRefused(f"{path!r}: skills load from skills/ itself, not its subfolders; "
                          f"name the file skills/{parts[-1]}")
    base = (workspace / root).resolve()
    target = base.joinpath(*parts).resolve()
    if base not in target.parents:
        raise PathRefused(f"{path!r} leads outside {root}/ (through a symlink?)")
    if target.suffix not in EDITABLE:
        raise PathRefused(f"{path!r}: only {', '.join(EDITABLE)} files can be edited here")
    return target


def listing(workspace: Path, root: str) -> list[dict[str, Any]]:
    base = (workspace / root).resolve()
    if not base.is_dir():
        return []
    out = []
    for p in sorted(base.rglob("*")):
        rel = p.relative_to(base)
        if (p.is_file() and not any(s.startswith(".") or s == "__pycache__" for s in rel.parts)
                and base in p.resolve().parents):
            out.append({"path": rel.as_posix(), "bytes": p.stat().st_size,
                        "modified": p.stat().st_mtime})
    return out


def load_result(reloader: Reloader, root: str, target: Path) -> dict[str, Any]:
    """What the last load said about this file: its error (with the line when it has one)."""
    if root == "skills":
        label = f"skills/{target.name}"
        error = reloader.skills.errors.get(label)
        intents = [h.intent for h in reloader.skills.handlers if h.source == label]
        return {"ok": error is None, "error": error, "intents": intents}
    error = next((v for k, v in reloader.knowledge.errors.items()
                  if Path(k).resolve() == target), None)
    same = {s for s in reloader.knowledge.sources if Path(s).resolve() == target}
    passages = sum(1 for p in reloader.knowledge.index.passages if p.source in same)
    return {"ok": error is None, "error": error, "passages": passages}


def await_load(reloader: Reloader, before: object) -> bool:
    """Wait until the reloader has swapped in a new skills snapshot (it does after every
    skills or knowledge change); False if it did not within `LOAD_WAIT`."""
    deadline = time.monotonic() + LOAD_WAIT
    while time.monotonic() < deadline:
        if reloader.skills is not before:
            return True
        time.sleep(0.1)
    return False


def build_console_files(services: Services, channel: str) -> Blueprint:
    bp = Blueprint("console_files", __name__)
    bp.before_request(guarded(services.entry, channel))
    reloader = services.reloader
    workspace = reloader.workspace.root

    @bp.get("/api/v1/files/<root>")
    def files(root: str) -> ResponseReturnValue:
        if root not in ROOTS:
            return error_response("not_found", f"root must be one of {', '.join(ROOTS)}.")
        errors = (reloader.skills.errors if root == "skills" else
                  {Path(k).relative_to((workspace / root).resolve()).as_posix()
                   if Path(k).is_relative_to((workspace / root).resolve()) else k: v
                   for k, v in reloader.knowledge.errors.items()})
        return jsonify({"files": listing(workspace, root), "errors": errors})

    @bp.get("/api/v1/files/<root>/<path:path>")
    def read(root: str, path: str) -> ResponseReturnValue:
        try:
            target = resolve(workspace, root, path)
        except PathRefused as e:
            return error_response("forbidden", str(e))
        if not target.is_file():
            return error_response("not_found", f"No file {root}/{path}.")
        return jsonify({"path": path, "text": target.read_text(encoding="utf-8",
                                                               errors="replace"),
                        "load": load_result(reloader, root, target)})

    @bp.put("/api/v1/files/<root>/<path:path>")
    def write(root: str, path: str) -> ResponseReturnValue:
        data = request.get_json(silent=True)
        text = data.get("text") if isinstance(data, dict) else None
        if not isinstance(text, str):
            return error_response("bad_request", 'Send {"text": "..."} as JSON.')
        if len(text.encode()) > MAX_FILE:
            return error_response("payload_too_large", f"Files edited here stay under "
                                  f"{MAX_FILE // 1024} KB.")
        try:
            target = resolve(workspace, root, path)
        except PathRefused as e:
            return error_response("forbidden", str(e))
        before = reloader.skills
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.console")
        tmp.write_text(text, encoding="utf-8")
        if target.exists():
            os.chmod(tmp, target.stat().st_mode)  # a script skill stays executable
        tmp.replace(target)
        loaded = await_load(reloader, before)
        audit("file.edited", actor=request.environ["moltbot.principal"],
              actor_id=request.environ["moltbot.credential"],
              source=client_address(services.entry, request), path=f"{root}/{path}")
        return jsonify({"path": path, "reloaded": loaded,
                        "load": load_result(reloader, root, target)})

    @bp.get("/api/v1/knowledge/search")
    def search() -> ResponseReturnValue:
        question = request.args.get("q", "").strip()
        if not question:
            return error_response("bad_request", "Ask something: /api/v1/knowledge/search?q=...")
        hits, how = reloader.knowledge.find_explained(question, 5)
        meaning = reloader.knowledge.meaning
        return jsonify({"hits": [{"source": _relative(h.passage.source, workspace),
                                  "title": h.passage.title, "score": round(h.score, 3),
                                  "origin": h.origin, "text": h.passage.text[:1200]}
                                 for h in hits],
                        "ranking": how, "meaning": meaning.status() if meaning else "off"})

    return bp


def _relative(source: str, workspace: Path) -> str:
    path = Path(source)
    return path.relative_to(workspace).as_posix() if path.is_relative_to(workspace) else source
