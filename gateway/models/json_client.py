"""A lean HTTP client for the message path's model calls: JSON in, JSON out, streamed as
NDJSON (Ollama's `/api/chat`) or server-sent events (OpenAI's `/v1/chat/completions`).

Why not the `ollama` and `openai` packages here: under gevent the `ollama` package cost
810-1,040 us of CPU per call (pydantic models built and copied for every part, httpx's request
machinery, httpcore checking every idle pooled connection on each request). Why not urllib3
either: its pool manager, URL parsing and response wrapper cost 440 us a call where
`http.client` on a kept-alive connection costs 170 (`bench/README.md`, "Step 9"). So this
client keeps its own small stack of kept-alive `http.client` connections and speaks the same
wire formats with plain dicts from `json`. The `ollama` package stays for what is off that path
(`doctor`'s model list).

A connection taken from the stack is checked once, without waiting (the server may have closed
it while it was idle); a call on a reused connection that the server closed before answering is
sent once more on a new one. A call that is abandoned (cancelled, an error mid-stream) closes
its connection instead of returning it half read.
"""

from __future__ import annotations

import http.client
import json
import select
import ssl
from collections.abc import Generator
from typing import Any, Literal
from urllib.parse import urlsplit

from gevent import monkey

CONNECT_TIMEOUT = 5.0
POOL_SIZE = 64  # idle kept-alive connections kept; more at once are opened and closed

Parts = Generator[dict[str, Any], None, None]
_poll = monkey.get_original("select", "poll")  # a zero-timeout check: never waits
_CLOSED_EARLY = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class Refused(Exception):
    """The server answered with an HTTP error; `error` is its own sentence."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(f"HTTP {status}: {error}")
        self.status = status
        self.error = error


class Unreachable(Exception):
    """No usable answer: refused, reset, timed out, cut off. `str(e)` says which, briefly."""


class JsonClient:
    def __init__(self, url: str, *, timeout: float, headers: dict[str, str] | None = None
                 ) -> None:
        self.url = url.rstrip("/")
        where = urlsplit(self.url)
        if where.scheme not in ("http", "https") or not where.hostname:
            raise ValueError(f"a model endpoint is an http:// or https:// URL, not {url!r}")
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self._base = where.path
        self._host, self._port = where.hostname, where.port
        self._tls = ssl.create_default_context() if where.scheme == "https" else None
        self._idle: list[_Http | _Https] = []  # newest last: the warmest first

    def post(self, path: str, body: dict[str, Any], *,
             stream: Literal["ndjson", "sse"] | None = None, timeout: float | None = None
             ) -> Parts:
        """Each JSON object of the answer (one when `stream` is None). Close the generator
        to abandon the call early: its connection is closed, never reused."""
        return self._parts(path, body, stream, timeout or self.timeout)

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()

    def _parts(self, path: str, body: dict[str, Any], stream: str | None, timeout: float
               ) -> Parts:
        payload = json.dumps(body, ensure_ascii=False).encode()
        conn, response = self._send(self._base + path, payload, timeout)
        finished = False
        try:
            if response.status >= 400:
                raise Refused(response.status, _error_of(response.read()))
            if stream is None:
                whole = json.loads(response.read())
                finished = True  # read to its end: the connection may carry another call
                yield whole
                return
            for line in response:
                part = _part(line, stream)
                if part is _DONE:
                    response.read()  # whatever follows [DONE], so the connection is clean
                    break
                if part is not None:
                    yield part
            finished = True
        except (OSError, http.client.HTTPException) as e:
            raise Unreachable(_reason(e)) from e
        except ValueError as e:
            raise Unreachable(f"the answer is not the JSON it should be: {e}") from e
        finally:
            if finished and not response.will_close and len(self._idle) < POOL_SIZE:
                self._idle.append(conn)
            else:  # half read, or the server ends it: the connection cannot carry another
                conn.close()

    def _send(self, target: str, payload: bytes, timeout: float
              ) -> tuple[_Http | _Https, http.client.HTTPResponse]:
        """The request sent and the response's head read, on a kept-alive connection if one
        is idle and still open, else on a new one."""
        while True:
            conn, reused = self._take(timeout)
            try:
                conn.body = payload
                conn.request("POST", target, payload, self.headers)
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)  # connected: from now on it is the read
                return conn, conn.getresponse()
            except _CLOSED_EARLY as e:
                conn.close()
                if not reused:
                    raise Unreachable(_reason(e)) from e
                # closed by the server as we sent: the next idle one, or a new connection
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                raise Unreachable(_reason(e)) from e

    def _take(self, timeout: float) -> tuple[_Http | _Https, bool]:
        while self._idle:
            conn = self._idle.pop()
            if conn.sock is not None and not _readable(conn.sock.fileno()):
                return conn, True
            conn.close()  # closed by the server while idle (or it sent what nobody asked)
        connect = min(CONNECT_TIMEOUT, timeout)
        if self._tls is not None:
            return _Https(self._host, self._port, timeout=connect, context=self._tls), False
        return _Http(self._host, self._port, timeout=connect), False


class _OneWrite:
    """`http.client` writes a request's head and its body with two `send`s; on loopback the
    second write costs a second round of the kernel's TCP work on our CPU (~100 us a call).
    The body given in `body` goes out with the head, and the second `send` finds nothing
    left to do."""

    body: bytes | None = None

    def send(self, data: Any) -> None:
        if self.body is not None:
            if data is self.body:  # sent already, with the head
                self.body = None
                return
            data = bytes(data) + self.body
        super().send(data)  # type: ignore[misc]


class _Http(_OneWrite, http.client.HTTPConnection):
    pass


class _Https(_OneWrite, http.client.HTTPSConnection):
    pass


def _readable(fd: int) -> bool:
    """An idle kept-alive connection with something to read has been closed (or is broken)."""
    poller = _poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


_DONE: dict[str, Any] = {}


def _part(line: bytes, stream: str) -> dict[str, Any] | None:
    """One line of a stream as its object; None for what carries none (a blank line, an SSE
    comment or `event:` line); `_DONE` for SSE's `[DONE]`. An error object mid-stream raises:
    the server gave up after its 200."""
    line = line.strip()
    if stream == "sse":
        if not line.startswith(b"data:"):
            return None
        line = line[5:].strip()
        if line == b"[DONE]":
            return _DONE
    if not line:
        return None
    part = json.loads(line)
    if not isinstance(part, dict):
        raise ValueError(f"expected an object, got {type(part).__name__}")
    if part.get("error"):
        raise Unreachable(f"it stopped mid-answer: {_message(part['error'])}")
    return part


def _message(error: Any) -> str:
    """Ollama's `"error": "..."` or OpenAI's `"error": {"message": "..."}`."""
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


def _error_of(data: bytes) -> str:
    """The server's own sentence from an error body, or the body's start."""
    try:
        found = json.loads(data)
        if isinstance(found, dict) and found.get("error"):
            return _message(found["error"])
    except ValueError:
        pass
    return data[:200].decode("utf-8", "replace") or "no reason given"


def _reason(e: Exception) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, TimeoutError):
        return "timed out"
    return f"{type(e).__name__}: {e}"[:200]
