"""`Skill`, `@context.handle` and `@context.schedule`: the decorators only attach metadata; the
loader collects it.

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
SCHEDULES = "__moltbot_schedules__"
_WORD = re.compile(r"^[A-Za-z0-9_\-]+$")
HANDLE_ARGUMENTS = ("intent", "keywords", "command", "description", "timeout")


class HandlerDefinitionError(TypeError, ValueError):
    """`@context.handle(...)` was given an argument it cannot use; the message says the fix.

    Both a TypeError (what Python raises for a wrong call) and a ValueError (what a bad
    intent raised before), so code that caught either still does.
    """


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


@dataclass(frozen=True)
class ScheduleSpec:
    """When the gateway runs a function on its own, and where its reply goes: `cron` is read
    in `gateway.timezone`; the reply goes to `chat` on push channel `channel` through the
    outbox; `text` is the `msg["text"]` the function gets."""

    cron: str
    channel: str
    chat: str
    text: str = ""


class SendError(Exception):
    """`context.send(...)` could not store the message; `str(e)` says what to fix (an unknown
    channel or chat, a channel that cannot send, the chat's limit reached)."""


class Skill:
    """Base class for a skill: subclass it, decorate methods with `@context.handle(...)`.

    The loader instantiates each subclass once, with no arguments, when the file loads.
    """


class _Context:
    """`context.handle` marks handlers; inside a running skill, `context.tool`, `context.ask`
    and `context.send` reach the gateway's tools, model and outbox (the skill host installs
    `runtime`)."""

    runtime: Any = None

    def tool(self, name: str, /, **arguments: Any) -> str:
        """Call a tool (`files`, `command`, `http`) under the workspace's config.yaml limits,
        or an MCP server's tool as `<server>.<tool>` (`context.tool("clock.now")`). `name` is
        positional only, so a tool may take an argument called `name` too."""
        return self._runtime().tool(name, arguments)

    def ask(self, prompt: str | list[dict[str, str]]) -> str:
        """Ask the configured chat model; returns its whole reply."""
        return str(self._runtime().ask(prompt))

    def send(self, channel: str, chat: str, text: str, to: str | None = None,
             files: Sequence[str] | None = None) -> str:
        """Send a message to `chat` on a push channel (e.g. `enterprise_im`), not only to
        the sender: it is stored in the gateway's outbox before this returns, then sent
        (retried if the platform is down, sent after a restart). `to` names a person in the
        chat, `files` are workspace paths. Returns the outbound id; raises `SendError`
        saying what to fix (unknown channel or chat, a channel that cannot send, too many
        messages for the chat)."""
        return str(self._runtime().send(channel, chat, text, to, list(files or ())))

    def _runtime(self) -> Any:
        if self.runtime is None:
            raise RuntimeError("context.tool/context.ask/context.send work only inside a "
                               "skill that Moltbot is running")
        return self.runtime

    def schedule(self, cron: str, *, channel: str, chat: str, text: str = "") -> Any:
        """Run the decorated function at the times `cron` names ("0 9 * * 1-5": weekdays at
        09:00, in the gateway's `gateway.timezone`) and send what it returns to `chat` on the
        push channel `channel` (e.g. "telegram"). It gets a message like a handler does, with
        `msg["schedule"]` = {"id", "cron", "due"} and `msg["text"]` = `text`. Several
        schedules on one function are fine. Wrong arguments raise `HandlerDefinitionError`
        at import."""
        from croniter import croniter  # type: ignore[import-untyped]

        if not isinstance(cron, str) or len(cron.split()) != 5 or not croniter.is_valid(cron):
            raise HandlerDefinitionError(
                f"cron must be five fields (minute hour day month weekday), e.g. "
                f"\"0 9 * * 1-5\" for weekdays at 09:00, got {cron!r}")
        for name, value in (("channel", channel), ("chat", chat)):
            if not isinstance(value, str) or not value.strip():
                raise HandlerDefinitionError(
                    f"{name} must name where the reply goes, e.g. channel=\"telegram\", "
                    f"chat=\"123456\", got {value!r}")
        if not isinstance(text, str):
            raise HandlerDefinitionError(f"text must be a string, got {text!r}")
        spec = ScheduleSpec(" ".join(cron.split()), channel, str(chat), text)

        def mark(func: F) -> F:
            setattr(func, SCHEDULES, (*getattr(func, SCHEDULES, ()), spec))
            return func

        return mark

    def handle(self, intent: str | Callable[..., Any] | None = None, *,
               keywords: Sequence[str] = (), command: str | None = None,
               description: str = "", timeout: float | None = None,
               **unknown: Any) -> Any:
        """Mark a function or method as a handler; see `HandlerSpec` for the fields.

        `intent` may be left out: it is then the command word (`command="/boom"` gives
        `boom`), or else the function's name. A bare `@context.handle` without parentheses
        works too. Wrong arguments raise `HandlerDefinitionError` at import, naming the
        argument and what it should be, because that is the message the skill's author sees
        in `moltbot skills list`.
        """
        if unknown:
            raise HandlerDefinitionError(
                f"@context.handle got unknown argument(s) {', '.join(sorted(unknown))}; it "
                f"takes {', '.join(HANDLE_ARGUMENTS)}")
        if callable(intent):  # bare @context.handle
            return self.handle()(intent)
        if intent is not None and (not isinstance(intent, str) or not _WORD.match(intent)):
            raise HandlerDefinitionError(
                f"intent must be a word like 'faq_query' (letters, digits, _ or -), got "
                f"{intent!r}; or leave it out to use the command word or function name")
        if command is not None and (not isinstance(command, str)
                                    or not _WORD.match(command.lstrip("/"))):
            raise HandlerDefinitionError(f"command must look like '/faq', got {command!r}")
        if not isinstance(keywords, list | tuple | set | frozenset) \
                or not all(isinstance(k, str) for k in keywords):
            raise HandlerDefinitionError(
                f"keywords must be a list of strings, e.g. keywords=[\"faq\", \"常见问题\"], "
                f"got {keywords!r}")
        if timeout is not None and (isinstance(timeout, bool)
                                    or not isinstance(timeout, int | float) or timeout <= 0):
            raise HandlerDefinitionError(f"timeout must be seconds above 0, got {timeout!r}")
        words = tuple(k.strip().lower() for k in keywords if k.strip())

        def mark(func: F) -> F:
            name = intent or (command.lstrip("/") if command else func.__name__)
            if not _WORD.match(name):
                raise HandlerDefinitionError(
                    f"cannot use the function name {name!r} as the intent (only letters, "
                    f"digits, _ and -); give one: @context.handle(intent=\"my_intent\")")
            setattr(func, ATTRIBUTE, HandlerSpec(name, words, command, description, timeout))
            return func

        return mark


context = _Context()
