"""HTTP channel: `POST /api/v1/messages`, one request in, one JSON reply out.

Request/response: the reply travels in the response, so there is nothing to deliver later.
A retry with the same `Idempotency-Key` header (or body `id`) gets the first answer again.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from gateway.channels.base import ChannelOptions, Services, WebChannel
from gateway.channels.fields import MAX_FIELD, decode_json, validate_message_fields
from gateway.core.message import Message
from gateway.guards.chain import Allow
from gateway.web.credentials import request_credential
from gateway.web.door import caller_of, client_address, refusal_response
from gateway.web.errors import error_response


class HttpChannel(WebChannel):
    name = "http"

    def __init__(self, services: Services, options: ChannelOptions) -> None:
        super().__init__(services, options)
        blueprint = Blueprint("http_channel", __name__)
        blueprint.add_url_rule("/api/v1/messages", view_func=self._post, methods=["POST"])
        services.app.register_blueprint(blueprint)

    def _post(self) -> ResponseReturnValue:
        if not self.running:
            return error_response("unavailable", "The HTTP channel is switched off "
                                  "(channels.http.enabled in config.yaml).")
        credential = request_credential(request)
        data, problem = decode_json(request.get_data(cache=False))
        problem = problem or validate_message_fields(data) or _key_problem()
        if problem:
            # the chain still decides first: a stranger learns nothing from a 400
            verdict = self.entry.admit(caller_of(self.entry, request, self.name, credential))
            if not isinstance(verdict, Allow):
                return refusal_response(verdict)
            return error_response("bad_request", problem)
        client_id = request.headers.get("Idempotency-Key") or data.get("id")
        sender = str(data.get("sender") or "")
        msg = Message(channel=self.name, sender=sender, chat=str(data.get("chat") or sender),
                      text=data["text"], client_id=str(client_id) if client_id else None,
                      peer=client_address(self.entry, request))
        reply = self.entry.handle(msg, credential)
        if reply.error:
            return error_response(reply.error, reply.text, reply.retry_after, id=reply.msg_id,
                                  session=reply.session)
        return jsonify({"id": reply.msg_id, "session": reply.session, "reply": reply.text})


def _key_problem() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 0 < len(key) <= MAX_FIELD:
        return f"The Idempotency-Key header must be 1 to {MAX_FIELD} characters."
    return None
