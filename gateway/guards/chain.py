"""The guard chain: guards run in a fixed order; the first refusal ends the message's way."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.message import Message


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str
    status: int


class Guard(Protocol):
    name: str

    def check(self, msg: Message) -> Refusal | None: ...


class RequirePrincipal:
    """Refuse any message whose channel did not verify who sent it."""

    name = "auth"

    def check(self, msg: Message) -> Refusal | None:
        if msg.principal:
            return None
        return Refusal("unauthorized", "Sign in first: send a bearer token "
                       "(create one with `moltbot dashboard --token-gen`).", 401)


class GuardChain:
    def __init__(self, guards: Sequence[Guard]) -> None:
        self.guards = tuple(guards)

    def check(self, msg: Message) -> tuple[str, Refusal | None]:
        """Returns the names of the guards passed (for the trace) and the refusal, if any."""
        passed: list[str] = []
        for guard in self.guards:
            refusal = guard.check(msg)
            if refusal:
                return ",".join(passed), refusal
            passed.append(guard.name)
        return ",".join(passed), None
