"""Browser login and the chat page.

Login trades a token for an HttpOnly cookie so that after it no token is ever in a URL; the
`#token=` fragment that `moltbot dashboard --token-gen` prints never reaches the server (the
page reads it, posts it here, and wipes it from the address bar). The token posted passes the
same guard chain as every other entry (rate limits included).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flask import Blueprint, Response, jsonify, request, send_from_directory
from flask.typing import ResponseReturnValue

from gateway.api.console_assets import console_page
from gateway.api.credentials import COOKIE
from gateway.api.door import caller_of, client_address, guarded, refusal_response
from gateway.api.errors import error_response
from gateway.channels.base import Entry
from gateway.guards.chain import Allow
from gateway.observe.audit import audit


def build_pages(entry: Entry, webui: Path, channel: str,
                redeem_code: Callable[[str], str | None] | None = None) -> Blueprint:
    bp = Blueprint("pages", __name__)

    @bp.get("/")
    def index() -> ResponseReturnValue:
        return console_page(webui)

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
        token = token if isinstance(token, str) else None
        code = data.get("code") if isinstance(data, dict) else None
        if token is None and isinstance(code, str) and redeem_code:  # gateway.api.login_codes
            token = redeem_code(code)
            if token is None:
                audit("console.login_refused", actor="", source=client_address(entry, request),
                      code="code_spent")
                return error_response("unauthorized", "That sign-in code is used or expired; "
                                      "open the console from the tray again.")
        caller = caller_of(entry, request, channel, token)
        verdict = entry.admit(caller)
        if not isinstance(verdict, Allow) or token is None:
            audit("console.login_refused", actor="", source=caller.peer,
                  code=getattr(verdict, "code", "challenge"))
            return refusal_response(verdict)
        audit("console.login", actor=verdict.principal, actor_id=verdict.credential,
              source=caller.peer)
        response = jsonify({"principal": verdict.principal})
        response.set_cookie(COOKIE, token, max_age=int(entry.settings.config.auth.token_expire),
                            httponly=True, samesite="Strict", secure=request.is_secure)
        return response

    @bp.post("/api/v1/logout")
    def logout() -> ResponseReturnValue:
        response: Response = jsonify({"ok": True})
        response.delete_cookie(COOKIE)
        return response

    whoami_check = guarded(entry, channel)

    @bp.get("/api/v1/whoami")
    def whoami() -> ResponseReturnValue:
        refused = whoami_check()
        if refused is not None:
            return refused
        return jsonify({"principal": request.environ["moltbot.principal"]})

    return bp
