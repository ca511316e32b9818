"""A lean client of Ollama's HTTP API for the message path: `/api/chat` and `/api/embed`.

Why not the `ollama` package here: under gevent it costs 1.1-1.8 ms of CPU per call (pydantic
models built and copied for every part, httpx's request machinery, and httpcore checking every
idle pooled connection on each request). This client speaks the same wire format with
urllib3's pool, which checks only the connection it takes, and plain dicts from `json`: the
message path's model call costs about a tenth (`bench/run.py model-client`). The `ollama`
package stays for what is not on that path (`doctor`'s model list, the tray's model menu).

A streamed answer is NDJSON, one object a line; a call that is abandoned (cancelled, an error
mid-stream) closes its connection instead of returning it to the pool half read.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError, TimeoutError

CONNECT_TIMEOUT = 5.0
Parts = Generator[dict[str, Any], None, None]
POOL_SIZE = 64  # kept-alive connections (urllib3 checks only the one it takes, not each idle one)


class OllamaRefused(Exception):
    """The server answered with an HTTP error; `error` is its own sentence."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(f"HTTP {status}: {error}")
        self.status = status
        self.error = error


class OllamaUnreachable(Exception):
    """No answer: refused, reset, timed out. `str(e)` says which, briefly."""


class OllamaClient:
    def __init__(self, url: str, *, timeout: float, headers: dict[str, str] | None = None
                 ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.pool = urllib3.PoolManager(num_pools=4, maxsize=POOL_SIZE, block=False,
                                        retries=False)

    def chat(self, body: dict[str, Any]) -> Parts:
        """Each part of `/api/chat`'s answer (one when `body["stream"]` is false). Close the
        iterator to abandon the call early: its connection is closed, never reused."""
        return self._parts("/api/chat", body, self.timeout)

    def embed(self, body: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """`/api/embed`'s answer."""
        parts = self._parts("/api/embed", body, timeout or self.timeout)
        try:
            return next(parts)
        finally:
            parts.close()

    def close(self) -> None:
        self.pool.clear()

    def _parts(self, path: str, body: dict[str, Any], timeout: float) -> Parts:
        try:
            response = self.pool.request(
                "POST", self.url + path, body=json.dumps(body, ensure_ascii=False).encode(),
                headers=self.headers, preload_content=False,
                timeout=urllib3.Timeout(connect=min(CONNECT_TIMEOUT, timeout), read=timeout))
        except HTTPError as e:
            raise OllamaUnreachable(_reason(e)) from e
        finished = False
        try:
            if response.status >= 400:
                raise OllamaRefused(response.status, _error_of(response.data))
            if body.get("stream") is False or path != "/api/chat":
                whole = json.loads(response.data)
                finished = True  # read to its end: the connection may carry another call
                yield whole
                return
            for line in response:
                if line.strip():
                    part = json.loads(line)
                    if isinstance(part, dict) and part.get("error"):
                        raise OllamaUnreachable(f"it stopped mid-answer: {part['error']}")
                    yield part
            finished = True
        except HTTPError as e:
            raise OllamaUnreachable(_reason(e)) from e
        except ValueError as e:
            raise OllamaUnreachable(f"the answer is not Ollama's JSON: {e}") from e
        finally:
            if finished:
                response.release_conn()
            else:  # half read: the connection cannot carry another call
                response.close()
                response.release_conn()


def _error_of(data: bytes) -> str:
    """Ollama's `{"error": "..."}`, or the body's start when it is something else."""
    try:
        found = json.loads(data)
        if isinstance(found, dict) and found.get("error"):
            return str(found["error"])
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
