"""Sessions and messages for the console: search them, replay a session message by message,
and open one message whole (its trace and what the model was given)."""

from __future__ import annotations

import time
from dataclasses import asdict

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from gateway.channels.base import Services
from gateway.core.sessions import HISTORY_TURNS, continued_session
from gateway.web.door import guarded
from gateway.web.errors import error_response

MAX_ROWS = 500


def row_limit() -> int:
    """The request's `limit` (default 50, at most 500)."""
    raw = request.args.get("limit", "50")
    return min(MAX_ROWS, int(raw)) if raw.isdigit() and int(raw) > 0 else 50


def build_console_sessions(services: Services, channel: str) -> Blueprint:
    bp = Blueprint("console_sessions", __name__)
    bp.before_request(guarded(services.entry, channel))
    store = services.store

    @bp.get("/api/v1/sessions")
    def sessions() -> ResponseReturnValue:
        found = store.find_sessions(request.args.get("q", "").strip(), row_limit())
        return jsonify({"sessions": [asdict(s) for s in found]})

    @bp.get("/api/v1/sessions/current")
    def current() -> ResponseReturnValue:
        """The conversation a chat's next message continues: its session (null when the next
        message starts a fresh one) and the answered turns the model remembers, oldest first."""
        channel, chat = request.args.get("channel", ""), request.args.get("chat", "")
        if not channel or not chat:
            return error_response("bad_request", "Name the conversation: "
                                  "?channel=websocket&chat=console")
        policy = services.entry.settings.sessions
        row = continued_session(store, channel, chat, policy, time.time())
        found = store.conversation(row.id, HISTORY_TURNS) if row else []
        return jsonify({"session": row.id if row else None,
                        "messages": [asdict(m) for m in found]})

    @bp.get("/api/v1/messages")
    def messages() -> ResponseReturnValue:
        a = request.args
        found = store.find_messages(text=a.get("q", "").strip(),
                                    sender=a.get("sender", "").strip(),
                                    msg_id=a.get("msg_id", "").strip(),
                                    session_id=a.get("session", "").strip(), limit=row_limit())
        return jsonify({"messages": [asdict(m) for m in found]})

    @bp.get("/api/v1/messages/<msg_id>")
    def message(msg_id: str) -> ResponseReturnValue:
        stored = store.get_message(msg_id)
        if stored is None:
            return error_response("not_found", f"No message {msg_id}: check the id (the "
                                  "reply and every log line carry it).")
        return jsonify({"message": asdict(stored),
                        "spans": [asdict(s) for s in store.get_trace(msg_id)],
                        "model_input": store.model_input(msg_id),
                        "files": {way: [asdict(f) for f in store.files_of(msg_id, way)]
                                  for way in ("in", "out")},
                        "deliveries": [d.as_dict() for d in
                                       services.outbox.rows.for_message(msg_id)]})

    return bp
