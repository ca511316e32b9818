"""Where a request's credential comes from: the Authorization header, or the login cookie.

The cookie (set by POST /api/v1/login, HttpOnly, SameSite=Strict) lets the browser pages work
without the token ever sitting in a URL. Cookie-authenticated writes must be JSON and
cookie-authenticated WebSockets must come from our own origin, which closes cross-site forgery.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Request

COOKIE = "moltbot_token"


def bearer(header: str | None) -> str | None:
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return None


def is_same_origin(request: Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser, or a same-origin navigation
    return urlsplit(origin).netloc == request.host


def request_credential(request: Request, websocket: bool = False) -> str | None:
    token = bearer(request.headers.get("Authorization"))
    if token:
        return token
    cookie = request.cookies.get(COOKIE)
    if not cookie or not is_same_origin(request):
        return None
    if not websocket and request.method not in ("GET", "HEAD") and not request.is_json:
        return None
    return cookie
