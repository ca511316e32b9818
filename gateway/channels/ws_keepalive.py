"""One ping timer for every open WebSocket of the `/ws` channel, instead of one per connection.

Every `interval()` seconds (simple-websocket's `ping_interval`, 25 s) each connection that
answered the last ping with a pong gets a new ping; one that did not is closed (1008, "Ping/Pong
timeout"), as simple-websocket's own per-connection timer did: a dead peer is found within one
to two intervals. A write never holds the timer up: a peer whose socket takes nothing for
`WRITE_WAIT` seconds (its buffers full, or another greenlet stuck writing to it) is cut off, and
the loop lets other greenlets run every `BATCH` connections, so 10,000 pings are not one block.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

from gevent import Timeout
from simple_websocket import ConnectionClosed
from wsproto.frame_protocol import CloseReason

from gateway.channels.ws_socket import WsSocket

log = logging.getLogger(__name__)

WRITE_WAIT = 5.0  # seconds a ping or close may wait for the peer's socket
BATCH = 200  # connections pinged between two yields to the event loop


class Keepalive:
    """The shared ping timer (see the module docstring)."""

    def __init__(self, interval: Callable[[], float]) -> None:
        self.interval = interval
        self.sockets: set[WsSocket] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, ws: WsSocket) -> None:
        self.sockets.add(ws)

    def discard(self, ws: WsSocket) -> None:
        self.sockets.discard(ws)

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="ws-keepalive",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the timer; a round under way finishes first."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(WRITE_WAIT)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval()):
            try:
                self.tick()
            except Exception:  # a bug here must not end every connection's keepalive
                log.exception("WebSocket keepalive round failed")

    def tick(self) -> None:
        """One round: close who missed the last ping, ping the rest."""
        for ws in self._in_batches():
            if ws.awaiting_pong:
                self._close(ws, CloseReason.POLICY_VIOLATION, "Ping/Pong timeout")
            elif ws.open:
                self._write(ws, ws.ping)

    def close_all(self, code: int, reason: str) -> None:
        """Close every connection (the channel stops), each write bounded as a ping's."""
        for ws in self._in_batches():
            self._close(ws, code, reason)

    def _in_batches(self) -> Iterator[WsSocket]:
        """Every connection now, with a yield to the event loop after each `BATCH`."""
        for n, ws in enumerate(list(self.sockets), 1):
            yield ws
            if n % BATCH == 0:
                time.sleep(0)

    def _close(self, ws: WsSocket, code: int, reason: str) -> None:
        self._write(ws, ws.close, code, reason)
        ws.abort()  # if the close frame could not go, the socket goes anyway
        self.sockets.discard(ws)

    @staticmethod
    def _write(ws: WsSocket, write: Callable[..., None], *args: object) -> None:
        timer = Timeout(WRITE_WAIT)
        timer.start()
        try:
            write(*args)
        except Timeout as fired:
            if fired is not timer:
                raise
            ws.abort()
        except (ConnectionClosed, OSError):
            ws.abort()
        finally:
            timer.close()
