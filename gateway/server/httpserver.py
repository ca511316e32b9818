"""gevent's WSGIServer, adjusted for a gateway that holds many WebSockets.

- TCP_NODELAY on the listener (accepted sockets inherit it on Linux): stock gevent writes headers
  and body separately and stalls ~40 ms per keep-alive request on Nagle's algorithm.
- One descriptor per WebSocket: simple-websocket `dup()`s gevent's socket; handing it the
  handler's own socket as `werkzeug.socket` avoids the copy, and the handler then writes no
  HTTP response after the WebSocket route returns.
- `max_connections`: one over the limit gets a short 503 and is closed, never left hanging.
- `keepalive_timeout`: an idle HTTP connection is closed after it (WebSocket routes lift it).
- Memory per WebSocket: the HTTP read buffer is released once the connection is upgraded, and
  a route that leaves `moltbot.after_upgrade` in the environ has it run on the connection's
  greenlet after the request ended: Flask's context, the environ, the parsed headers and the
  response are released first, so a held connection keeps none of them.
- Slow and idle clients: a connection's first request (head and body) must arrive within
  `request_timeout` of the accept, and each later one within `request_timeout` of its first
  byte (gevent's own limit is per `recv`, so a trickle of one byte a minute would hold a
  connection for ever). A connection that sent nothing is closed quietly; a head too slow gets
  a 408, a body too slow a JSON 408. Between requests, keep-alive waits `keepalive_timeout`.
- One address may hold at most `max_per_address` connections, so idle or slow sockets from one
  place cannot fill `max_connections`. Loopback addresses are counted too, each on its own
  (127.0.0.0/8 is sixteen million addresses any local program can use); only the configured
  proxies (`auth.trusted_proxies`, asked at each accept) are not: behind nginx every client
  arrives from nginx, and nginx limits its own.
"""

from __future__ import annotations

import io
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from gevent import Timeout
from gevent import socket as gsocket
from gevent.pywsgi import WSGIHandler, WSGIServer
from werkzeug.exceptions import RequestTimeout

from gateway.common.networks import Network, in_networks
from gateway.observe.logs import MESSAGE_LINE
from gateway.server.request_head import read_head

log = logging.getLogger(__name__)

_BUSY_BODY = (b'{"error": {"code": "unavailable", "message": "The gateway is at '
              b'gateway.max_connections; try again shortly."}}')
_CROWD_BODY = (b'{"error": {"code": "unavailable", "message": "Your address holds too many '
               b'open connections (gateway.max_connections_per_ip); close some."}}')
_SLOW_BODY = (b'{"error": {"code": "request_timeout", "message": "The request did not arrive '
              b'within gateway.request_timeout; send it again."}}')


def _response(status: bytes, body: bytes, extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n" + extra
            + b"Connection: close\r\nContent-Length: " + str(len(body)).encode()
            + b"\r\n\r\n" + body)


BUSY_RESPONSE = _response(b"503 Service Unavailable", _BUSY_BODY, b"Retry-After: 1\r\n")
CROWDED_RESPONSE = _response(b"503 Service Unavailable", _CROWD_BODY, b"Retry-After: 5\r\n")
SLOW_RESPONSE = _response(b"408 Request Timeout", _SLOW_BODY)


class TooSlow(Exception):
    """The request's time (`request_timeout`) ran out while it was still arriving."""


class DeadlineInput:
    """`wsgi.input` bounded by the request's deadline: each read gets the time that is left."""

    def __init__(self, stream: Any, deadline: float) -> None:
        self.stream = stream
        self.deadline = deadline

    def _bounded(self, method: str, *args: Any) -> Any:
        left = self.deadline - time.monotonic()
        try:
            if left <= 0:
                raise TooSlow
            with Timeout(left, TooSlow):
                return getattr(self.stream, method)(*args)
        except TooSlow:
            raise RequestTimeout("The request body did not arrive within "
                                 "gateway.request_timeout; send it again.") from None

    def read(self, *args: Any) -> bytes:
        return bytes(self._bounded("read", *args))

    def readline(self, *args: Any) -> bytes:
        return bytes(self._bounded("readline", *args))

    def readlines(self, *args: Any) -> list[bytes]:
        return list(self._bounded("readlines", *args))

    def __iter__(self) -> Any:
        return iter(self.readline, b"")


