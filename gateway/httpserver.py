"""gevent's WSGIServer, adjusted for a gateway that holds many WebSockets.

- TCP_NODELAY on the listener (accepted sockets inherit it on Linux): stock gevent writes headers
  and body separately and stalls ~40 ms per keep-alive request on Nagle's algorithm.
- One descriptor per WebSocket: simple-websocket `dup()`s gevent's socket; handing it the
  handler's own socket as `werkzeug.socket` avoids the copy, and the handler then writes no
  HTTP response after the WebSocket route returns.
- `max_connections`: one over the limit gets a short 503 and is closed, never left hanging.
- `keepalive_timeout`: an idle HTTP connection is closed after it (WebSocket routes lift it).
- Memory per WebSocket: the HTTP read buffer is released once the connection is upgraded.
"""

from __future__ import annotations

import io
import logging
import socket
from typing import Any

from gevent import socket as gsocket
from gevent.pywsgi import WSGIHandler, WSGIServer

log = logging.getLogger(__name__)

_BUSY_BODY = (b'{"error": {"code": "unavailable", "message": "The gateway is at '
              b'gateway.max_connections; try again shortly."}}')
BUSY_RESPONSE = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                 b"Retry-After: 1\r\nConnection: close\r\nContent-Length: "
                 + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY)


class GatewayHandler(WSGIHandler):
    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        environ["werkzeug.socket"] = self.socket
        environ["moltbot.release_http_buffer"] = self.release_http_buffer
        return environ

    def release_http_buffer(self) -> None:
        """Drop the connection's 8 KB HTTP read buffer: after a WebSocket upgrade nothing reads
        HTTP from it again (simple-websocket reads the socket). Every reference must go: the
        handler's, its `Input`'s, and the environ's (a body-less GET gets the raw buffer)."""
        old: Any = self.rfile  # type: ignore[has-type]  # gevent has no annotations
        self.rfile = io.BytesIO()
        self.wsgi_input.rfile = self.rfile
        if self.environ.get("wsgi.input") is old:
            self.environ["wsgi.input"] = self.rfile

    def process_result(self) -> None:
        if self.environ.get("moltbot.websocket"):
            self.close_connection = True  # the WebSocket owned the socket and closed it
            return
        super().process_result()


class GatewayServer(WSGIServer):
    handler_class = GatewayHandler

    def __init__(self, listener: Any, application: Any, *, max_connections: int,
                 keepalive_timeout: float, **kwargs: Any) -> None:
        super().__init__(listener, application, **kwargs)
        self.max_connections = max_connections
        self.keepalive_timeout = keepalive_timeout
        self.active = 0

    def handle(self, sock: Any, address: Any) -> None:
        if self.active >= self.max_connections:
            refuse_busy(sock)
            return
        self.active += 1
        try:
            sock.settimeout(self.keepalive_timeout)
            super().handle(sock, address)
        finally:
            self.active -= 1


def refuse_busy(sock: Any) -> None:
    """Read the request head (so closing does not reset the connection), answer 503, close."""
    try:
        sock.settimeout(2.0)
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = sock.recv(8192)
            if not chunk:
                break
            head += chunk
        sock.sendall(BUSY_RESPONSE)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        sock.close()


def listen(host: str, port: int, backlog: int = 2048) -> Any:
    """A listening socket with SO_REUSEADDR and TCP_NODELAY (inherited by accepted sockets)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = gsocket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    return sock
