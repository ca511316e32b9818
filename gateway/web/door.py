"""The door of the gateway's web server.

First, for every request (`web_door`, before any route):
- a request for a name that is not the gateway's own (its `Host`) is refused: DNS rebinding
  points a name the attacker owns at 127.0.0.1, and the browser then lets that site's pages
  read our answers (/metrics, /api/v1/stats answer loopback without a token). An IP address
  cannot be rebound, so any address is fine; names must be `localhost`, `gateway.host` or in
  `gateway.allowed_hosts` (the name a proxy serves).
- a request sent by a web page of another site (its `Origin` is not this gateway) is refused
  before it can count against anything. Browsers let any page open a WebSocket to 127.0.0.1
  or post to it; without this, a page the owner happens to visit could send bad tokens until
  the owner's address is locked out.

Then the guard chain at the door of web entries that are not messages (console pages' APIs,
the admin API, a WebSocket handshake): the same chain, in the same order, as every message.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import Request, request
from flask.typing import ResponseReturnValue

from gateway.common.networks import in_networks
from gateway.core.entry import Entry
from gateway.guards.chain import Allow, Caller, Challenge, Verdict
from gateway.web.credentials import is_same_origin, request_credential
from gateway.web.errors import error_response


def client_address(entry: Entry, req: Request) -> str:
    """The client's address: the socket's peer, or, when that peer is one of
    `auth.trusted_proxies`, the nearest address before it in X-Forwarded-For that is not a
    trusted proxy too. Anyone else's X-Forwarded-For is ignored: it is just a header."""
    peer = req.remote_addr or ""
    trusted = entry.settings.trusted_proxies
    if not trusted or not in_networks(peer, trusted):
        return peer
    hops = [h.strip() for h in req.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not in_networks(hop, trusted):
            return hop
    return hops[0] if hops else peer


def is_https(entry: Entry, req: Request) -> bool:
    """Whether the client reached us over TLS: on our own socket, or, when the peer is one of
    `auth.trusted_proxies`, as that proxy says in X-Forwarded-Proto (nginx ends TLS and talks
    plain HTTP to us). Anyone else's X-Forwarded-Proto is just a header."""
    if req.is_secure:
        return True
    trusted = entry.settings.trusted_proxies
    if not trusted or not in_networks(req.remote_addr or "", trusted):
        return False
    said = req.headers.get("X-Forwarded-Proto", "").split(",")[-1].strip().lower()
    return said == "https"


def caller_of(entry: Entry, req: Request, channel: str, credential: str | None) -> Caller:
    return Caller(channel, peer=client_address(entry, req), credential=credential,
                  browser="Origin" in req.headers)


def is_own_name(entry: Entry, host_header: str) -> bool:
    """Whether a `Host` header names this gateway (see the module docstring)."""
    try:
        host = urlsplit(f"//{host_header}").hostname or ""
    except ValueError:  # "[::1" and the like: not a name of ours
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    gateway = entry.settings.config.gateway
    return host in ("localhost", gateway.host.lower()) or host in gateway.allowed_hosts


def web_door(entry: Entry) -> Callable[[], ResponseReturnValue | None]:
    """The app-wide `before_request` hook that runs before every route and every guard."""

    def check() -> ResponseReturnValue | None:
        host = request.environ.get("HTTP_HOST")
        if host is not None and not is_own_name(entry, host):
            return error_response("forbidden", f"This gateway does not answer to the name "
                                  f"{host!r}. If that is its name (a proxy in front), add it "
                                  "to gateway.allowed_hosts in config.yaml.")
        if not is_same_origin(request):
            return error_response("forbidden", "Pages of other sites may not use this "
                                  f"gateway (Origin {request.headers.get('Origin')!r}); open "
                                  "the console at the gateway's own address.")
        return None

    return check


def refusal_response(verdict: Verdict) -> ResponseReturnValue:
    """A refused (or challenged) verdict as the HTTP error the caller gets."""
    if isinstance(verdict, Challenge):  # no stranger policy on web entries: a sign-in error
        return error_response("unauthorized", verdict.text)
    assert not isinstance(verdict, Allow)
    return error_response(verdict.code, verdict.message, verdict.retry_after)


def guarded(entry: Entry, channel: str) -> Callable[[], ResponseReturnValue | None]:
    """A `before_request` hook: the request passes the chain or gets its refusal."""

    def check() -> ResponseReturnValue | None:
        verdict = entry.admit(caller_of(entry, request, channel, request_credential(request)))
        if isinstance(verdict, Allow):
            request.environ["moltbot.principal"] = verdict.principal
            request.environ["moltbot.credential"] = verdict.credential  # a token's id
            return None
        return refusal_response(verdict)

    return check


def switched_on(is_on: Callable[[], bool], what: str, key: str
                ) -> Callable[[], ResponseReturnValue | None]:
    """A `before_request` hook for routes that follow a channel's switch: while `is_on()` is
    false they answer `unavailable`, naming `what` is off and the config `key` that says so.
    Registered before `guarded`, so a switched-off entry answers before any other check."""

    def check() -> ResponseReturnValue | None:
        if is_on():
            return None
        return error_response("unavailable", f"The {what} is switched off ({key} in "
                              f"config.yaml).")

    return check
