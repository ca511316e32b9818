"""WebSocket channel at `/ws`: many messages per connection, replies streamed as they form.

Frames (ARCHITECTURE.md, public contracts): the client sends `{"type": "message", "id", "text",
"chat"}`; the server answers with `reply.delta` frames and one `reply`, or an `error` frame. A
bad frame gets an error frame and the connection lives on. Each message is answered on its own
greenlet so the connection keeps reading: a client that goes away cancels its model calls.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from typing import Any

from flask import request
from flask_sock import Sock
from simple_websocket import ConnectionClosed

from gateway.api.credentials import request_credential
from gateway.channels.base import Channel, Submit
from gateway.channels.http import validate_message_fields
from gateway.guards.tokens import TokenAuthenticator
from gateway.message import Message, Reply

log = logging.getLogger(__name__)

AUTH_WAIT = 10.0
MAX_IN_FLIGHT = 32  # per connection: a client that floods frames gets "busy", not a greenlet each


class _Connection:
    """One client: its socket, a send lock (frames from several greenlets) and a cancel flag."""

    def __init__(self, ws: Any, principal: str) -> None:
        self.ws = ws
        self.principal = principal
        self.gone = threading.Event()
        self.in_flight = 0
        self._send_lock = threading.Lock()

    def send(self, frame: dict[str, Any]) -> None:
        if self.gone.is_set():
            return
        data = json.dumps(frame, ensure_ascii=False)
        with self._send_lock:
            try:
                self.ws.send(data)
            except (ConnectionClosed, OSError):
                self.gone.set()


class WebSocketChannel(Channel):
    name = "ws"

    def __init__(self, submit: Submit, authenticator: TokenAuthenticator, sock: Sock) -> None:
        super().__init__(submit)
        self.authenticator = authenticator
        self.connections: set[_Connection] = set()
        sock.route("/ws")(self._serve)

    def start(self) -> None:
        """Served by the gateway's web server: nothing to connect."""

    def stop(self) -> None:
        for conn in list(self.connections):
            conn.gone.set()
            with contextlib.suppress(ConnectionClosed, OSError):
                conn.ws.close(1001, "gateway stopping")

    def deliver(self, reply: Reply) -> None:
        """Replies are sent on the connection their message came in on (see `_answer`)."""

    # -- one connection ------------------------------------------------------------------
    def _serve(self, ws: Any) -> None:
        request.environ["moltbot.websocket"] = True  # the server must not write a response
        request.environ["moltbot.release_http_buffer"]()
        ws.sock.settimeout(None)  # idle WebSockets are normal; keepalive_timeout is for HTTP
        principal = self.authenticator.verify(request_credential(request, websocket=True))
        if not principal:
            principal = self._auth_frame(ws)
            if not principal:
                return
        conn = _Connection(ws, principal)
        self.connections.add(conn)
        try:
            while True:
                data = ws.receive()
                if data is None:
                    continue
                self._on_frame(conn, data)
        except ConnectionClosed:
            pass
        finally:
            conn.gone.set()
            self.connections.discard(conn)

    def _auth_frame(self, ws: Any) -> str | None:
        """Accept `{"type": "auth", "token": ...}` as the first frame, or close with 1008."""
        data = ws.receive(timeout=AUTH_WAIT)
        frame = _parse(data)
        token = frame.get("token") if frame and frame.get("type") == "auth" else None
        principal = self.authenticator.verify(token if isinstance(token, str) else None)
        if principal:
            ws.send(json.dumps({"type": "auth.ok"}))
            return principal
        ws.send(json.dumps({"type": "error", "id": None, "code": "unauthorized", "message":
                           "Authenticate first: an Authorization header or a first frame "
                           '{"type": "auth", "token": "..."} (moltbot dashboard --token-gen).'}))
        ws.close(1008, "unauthorized")
        return None

    def _on_frame(self, conn: _Connection, data: str | bytes) -> None:
        frame = _parse(data)
        if frame is None:
            conn.send(_error(None, "bad_request", "Frames must be JSON objects such as "
                             '{"type": "message", "id": "1", "text": "hello"}.'))
            return
        kind = frame.get("type")
        if kind == "ping":
            conn.send({"type": "pong", "id": frame.get("id")})
        elif kind == "auth":
            token = frame.get("token")
            ok = self.authenticator.verify(token if isinstance(token, str) else None)
            conn.send({"type": "auth.ok"} if ok else _error(None, "unauthorized", "Bad token."))
        elif kind == "message":
            problem = validate_message_fields(frame)
            if problem:
                conn.send(_error(frame.get("id"), "bad_request", problem))
                return
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
        sender = str(frame.get("sender") or conn.principal)
        msg = Message(channel=self.name, sender=sender, chat=str(frame.get("chat") or sender),
                      text=frame["text"], client_id=client_id, principal=conn.principal)

        def on_delta(piece: str) -> None:
            conn.send({"type": "reply.delta", "id": client_id, "text": piece})

        try:
            reply = self.submit(msg, on_delta=on_delta, cancel=conn.gone)
        finally:
            conn.in_flight -= 1
        if reply.error:
            conn.send(_error(client_id, reply.error, reply.text) | {"msg_id": reply.msg_id})
        else:
            conn.send({"type": "reply", "id": client_id, "msg_id": reply.msg_id,
                       "session": reply.session, "text": reply.text})


def _parse(data: str | bytes | None) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        frame = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    return frame if isinstance(frame, dict) else None


def _error(client_id: Any, code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "id": client_id, "code": code, "message": message}
