"""Ollama through the official `ollama` client.

The client's httpx pool is capped: under gevent httpcore polls every idle pooled connection on
each request, so a large idle pool costs CPU on every call (see ARCHITECTURE.md).
"""

from __future__ import annotations

import base64
import threading
from typing import Any

import httpx
import ollama

from gateway.models.base import Cancelled, EndpointDown, ModelError, ModelResult, OnDelta
from gateway.models.card import ModelCard, read_card


class OllamaProvider:
    def __init__(self, url: str, model: str, *, max_tokens: int, api_key: str | None = None,
                 timeout: float = 120.0, temperature: float | None = None) -> None:
        self.url = url
        self.model = model
        self.options: dict[str, Any] = {"num_predict": max_tokens}
        if temperature is not None:
            self.options["temperature"] = temperature
        self.api_key = api_key
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self.client = ollama.Client(
            host=url, timeout=httpx.Timeout(timeout, connect=5.0), headers=headers,
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=8))

    def chat(self, messages: list[dict[str, Any]], *, on_delta: OnDelta | None = None,
             cancel: threading.Event | None = None,
             tools: list[dict[str, Any]] | None = None,
             num_ctx: int | None = None) -> ModelResult:
        options = {**self.options, "num_ctx": num_ctx} if num_ctx else self.options
        pieces: list[str] = []
        tool_calls: list[dict[str, Any]] = []
        counts = [0, 0]  # prompt_eval_count, eval_count of the final part
        try:
            if on_delta is None:  # nobody to stream to: one response, parsed once
                parts: Any = [self.client.chat(model=self.model, messages=_wire(messages),
                                               stream=False, options=options,
                                               tools=tools or None)]
            else:
                parts = self.client.chat(model=self.model, messages=_wire(messages),
                                         stream=True, options=options,
                                         tools=tools or None)
            try:
                for part in parts:
                    if cancel is not None and cancel.is_set():
                        raise Cancelled(f"cancelled after {len(pieces)} pieces")
                    piece = part.message.content or ""
                    for call in part.message.tool_calls or []:
                        tool_calls.append({"id": f"call_{len(tool_calls)}",
                                           "name": call.function.name,
                                           "arguments": dict(call.function.arguments or {})})
                    if piece:
                        pieces.append(piece)
                        if on_delta:
                            on_delta(piece)
                    if part.done:
                        counts = [part.prompt_eval_count or 0, part.eval_count or 0]
            finally:
                if hasattr(parts, "close"):
                    parts.close()
        except ollama.ResponseError as e:
            raise self._response_error(e) from e
        except (ConnectionError, httpx.TransportError) as e:
            raise EndpointDown(_reason(e)) from e
        return ModelResult("".join(pieces), self.url, tool_calls, *counts)

    def card(self) -> ModelCard:
        return read_card(self.url, self.model, self.api_key)

    def close(self) -> None:
        self.client.close()

    def embed(self, texts: list[str], *, timeout: float | None = None) -> list[list[float]]:
        """One vector per text from `/api/embed`; `timeout` (seconds) replaces the client's."""
        body = {"model": self.model, "input": texts}
        try:
            # the client's public embed() takes no timeout; _request passes it on to httpx
            limit: Any = httpx.Timeout(timeout, connect=min(timeout, 5.0)) if timeout else \
                self.client._client.timeout
            response = self.client._request(ollama.EmbedResponse, "POST", "/api/embed",
                                            json=body, stream=False, timeout=limit)
        except ollama.ResponseError as e:
            raise self._response_error(e) from e
        except (ConnectionError, httpx.TransportError) as e:
            raise EndpointDown(_reason(e)) from e
        return [list(vector) for vector in response.embeddings]

    def _response_error(self, e: ollama.ResponseError) -> ModelError:
        if e.status_code >= 500 or e.status_code == 429:
            return EndpointDown(f"HTTP {e.status_code}: {e.error}")
        if e.status_code == 404:
            return ModelError(f"model '{self.model}' is not available at {self.url}: "
                              f"run `ollama pull {self.model}` ({e.error})")
        return ModelError(f"{self.url} refused the call with HTTP {e.status_code}: {e.error}")


def _wire(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The neutral tool round-trip and image shapes (see `Provider`) in Ollama's form."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.get("tool_calls"):
            out.append({"role": "assistant", "content": m.get("content") or "", "tool_calls": [
                {"function": {"name": c["name"], "arguments": c["arguments"]}}
                for c in m["tool_calls"]]})
        elif m.get("role") == "tool":
            out.append({"role": "tool", "content": m["content"], "tool_name": m.get("name")})
        elif m.get("images"):  # a vision model's images: the client sends bytes as base64
            out.append({"role": m["role"], "content": m["content"],
                        "images": [base64.b64decode(i["data"]) for i in m["images"]]})
        else:
            out.append(m)
    return out


def _reason(e: Exception) -> str:
    if isinstance(e, httpx.TimeoutException):
        return "timed out"
    if isinstance(e, ConnectionError | httpx.ConnectError):
        return "connection refused"
    return f"{type(e).__name__}: {e}"[:200]
