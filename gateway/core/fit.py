"""One chat turn fitted to its model's window (`models.window`): which tools are offered, how
much is left for documents, passages and history, and the `num_ctx` of each call.

Tool declarations are sent with every call and count against the budget. Ours (skills, then
`tools.offer_to_model` in the order it lists them, then the gateway's own such as memory) take
at most `1/TOOLS_SHARE` of what the model can take; the ones past that are left out, by name in
the trace: on a 4k model, a dozen tool declarations would otherwise leave no room for the
conversation. The share is of the model's room, not of `gateway.context_tokens`: a small
budget on a large model sends less history, not fewer tools. Skills go first: they are the
workspace's own features and their declarations are small. A client's own functions (the
OpenAI entry) are never dropped: the client asked for them; they count against the budget
like ours.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from gateway.knowledge import estimate_tokens
from gateway.models.window import MARGIN, MIN_PROMPT, STEP, Window

TOOLS_SHARE = 3
CARD_WAIT = 3.0  # seconds the first message to a model waits for its card, then config rules


@dataclass(frozen=True)
class TurnFit:
    window: Window
    offered: list[dict[str, Any]] = field(default_factory=list)  # tool declarations sent
    tool_tokens: int = 0
    left_out: tuple[str, ...] = ()  # ours, not offered for room

    @property
    def budget(self) -> int:
        """Tokens left for documents, knowledge passages and history once the tools are in."""
        return max(MIN_PROMPT, self.window.prompt_tokens - self.tool_tokens)

    def num_ctx_for(self, messages: Sequence[dict[str, Any]]) -> int | None:
        """The window's `num_ctx`, grown to hold `messages` (a tool's answers make a call
        larger than the turn was sized for), never past what the model takes."""
        if self.window.num_ctx is None:
            return None
        texts = [str(m.get("content") or "") for m in messages]
        most = self.tool_tokens + sum(map(len, texts)) + self.window.reply  # never < tokens
        if most + most // MARGIN <= self.window.num_ctx:
            return self.window.num_ctx  # the usual call: no need to estimate it
        need = self.tool_tokens + sum(map(estimate_tokens, texts)) + self.window.reply
        need = -(-(need + need // MARGIN) // STEP) * STEP
        grown = max(self.window.num_ctx, need)
        return min(grown, self.window.context) if self.window.context else grown

    def describe(self) -> str:
        """The trace's words for what was sent and what was not, and why."""
        names = ", ".join(t["function"]["name"] for t in self.offered)
        tools = (f"tools: {len(self.offered)} offered ({self.tool_tokens} tokens: {names})"
                 if self.offered else "tools: none offered")
        if self.left_out:
            tools += f", not offered for room: {', '.join(self.left_out)}"
        return "; ".join([self.window.describe(), tools, *self.window.notes])


def fit_turn(window: Window, ours: Sequence[dict[str, Any]],
             theirs: Sequence[dict[str, Any]] = ()) -> TurnFit:
    """Offer the client's functions whole and as many of `ours`, in order, as the tools'
    share of the budget holds; none at all to a model that cannot call tools."""
    if not window.tools:
        return TurnFit(window)
    used = sum(_cost(t) for t in theirs)
    share = window.room // TOOLS_SHARE
    offered, left_out = [], []
    for spec in ours:
        cost = _cost(spec)
        if used + cost > share:
            left_out.append(spec["function"]["name"])
            continue
        offered.append(spec)
        used += cost
    return TurnFit(window, offered + list(theirs), used, tuple(left_out))


def _cost(spec: dict[str, Any]) -> int:
    """A declaration's tokens. The same declarations go with every message: a tool's
    parameters are its own object for its life (`Tool.spec`), so name, description and that
    object find the estimate without encoding the declaration again (the object is kept with
    it, so its id is never another's)."""
    function = spec["function"]
    parameters = function.get("parameters")
    key = (function.get("name", ""), function.get("description", ""), id(parameters))
    known = _COSTS.get(key)
    if known is not None and known[0] is parameters:
        return known[1]
    tokens = _declaration_tokens(json.dumps(spec, ensure_ascii=False))
    if len(_COSTS) >= KNOWN_DECLARATIONS:
        _COSTS.clear()
    _COSTS[key] = (parameters, tokens)
    return tokens


KNOWN_DECLARATIONS = 512
_COSTS: dict[tuple[str, str, int], tuple[object, int]] = {}


@lru_cache(maxsize=512)
def _declaration_tokens(declaration: str) -> int:
    """The same declarations go with every message: estimated once each."""
    return estimate_tokens(declaration)
