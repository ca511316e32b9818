"""Which way a message goes. Pure: no I/O, the same text and skills always take the same route.

Order (documented in the README):
1. an explicit command: `/reset`, `/new`, `/help`, or a skill's `/command` or `/intent`
   (the command word is not part of the text the skill receives);
2. a skill keyword found in the text (the longest matching keyword wins);
3. plain chat with the model, which is offered the skills as tools and may choose one.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.skills.catalog import SkillSet
from gateway.skills.handlers import SkillHandler

BUILTIN_COMMANDS = {
    "reset": "start a fresh conversation",
    "new": "start a fresh conversation",
    "help": "list what I can do",
}


@dataclass(frozen=True)
class Route:
    kind: str  # "command" | "skill" | "chat"
    name: str
    args: str
    reason: str
    handler: SkillHandler | None = None


def route(text: str, skills: SkillSet | None = None) -> Route:
    skills = skills or SkillSet()
    stripped = text.strip()
    if stripped.startswith("/") and len(stripped) > 1:
        word, _, rest = stripped[1:].partition(" ")
        name = word.lower()
        if name in BUILTIN_COMMANDS:
            return Route("command", name, rest.strip(), f"explicit command /{name}")
        handler = skills.by_command(name)
        if handler:
            return Route("skill", handler.intent, rest.strip(), f"explicit command /{name}",
                         handler)
    found = skills.by_keyword(stripped)
    if found:
        handler, keyword = found
        return Route("skill", handler.intent, stripped, f"keyword {keyword!r}", handler)
    return Route("chat", "model", stripped, "no command or keyword matched: plain chat")


def help_text(skills: SkillSet | None = None) -> str:
    lines = ["Commands:"] + [f"/{name} - {what}" for name, what in BUILTIN_COMMANDS.items()]
    for handler in (skills or SkillSet()).handlers:
        lines.append(f"/{handler.spec.commands()[0]} - "
                     f"{handler.spec.description or handler.intent}")
    lines.append("Anything else goes to the model.")
    return "\n".join(lines)
