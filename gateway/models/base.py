"""The one contract every model backend keeps, and the errors the pool acts on."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.models.card import ModelCard

OnDelta = Callable[[str], None]


class ModelError(Exception):
    """The backend refused the call (unknown model, bad key): failing over would not help."""


class EndpointDown(ModelError):
    """The endpoint could not answer (refused, timed out, 5xx): another endpoint may."""


class Cancelled(Exception):
    """The sender went away; the call was stopped and its connection closed."""


class NoModelAvailable(ModelError):
    """Every endpoint of a model failed. `str(e)` names each endpoint (for the log and the
    trace); `advice` says how to fix it without naming any URL (for the sender)."""

    def __init__(self, model: str, failures: list[tuple[str, str]], config_hint: str) -> None:
        self.model = model
        self.failures = failures
        tried = "; ".join(f"{url} ({why})" for url, why in failures) or "no endpoint configured"
        self.advice = (f"The model '{model}' could not be reached. Start the model server "
                       f"(for Ollama: `ollama serve` and `ollama pull {model}`) or fix "
                       f"models.{model}.endpoint in config.yaml.")
        super().__init__(f"{self.advice} Tried: {tried} ({config_hint}).")


@dataclass
class ModelResult:
    text: str
    endpoint: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens: int = 0  # as the model counted them (0 when it did not say)
    completion_tokens: int = 0


class Provider(Protocol):
    """One endpoint of one model. `chat` streams pieces to `on_delta` and returns the whole.

    Messages are plain chat dicts, plus two neutral shapes for a tool round trip that each
    backend turns into its own wire format: `{"role": "assistant", "content": "",
    "tool_calls": [{"id", "name", "arguments": {...}}]}` and `{"role": "tool",
    "tool_call_id", "name", "content"}`. `ModelResult.tool_calls` uses the same
    `{"id", "name", "arguments"}` shape. A user turn may carry `"images": [{"media_type",
    "data" (base64)}]`, only for a model configured with `vision: true`. `num_ctx` is the
    context window the call was sized for (`models.window`): a backend that takes one per
    call (Ollama) is told it, the others ignore it.
    """

    url: str

    def chat(self, messages: list[dict[str, Any]], *, on_delta: OnDelta | None = None,
             cancel: threading.Event | None = None,
             tools: list[dict[str, Any]] | None = None,
             num_ctx: int | None = None) -> ModelResult: ...

    def card(self) -> ModelCard:
        """What the model says about itself (`models.card`); an empty card where the API has
        no way to ask. May do I/O: the pool calls it off the message's path."""
        ...

    def close(self) -> None:
        """Close the client's pooled connections."""
        ...

    def embed(self, texts: list[str], *, timeout: float | None = None) -> list[list[float]]:
        """One embedding vector per text, in order (an embedding model's endpoint)."""
        ...
