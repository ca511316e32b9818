"""What memory gives plain chat, in the shape `gateway.core.chat.Memory` asks for: the owner's
facts recalled for a message (`memory_commands`) and the session's summary of older turns
(`summaries`). The composition root hands one to the `ChatResponder`."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.assistant.memory_commands import MemoryCommands
from gateway.assistant.summaries import Summaries
from gateway.core.message import Message
from gateway.core.settings import Settings
from gateway.core.turn import Turn
from gateway.models.pool import ModelPool


@dataclass(frozen=True)
class ChatMemory:
    facts: MemoryCommands
    summaries: Summaries

    def recall(self, msg: Message, settings: Settings, text: str,
               budget: int) -> tuple[str, str]:
        return self.facts.recall(msg, settings, text, budget)

    def summary(self, settings: Settings, session_id: str) -> tuple[str, str]:
        return self.summaries.summary(settings, session_id)

    def summarise(self, turn: Turn, pool: ModelPool, session_id: str,
                  left_out: list[tuple[str, str]]) -> str:
        return self.summaries.summarise(turn, pool, session_id, left_out)
