"""The outbox over HTTP: scripts start messages, the console watches what leaves.

- `POST /api/v1/send` `{"channel", "chat", "text", "to"?}` (a token, as for
  `/api/v1/messages`; served while `channels.http` is on): stored in the outbox, then
  `202 {"id", "state"}`; a bad field, an unknown channel or chat, a channel that cannot send
  get a 400 (503 while the channel is switched off) saying what to fix; the chat's limit
  (`outbox.per_chat`) a 429 with Retry-After. Audited.
- `GET /api/v1/outbox/<id>`: one outbound message with its state and every attempt.
- Console: `GET /api/v1/outbox?state=&channel=&limit=` (newest first, 50 unless `limit`
  says, up to 500; with counts per state) and `POST /api/v1/outbox/<id>/retry` (a failed
  one queued again).
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from gateway.api.console_sessions import row_limit
from gateway.channels.base import Services
from gateway.core.entry import Entry
from gateway.core.fields import decode_json
from gateway.core.outbound import STATES, SendRefused
from gateway.core.outbox import Outbox
from gateway.observe.audit import audit
from gateway.web.door import client_address, guarded, switched_on
from gateway.web.errors import error_response

SEND_FIELDS = ("channel", "chat", "text", "to")
EXAMPLE = '{"channel": "enterprise_im", "chat": "ops-room", "text": "The build finished."}'


def build_send_api(entry: Entry, outbox: Outbox, channel: str,
                   is_on: Callable[[], bool]) -> Blueprint:
    """The scripts' side, guarded as `channel` (the HTTP channel, whose switch it follows)."""
    bp = Blueprint("outbox_send", __name__)

    bp.before_request(switched_on(is_on, "HTTP API", "channels.http.enabled"))

    bp.before_request(guarded(entry, channel))

    @bp.post("/api/v1/send")
    def send() -> ResponseReturnValue:
        data, problem = decode_json(request.get_data(cache=False))
        if problem is None and not isinstance(data, dict):
            problem = f"Send a JSON object such as {EXAMPLE}."
        if problem is None:
            unknown = sorted(set(data) - set(SEND_FIELDS))
            if unknown:
                problem = (f"Unknown field(s) {', '.join(unknown)}: send "
                           f"{', '.join(SEND_FIELDS)}, e.g. {EXAMPLE}.")
        if problem:
            return error_response("bad_request", problem)
        principal = request.environ.get("moltbot.principal", "")
        try:
            row = outbox.send(data.get("channel"), data.get("chat"), data.get("text"),
                              to=data.get("to") or "", origin="api")
        except SendRefused as e:
            return error_response(e.code, str(e), e.retry_after)
        audit("outbox.send", actor=principal,
              actor_id=request.environ.get("moltbot.credential", ""),
              source=client_address(entry, request), outbound_id=row.id,
              channel=row.channel, chat=row.chat)
        return jsonify({"id": row.id, "state": row.state}), 202

    @bp.get("/api/v1/outbox/<outbound_id>")
    def one(outbound_id: str) -> ResponseReturnValue:
        row = outbox.rows.get(outbound_id)
        if row is None:
            return error_response("not_found", f"No outbound message {outbound_id}: the id "
                                  "is what POST /api/v1/send or context.send returned.")
        return jsonify({"outbound": row.as_dict()})

    return bp


def build_console_outbox(services: Services, channel: str) -> Blueprint:
    bp = Blueprint("console_outbox", __name__)
    bp.before_request(guarded(services.entry, channel))
    outbox = services.outbox

    @bp.get("/api/v1/outbox")
    def listing() -> ResponseReturnValue:
        state = request.args.get("state", "")
        if state and state not in STATES:
            return error_response("bad_request", f"state must be one of {', '.join(STATES)}.")
        rows = outbox.rows.listing(state, request.args.get("channel", ""), row_limit())
        return jsonify({"outbound": [r.as_dict() for r in rows],
                        "counts": outbox.rows.counts()})

    @bp.post("/api/v1/outbox/<outbound_id>/retry")
    def retry(outbound_id: str) -> ResponseReturnValue:
        row = outbox.retry(outbound_id)
        if row is None:
            return error_response("bad_request", f"{outbound_id} is not a failed outbound "
                                  "message; only failed ones can be retried.")
        audit("outbox.retry", actor=request.environ.get("moltbot.principal", ""),
              actor_id=request.environ.get("moltbot.credential", ""),
              source=client_address(services.entry, request), outbound_id=outbound_id)
        return jsonify({"outbound": row.as_dict()})

    return bp
