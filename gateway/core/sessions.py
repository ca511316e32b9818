"""Conversations: which session a message belongs to, and the turns it remembers.

A session is keyed by (channel, chat), lives in the store (so it survives a restart) and ends
after the policy's idle time-out (`gateway.session_timeout`) or on `/reset`. The order in
which one chat's messages are answered is `gateway.core.state.ChatOrder`'s job.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from gateway.core.state import LocalSessionCache, SessionCache
from gateway.core.store import SessionRow, Store

HISTORY_TURNS = 50  # the most turns a session keeps in memory for the model


@dataclass(frozen=True)
class Session:
    id: str
    channel: str
    chat: str
    fresh: bool


@dataclass(frozen=True)
class SessionPolicy:
    """From the settings snapshot: the idle time-out and how much history to keep in memory
    (more than the context budget can send, see `gateway.core.settings`)."""

    timeout: float = 1800.0
    history_chars: int = 32_000


class SessionManager:
    """Sessions and their recent turns, read from the store once and then kept in a cache.

    The store stays the truth (it is written on every answer, so a restart loses nothing);
    the cache only saves the two reads per message that would otherwise repeat it. The cache
    is per process (`gateway.core.state`): only this process writes these sessions.
    """

    def __init__(self, store: Store, cache: SessionCache | None = None,
                 clock: Callable[[], float] = time.time,
                 history_turns: int = HISTORY_TURNS) -> None:
        self.store = store
        self.cache = cache or LocalSessionCache()
        self.clock = clock
        self.history_turns = history_turns

    def open(self, channel: str, chat: str, policy: SessionPolicy) -> Session:
        """The chat's current session, or a new one if there is none or it went idle."""
        now = self.clock()
        key = (channel, chat)
        known = self.cache.active(key)
        if known is None:
            row = self.store.latest_session(channel, chat)
            known = (row.id, row.last_active) if row else None
        if known and is_live(known[1], now, policy):
            self.cache.set_active(key, known[0], now)
            return Session(known[0], channel, chat, fresh=False)
        return self.reset(channel, chat)

    def reset(self, channel: str, chat: str) -> Session:
        session_id = "s" + secrets.token_hex(8)
        now = self.clock()
        self.store.start_session(session_id, channel, chat, now)
        self.cache.set_active((channel, chat), session_id, now)
        self.cache.set_turns(session_id, deque(maxlen=self.history_turns))
        return Session(session_id, channel, chat, fresh=True)

    def history(self, session_id: str, policy: SessionPolicy) -> list[tuple[str, str]]:
        """The session's recent (user, assistant) turns, oldest first."""
        turns = self.cache.turns(session_id)
        if turns is None:
            turns = deque(self.store.history(session_id, self.history_turns),
                          maxlen=self.history_turns)
            _cut(turns, policy.history_chars)
            self.cache.set_turns(session_id, turns)
        return list(turns)

    def remember_turn(self, session_id: str, user: str, assistant: str,
                      policy: SessionPolicy) -> None:
        """Called with each answered turn (the store records it in the same message's finish)."""
        turns = self.cache.turns(session_id)
        if turns is not None:
            turns.append((user, assistant))
            _cut(turns, policy.history_chars)


def is_live(last_active: float, now: float, policy: SessionPolicy) -> bool:
    """Whether a session last active at `last_active` is still the one a new message joins."""
    return now - last_active <= policy.timeout


def continued_session(store: Store, channel: str, chat: str, policy: SessionPolicy,
                      now: float) -> SessionRow | None:
    """The session the chat's next message will continue, or None when it will start a fresh
    one (none open, or idle past the time-out): `SessionManager.open`'s choice, read from the
    store without opening anything (the console's chat shows that conversation again)."""
    row = store.latest_session(channel, chat)
    return row if row is not None and is_live(row.last_active, now, policy) else None


def _cut(turns: deque[tuple[str, str]], max_chars: int) -> None:
    """Drop the oldest turns until the rest fit in `max_chars` (the newest always stays)."""
    while len(turns) > 1 and sum(len(u) + len(a) for u, a in turns) > max_chars:
        turns.popleft()
