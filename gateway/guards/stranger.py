"""Strangers on chat platforms (the guide's `security.stranger_mode`, section 4.1).

A chat-platform channel is authenticated as the platform (its bot token), not as the person
writing; so each sender on it is checked here. Known senders pass: `security.allowlist`
(`"<channel>:<sender id>"`) and those approved in the store. Others, by mode:
- `verification_code`: the sender gets a 4-digit code and nothing of theirs reaches the model;
  the right code opens the way (or, with `security.require_approval`, waits for the owner's
  `moltbot pairing approve`). `security.max_code_attempts` wrong codes block the sender, and so
  does a code left past `security.code_expire`.
- `direct_block`: no reply at all; the message is logged, never answered.
- `open`: everyone passes.
A code goes only to the sender who asked (it is the reply to them), is stored hashed, compared
in constant time and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gateway.guards.chain import Allow, Caller, Challenge, Refuse, Verdict
from gateway.observe.audit import audit

log = logging.getLogger(__name__)

BLOCKED = Refuse("blocked", "")  # a blocked or unknown sender gets nothing back


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True)
class SenderRow:
    channel: str
    sender: str
    state: str
    code_hash: str | None = None
    code_expires_at: float | None = None
    attempts: int = 0
    updated_at: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.channel}:{self.sender}"


class SenderBook(Protocol):
    """Where senders' states are kept (the store)."""

    def sender(self, channel: str, sender: str) -> SenderRow | None: ...

    def put_sender(self, row: SenderRow) -> None: ...


class StrangerPolicy:
    name = "stranger"

    def __init__(self, store: SenderBook, *, mode: str, code_expire: float, max_attempts: int,
                 allowlist: frozenset[str], require_approval: bool,
                 chat_channels: frozenset[str], clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.mode = mode
        self.code_expire = code_expire
        self.max_attempts = max_attempts
        self.allowlist = allowlist
        self.require_approval = require_approval
        self.chat_channels = chat_channels
        self.clock = clock

    def check(self, caller: Caller, principal: str) -> Verdict:
        if caller.channel not in self.chat_channels or caller.text is None:
            return Allow()  # HTTP, WebSocket, the console: the token is the person
        if self.mode == "open" or f"{caller.channel}:{caller.sender}" in self.allowlist:
            return Allow()
        row = self.store.sender(caller.channel, caller.sender)
        if row is not None and row.state == "approved":
            return Allow()
        if row is not None and row.state == "blocked":
            return BLOCKED
        if self.mode == "direct_block":
            log.info("stranger %s:%s blocked (security.stranger_mode: direct_block)",
                     caller.channel, caller.sender)
            return BLOCKED
        if row is not None and row.state == "awaiting_owner":
            return Challenge("You are verified; the owner has not approved you yet.")
        if row is not None and row.state == "pending":
            return self._answer_to_code(row, caller.text.strip())
        return self._new_code(caller)

    def _new_code(self, caller: Caller) -> Challenge:
        code = f"{secrets.randbelow(10_000):04d}"
        self._save(SenderRow(caller.channel, caller.sender, "pending", _digest(code),
                             self.clock() + self.code_expire))
        log.info("stranger %s:%s was sent a verification code", caller.channel, caller.sender)
        return Challenge(f"Hello! This assistant answers people it knows. Reply with the code "
                         f"{code} within {self.code_expire / 60:g} minutes to continue.")

    def _answer_to_code(self, row: SenderRow, text: str) -> Verdict:
        if self.clock() > (row.code_expires_at or 0):
            self._save(SenderRow(row.channel, row.sender, "blocked"))
            log.info("stranger %s left the code unanswered past security.code_expire: blocked",
                     row.key)
            return BLOCKED
        if hmac.compare_digest(_digest(text), row.code_hash or ""):
            state = "awaiting_owner" if self.require_approval else "approved"
            self._save(SenderRow(row.channel, row.sender, state))
            log.info("stranger %s verified (%s)", row.key, state)
            if self.require_approval:
                return Challenge("Thank you: the owner will approve you shortly.")
            return Challenge("Thank you, you are verified: send your message again.")
        attempts = row.attempts + 1
        if attempts >= self.max_attempts:
            self._save(SenderRow(row.channel, row.sender, "blocked"))
            log.info("stranger %s blocked after %d wrong codes", row.key, attempts)
            return Challenge("That code is not right either: you are blocked.")
        self._save(SenderRow(row.channel, row.sender, "pending", row.code_hash,
                             row.code_expires_at, attempts))
        return Challenge(f"That code is not right; {self.max_attempts - attempts} "
                         "tries left.")

    def _save(self, row: SenderRow) -> None:
        if row.state in ("approved", "awaiting_owner", "blocked"):
            audit(f"pairing.{row.state}", actor="stranger policy", sender=row.key)
        self.store.put_sender(SenderRow(row.channel, row.sender, row.state, row.code_hash,
                                        row.code_expires_at, row.attempts, self.clock()))
