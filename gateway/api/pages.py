"""Health, browser login and the chat page.

Login trades a token for an HttpOnly cookie so that after it no token is ever in a URL; the
`#token=` fragment that `moltbot dashboard --token-gen` prints never reaches the server (the
page reads it, posts it here, and wipes it from the address bar).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flask import Blueprint, Response, jsonify, redirect, request, send_from_directory
from flask.typing import ResponseReturnValue

from gateway import __version__
from gateway.api.credentials import COOKIE, request_credential
from gateway.api.errors import error_response
from gateway.guards.tokens import TokenAuthenticator


def build_pages(authenticator: TokenAuthenticator, webui: Path, cookie_max_age: int,
                redeem_code: Callable[[str], str | None] | None = None) -> Blueprint:
    bp = Blueprint("pages", __name__)

    @bp.get("/healthz")
    def healthz() -> ResponseReturnValue:
        return jsonify({"status": "ok", "version": __version__})

    @bp.get("/")
    def index() -> ResponseReturnValue:
        return redirect("/chat")

    @bp.get("/chat")
    def chat() -> ResponseReturnValue:
        response = send_from_directory(webui, "chat.html")
        response.headers["Content-Security-Policy"] = "default-src 'self'; connect-src 'self'"
        response.headers["X-Frame-Options"] = "DENY"
        return response

    @bp.get("/static/<path:name>")
    def static(name: str) -> ResponseReturnValue:
        return send_from_directory(webui / "static", name)

    @bp.post("/api/v1/login")
    def login() -> ResponseReturnValue:
        data = request.get_json(silent=True) or {}
        token = data.get("token") if isinstance(data, dict) else None
        code = data.get("code") if isinstance(data, dict) else None
        if isinstance(code, str) and redeem_code and not token:  # gateway.api.login_codes
            token = redeem_code(code)
            if not token:
                return error_response(401, "unauthorized", "That sign-in code is used or "
                                      "expired; open the console from the tray again.")
        principal = authenticator.verify(token if isinstance(token, str) else None)
        if not principal:
            return error_response(401, "unauthorized", "That token is unknown or expired; "
                                  "create one with `moltbot dashboard --token-gen --expire 8h`.")
        response = jsonify({"principal": principal})
        response.set_cookie(COOKIE, token, max_age=cookie_max_age, httponly=True,
                            samesite="Strict", secure=request.is_secure)
        return response

    @bp.post("/api/v1/logout")
    def logout() -> ResponseReturnValue:
        response: Response = jsonify({"ok": True})
        response.delete_cookie(COOKIE)
        return response

    @bp.get("/api/v1/whoami")
    def whoami() -> ResponseReturnValue:
        principal = authenticator.verify(request_credential(request))
        if not principal:
            return error_response(401, "unauthorized", "Not signed in.")
        return jsonify({"principal": principal})

    return bp
