"""OpenAI-compatible entry: `POST /v1/chat/completions` and `GET /v1/models` on the gateway's
port, so the `openai` SDKs, Open WebUI and LibreChat can use Moltbot as their model server.

The client keeps the conversation and sends it whole with every request: those messages, not
the stored session's turns, are what the model is given (`message.ClientContext`), while the
last user message goes through the router like any other message, so commands, skills and
knowledge answer here too. `user` (or an `X-Moltbot-Chat` header) names the chat, so the
session and the trace read `openai/<user>`. `model` picks one of config.yaml's models (absent:
the default; unknown: 404 `model_not_found`). Functions the client offers in `tools` are
offered to the model; a call to one comes back as tool calls (streamed as tool-call deltas)
for the client to run, never run here. Errors are OpenAI's shape (`openai_wire.error_body`)
with Moltbot's code and the status the SDKs map to their exceptions (401 authentication, 429
with Retry-After, ...). This module is the transport: it reads the request (`openai_wire`) into
an `Arrival` for the one intake (`core.intake`), which validates, runs the guard chain first
when the request is bad, and answers.

`stream: true` answers with server-sent events as the model writes: a role chunk, content
chunks, tool-call chunks, a finish chunk, a usage chunk when `stream_options.include_usage`
asks, then `data: [DONE]`. Until the first piece is ready nothing is sent, so a refusal or a
failure before it is a plain HTTP error; one after it is an `error` event. A client that hangs
up cancels the model call, as a closed WebSocket does: a greenlet waits on the connection for
its end while the reply is being made (`watch_peer`).
"""

from __future__ import annotations

import logging
import math
import queue
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from gateway.channels.base import ChannelOptions, Services, WebChannel
from gateway.channels.openai_wire import (
    DONE,
    ChatRequest,
    RequestProblem,
    chunk,
    completion,
    error_body,
    event,
    model_list,
    read_request,
    usage,
    usage_chunk,
    wire_calls,
)
from gateway.core.fields import MAX_FIELD, decode_json
from gateway.core.intake import Arrival
from gateway.core.message import Reply
from gateway.guards.chain import Allow, Challenge, Refuse, Verdict
from gateway.observe.logs import logged_by_message
from gateway.web.credentials import request_credential
from gateway.web.door import caller_of, client_address
from gateway.web.errors import HTTP_STATUS

log = logging.getLogger(__name__)

CHAT_HEADER = "X-Moltbot-Chat"
_OFF = "The OpenAI-compatible entry is switched off (channels.openai.enabled in config.yaml)."


