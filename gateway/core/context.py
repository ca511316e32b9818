"""What the model sees: the system prompt, as much recent conversation as fits, the question.

The conversation is the session's stored turns, or, for a client that keeps its own and sends
it whole (`message.ClientContext`), that client's messages. Tokens are estimated
(`gateway.knowledge.estimate_tokens`), not counted with the model's tokenizer, which we do not
have for every backend. The newest turns win.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.knowledge import estimate_tokens

SYSTEM_PROMPT = ("You are Moltbot, the user's private assistant running on their own computer. "
                 "Answer clearly and briefly, in the language the user writes in.")


def build_messages(history: list[tuple[str, str]], text: str, budget: int,
                   system: str = SYSTEM_PROMPT) -> list[dict[str, str]]:
    """Chat messages for the model, dropping the oldest turns past `budget` tokens."""
    used = estimate_tokens(system) + estimate_tokens(text)
    kept: list[tuple[str, str]] = []
    for user, assistant in reversed(history):
        cost = estimate_tokens(user) + estimate_tokens(assistant)
        if used + cost > budget:
            break
        kept.append((user, assistant))
        used += cost
    messages = [{"role": "system", "content": system}]
    for user, assistant in reversed(kept):
        messages += [{"role": "user", "content": user},
                     {"role": "assistant", "content": assistant}]
    messages.append({"role": "user", "content": text})
    return messages


def fit_client_messages(given: Sequence[dict[str, Any]], budget: int,
                        system: str = SYSTEM_PROMPT) -> tuple[list[dict[str, Any]], int]:
    """A client's own conversation for the model (`message.ClientContext`), in the order it
    was sent: every system message it holds (ours, `system`, only when it has none), then as
    many of its other messages as fit in `budget` tokens, the newest first and the last one
    always. A tool's answer never stays without the call it answers. Returns the messages
    and how many of the client's were left out."""
    systems = [m for m in given if m.get("role") == "system"]
    used = sum(_cost(m) for m in systems) if systems else estimate_tokens(system)
    others = [i for i, m in enumerate(given) if m.get("role") != "system"]
    kept: set[int] = set()
    for i in reversed(others):
        cost = _cost(given[i])
        if kept and used + cost > budget:
            break
        kept.add(i)
        used += cost
    first = min(kept, default=len(given))
    while given[first:] and given[first].get("role") == "tool" and len(kept) > 1:
        kept.discard(first)  # its call was left out: a lone answer confuses every backend
        first = min(kept)
    messages = [dict(m) for i, m in enumerate(given) if i in kept or m.get("role") == "system"]
    if not systems:
        messages.insert(0, {"role": "system", "content": system})
    return messages, len(others) - len(kept)


def _cost(message: dict[str, Any]) -> int:
    calls = message.get("tool_calls") or []
    return estimate_tokens(str(message.get("content") or "")) + sum(
        estimate_tokens(f"{c.get('name')} {c.get('arguments')}") for c in calls)
