"""How much to send a model and the `num_ctx` to tell it: its card, its config, the budget.

The prompt budget is `gateway.context_tokens`, cut to what the model takes once its reply
(`max_tokens`) and a margin for our estimate's error have room. `num_ctx`, sent with every
Ollama call, is what that budget needs (prompt + reply + margin, never more than the model
takes): Ollama's default (2048 or 4096) would otherwise cut the start of the prompt, the system
message first, without a word; the model's trained length (often 128k) would ask for a KV cache
of many GB.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.models.card import ModelCard
from gateway.models.options import ModelConfig

MARGIN = 8  # our token estimate may be 1/8 under the model's count: num_ctx keeps that room
MIN_PROMPT = 256
STEP = 256  # num_ctx is rounded up to this


@dataclass(frozen=True)
class Window:
    """What one model is sent: the prompt budget, `num_ctx`, whether tools go, and why."""

    model: str  # the name the backend knows
    prompt_tokens: int
    num_ctx: int | None  # None: nothing is known to size it by (a pool built without config)
    context: int | None  # what the model takes (None: it did not say and config does not)
    tools: bool
    source: str  # where `context` was learnt
    reply: int = 0  # max_tokens: the room num_ctx keeps for the answer
    room: int = 0  # the most the model could be sent (its context less reply and margin)
    notes: tuple[str, ...] = ()  # what was cut, what was not read, and why

    def describe(self) -> str:
        """"context 4096 (llama3.2:1b, from /api/show)" for the trace and doctor."""
        size = f"context {self.context}" if self.context else "context unknown"
        return f"{size} ({self.model}, {self.source}), num_ctx {self.num_ctx}"


def size_window(name: str, cfg: ModelConfig, cards: Sequence[ModelCard],
                context_tokens: int) -> Window:
    """The window for model `name` over its endpoints' `cards` (the smallest one counts: a
    call may fail over to any of them)."""
    model = cfg.model or name
    notes = [f"{model}: {c.failed}, so config values are used" for c in cards if c.failed]
    read = [c for c in cards if not c.failed]
    windows = [w for c in read if (w := c.window)]
    if cfg.context_length:
        context, source = cfg.context_length, f"models.{name}.context_length"
    elif windows:
        context, source = min(windows), "from /api/show"
    else:
        context, source = None, "from config"
    said = [c.tools for c in read if c.tools is not None]
    # a model that did not say is offered tools, as before cards were read
    tools = cfg.tools if cfg.tools is not None else all(said)
    if not tools:
        notes.append(f"tools not offered: {model} cannot call tools" if cfg.tools is None
                     else f"tools not offered: models.{name}.tools is false")
    reply = cfg.max_tokens
    prompt = room = context_tokens
    if context:
        room = (context - reply) * MARGIN // (MARGIN + 1)
        prompt = max(MIN_PROMPT, min(context_tokens, room))
        if room < MIN_PROMPT:
            notes.append(f"{model} takes {context} tokens: max_tokens {reply} leaves no room "
                         f"for the conversation; lower models.{name}.max_tokens")
        elif prompt < context_tokens:
            notes.append(f"context cut to {prompt} tokens: gateway.context_tokens is "
                         f"{context_tokens} but {model} takes {context} (with {reply} for "
                         "its reply)")
    num_ctx = -(-(prompt + reply + prompt // MARGIN) // STEP) * STEP
    if context:
        num_ctx = min(num_ctx, context)
    return Window(model, prompt, num_ctx, context, tools, source, reply, max(prompt, room),
                  tuple(notes))


def unsized(name: str, context_tokens: int) -> Window:
    """A pool built without its config (tests, tools): the budget as is, no num_ctx."""
    return Window(name, context_tokens, None, None, True, "no config")
