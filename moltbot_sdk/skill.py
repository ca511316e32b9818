"""`Skill` and `@context.handle`: the decorator only attaches metadata; the loader collects it.

Nothing runs at decoration time, so importing a skill module has no side effects beyond the
module's own code, and the same function can be inspected, tested and called directly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
ATTRIBUTE = "__moltbot_handler__"
_WORD = re.compile(r"^[A-Za-z0-9_\-]+$")


@dataclass(frozen=True)
class HandlerSpec:
    """How a handler is reached: `/command`, keywords in the text, or the model choosing it."""

    intent: str
    keywords: tuple[str, ...] = ()
    command: str | None = None
    description: str = ""
    timeout: float | None = None

    def commands(self) -> tuple[str, ...]:
        """The command words (without `/`) that reach this handler: its own and `/intent`."""
        words = [self.intent]
        if self.command:
            words.insert(0, self.command.lstrip("/"))
        return tuple(dict.fromkeys(w.lower() for w in words))


class Skill:
    """Base class for a skill: subclass it, decorate methods with `@context.handle(...)`.

    The loader instantiates each subclass once, with no arguments, when the file loads.
    """


class _Context:
    """`context.handle` marks handlers; inside a running skill, `context.tool` and
    `context.ask` reach the gateway's tools and model (the skill host installs `runtime`)."""

    runtime: Any = None

    def tool(self, name: str, **arguments: Any) -> str:
        """Call a tool (`files`, `command`, `http`) under the workspace's config.yaml limits."""
        return self._runtime().tool(name, arguments)

    def ask(self, prompt: str | list[dict[str, str]]) -> str:
        """Ask the configured chat model; returns its whole reply."""
        return str(self._runtime().ask(prompt))

    def _runtime(self) -> Any:
        if self.runtime is None:
            raise RuntimeError("context.tool/context.ask work only inside a skill that "
                               "Moltbot is running")
        return self.runtime

    def handle(self, intent: str, *, keywords: Sequence[str] = (), command: str | None = None,
               description: str = "", timeout: float | None = None) -> Callable[[F], F]:
        """Mark a function or method as a handler; see `HandlerSpec` for the fields."""
        if not intent or not _WORD.match(intent):
            raise ValueError(f"intent must be a word like 'faq_query', got {intent!r}")
        if command is not None and not _WORD.match(command.lstrip("/")):
            raise ValueError(f"command must look like '/faq', got {command!r}")
        spec = HandlerSpec(intent, tuple(k.strip().lower() for k in keywords if k.strip()),
                           command, description, timeout)

        def mark(func: F) -> F:
            setattr(func, ATTRIBUTE, spec)
            return func

        return mark


context = _Context()
