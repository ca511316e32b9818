"""Memory for the console: every owner's facts, and the owner's own changes to them (add,
edit, erase one, erase all). Each change goes through `assistant.memory.Memory`, so the file
stays the truth and the index follows at once; each is audited with who made it.

An edit or erase names the fact by its place and its text as the page showed it: if the file
changed meanwhile (an edit by hand, /forget in a chat), the change is refused with a sentence
to reload, never applied to another fact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from gateway.assistant.memory import Memory
from gateway.assistant.options import OWNER_NAME
from gateway.core.entry import Entry
from gateway.observe.audit import audit
from gateway.web.door import client_address, guarded
from gateway.web.errors import error_response


def build_console_memory(entry: Entry, memory: Memory, channel: str,
                         is_on: Callable[[], bool]) -> Blueprint:
    """Guarded as `channel` (the console's), whose switch (`is_on`) it follows."""
    bp = Blueprint("console_memory", __name__)

    @bp.before_request
    def switched_on() -> ResponseReturnValue | None:
        if is_on():
            return None
        return error_response("unavailable", "The console is switched off "
                              "(channels.console.enabled in config.yaml).")

    bp.before_request(guarded(entry, channel))

    @bp.get("/api/v1/memory")
    def owners() -> ResponseReturnValue:
        config = entry.settings.config.memory
        linked = {name: ids for name, ids in config.owners.items()}
        names = sorted(set(memory.owners()) | set(linked))
        return jsonify({"enabled": config.enabled, "owners": [
            {"owner": name, "facts": len(memory.facts(name)),
             "identities": linked.get(name, [])} for name in names]})

    @bp.get("/api/v1/memory/<owner>")
    def facts(owner: str) -> ResponseReturnValue:
        if not OWNER_NAME.match(owner):
            return _no_owner(owner)
        return jsonify({"owner": owner, "path": f"memory/{owner}.md", "facts": [
            {"position": i, "text": f.text, "day": f.day}
            for i, f in enumerate(memory.facts(owner))]})

    @bp.post("/api/v1/memory/<owner>/<action>")
    def change(owner: str, action: str) -> ResponseReturnValue:
        data: Any = request.get_json(silent=True)
        if not OWNER_NAME.match(owner):
            return _no_owner(owner)
        if action not in ("add", "edit", "erase", "erase-all") or not isinstance(data, dict):
            return error_response("bad_request", "POST JSON to /api/v1/memory/<owner>/add "
                                  '{"text"}, /edit {"position", "was", "text"}, /erase '
                                  '{"position", "was"} or /erase-all {}.')
        try:
            done = _apply(memory, owner, action, data, entry.settings.config.memory.max_facts)
        except ValueError as e:
            return error_response("bad_request", str(e))
        audit(f"memory.{action}", actor=request.environ["moltbot.principal"],
              actor_id=request.environ["moltbot.credential"],
              source=client_address(entry, request), owner=owner)
        return jsonify(done)

    return bp


def _apply(memory: Memory, owner: str, action: str, data: dict[str, Any],
           max_facts: int) -> dict[str, Any]:
    if action == "erase-all":
        return {"erased": memory.forget_all(owner)}
    if action == "add":
        return {"added": memory.remember(owner, _text(data, "text"), max_facts).text}
    position, was = data.get("position"), _text(data, "was")
    if not isinstance(position, int) or isinstance(position, bool):
        raise ValueError("position must be the fact's number from the list (0 first).")
    if action == "erase":
        return {"erased": memory.change(owner, position, was, None).text}
    return {"edited": memory.change(owner, position, was, _text(data, "text")).text}


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key} must be text.")
    return value


def _no_owner(owner: str) -> ResponseReturnValue:
    return error_response("not_found", f"No owner {owner!r}: an owner's name is the file name "
                          "of memory/<owner>.md.")
