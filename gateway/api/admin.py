"""Admin API for the console and the CLI: skills as loaded (with every load error) and whether
the model's programs can be sandboxed here, traces (with the message's deliveries), channels.

Every route passes the guard chain at the door (one `before_request` for the blueprint).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from gateway.core.entry import Entry
from gateway.core.outbound import Outbound
from gateway.core.store import Store
from gateway.live.reload import Reloader
from gateway.tools.sandbox import find_sandbox
from gateway.web.door import guarded
from gateway.web.errors import error_response


def build_admin(entry: Entry, reloader: Reloader, store: Store, channel: str,
                channels: Callable[[], list[dict[str, Any]]],
                deliveries: Callable[[str], list[Outbound]]) -> Blueprint:
    bp = Blueprint("admin", __name__)
    bp.before_request(guarded(entry, channel))

    @bp.get("/api/v1/skills")
    def skills() -> ResponseReturnValue:
        current = reloader.skills
        return jsonify({"skills": current.listing(), "errors": current.errors,
                        "config_error": reloader.config_error,
                        "sandbox": find_sandbox().as_dict()})

    @bp.get("/api/v1/channels")
    def channel_list() -> ResponseReturnValue:
        return jsonify({"channels": channels()})

    @bp.get("/api/v1/messages/<msg_id>/trace")
    def trace(msg_id: str) -> ResponseReturnValue:
        stored = store.get_message(msg_id)
        if stored is None:
            return error_response("not_found", f"No message {msg_id}.")
        return jsonify({"id": msg_id, "status": stored.status, "route": stored.route,
                        "spans": [asdict(s) for s in store.get_trace(msg_id)],
                        "files": {way: [asdict(f) for f in store.files_of(msg_id, way)]
                                  for way in ("in", "out")},
                        "deliveries": [d.as_dict() for d in deliveries(msg_id)]})

    return bp
