"""One upgraded WebSocket, read by the greenlet that serves it: no reader thread, no selector.

simple-websocket (under flask-sock) does the handshake; its `Server` would then start a reader
thread per connection (a greenlet under gevent, with its own selector and ping timer) and leave
the route's greenlet waiting on an event. `reader_thread` keeps that thread from starting for a
route that reads its own socket (it marks `environ[OWN_READER]` before the upgrade), and
`WsSocket.take_over` keeps only what a live connection needs: the socket and wsproto's
`Connection` (the frame codec), not the handshake's h11 state, the environ or the `Server`.

The serving greenlet calls `receive()`, which reads the socket and feeds wsproto: pings are
answered, pongs noted, a close answered, a message over `max_message_size` closes with 1009.
Other greenlets may `send()` meanwhile (streamed `reply.delta` frames, the shared ping timer):
frames are encoded and written under one lock, so they never interleave. `close()` from any
greenlet sends a close frame and shuts the socket down, which wakes the reader.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from simple_websocket import ConnectionClosed
from wsproto.connection import Connection, ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, Pong, TextMessage
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError

OWN_READER = "moltbot.websocket.own_reader"  # environ key: the route reads its own socket
RECV_BYTES = 4096  # as simple-websocket: one read of a frame's bytes at a time


class _NoThread:
    """What simple-websocket gets instead of a reader thread: it names it and starts it."""

    name = "own reader"

    def start(self) -> None:
        pass


def reader_thread(target: Callable[[], None]) -> Any:
    """simple-websocket's `thread_class` (flask-sock's SOCK_SERVER_OPTIONS): its own reader
    thread for every WebSocket route except one that reads its own socket."""
    server = getattr(target, "__self__", None)
    if server is not None and getattr(server, "environ", {}).get(OWN_READER):
        return _NoThread()
    return threading.Thread(target=target)


class WsSocket:
    """The socket and frame codec of one open WebSocket (see the module docstring)."""

    __slots__ = ("_limit", "_lock", "_open", "_part", "_part_size", "_proto", "_ready",
                 "awaiting_pong", "sock")

    def __init__(self, sock: Any, proto: Connection, max_message_size: int | None) -> None:
        self.sock = sock
        self.awaiting_pong = False  # a ping went out and no pong came back since
        self._proto = proto
        self._limit = max_message_size
        self._lock = threading.Lock()  # one frame at a time on the wire
        self._ready: list[str | bytes] | None = None  # whole messages read, not yet taken
        self._part: str | bytearray | bytes | None = None  # a fragmented message so far
        self._part_size = 0
        self._open = True

    @classmethod
    def take_over(cls, server: Any) -> WsSocket:
        """The connection of a simple-websocket `Server` made with `reader_thread` (so no
        reader started): its handshake is done; the server is left closed and emptied, so
        flask-sock's close after the route finds nothing to do and holds nothing."""
        proto = server.ws.connection
        if proto is None or not server.connected:
            raise ConnectionClosed(server.close_reason, server.close_message)
        ws = cls(server.sock, proto, server.max_message_size)
        server.connected = False
        server.ws = server.environ = server.event = server.sock = None
        return ws

    @property
    def open(self) -> bool:
        return self._open

    # -- reading (only the serving greenlet) ----------------------------------------------
    def receive(self, deadline: float | None = None) -> str | bytes | None:
        """The next whole message; None when the connection is closed, or when `deadline`
        (time.monotonic) passed first."""
        while not self._ready:
            if not self._open:
                return None
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.sock.settimeout(left)
            try:
                data = self.sock.recv(RECV_BYTES)
            except TimeoutError:
                return None
            except OSError:
                data = b""
            finally:
                if deadline is not None:
                    with contextlib.suppress(OSError):
                        self.sock.settimeout(None)
            if not data:
                self._open = False
                return None
            self._feed(data)
        message = self._ready.pop(0)
        if not self._ready:
            self._ready = None
        return message

    def _feed(self, data: bytes) -> None:
        """Bytes from the peer through wsproto: messages kept, control frames answered."""
        try:
            self._proto.receive_data(data)
            for event in self._proto.events():
                if isinstance(event, Message):
                    if not self._add(event):
                        self.close(CloseReason.MESSAGE_TOO_BIG, "Message is too big")
                        return
                elif isinstance(event, Ping):
                    self._write(event.response())
                elif isinstance(event, Pong):
                    self.awaiting_pong = False
                elif isinstance(event, CloseConnection):
                    if self._proto.state is ConnectionState.REMOTE_CLOSING:
                        self._write(event.response())
                    self.abort()
                    return
        except LocalProtocolError:
            self.abort()

    def _add(self, event: Message[Any]) -> bool:
        """One frame of a message; False when the message grew over the limit."""
        self._part_size += len(event.data)
        if self._limit and self._part_size > self._limit:
            return False
        if self._part is None:
            self._part = event.data
        else:
            if not isinstance(self._part, bytearray):
                first = self._part
                self._part = bytearray(first.encode() if isinstance(first, str) else first)
            piece = event.data
            self._part += piece.encode() if isinstance(piece, str) else piece
        if not event.message_finished:
            return True
        whole = self._part
        if isinstance(whole, bytearray):
            whole = whole.decode() if isinstance(event, TextMessage) else bytes(whole)
        if self._ready is None:
            self._ready = []
        self._ready.append(whole)
        self._part, self._part_size = None, 0
        return True

    # -- writing (any greenlet) -------------------------------------------------------------
    def send(self, data: str | bytes) -> None:
        """One text (str) or binary (bytes) message; ConnectionClosed once it is closed."""
        self._write(BytesMessage(data=data) if isinstance(data, bytes)
                    else TextMessage(data=data))

    def ping(self) -> None:
        """A ping the peer must answer (with a pong) before the next one is due."""
        self.awaiting_pong = True
        self._write(Ping())

    def close(self, code: int = CloseReason.NORMAL_CLOSURE, reason: str | None = None) -> None:
        """Send a close frame (if the connection is still open) and shut the socket down,
        which ends the serving greenlet's `receive`. Safe to call more than once."""
        if self._open:
            with contextlib.suppress(ConnectionClosed, OSError):
                self._write(CloseConnection(code=code, reason=reason))
        self.abort()

    def _write(self, event: Any) -> None:
        with self._lock:
            if not self._open:
                raise ConnectionClosed(CloseReason.ABNORMAL_CLOSURE, None)
            try:
                data = self._proto.send(event)
                sent = self.sock.send(data)  # nearly always whole: cheaper than sendall's loop
                if sent < len(data):
                    self.sock.sendall(data[sent:])
            except LocalProtocolError:
                raise ConnectionClosed(CloseReason.ABNORMAL_CLOSURE, None) from None

    def abort(self) -> None:
        """Shut the socket down without a close frame (the peer takes none): the serving
        greenlet's `receive` ends."""
        self._open = False
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
