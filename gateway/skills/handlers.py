"""`SkillHandler`: one way a skill can be reached, whatever it is written in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from moltbot_sdk.skill import HandlerSpec, ScheduleSpec


@dataclass(frozen=True)
class SkillResult:
    text: str
    spans: list[dict[str, Any]] = field(default_factory=list)  # tool and model calls inside
    files: list[str] = field(default_factory=list)  # paths the skill answered with, unchecked


@dataclass(frozen=True)
class SkillHandler:
    """`call(msg)` answers or raises SkillError with a sentence for the sender."""

    spec: HandlerSpec
    source: str  # workspace-relative file, for errors and listings
    kind: str  # "python" | "script"
    call: Callable[[dict[str, Any]], SkillResult]

    @property
    def intent(self) -> str:
        return self.spec.intent

    def tool_spec(self) -> dict[str, Any]:
        """The skill offered to the model as a function it may call (its parameters are
        every skill's one shared declaration: read them, never edit them)."""
        return {"type": "function", "function": {
            "name": self.spec.intent,
            "description": self.spec.description or f"the {self.spec.intent} skill",
            "parameters": _SKILL_PARAMETERS}}


_SKILL_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {"text": {
    "type": "string", "description": "what the user asked, for this skill"}},
    "required": ["text"]}


@dataclass(frozen=True)
class ScheduledHandler:
    """A function a skill runs on a schedule (`@context.schedule`): `call(msg)` as above."""

    source: str
    function: str
    spec: ScheduleSpec
    call: Callable[[dict[str, Any]], SkillResult]

    @property
    def key(self) -> str:
        """`<file>#<function>`: how lists name it."""
        return f"{self.source}#{self.function}"
