"""Memory as the sender meets it: `/remember <fact>`, `/memory`, `/forget <text|number|all>`,
the model's memory tool, and the facts recalled into the model's context.

These are the only ways a fact is written (with the console): nothing is stored from every
message on its own, nor from a skill's reply. A sender with no memory (see `memory.Owners`) is
told so and nothing is written.
"""

from __future__ import annotations

from gateway.assistant.memory import Memory, Owners
from gateway.assistant.memory_file import Fact
from gateway.assistant.memory_tool import MemoryTool
from gateway.core.builtins import Command, CommandError, ToolsFor
from gateway.core.message import Message
from gateway.core.settings import Settings
from gateway.knowledge import estimate_tokens
from gateway.observe.redact import redact
from gateway.tools.base import Tool

NO_MEMORY = ("I keep memory only for people this assistant knows (a verified sender or a "
             "token); nothing was saved.")
SWITCHED_OFF = "Memory is switched off (memory.enabled in config.yaml)."
RECALL_PROMPT = ("What the user told you earlier and asked you to keep (use it when it helps; "
                 "do not recite it unasked):")


class MemoryCommands:
    def __init__(self, memory: Memory, owners: Owners) -> None:
        self.memory = memory
        self.owners = owners

    def commands(self) -> list[Command]:
        return [Command("remember", "keep a fact about you: /remember my flight is on the 12th",
                        self.remember),
                Command("memory", "list what I remember about you", self.list),
                Command("forget", "erase facts: /forget <words or number>, /forget all",
                        self.forget)]

    def tool_makers(self) -> list[ToolsFor]:
        return [self.tools]

    def _owner(self, msg: Message, settings: Settings) -> str:
        if not settings.config.memory.enabled:
            raise CommandError(SWITCHED_OFF)
        owner = self.owners.owner_of(msg, settings)
        if owner is None:
            raise CommandError(NO_MEMORY)
        return owner

    def remember(self, msg: Message, args: str, settings: Settings) -> str:
        owner = self._owner(msg, settings)
        if not args.strip():
            raise CommandError("Say what to remember: /remember my flight is on the 12th")
        try:
            fact = self.memory.remember(owner, args, settings.config.memory.max_facts)
        except ValueError as e:
            raise CommandError(str(e)) from e
        return f"I'll remember: {fact.text}"

    def list(self, msg: Message, args: str, settings: Settings) -> str:
        owner = self._owner(msg, settings)
        facts = self.memory.facts(owner)
        if not facts:
            return "I remember nothing about you yet: /remember <fact> keeps one."
        lines = [f"{i}. {f.text}" + (f" ({f.day})" if f.day else "")
                 for i, f in enumerate(facts, 1)]
        return (f"What I remember about you (memory/{owner}.md):\n" + "\n".join(lines) +
                "\n/forget <words or number> erases one.")

    def forget(self, msg: Message, args: str, settings: Settings) -> str:
        owner = self._owner(msg, settings)
        what = " ".join(args.split())
        if not what:
            raise CommandError("Say what to forget: /forget <words or number> (see /memory), "
                               "or /forget all")
        if what.lower() in ("all", "all confirm"):
            count = len(self.memory.facts(owner))
            if not count:
                return "I remember nothing about you: there is nothing to forget."
            if what.lower() == "all":
                return (f"This erases all {count} facts I remember about you, for good. "
                        "To go on, send: /forget all confirm")
            self.memory.forget_all(owner)
            return f"Forgotten: all {count} facts. I remember nothing about you now."
        gone = self.memory.forget(owner, what)
        if not gone:
            return f"No fact I remember contains \"{what}\"; /memory lists them."
        return "Forgotten: " + "; ".join(f.text for f in gone)

    def tools(self, msg: Message, settings: Settings) -> dict[str, Tool]:
        owner = self.owners.owner_of(msg, settings)
        if owner is None:
            return {}
        return {"memory": MemoryTool(self.memory, owner, settings.config.memory.max_facts)}

    def recall(self, msg: Message, settings: Settings, text: str,
               budget: int) -> tuple[str, str]:
        """The facts for this message as a system message (within `budget` tokens) and the
        trace's detail ("recalled: ..."); ("", why not) when there are none."""
        owner = self.owners.owner_of(msg, settings)
        if owner is None:
            return "", "no memory for this sender" if settings.config.memory.enabled \
                else "memory is switched off"
        kept: list[Fact] = []
        used = 0  # the facts' own cost: the budget is theirs
        for found in self.memory.recall(owner, text, settings.config.memory.recall):
            cost = estimate_tokens(found.fact.line())
            if used + cost > budget:
                break
            kept.append(found.fact)
            used += cost
        if not kept:
            return "", f"nothing recalled (memory/{owner}.md)"
        detail = "recalled: " + "; ".join(f.text for f in kept) + f" (memory/{owner}.md)"
        return (RECALL_PROMPT + "\n" + "\n".join(f.line() for f in kept),
                redact(detail)[:500])
