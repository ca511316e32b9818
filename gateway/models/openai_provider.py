"""OpenAI-compatible servers (vLLM, llama.cpp server, cloud APIs) through the `openai` client."""

from __future__ import annotations

import json
import threading
from typing import Any

import openai

from gateway.models.base import Cancelled, EndpointDown, ModelError, ModelResult, OnDelta
from gateway.models.card import ModelCard


class OpenAIProvider:
    def __init__(self, url: str, model: str, *, max_tokens: int, api_key: str | None = None,
                 timeout: float = 120.0, temperature: float | None = None) -> None:
        self.url = url
        self.model = model
        self.max_tokens = max_tokens
        self.temperature = temperature
        # Retries are the pool's job (on another endpoint), not the client's.
        self.client = openai.OpenAI(base_url=url, api_key=api_key or "not-needed",
                                    timeout=timeout, max_retries=0)

    def chat(self, messages: list[dict[str, Any]], *, on_delta: OnDelta | None = None,
             cancel: threading.Event | None = None,
             tools: list[dict[str, Any]] | None = None,
             num_ctx: int | None = None) -> ModelResult:
        extra: dict[str, Any] = {"tools": tools} if tools else {}
        if self.temperature is not None:
            extra["temperature"] = self.temperature
        pieces: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        counts = [0, 0]  # the usage chunk's prompt and completion tokens
        try:
            # the wire messages are plain dicts of the documented shapes; the SDK's TypedDicts
            # and its stream/no-stream overloads do not follow **extra
            create: Any = self.client.chat.completions.create
            stream: Any = create(model=self.model, messages=_wire(messages),
                                 max_tokens=self.max_tokens, stream=True,
                                 stream_options={"include_usage": True}, **extra)
            with stream:
                for chunk in stream:
                    if cancel is not None and cancel.is_set():
                        raise Cancelled(f"cancelled after {len(pieces)} pieces")
                    if getattr(chunk, "usage", None):
                        counts = [chunk.usage.prompt_tokens or 0,
                                  chunk.usage.completion_tokens or 0]
                    if not chunk.choices:
                        continue
                    delta = chunk.choices[0].delta
                    for call in delta.tool_calls or []:
                        slot = calls.setdefault(call.index, {"id": "", "name": "",
                                                             "arguments": ""})
                        if call.id:
                            slot["id"] = call.id
                        if call.function and call.function.name:
                            slot["name"] += call.function.name
                        if call.function and call.function.arguments:
                            slot["arguments"] += call.function.arguments
                    if delta.content:
                        pieces.append(delta.content)
                        if on_delta:
                            on_delta(delta.content)
        except openai.APIError as e:
            raise _mapped(self.url, e) from e
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
            response = self.client.embeddings.create(model=self.model, input=texts,
                                                     encoding_format="float",
                                                     timeout=timeout or openai.NOT_GIVEN)
        except openai.APIError as e:
            raise _mapped(self.url, e) from e
        return [list(item.embedding) for item in sorted(response.data, key=lambda d: d.index)]


def _wire(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The neutral tool round-trip and image shapes (see `Provider`) in the OpenAI form."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.get("tool_calls"):
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


def _mapped(url: str, e: openai.APIError) -> ModelError:
    """The client's error as the pool's: `EndpointDown` (another endpoint may answer) for a
    connection, 5xx or 429, `ModelError` for any other refusal."""
    if isinstance(e, openai.APIConnectionError | openai.InternalServerError
                  | openai.RateLimitError):
        return EndpointDown(_reason(e))
    if isinstance(e, openai.APIStatusError):
        return ModelError(f"{url} refused the call with HTTP {e.status_code}: {e.message}")
    return ModelError(f"{url} answered with something unexpected: {type(e).__name__}")


def _json_args(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {"_raw": text}
    return value if isinstance(value, dict) else {"value": value}


def _reason(e: Exception) -> str:
    if isinstance(e, openai.APITimeoutError):
        return "timed out"
    if isinstance(e, openai.APIConnectionError):
        return "connection refused"
    if isinstance(e, openai.APIStatusError):
        return f"HTTP {e.status_code}"
    return type(e).__name__
