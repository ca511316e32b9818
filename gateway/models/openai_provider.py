"""OpenAI-compatible servers (vLLM, llama.cpp server, cloud APIs): `/chat/completions`
streamed as server-sent events and `/embeddings`, through the lean `json_client` (the same
reason as Ollama's: what the `openai` package costs a call under gevent)."""

from __future__ import annotations

import json
import threading
from typing import Any

from gateway.models.base import Cancelled, EndpointDown, ModelError, ModelResult, OnDelta
from gateway.models.card import ModelCard
from gateway.models.json_client import JsonClient, Refused, Unreachable


class OpenAIProvider:
    def __init__(self, url: str, model: str, *, max_tokens: int, api_key: str | None = None,
                 timeout: float = 120.0, temperature: float | None = None) -> None:
        self.url = url
        self.model = model
        self.max_tokens = max_tokens
        self.temperature = temperature
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        # Retries are the pool's job (on another endpoint), not the client's.
        self.client = JsonClient(url, timeout=timeout, headers=headers)

    def chat(self, messages: list[dict[str, Any]], *, on_delta: OnDelta | None = None,
             cancel: threading.Event | None = None,
             tools: list[dict[str, Any]] | None = None,
             num_ctx: int | None = None) -> ModelResult:
        body: dict[str, Any] = {"model": self.model, "messages": _wire(messages),
                                "max_tokens": self.max_tokens, "stream": True,
                                "stream_options": {"include_usage": True}}
        if tools:
            body["tools"] = tools
        if self.temperature is not None:
            body["temperature"] = self.temperature
        pieces: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        counts = [0, 0]  # the usage chunk's prompt and completion tokens
        chunks = self.client.post("/chat/completions", body, stream="sse")
        try:
            for chunk in chunks:
                if cancel is not None and cancel.is_set():
                    raise Cancelled(f"cancelled after {len(pieces)} pieces")
                usage = chunk.get("usage")
                if usage:
                    counts = [usage.get("prompt_tokens") or 0,
                              usage.get("completion_tokens") or 0]
                choices = chunk.get("choices")
                if not choices:
                    continue
                delta = choices[0].get("delta") or {}
                for call in delta.get("tool_calls") or []:
                    slot = calls.setdefault(call.get("index", 0), {"id": "", "name": "",
                                                                   "arguments": ""})
                    function = call.get("function") or {}
                    if call.get("id"):
                        slot["id"] = call["id"]
                    slot["name"] += function.get("name") or ""
                    slot["arguments"] += function.get("arguments") or ""
                if delta.get("content"):
                    pieces.append(delta["content"])
                    if on_delta:
                        on_delta(delta["content"])
        except Refused as e:
            raise _refused(self.url, e) from e
        except Unreachable as e:
            raise EndpointDown(str(e)) from e
        finally:
            chunks.close()
        tool_calls = [{"id": c["id"] or f"call_{i}", "name": c["name"],
                       "arguments": _json_args(c["arguments"])}
                      for i, (_, c) in enumerate(sorted(calls.items()))]
        return ModelResult("".join(pieces), self.url, tool_calls, *counts)

    def card(self) -> ModelCard:
        """The API has no way to ask: `models.<name>.context_length` and `tools` say."""
        return ModelCard()

    def close(self) -> None:
        self.client.close()

    def embed(self, texts: list[str], *, timeout: float | None = None) -> list[list[float]]:
        """One vector per text from `/embeddings`; `timeout` (seconds) replaces the client's."""
        try:
            found = next(self.client.post("/embeddings", {
                "model": self.model, "input": texts, "encoding_format": "float"},
                timeout=timeout))
        except Refused as e:
            raise _refused(self.url, e) from e
        except Unreachable as e:
            raise EndpointDown(str(e)) from e
        items = sorted(found.get("data") or [], key=lambda d: d.get("index", 0))
        return [list(item["embedding"]) for item in items]


def _wire(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The neutral tool round-trip and image shapes (see `Provider`) in the OpenAI form."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if len(m) == 2:  # role and content: the same on both wires
            out.append(m)
        elif m.get("tool_calls"):
            out.append({"role": "assistant", "content": m.get("content") or None, "tool_calls": [
                {"id": c["id"], "type": "function",
                 "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])}}
                for c in m["tool_calls"]]})
        elif m.get("role") == "tool":
            out.append({"role": "tool", "tool_call_id": m["tool_call_id"],
                        "content": m["content"]})
        elif m.get("images"):  # a vision model's images: data URLs beside the text
            out.append({"role": m["role"], "content": [{"type": "text", "text": m["content"]}] + [
                {"type": "image_url", "image_url": {
                    "url": f"data:{i['media_type']};base64,{i['data']}"}}
                for i in m["images"]]})
        else:
            out.append(m)
    return out


def _refused(url: str, e: Refused) -> ModelError:
    """`EndpointDown` (another endpoint may answer) for a 5xx or 429, `ModelError` for any
    other refusal."""
    if e.status >= 500 or e.status == 429:
        return EndpointDown(f"HTTP {e.status}: {e.error}")
    return ModelError(f"{url} refused the call with HTTP {e.status}: {e.error}")


def _json_args(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {"_raw": text}
    return value if isinstance(value, dict) else {"value": value}

