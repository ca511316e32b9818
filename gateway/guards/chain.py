"""The guard chain: guards run in a fixed order; the first refusal or challenge ends the way.

A verdict is one of three things:
- `Allow`: go on (the authentication guard names the principal it found);
- `Refuse`: stop with an error code from `gateway.core.message.ERROR_CODES`, a sentence for the
  caller and, for limits, how many seconds to wait;
- `Challenge`: stop and send the caller this text instead of an answer (stranger verification
  sends a code this way); nothing of the caller's reaches the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

# The documented order; `GuardChain` refuses a list that breaks it.
ORDER = ("address", "rate_limit", "authentication", "shared_limit", "stranger")


@dataclass(frozen=True)
class Caller:
    """Who is at the door. `text` is None for entries that are not a message (console pages,
    a WebSocket handshake); the credential is never shown in a repr or a log. `browser` is
    True when a web page sent the request (it carried an `Origin` header): any site the owner
    visits can make their browser knock, so its bad credentials are counted apart from the
    owner's own programs (see `gateway.guards.lockout`)."""

    channel: str
    peer: str = ""
    credential: str | None = field(default=None, repr=False)
    sender: str = ""
    text: str | None = None
    browser: bool = False


@dataclass(frozen=True)
class Allow:
    principal: str = ""  # set by the guard that identified the caller
    passed: tuple[str, ...] = ()  # filled in by the chain, for the trace
    # which credential proved the principal (a token's id, never the token): several
    # tokens share a name, and replays and the audit log must tell them apart
    credential: str = ""


@dataclass(frozen=True)
class Refuse:
    code: str
    message: str
    retry_after: float | None = None
    guard: str = ""


@dataclass(frozen=True)
class Challenge:
    text: str
    guard: str = ""


Verdict = Allow | Refuse | Challenge


class Guard(Protocol):
    name: str  # one of ORDER

    def check(self, caller: Caller, principal: str) -> Verdict: ...


NOT_SIGNED_IN = Refuse("unauthorized", "Sign in first: send `Authorization: Bearer <token>` "
                       "(create a token with `moltbot dashboard --token-gen`).")


class GuardChain:
    def __init__(self, guards: Sequence[Guard]) -> None:
        positions = [ORDER.index(g.name) for g in guards]
        if positions != sorted(positions):
            raise ValueError(f"guards must run in the order {' -> '.join(ORDER)}, "
                             f"got {[g.name for g in guards]}")
        self.guards = tuple(guards)

    def admit(self, caller: Caller) -> Verdict:
        """Run every guard; an `Allow` carries the principal and the names of the guards passed.

        Closed by default: when no guard named a principal the caller is refused.
        """
        principal = credential = ""
        passed: list[str] = []
        for guard in self.guards:
            verdict = guard.check(caller, principal)
            if isinstance(verdict, Refuse | Challenge):
                return verdict if verdict.guard else _named(verdict, guard.name)
            principal = verdict.principal or principal
            credential = verdict.credential or credential
            passed.append(guard.name)
        if not principal:
            return NOT_SIGNED_IN
        return Allow(principal, tuple(passed), credential)


def _named(verdict: Refuse | Challenge, guard: str) -> Refuse | Challenge:
    if isinstance(verdict, Refuse):
        return Refuse(verdict.code, verdict.message, verdict.retry_after, guard)
    return Challenge(verdict.text, guard)
