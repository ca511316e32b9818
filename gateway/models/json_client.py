"""A lean HTTP client for the message path's model calls: JSON in, JSON out, streamed as
NDJSON (Ollama's `/api/chat`) or server-sent events (OpenAI's `/v1/chat/completions`).

Why not the `ollama` and `openai` packages here: under gevent the `ollama` package cost
810-1,040 us of CPU per call (pydantic models built and copied for every part, httpx's request
machinery, httpcore checking every idle pooled connection on each request); this client speaks
the same wire formats with urllib3's pool, which checks only the connection it takes, and
plain dicts from `json`: 430-540 us on the same loaded machine (ARCHITECTURE.md). The `ollama`
package stays for what is off that path (`doctor`'s model list).

A call that is abandoned (cancelled, an error mid-stream) closes its connection instead of
returning it to the pool half read.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any, Literal

import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError, TimeoutError

CONNECT_TIMEOUT = 5.0
POOL_SIZE = 64  # kept-alive connections (urllib3 checks only the one it takes, not each idle one)

Parts = Generator[dict[str, Any], None, None]


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
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.pool = urllib3.PoolManager(num_pools=4, maxsize=POOL_SIZE, block=False,
                                        retries=False)

    def post(self, path: str, body: dict[str, Any], *,
             stream: Literal["ndjson", "sse"] | None = None, timeout: float | None = None
             ) -> Parts:
        """Each JSON object of the answer (one when `stream` is None). Close the generator
        to abandon the call early: its connection is closed, never reused."""
        return self._parts(path, body, stream, timeout or self.timeout)

    def close(self) -> None:
        self.pool.clear()

    def _parts(self, path: str, body: dict[str, Any], stream: str | None, timeout: float
               ) -> Parts:
        try:
            response = self.pool.request(
                "POST", self.url + path, body=json.dumps(body, ensure_ascii=False).encode(),
                headers=self.headers, preload_content=False,
                timeout=urllib3.Timeout(connect=min(CONNECT_TIMEOUT, timeout), read=timeout))
        except HTTPError as e:
            raise Unreachable(_reason(e)) from e
        finished = False
        try:
            if response.status >= 400:
                raise Refused(response.status, _error_of(response.data))
            if stream is None:
                whole = json.loads(response.data)
                finished = True  # read to its end: the connection may carry another call
                yield whole
                return
            for line in response:
                part = _part(line, stream)
                if part is _DONE:
                    break
                if part is not None:
                    yield part
            finished = True
        except HTTPError as e:
            raise Unreachable(_reason(e)) from e
        except ValueError as e:
            raise Unreachable(f"the answer is not the JSON it should be: {e}") from e
        finally:
            if finished:
                response.release_conn()
            else:  # half read: the connection cannot carry another call
                response.close()
                response.release_conn()


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
    text = str(e)
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused"
    if isinstance(e, TimeoutError) and not isinstance(e, NewConnectionError):
        return "timed out"  # (urllib3 counts a refused connection as a connect timeout)
    return f"{type(e).__name__}: {e}"[:200]
