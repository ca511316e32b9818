"""Ollama's `/api/chat` and `/api/embed` through the lean `json_client` (the `ollama`
package's per-call cost under gevent is why, see that module)."""

from __future__ import annotations

import threading
from typing import Any

from gateway.models.base import Cancelled, EndpointDown, ModelError, ModelResult, OnDelta
from gateway.models.card import ModelCard, read_card
from gateway.models.json_client import JsonClient, Refused, Unreachable


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
        self.client = JsonClient(url, timeout=timeout, headers=headers)

    def chat(self, messages: list[dict[str, Any]], *, on_delta: OnDelta | None = None,
             cancel: threading.Event | None = None,
             tools: list[dict[str, Any]] | None = None,
             num_ctx: int | None = None) -> ModelResult:
        options = {**self.options, "num_ctx": num_ctx} if num_ctx else self.options
        pieces: list[str] = []
        tool_calls: list[dict[str, Any]] = []
        counts = [0, 0]  # prompt_eval_count, eval_count of the final part
        streamed = on_delta is not None  # nobody to stream to: one answer, parsed once
        body: dict[str, Any] = {"model": self.model, "messages": _wire(messages),
                                "stream": streamed, "options": options}
        if tools:
            body["tools"] = tools
        parts = self.client.post("/api/chat", body, stream="ndjson" if streamed else None)
        try:
            for part in parts:
                if cancel is not None and cancel.is_set():
                    raise Cancelled(f"cancelled after {len(pieces)} pieces")
                message = part.get("message") or {}
                piece = message.get("content") or ""
                for call in message.get("tool_calls") or []:
                    function = call.get("function") or {}
                    tool_calls.append({"id": f"call_{len(tool_calls)}",
                                       "name": function.get("name", ""),
                                       "arguments": dict(function.get("arguments") or {})})
                if piece:
                    pieces.append(piece)
                    if on_delta:
                        on_delta(piece)
                if part.get("done"):
                    counts = [part.get("prompt_eval_count") or 0, part.get("eval_count") or 0]
        except Refused as e:
            raise self._refused(e) from e
        except Unreachable as e:
            raise EndpointDown(str(e)) from e
        finally:
            parts.close()
        return ModelResult("".join(pieces), self.url, tool_calls, *counts)

    def card(self) -> ModelCard:
        return read_card(self.url, self.model, self.api_key)

    def close(self) -> None:
        self.client.close()

    def embed(self, texts: list[str], *, timeout: float | None = None) -> list[list[float]]:
        """One vector per text from `/api/embed`; `timeout` (seconds) replaces the client's."""
        try:
            found = next(self.client.post("/api/embed", {"model": self.model, "input": texts},
                                          timeout=timeout))
        except Refused as e:
            raise self._refused(e) from e
        except Unreachable as e:
            raise EndpointDown(str(e)) from e
        return [list(vector) for vector in found.get("embeddings") or []]

    def _refused(self, e: Refused) -> ModelError:
        if e.status >= 500 or e.status == 429:
            return EndpointDown(f"HTTP {e.status}: {e.error}")
        if e.status == 404:
            return ModelError(f"model '{self.model}' is not available at {self.url}: "
                              f"run `ollama pull {self.model}` ({e.error})")
        return ModelError(f"{self.url} refused the call with HTTP {e.status}: {e.error}")


def _wire(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The neutral tool round-trip and image shapes (see `Provider`) in Ollama's form."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if len(m) == 2:  # role and content: the same on both wires
            out.append(m)
        elif m.get("tool_calls"):
            out.append({"role": "assistant", "content": m.get("content") or "", "tool_calls": [
                {"function": {"name": c["name"], "arguments": c["arguments"]}}
                for c in m["tool_calls"]]})
        elif m.get("role") == "tool":
            out.append({"role": "tool", "content": m["content"], "tool_name": m.get("name")})
        elif m.get("images"):  # a vision model's images: base64 on the wire, as given
            out.append({"role": m["role"], "content": m["content"],
                        "images": [i["data"] for i in m["images"]]})
        else:
            out.append(m)
    return out

