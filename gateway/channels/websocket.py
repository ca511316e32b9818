"""WebSocket channel at `/ws`: many messages per connection, replies streamed as they form.

Frames (ARCHITECTURE.md, public contracts): the client sends `{"type": "message", "id", "text",
"chat", "files"?: [{"name", "media_type", "data": base64}]}`; the server answers with
`reply.delta` frames and one `reply` (with `files` when a skill answered with some), or an
`error` frame. A bad frame gets an error frame and the connection lives on; a frame over the
transport's ceiling (`server.app.ws_frame_limit`) closes it with 1009. Each message is answered
on its own greenlet so the connection keeps reading: a client that goes away cancels its model
calls.
This module is the transport: a message frame goes to the intake (`core.intake`) as it is.

The handshake passes the guard chain: with an Authorization header (or the login cookie) before
the upgrade, which a refused one never gets; without one, upgraded to wait for a first `auth`
frame. Every message after it passes the chain again with the connection's credential: a token
revoked while the socket is open stops working on its next message.

Lean: flask-sock's route does the upgrade, then `_serve` takes the connection over from
simple-websocket (`ws_socket`: no reader thread) and leaves it to `_hold`, which the web server
runs on the same greenlet once the request has ended (`moltbot.after_upgrade`): the request's
context, environ and handshake objects are gone while the connection lives. An idle connection
is one greenlet waiting to read its socket; one timer (`ws_keepalive`) pings them all.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from dataclasses import replace
from functools import partial
from typing import Any

from flask import request
from flask.typing import ResponseReturnValue
from simple_websocket import ConnectionClosed
from wsproto.frame_protocol import CloseReason

from gateway.channels.base import ChannelOptions, Services, WebChannel
from gateway.channels.reply_files import listed
from gateway.channels.ws_keepalive import Keepalive
from gateway.channels.ws_socket import OWN_READER, WsSocket
from gateway.core.fields import EXAMPLE, decode_json
from gateway.core.intake import Arrival
from gateway.guards.chain import Allow, Caller, Refuse, Verdict
from gateway.web.credentials import request_credential
from gateway.web.door import caller_of, refusal_response
from gateway.web.errors import error_response

log = logging.getLogger(__name__)

AUTH_WAIT = 10.0
MAX_IN_FLIGHT = 32  # per connection: a client that floods frames gets "busy", not a greenlet each
_FILES = b'"files"'  # only a frame with files may be larger than gateway.max_body_bytes


class _Connection:
    """One client: its socket (which serializes frames from several greenlets), who it is at
    the door (`caller`: its address and whether a web page opened it, for later `auth`
    frames) and a cancel flag."""

    __slots__ = ("caller", "credential", "gone", "in_flight", "ws")

    def __init__(self, ws: WsSocket, credential: str, caller: Caller) -> None:
        self.ws = ws
        self.credential = credential
        self.caller = caller
        self.gone = threading.Event()
        self.in_flight = 0

    def send(self, frame: dict[str, Any]) -> None:
        if self.gone.is_set():
            return
        try:
            self.ws.send(json.dumps(frame, ensure_ascii=False))
        except (ConnectionClosed, OSError):
            self.gone.set()


class WebSocketChannel(WebChannel):
    name = "websocket"

    def __init__(self, services: Services, options: ChannelOptions) -> None:
        super().__init__(services, options)
        self.connections: set[_Connection] = set()
        self.keepalive = Keepalive(self._ping_interval)
        services.sock.route("/ws")(self._serve)
        services.app.before_request(self._before_upgrade)

    def start(self) -> None:
        super().start()
        self.keepalive.start()

    def stop(self) -> None:
        super().stop()
        self.keepalive.stop()
        for conn in list(self.connections):
            conn.gone.set()
        self.keepalive.close_all(CloseReason.GOING_AWAY, "channel stopping")

    def _ping_interval(self) -> float:
        """simple-websocket's `ping_interval` from the server's options (the composition root
        sets them), so `/ws` pings as often as the gateway's other WebSockets."""
        return float(self.services.app.config["SOCK_SERVER_OPTIONS"]["ping_interval"])

    # -- one connection ------------------------------------------------------------------
    def _serve(self, server: Any) -> None:
        """flask-sock's route, in the upgrade's request: authenticate, then leave the
        connection to `_hold`, which the web server runs after the request has ended."""
        environ = request.environ
        environ["moltbot.websocket"] = True  # the server must not write a response
        environ["moltbot.release_http_buffer"]()
        ws = WsSocket.take_over(server)
        ws.sock.settimeout(None)  # idle WebSockets are normal; keepalive_timeout is for HTTP
        caller = caller_of(self.entry, request, self.name, None)
        credential = request_credential(request, websocket=True)
        if credential is None:  # a header or cookie was admitted before the upgrade
            credential = self._auth_frame(ws)
            verdict = self.entry.admit(replace(caller, credential=credential))
            if not isinstance(verdict, Allow) or credential is None:
                code, message = _refusal(verdict)
                _refuse(ws, code, message, CloseReason.POLICY_VIOLATION)
                return
            ws.send(json.dumps({"type": "auth.ok"}))
        environ["moltbot.after_upgrade"] = partial(self._hold, _Connection(ws, credential,
                                                                           caller))

    def _hold(self, conn: _Connection) -> None:
        """The connection's life after the upgrade: read frames until it closes."""
        self.connections.add(conn)
        self.keepalive.add(conn.ws)
        metrics = self.services.metrics
        metrics.connection_opened(self.name)
        try:
            while (data := conn.ws.receive()) is not None:
                self._on_frame(conn, data)
        except Exception:  # a bug must not leave the client waiting on an open socket
            log.exception("WebSocket connection failed")
            conn.ws.close(CloseReason.INTERNAL_ERROR, "internal error")
        finally:
            metrics.connection_closed(self.name)
            conn.gone.set()
            self.connections.discard(conn)
            self.keepalive.discard(conn.ws)
            conn.ws.abort()

    def _before_upgrade(self) -> ResponseReturnValue | None:
        """`/ws` is refused before any upgrade while the channel is stopped, and when a header
        or cookie credential does not pass the chain: a plain HTTP error, no socket accepted.
        (Only a handshake without one is upgraded, to wait for an `auth` frame.)"""
        if request.path != "/ws":
            return None
        request.environ[OWN_READER] = True  # simple-websocket starts no reader of its own
        if not self.running:
            return error_response("unavailable", "The WebSocket channel is switched off "
                                  "(channels.websocket.enabled in config.yaml).")
        credential = request_credential(request, websocket=True)
        if credential is None:
            return None
        verdict = self._admit(credential)
        return None if isinstance(verdict, Allow) else refusal_response(verdict)

    def _admit(self, credential: str | None) -> Verdict:
        """The chain for a handshake with a header or cookie credential (in the upgrade's
        request, so the caller's address and whether a web page opened it are at hand)."""
        return self.entry.admit(caller_of(self.entry, request, self.name, credential))

    def _auth_frame(self, ws: WsSocket) -> str | None:
        """The token of a first frame `{"type": "auth", "token": ...}`, if one comes in time."""
        frame, _ = decode_json(ws.receive(deadline=time.monotonic() + AUTH_WAIT))
        token = frame.get("token") if isinstance(frame, dict) and frame.get(
            "type") == "auth" else None
        return token if isinstance(token, str) else None

    def _on_frame(self, conn: _Connection, data: str | bytes) -> None:
        limit = self.entry.settings.config.gateway.max_body_bytes
        marker = _FILES if isinstance(data, bytes) else _FILES.decode()
        if len(data) > limit and marker not in data:  # type: ignore[operator]
            conn.send(_error(None, "payload_too_large", f"A frame without files may be at most "
                             f"{limit} bytes (gateway.max_body_bytes)."))
            return
        frame, problem = decode_json(data)
        if not isinstance(frame, dict):
            conn.send(_error(None, "bad_request", problem or f"Frames must be JSON objects "
                             f"such as {EXAMPLE}."))
            return
        kind = frame.get("type")
        if kind == "ping":
            conn.send({"type": "pong", "id": frame.get("id")})
        elif kind == "auth":
            token = frame.get("token")
            token = token if isinstance(token, str) else None
            verdict = self.entry.admit(replace(conn.caller, credential=token))
            if isinstance(verdict, Allow) and token:
                conn.credential = token
                conn.send({"type": "auth.ok"})
            else:
                conn.send(_error(None, *_refusal(verdict)))
        elif kind == "message":
            if conn.in_flight >= MAX_IN_FLIGHT:
                conn.send(_error(frame.get("id"), "busy", f"{MAX_IN_FLIGHT} messages of this "
                                 "connection are still being answered; wait for a reply."))
                return
            conn.in_flight += 1
            threading.Thread(target=self._answer, args=(conn, frame), daemon=True).start()
        else:
            conn.send(_error(frame.get("id"), "bad_request",
                             f"Unknown frame type {kind!r}: use message, auth or ping."))

    def _answer(self, conn: _Connection, frame: dict[str, Any]) -> None:
        client_id = str(frame["id"]) if frame.get("id") is not None else None

        def on_delta(piece: str) -> None:
            conn.send({"type": "reply.delta", "id": client_id, "text": piece})

        arrival = Arrival(self.name, frame, credential=conn.credential, peer=conn.caller.peer,
                          takes_files=True)
        try:
            reply = self.intake.take(arrival, on_delta=on_delta, cancel=conn.gone)
        finally:
            conn.in_flight -= 1
        if reply.error:
            extra: dict[str, Any] = {"msg_id": reply.msg_id} if reply.msg_id else {}
            if reply.retry_after:
                extra["retry_after"] = reply.retry_after
            conn.send(_error(client_id, reply.error, reply.text) | extra)
        else:
            answer: dict[str, Any] = {"type": "reply", "id": client_id, "msg_id": reply.msg_id,
                      "session": reply.session, "text": reply.text}
            if reply.files:
                answer["files"] = listed(reply.files)
            conn.send(answer)


def _refusal(verdict: Verdict) -> tuple[str, str]:
    if isinstance(verdict, Allow):
        return "unauthorized", "Authenticate first."
    if isinstance(verdict, Refuse):
        return verdict.code, verdict.message
    return "unauthorized", verdict.text


def _refuse(ws: WsSocket, code: str, message: str, close_code: int) -> None:
    """An error frame, then close: the client learns why before the socket goes."""
    with contextlib.suppress(ConnectionClosed, OSError):
        ws.send(json.dumps(_error(None, code, message)))
    ws.close(close_code, code)


def _error(client_id: Any, code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "id": client_id, "code": code, "message": message}