class OpenAIChannel(WebChannel):
    name = "openai"

    def __init__(self, services: Services, options: ChannelOptions) -> None:
        super().__init__(services, options)
        blueprint = Blueprint("openai_channel", __name__)
        blueprint.add_url_rule("/v1/chat/completions", view_func=self._completions,
                               methods=["POST"])
        blueprint.add_url_rule("/v1/models", view_func=self._models, methods=["GET"])
        blueprint.register_error_handler(HTTPException, _http_error)
        services.app.register_blueprint(blueprint)

    # -- GET /v1/models ------------------------------------------------------------------
    def _models(self) -> ResponseReturnValue:
        if not self.running:
            return openai_error("unavailable", _OFF)
        verdict = self.entry.admit(caller_of(self.entry, request, self.name,
                                             request_credential(request)))
        if not isinstance(verdict, Allow):
            return _refusal(verdict)
        return jsonify(model_list(self.entry.settings.models))

    # -- POST /v1/chat/completions -------------------------------------------------------
    def _completions(self) -> ResponseReturnValue:
        if not self.running:
            return openai_error("unavailable", _OFF)
        arrival, chat = self._arrival()
        if chat is None:  # the intake runs the chain first, then answers with the problem
            refused = self.intake.take(arrival)
            return openai_error(refused.error or "bad_request", refused.text,
                                refused.retry_after)
        gone = threading.Event()
        stop_watching = watch_peer(request.environ.get("werkzeug.socket"), gone)
        if chat.stream:
            return self._stream(arrival, chat, gone, stop_watching)
        try:
            reply = self.intake.take(arrival, cancel=gone)
        finally:
            stop_watching()
        logged_by_message(request.environ, reply.msg_id)
        if reply.error:
            return openai_error(reply.error, reply.text, reply.retry_after)
        return jsonify(completion(f"chatcmpl-{reply.msg_id}", chat.context.model or "",
                                  reply.text, list(reply.tool_calls), self._usage(reply)))

    def _arrival(self) -> tuple[Arrival, ChatRequest | None]:
        """The request as the intake takes it, and as this entry read it (None when it is
        not one it can answer: the arrival then carries the problem). The payload is the
        last user message, the user and the chat; the conversation rides along whole."""
        arrival = Arrival(self.name, None, credential=request_credential(request),
                          peer=client_address(self.entry, request),
                          browser="Origin" in request.headers)
        try:
            data, problem = decode_json(request.get_data(cache=False))
        except RequestEntityTooLarge:
            arrival.problem, arrival.problem_code = (
                f"The request body is larger than {request.max_content_length} bytes "
                "(gateway.max_body_bytes).", "payload_too_large")
            return arrival, None
        chat_key = request.headers.get(CHAT_HEADER)
        if problem is None and chat_key is not None and not 0 < len(chat_key) <= MAX_FIELD:
            problem = f"The {CHAT_HEADER} header must be 1 to {MAX_FIELD} characters."
        if problem is not None:
            arrival.problem = problem
            return arrival, None
        settings = self.entry.settings
        try:
            chat = read_request(data, {name: model.vision for name, model in
                                       settings.config.models.items()}, settings.chat_model)
        except RequestProblem as e:
            arrival.problem, arrival.problem_code = str(e), e.code
            return arrival, None
        arrival.payload = {"text": chat.text, "sender": chat.user,
                           "chat": chat_key or chat.user}
        arrival.client_context = chat.context
        arrival.received = self.intake.receive()  # names the message's id before it exists:
        return arrival, chat  # a stream's chunks carry it from the first

    def _stream(self, arrival: Arrival, chat: ChatRequest, gone: threading.Event,
                stop_watching: Callable[[], None]) -> ResponseReturnValue:
        """The reply as server-sent events; the intake runs on its own greenlet and hands
        each piece over through a queue."""
        pieces: queue.Queue[str | Reply] = queue.Queue()
        assert arrival.received is not None
        msg_id = arrival.received.msg_id

        def answer() -> None:
            try:
                reply = self.intake.take(arrival, on_delta=pieces.put, cancel=gone)
            except BaseException:  # the intake answers every failure; this is a last resort
                log.exception("msg_id=%s failed inside the gateway", msg_id)
                reply = Reply(msg_id, self.name, "", "The gateway failed answering this "
                              f"message (msg_id {msg_id}).", error="internal_error")
            pieces.put(reply)

        threading.Thread(target=answer, daemon=True).start()
        first = pieces.get()
        if isinstance(first, Reply) and first.error:  # nothing sent yet: a plain HTTP error
            stop_watching()
            logged_by_message(request.environ, first.msg_id)
            return openai_error(first.error, first.text, first.retry_after)
        logged_by_message(request.environ, msg_id)  # the pipeline has it: its line will come
        events = self._events(f"chatcmpl-{msg_id}", first, pieces, chat, gone, stop_watching)
        return Response(events, mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    def _events(self, cid: str, first: str | Reply, pieces: queue.Queue[str | Reply],
                chat: ChatRequest, gone: threading.Event,
                stop_watching: Callable[[], None]) -> Iterator[bytes]:
        model, usage_asked = chat.context.model or "", chat.include_usage
        done = False
        try:
            yield chunk(cid, model, {"role": "assistant", "content": ""}, None, usage_asked)
            streamed, piece = "", first
            while isinstance(piece, str):
                streamed += piece
                yield chunk(cid, model, {"content": piece}, None, usage_asked)
                piece = pieces.get()
            reply = piece
            if reply.error:
                done = True  # OpenAI ends a failed stream with the error event, no [DONE]
                yield event(error_body(_code(reply.error), reply.text,
                                       HTTP_STATUS.get(reply.error, 500)))
                return
            rest = _unsent(reply.text, streamed)
            if rest:  # a command's or a skill's answer comes whole
                yield chunk(cid, model, {"content": rest}, None, usage_asked)
            for i, call in enumerate(wire_calls(reply.tool_calls)):
                yield chunk(cid, model, {"tool_calls": [{"index": i, **call}]}, None,
                            usage_asked)
            finish = "tool_calls" if reply.tool_calls else "stop"
            yield chunk(cid, model, {}, finish, usage_asked)
            if usage_asked:
                yield usage_chunk(cid, model, self._usage(reply))
            done = True
            yield DONE
        finally:
            if not done:  # the client went away mid-stream (the write failed)
                gone.set()
            stop_watching()

    def _usage(self, reply: Reply) -> dict[str, int]:
        """The model's own token counts for this message, as the trace recorded them (0 for
        a command or a skill, which called no model here)."""
        given = self.services.store.model_input(reply.msg_id) if reply.msg_id else None
        return usage(given["prompt_tokens"], given["completion_tokens"]) if given \
            else usage(0, 0)


def watch_peer(sock: Any, gone: threading.Event) -> Callable[[], None]:
    """Set `gone` when the client closes its end of the connection; returns the function
    that stops watching, which must run before the server reads the connection's next
    request. Bytes of a next request (pipelining) end the watch without a verdict. The wait
    is a greenlet blocked in a peek at the socket (`MSG_PEEK` takes nothing from it)."""
    if not isinstance(sock, socket.socket):
        return lambda: None  # not served by the gateway's own server (a test client)
    import gevent  # only the gateway process serves requests, and it runs on gevent

    def wait() -> None:
        while True:
            try:
                if not sock.recv(1, socket.MSG_PEEK):
                    gone.set()
                return
            except TimeoutError:  # the keep-alive timeout of the socket: look again
                continue
            except OSError:
                gone.set()
                return

    watcher = gevent.spawn(wait)
    return watcher.kill


def openai_error(code: str, message: str,
                 retry_after: float | None = None) -> ResponseReturnValue:
    """An error in OpenAI's shape, with the status of Moltbot's code."""
    status = HTTP_STATUS.get(code, 500)
    headers = {"Retry-After": str(math.ceil(retry_after))} if retry_after else {}
    return jsonify(error_body(_code(code), message, status)), status, headers


def _code(code: str) -> str:
    return "model_not_found" if code == "not_found" else code  # the only thing not found here


def _refusal(verdict: Verdict) -> ResponseReturnValue:
    """The guard chain's refusal (401, 403, 429 with Retry-After) in OpenAI's shape."""
    if isinstance(verdict, Refuse):
        return openai_error(verdict.code, verdict.message, verdict.retry_after)
    return openai_error("unauthorized", verdict.text if isinstance(verdict, Challenge)
                        else "Authenticate first.")


def _http_error(e: HTTPException) -> ResponseReturnValue:
    """Werkzeug's refusals of a request (its body too slow, say) in OpenAI's shape."""
    status = e.code or 500
    code = "request_timeout" if status == 408 else "bad_request"
    return jsonify(error_body(code, e.description or e.name, status)), status


def _unsent(text: str, streamed: str) -> str:
    """What of the reply's text the stream has not carried: all of a command's or skill's
    answer, nothing of a model's (the model streamed it, the sources line included)."""
    if text.startswith(streamed):
        return text[len(streamed):]
    return f"\n\n{text}"  # the model began, then chose a skill: its answer follows
