"""Admin API for the console and the CLI: skills as loaded (with every load error), traces.

Every route needs a token (or the login cookie): the blueprint checks it once, before each.
"""

from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from gateway.api.credentials import request_credential
from gateway.api.errors import error_response
from gateway.guards.tokens import TokenAuthenticator
from gateway.reload import Reloader
from gateway.store import Store


def build_admin(authenticator: TokenAuthenticator, reloader: Reloader,
                store: Store) -> Blueprint:
    bp = Blueprint("admin", __name__)

    @bp.before_request
    def _signed_in() -> ResponseReturnValue | None:
        if not authenticator.verify(request_credential(request)):
            return error_response(401, "unauthorized", "Send `Authorization: Bearer <token>`"
                                  " (moltbot dashboard --token-gen).")
        return None

    @bp.get("/api/v1/skills")
    def skills() -> ResponseReturnValue:
        current = reloader.skills
        return jsonify({"skills": current.listing(), "errors": current.errors,
                        "config_error": reloader.config_error})

    @bp.get("/api/v1/messages/<msg_id>/trace")
    def trace(msg_id: str) -> ResponseReturnValue:
        stored = store.get_message(msg_id)
        if stored is None:
            return error_response(404, "not_found", f"No message {msg_id}.")
        return jsonify({"id": msg_id, "status": stored.status, "route": stored.route,
                        "spans": [asdict(s) for s in store.get_trace(msg_id)]})

    return bp
