"""HTTP channel: `POST /api/v1/messages`, one request in, one JSON reply out.

Request/response channels deliver by answering the request, so `deliver` has nothing to push.
A retry with the same `Idempotency-Key` header (or body `id`) gets the first answer again.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from gateway.api.credentials import request_credential
from gateway.api.errors import error_response
from gateway.channels.base import Channel, Submit
from gateway.guards.tokens import TokenAuthenticator
from gateway.message import Message, Reply

MAX_TEXT = 32_000
MAX_FIELD = 256


class HttpChannel(Channel):
    name = "http"

    def __init__(self, submit: Submit, authenticator: TokenAuthenticator) -> None:
        super().__init__(submit)
        self.authenticator = authenticator
        self.blueprint = Blueprint("http_channel", __name__)
        self.blueprint.add_url_rule("/api/v1/messages", view_func=self._post, methods=["POST"])

    def start(self) -> None:
        """Served by the gateway's web server: nothing to connect."""

    def stop(self) -> None:
        """Nothing held open: in-flight requests finish through the pipeline's drain."""

    def deliver(self, reply: Reply) -> None:
        """Replies travel in the HTTP response; there is no later push."""

    def _post(self) -> ResponseReturnValue:
        principal = self.authenticator.verify(request_credential(request))
        if not principal:
            return error_response(401, "unauthorized", "Send `Authorization: Bearer <token>`;"
                                  " create a token with `moltbot dashboard --token-gen`.")
        data = request.get_json(silent=True)
        problem = validate_message_fields(data)
        if problem:
            return error_response(400, "bad_request", problem)
        sender = str(data.get("sender") or principal)
        client_id = request.headers.get("Idempotency-Key") or data.get("id")
        msg = Message(channel=self.name, sender=sender, chat=str(data.get("chat") or sender),
                      text=data["text"], client_id=str(client_id) if client_id else None,
                      principal=principal)
        reply = self.submit(msg)
        if reply.error:
            return error_response(reply.status, reply.error, reply.text, id=reply.msg_id,
                                  session=reply.session)
        return jsonify({"id": reply.msg_id, "session": reply.session, "reply": reply.text})


def validate_message_fields(data: Any) -> str | None:
    """What is wrong with an inbound message body, in words a client author can act on."""
    if not isinstance(data, dict):
        return 'Send a JSON object such as {"text": "hello", "chat": "my-chat"}.'
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        return '"text" must be a non-empty string.'
    if len(text) > MAX_TEXT:
        return f'"text" is longer than {MAX_TEXT} characters.'
    for field in ("sender", "chat", "id"):
        value = data.get(field)
        if value is not None and (not isinstance(value, str | int) or len(str(value)) > MAX_FIELD):
            return f'"{field}" must be a string of at most {MAX_FIELD} characters.'
    return None
