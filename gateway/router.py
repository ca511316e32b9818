"""Which way a message goes. Pure: no I/O, the same text always takes the same route.

Order (documented in the README): an explicit command (`/reset`, `/new`, `/help`, or a skill's
`/command`), then plain chat with the model.
"""

from __future__ import annotations

from dataclasses import dataclass

BUILTIN_COMMANDS = {
    "reset": "start a fresh conversation",
    "new": "start a fresh conversation",
    "help": "list what I can do",
}


@dataclass(frozen=True)
class Route:
    kind: str  # "command" | "chat"
    name: str
    args: str
    reason: str


def route(text: str) -> Route:
    stripped = text.strip()
    if stripped.startswith("/") and len(stripped) > 1:
        word, _, rest = stripped[1:].partition(" ")
        name = word.lower()
        if name in BUILTIN_COMMANDS:
            return Route("command", name, rest.strip(), f"explicit command /{name}")
    return Route("chat", "model", stripped, "no command matched: plain chat")


def help_text() -> str:
    lines = ["Commands:"] + [f"/{name} - {what}" for name, what in BUILTIN_COMMANDS.items()]
    lines.append("Anything else goes to the model.")
    return "\n".join(lines)
