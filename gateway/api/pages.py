"""Browser login and the chat page.

Login trades a token for an HttpOnly cookie so that after it no token is ever in a URL; the
`#token=` fragment that `moltbot dashboard --token-gen` prints never reaches the server (the
page reads it, posts it here, and wipes it from the address bar). The token posted passes the
same guard chain as every other entry (rate limits included).

The cookie holds a fresh session token (stored hashed, labelled "console", valid for
`auth.token_expire`), never the token that was posted: logout then ends that session token for
good (a stolen cookie stops working), without ending the owner's lasting token.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response, jsonify, request, send_from_directory
from flask.typing import ResponseReturnValue

from gateway.api.console_assets import console_page
from gateway.channels.base import Services
from gateway.guards.chain import Allow
from gateway.guards.tokens import credential_id, issue_token, revoke_token
from gateway.observe.audit import audit
from gateway.web.credentials import COOKIE, request_credential
from gateway.web.door import caller_of, client_address, guarded, is_https, refusal_response
from gateway.web.errors import error_response


def build_pages(services: Services, channel: str,
                redeem_code: Callable[[str], str | None] | None = None) -> Blueprint:
    bp = Blueprint("pages", __name__)
    entry, webui, store = services.entry, services.webui, services.store

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
        from_code = token is None and isinstance(code, str) and redeem_code is not None
        if from_code and isinstance(code, str) and redeem_code:  # gateway.api.login_codes
            # a code that redeems nothing passes the chain as the bad credential it is: it is
            # rate-limited and counted by the lockout like a wrong token
            token = redeem_code(code) or code
        caller = caller_of(entry, request, channel, token)
        verdict = entry.admit(caller)
        if not isinstance(verdict, Allow) or token is None:
            if from_code and token != code:  # a good code's fresh session must not linger
                revoke_token(store, services.token_cache, token or "")
            refused = getattr(verdict, "code", "challenge")
            audit("console.login_refused", actor="", source=caller.peer,
                  code="code_spent" if from_code and refused == "unauthorized" else refused)
            if from_code and refused == "unauthorized":
                return error_response("unauthorized", "That sign-in code is used or expired; "
                                      "open the console from the tray again.")
            return refusal_response(verdict)
        expire = entry.settings.config.auth.token_expire
        if not from_code:  # a code already gave a fresh session token; a lasting one does not
            token, _ = issue_token(store, expire, label="console")
        audit("console.login", actor=verdict.principal, actor_id=verdict.credential,
              source=caller.peer, session=credential_id(token))
        response = jsonify({"principal": verdict.principal})
        response.set_cookie(COOKIE, token, max_age=int(expire), httponly=True,
                            samesite="Strict", secure=is_https(entry, request))
        return response

    @bp.post("/api/v1/logout")
    def logout() -> ResponseReturnValue:
        """Ends the cookie's session token, not only the cookie: a copy of it (a stolen
        cookie) stops working too. Needs the cookie's usual checks (same origin, JSON)."""
        session = request_credential(request)
        if session is not None and request.cookies.get(COOKIE) == session and revoke_token(
                store, services.token_cache, session):
            audit("console.logout", actor="", source=client_address(entry, request),
                  session=credential_id(session))
        response: Response = jsonify({"ok": True})
        response.delete_cookie(COOKIE, secure=is_https(entry, request), httponly=True,
                               samesite="Strict")
        return response

    whoami_check = guarded(entry, channel)

    @bp.get("/api/v1/whoami")
    def whoami() -> ResponseReturnValue:
        refused = whoami_check()
        if refused is not None:
            return refused
        return jsonify({"principal": request.environ["moltbot.principal"]})

    return bp
