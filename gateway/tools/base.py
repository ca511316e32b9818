"""The contract every tool keeps, and the two errors a caller has to tell apart.

A tool is offered to the model as an OpenAI-style function (`spec()`) and called with the
decoded JSON arguments (`call()`). The caller can rely on this: `call()` either returns text
meant for the model or raises `ToolError`; `ToolRefused` means the tool's policy said no,
and its message names what was refused and what to change to allow it. Nothing else escapes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class ToolError(Exception):
    """A tool could not do what was asked (bad arguments, missing file, time-out, ...).

    `spans` are the steps it did before it failed (`Tool.traced`), for the trace."""

    def __init__(self, message: str = "", *, spans: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.spans = list(spans or [])


class ToolRefused(ToolError):
    """The tool's policy refused the request; the message says how to allow it.

    A subclass of ToolError so a caller that only reports errors to the model needs one
    `except`; a caller that audits refusals can catch this one first.
    """


class Tool(ABC):
    """A capability offered to skills and to the model through function calling.

    Subclasses set `name`, `description` and `parameters` (a JSON schema of the argument
    object) and implement `call`. `call` must validate its arguments itself: they come from
    a model and may have any shape.
    """

    name: str
    description: str
    parameters: dict[str, Any]

    @abstractmethod
    def call(self, arguments: dict[str, Any]) -> str:
        """Run the tool with the model's arguments and return text for the model."""

    def traced(self, arguments: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
        """`call`, with the steps it took as spans for the trace (`{"step", "offset_ms",
        "duration_ms", "outcome", "detail"}`, offsets from the call's start). A tool made of
        several steps (the browser) says them; the others have none."""
        return self.call(arguments), []

    def spec(self) -> dict[str, Any]:
        """The function declaration OpenAI and Ollama accept in their `tools` list. Its
        `parameters` are the tool's own, not a copy (built for every message: a deep copy
        cost more than the rest of the declaration): read them, never edit them."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


def check_arguments(tool: str, arguments: object) -> dict[str, Any]:
    """Return `arguments` if it is a JSON object, else raise a ToolError saying so."""
    if not isinstance(arguments, dict):
        raise ToolError(f"{tool}: arguments must be a JSON object, got {type(arguments).__name__}")
    return arguments


def get_str(tool: str, arguments: dict[str, Any], key: str, default: str | None = None) -> str:
    """Return the string argument `key`; missing uses `default`, and no default is an error."""
    value = arguments.get(key, default)
    if value is None:
        raise ToolError(f"{tool}: missing required argument {key!r}")
    if not isinstance(value, str):
        raise ToolError(f"{tool}: argument {key!r} must be a string, got {type(value).__name__}")
    return value
