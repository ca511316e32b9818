"""What the model sees: the system prompt, as much recent conversation as fits, the question.

Tokens are estimated (`gateway.knowledge.estimate_tokens`), not counted with the model's
tokenizer, which we do not have for every backend. The newest turns win.
"""

from __future__ import annotations

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
