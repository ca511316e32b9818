"""What the model sees: the system prompt, as much recent conversation as fits, the question.

Tokens are estimated, not counted with the model's tokenizer (which we do not have for every
backend): one per CJK character, one per four other characters. The newest turns win.
"""

from __future__ import annotations

import re

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uff00-\uffef]")

SYSTEM_PROMPT = ("You are Moltbot, the user's private assistant running on their own computer. "
                 "Answer clearly and briefly, in the language the user writes in.")


def estimate_tokens(text: str) -> int:
    cjk = len(_CJK.findall(text))
    return cjk + (len(text) - cjk + 3) // 4 + 1


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