class GatewayHandler(WSGIHandler):
    _head_timer: Any = None
    _started = 0.0
    _accepted: float | None = None  # set until the first request's head has begun
    _head_began = False

    def __init__(self, sock: Any, address: Any, server: Any) -> None:
        super().__init__(sock, address, server)
        self._accepted = time.monotonic()  # handlers are made at the accept

    def read_requestline(self) -> str:
        """The first request's clock starts at the accept: a socket that sends nothing holds
        a connection only `request_timeout`, not `keepalive_timeout`. A later request waits
        (idle keep-alive: up to the socket timeout) for its first byte, then starts its clock.
        Either way the head must be complete within `request_timeout`."""
        self._head_began = False
        if self._accepted is not None:
            self._started, self._accepted = self._accepted, None
            left = self._started + self.server.request_timeout - time.monotonic()
            self._head_timer = Timeout.start_new(max(0.0, left), TooSlow)
            self.rfile.peek(1)  # type: ignore[has-type]  # gevent has no annotations
        else:
            self.rfile.peek(1)  # type: ignore[has-type]
            self._started = time.monotonic()
            self._head_timer = Timeout.start_new(self.server.request_timeout, TooSlow)
        self._head_began = True
        line: str = super().read_requestline()
        return line

    MessageClass = staticmethod(read_head)  # the request's headers without `email`

    def read_request(self, raw_requestline: str) -> Any:
        try:
            return super().read_request(raw_requestline)
        finally:
            self._stop_head_timer()

    def handle_one_request(self) -> Any:
        try:
            return super().handle_one_request()
        except TooSlow:  # while waiting for the request line (later ones: in read_request)
            if not self._head_began:
                return None  # nothing came since the accept: close without a word
            self.log_error("request line from %s too slow: closed", self.client_address)
            return ("408", SLOW_RESPONSE)
        finally:
            self._stop_head_timer()

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _handle_client_error(self, ex: BaseException) -> Any:
        if isinstance(ex, TooSlow):
            self.log_error("request head from %s too slow: closed", self.client_address)
            return ("408", SLOW_RESPONSE)
        return super()._handle_client_error(ex)

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        environ["werkzeug.socket"] = self.socket
        environ["moltbot.release_http_buffer"] = self.release_http_buffer
        if environ.get("CONTENT_LENGTH") or environ.get("HTTP_TRANSFER_ENCODING"):
            environ["wsgi.input"] = DeadlineInput(environ["wsgi.input"],
                                                  self._started + self.server.request_timeout)
        return environ

    def release_http_buffer(self) -> None:
        """Drop the connection's 8 KB HTTP read buffer: after a WebSocket upgrade nothing reads
        HTTP from it again (the WebSocket reads the socket). Every reference must go: the
        handler's, its `Input`'s, and the environ's (a body-less GET gets the raw buffer)."""
        old: Any = self.rfile  # type: ignore[has-type]  # gevent has no annotations
        self.rfile = io.BytesIO()
        self.wsgi_input.rfile = self.rfile
        if self.environ.get("wsgi.input") is old:
            self.environ["wsgi.input"] = self.rfile

    def log_request(self) -> None:
        """Not for a request answered with its message's reply: the message's own access line
        says it (`observe.logs.logged_by_message`)."""
        if not (self.environ and self.environ.get(MESSAGE_LINE)):
            super().log_request()

    def process_result(self) -> None:
        if self.environ.get("moltbot.websocket"):
            self.close_connection = True  # the WebSocket owned the socket and closed it
            after = self.environ.get("moltbot.after_upgrade")
            if after is not None:
                self._release_request()
                after()
            return
        super().process_result()

    def _release_request(self) -> None:
        """Drop what the finished upgrade request holds before its connection lives on: the
        response (flask-sock's holds the handshake's server), the environ (the werkzeug
        request refers to it and it to the request) and the parsed headers."""
        close = getattr(self.result, "close", None)  # type: ignore[has-type]
        if close is not None:
            close()
        self.result = None
        self.environ.clear()
        self.headers = None


class GatewayServer(WSGIServer):
    handler_class = GatewayHandler

    def __init__(self, listener: Any, application: Any, *, max_connections: int,
                 keepalive_timeout: float, request_timeout: float = 10.0,
                 max_per_address: int = 64,
                 proxies: Callable[[], tuple[Network, ...]] | None = None,
                 **kwargs: Any) -> None:
        """`proxies` gives the addresses not counted per address (asked at each accept, so a
        config reload applies); none without it."""
        super().__init__(listener, application, **kwargs)
        self.max_connections = max_connections
        self.keepalive_timeout = keepalive_timeout
        self.request_timeout = request_timeout
        self.max_per_address = max_per_address
        self.proxies: Callable[[], tuple[Network, ...]] = proxies or tuple
        self.active = 0
        self.by_address: Counter[str] = Counter()

    def handle(self, sock: Any, address: Any) -> None:
        ip = str(address[0]) if isinstance(address, tuple) else ""
        counted = not in_networks(ip, self.proxies())
        if self.active >= self.max_connections:
            refuse_busy(sock)
            return
        if counted and self.by_address[ip] >= self.max_per_address:
            refuse_busy(sock, CROWDED_RESPONSE)
            return
        self.active += 1
        if counted:
            self.by_address[ip] += 1
        try:
            sock.settimeout(self.keepalive_timeout)
            super().handle(sock, address)
        finally:
            self.active -= 1
            if counted:
                self.by_address[ip] -= 1
                if not self.by_address[ip]:
                    del self.by_address[ip]


def refuse_busy(sock: Any, response: bytes = BUSY_RESPONSE) -> None:
    """Read the request head (so closing does not reset the connection), answer 503, close."""
    try:
        sock.settimeout(2.0)
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = sock.recv(8192)
            if not chunk:
                break
            head += chunk
        sock.sendall(response)
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
