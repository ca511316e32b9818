"""HTTP channel: `POST /api/v1/messages`, one request in, one JSON reply out; and
`GET /api/v1/attachments/<id>`, a file a message carried or a reply came with.

Request/response: the reply travels in the response, so there is nothing to deliver later.
A retry with the same `Idempotency-Key` header (or body `id`) gets the first answer again.
The body is JSON, or `multipart/form-data` with fields `text`, `sender`, `chat`, `id` and one
or more `file` parts (streamed into the inbox, `channels.multipart`). This module is the
transport only: the intake (`core.intake`) validates, runs the chain and answers.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request, send_file
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import RequestEntityTooLarge

from gateway.channels.base import ChannelOptions, Services, WebChannel
from gateway.channels.multipart import read_multipart
from gateway.channels.reply_files import listed
from gateway.core.fields import MAX_FIELD, decode_json
from gateway.core.inbox import FileRefused
from gateway.core.intake import Arrival
from gateway.core.message import Reply
from gateway.observe.logs import logged_by_message
from gateway.web.credentials import request_credential
from gateway.web.door import client_address, guarded
from gateway.web.errors import error_response


class HttpChannel(WebChannel):
    name = "http"

    def __init__(self, services: Services, options: ChannelOptions) -> None:
        super().__init__(services, options)
        blueprint = Blueprint("http_channel", __name__)
        blueprint.add_url_rule("/api/v1/messages", view_func=self._post, methods=["POST"])
        services.app.register_blueprint(blueprint)
        files = Blueprint("http_files", __name__)
        files.before_request(self._open)
        files.before_request(guarded(services.entry, self.name))
        files.add_url_rule("/api/v1/attachments/<file_id>", view_func=self._download)
        services.app.register_blueprint(files)

    def _open(self) -> ResponseReturnValue | None:
        if self.running:
            return None
        return error_response("unavailable", "The HTTP channel is switched off "
                              "(channels.http.enabled in config.yaml).")

    def _post(self) -> ResponseReturnValue:
        closed = self._open()
        if closed is not None:
            return closed
        reply = self.intake.take(self._arrival())
        logged_by_message(request.environ, reply.msg_id)
        return reply_response(reply)

    def _arrival(self) -> Arrival:
        """The request as the intake takes it (nothing here decides whether it is good)."""
        arrival = Arrival(self.name, None, credential=request_credential(request),
                          peer=client_address(self.entry, request),
                          browser="Origin" in request.headers, takes_files=True)
        key = request.headers.get("Idempotency-Key")
        if key is not None and not 0 < len(key) <= MAX_FIELD:
            arrival.problem = f"The Idempotency-Key header must be 1 to {MAX_FIELD} characters."
        arrival.client_id = key or None
        if request.mimetype == "multipart/form-data":
            arrival.received = self.intake.receive()
            try:
                arrival.payload = read_multipart(request, arrival.received)
            except FileRefused as e:
                arrival.problem, arrival.problem_code = e.message, e.code
            return arrival
        try:
            arrival.payload, problem = decode_json(request.get_data(cache=False))
        except RequestEntityTooLarge:
            arrival.problem_code = "payload_too_large"
            problem = (f"The request body is larger than {request.max_content_length} bytes "
                       "(gateway.max_body_bytes); send files as multipart/form-data.")
        arrival.problem = arrival.problem or problem
        return arrival

    def _download(self, file_id: str) -> ResponseReturnValue:
        """A file by its id, as an attachment (never shown inline: a sent HTML file must not
        run as a page of the gateway's own origin)."""
        found = self.services.store.file(file_id)
        root = self.services.reloader.workspace.root.resolve()
        path = (root / found.path).resolve() if found else None
        if found is None or path is None or not path.is_relative_to(root) or \
                not path.is_file():
            return error_response("not_found", f"No file {file_id} (it may have been "
                                  "removed from the workspace).")
        response = send_file(path, mimetype=found.media_type, as_attachment=True,
                             download_name=found.name, conditional=False, etag=False)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = "sandbox"
        return response


def reply_response(reply: Reply) -> ResponseReturnValue:
    """A reply as the HTTP channel answers it: 200 JSON, or the error with its status."""
    if reply.error:
        extra = {"id": reply.msg_id, "session": reply.session} if reply.msg_id else {}
        return error_response(reply.error, reply.text, reply.retry_after, **extra)
    body: dict[str, Any] = {"id": reply.msg_id, "session": reply.session, "reply": reply.text}
    if reply.files:
        body["files"] = listed(reply.files)
    return jsonify(body)
