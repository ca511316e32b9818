"""The guard chain at the door of web entries that are not messages (console pages' APIs, the
admin API, a WebSocket handshake): the same chain, in the same order, as every message."""

from __future__ import annotations

from collections.abc import Callable

from flask import Request, request
from flask.typing import ResponseReturnValue

from gateway.api.credentials import request_credential
from gateway.api.errors import error_response
from gateway.channels.base import Entry
from gateway.guards.chain import Allow, Caller, Challenge, Verdict


def caller_of(req: Request, channel: str, credential: str | None) -> Caller:
    return Caller(channel, peer=req.remote_addr or "", credential=credential)


def refusal_response(verdict: Verdict) -> ResponseReturnValue:
    """A refused (or challenged) verdict as the HTTP error the caller gets."""
    if isinstance(verdict, Challenge):  # no stranger policy on web entries: a sign-in error
        return error_response("unauthorized", verdict.text)
    assert not isinstance(verdict, Allow)
    return error_response(verdict.code, verdict.message, verdict.retry_after)


def guarded(entry: Entry, channel: str) -> Callable[[], ResponseReturnValue | None]:
    """A `before_request` hook: the request passes the chain or gets its refusal."""

    def check() -> ResponseReturnValue | None:
        verdict = entry.admit(caller_of(request, channel, request_credential(request)))
        if isinstance(verdict, Allow):
            request.environ["moltbot.principal"] = verdict.principal
            return None
        return refusal_response(verdict)

    return check
