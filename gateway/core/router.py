"""Which way a message goes. Pure: no I/O, the same text and skills always take the same route.

Order (documented in the README):
1. an explicit command: `/reset`, `/new`, `/help`, a built-in of the gateway's parts
   (`/remember`, `/remind`, ...: `gateway.core.builtins`), or a skill's `/command` or `/intent`
   (the command word is not part of the text the skill receives); a `/word` that is none of
   these is answered with the list of commands, never sent to the model as if it were chat;
2. a skill keyword found in the text (the longest matching keyword wins);
3. plain chat with the model, which is offered the skills as tools and may choose one (the
   executor then runs that skill: `chosen_by_model`).

This module decides; `gateway.core.execute` carries the decision out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.skills.catalog import SkillSet
from gateway.skills.handlers import SkillHandler

_COMMAND_WORD = re.compile(r"^[A-Za-z0-9_\-]+$")  # `/usr/bin is ...` is not a command

BUILTIN_COMMANDS = {
    "reset": "start a fresh conversation",
    "new": "start a fresh conversation",
    "help": "list what I can do",
}


@dataclass(frozen=True)
class Route:
    kind: str  # "command" | "skill" | "chat"
    name: str  # the command, the skill's intent, or "model"
    args: str  # the text the command, skill or model gets
    reason: str
    handler: SkillHandler | None = None

    @property
    def label(self) -> str:
        """How the store and the trace name what answered: `skill:faq_query`, `chat:model`."""
        return f"{self.kind}:{self.name}"


def chosen_by_model(handler: SkillHandler, text: str) -> Route:
    """The route when the model, offered the skills as tools, picked one."""
    return Route("skill", handler.intent, text, "chosen by the model", handler)


def route(text: str, skills: SkillSet | None = None,
          builtins: Mapping[str, object] | frozenset[str] = frozenset()) -> Route:
    """`builtins`: the command words of the gateway's parts (they come before a skill's)."""
    skills = skills or SkillSet()
    stripped = text.strip()
    if stripped.startswith("/") and len(stripped) > 1:
        word, _, rest = stripped[1:].partition(" ")
        name = word.lower()
        if name in BUILTIN_COMMANDS or name in builtins:
            return Route("command", name, rest.strip(), f"explicit command /{name}")
        handler = skills.by_command(name)
        if handler:
            return Route("skill", handler.intent, rest.strip(), f"explicit command /{name}",
                         handler)
        if _COMMAND_WORD.match(word):
            return Route("command", "unknown", word, f"no command /{name}")
    found = skills.by_keyword(stripped)
    if found:
        handler, keyword = found
        return Route("skill", handler.intent, stripped, f"keyword {keyword!r}", handler)
    return Route("chat", "model", stripped, "no command or keyword matched: plain chat")


def help_text(skills: SkillSet | None = None, unknown: str = "",
              builtins: Mapping[str, str] | None = None) -> str:
    """/help's answer; with `unknown`, it starts by saying that no such command exists.
    `builtins`: the gateway's parts' commands, word -> summary."""
    lines = [f"There is no command /{unknown}."] if unknown else []
    lines += ["Commands:"] + [f"/{name} - {what}" for name, what in
                              {**BUILTIN_COMMANDS, **(builtins or {})}.items()]
    for handler in (skills or SkillSet()).handlers:
        lines.append(f"/{handler.spec.commands()[0]} - "
                     f"{handler.spec.description or handler.intent}")
    lines.append("Anything else goes to the model.")
    return "\n".join(lines)
