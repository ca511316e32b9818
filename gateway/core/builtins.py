"""What the gateway itself answers and offers beside the user's skills: built-in slash commands
(`/remember`, `/remind`, ...) and tools made for the message's sender (the memory tool, the
reminder tool).

The parts that provide them (memory, reminders) sit above the core and are wired in by the
composition root (`gateway/server/app.py`), which hands the pipeline a `Builtins` and a new one
after a config reload. The core knows only this shape, so it never imports those parts. A
command or a tool gets the message it serves (who sent it, on which channel and chat) and the
settings snapshot the message started with, so one message never mixes two configs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from gateway.core.message import Message
from gateway.core.settings import Settings
from gateway.tools.base import Tool


class CommandError(ValueError):
    """A built-in command was used wrongly (`/remind` without a time); `str(e)` is the answer
    the sender gets, saying how to use it. Any other exception is a failure of the gateway."""


@dataclass(frozen=True)
class Command:
    """`/word args`: `run(msg, args, settings)` returns the answer's text."""

    word: str  # lower case, without the slash
    summary: str  # one line for /help
    run: Callable[[Message, str, Settings], str]


ToolsFor = Callable[[Message, Settings], Mapping[str, Tool]]
"""The tools the model may call while answering this message, by the name it calls them
(none for a sender who may not use them, such as an unverified stranger)."""


@dataclass(frozen=True)
class Builtins:
    commands: Mapping[str, Command] = field(default_factory=lambda: MappingProxyType({}))
    tool_makers: tuple[ToolsFor, ...] = ()

    @classmethod
    def of(cls, commands: list[Command], tool_makers: list[ToolsFor]) -> Builtins:
        return cls(MappingProxyType({c.word: c for c in commands}), tuple(tool_makers))

    def tools_for(self, msg: Message, settings: Settings) -> dict[str, Tool]:
        tools: dict[str, Tool] = {}
        for make in self.tool_makers:
            tools.update(make(msg, settings))
        return tools
