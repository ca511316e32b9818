"""Admin API for the console and the CLI: the skills as loaded, with every load error."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from gateway.api.credentials import request_credential
from gateway.api.errors import error_response
from gateway.guards.tokens import TokenAuthenticator
from gateway.reload import Reloader


def build_admin(authenticator: TokenAuthenticator, reloader: Reloader) -> Blueprint:
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

    return bp
