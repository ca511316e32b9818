"""One-time sign-in codes: how the tray opens the console already signed in.

The tray holds a lasting token (in the OS keyring). Putting it in a link would leave it in the
browser's history, so instead the tray asks for a code (`POST /api/v1/login/code` with its
bearer token) and opens `/#code=...`; the page at once trades the code for the session
cookie (`POST /api/v1/login {"code"}`). A code is random, lives `CODE_TTL` seconds, works
once, and is kept only as a hash, in memory: a restart simply voids the few outstanding ones.
The cookie then holds a fresh session token, never the tray's own.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from gateway.core.entry import Entry
from gateway.core.store import Store
from gateway.guards.chain import Allow
from gateway.guards.tokens import hash_token, issue_token
from gateway.observe.audit import audit
from gateway.web.credentials import bearer
from gateway.web.door import caller_of, refusal_response
from gateway.web.errors import error_response

CODE_TTL = 60.0
MAX_OUTSTANDING = 64


class LoginCodes:
    """Issues and redeems single-use codes; each maps to the principal that asked for it."""

    def __init__(self, ttl: float = CODE_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._codes: dict[str, tuple[str, float]] = {}  # hash -> principal, expiry

    def issue(self, principal: str) -> str:
        now = self.clock()
        self._codes = {h: v for h, v in self._codes.items() if v[1] > now}
        if len(self._codes) >= MAX_OUTSTANDING:  # nobody needs 64 at once: drop the oldest
            del self._codes[min(self._codes, key=lambda h: self._codes[h][1])]
        code = secrets.token_urlsafe(24)
        self._codes[hash_token(code)] = (principal, now + self.ttl)
        return code

    def redeem(self, code: str) -> str | None:
        """The principal the code was issued to, once; None when unknown, used or expired."""
        if not code or len(code) > 128:
            return None
        found = self._codes.pop(hash_token(code), None)
        if not found or found[1] <= self.clock():
            return None
        return found[0]


def build_login_codes(entry: Entry, store: Store, channel: str,
                      codes: LoginCodes | None = None,
                      ) -> tuple[Blueprint, Callable[[str], str | None]]:
    """The route that issues codes, and the function the login route calls to redeem one.

    Asking for a code passes the guard chain like every entry (rate limits included), with
    the bearer token from the header only: a page signed in by cookie has no need to mint
    codes. Redeeming gives a new session token (stored hashed, labelled "console", valid as
    long as the login cookie, `auth.token_expire`) for the login route to set as the cookie.
    """
    codes = codes or LoginCodes()
    bp = Blueprint("login_codes", __name__)

    @bp.post("/api/v1/login/code")
    def issue_code() -> ResponseReturnValue:
        credential = bearer(request.headers.get("Authorization"))
        if credential is None:
            return error_response("unauthorized", "Send `Authorization: Bearer <token>` (the "
                                  "tray's token, or one from moltbot dashboard --token-gen).")
        caller = caller_of(entry, request, channel, credential)
        verdict = entry.admit(caller)
        if not isinstance(verdict, Allow):
            return refusal_response(verdict)
        audit("console.login_code", actor=verdict.principal, actor_id=verdict.credential,
              source=caller.peer)
        return jsonify({"code": codes.issue(verdict.principal), "expires_in": int(codes.ttl)})

    def redeem_for_session(code: str) -> str | None:
        if codes.redeem(code) is None:
            return None
        token, _ = issue_token(store, entry.settings.config.auth.token_expire, label="console")
        return token

    return bp, redeem_for_session
