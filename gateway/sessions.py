"""Conversations: which session a message belongs to, and the order messages are answered in.

A session is keyed by (channel, chat), lives in the store (so it survives a restart) and ends
after `gateway.session_timeout` of silence or on `/reset`. Messages of one chat are answered one
at a time in arrival order, so a quick second message never sees half of the first one's
context; different chats never wait for each other.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from gateway.store import Store


@dataclass(frozen=True)
class Session:
    id: str
    channel: str
    chat: str
    fresh: bool


class SessionManager:
    """Sessions and their recent turns, read from the store once and then kept in memory.

    The store stays the truth (it is written on every answer, so a restart loses nothing);
    the memory copy only saves the two reads per message that would otherwise repeat it.
    Only this process writes sessions, so the copy cannot go stale. Memory is bounded: the
    turns of at most `CACHED_HISTORIES` sessions, each cut to `history_chars` characters (the
    composition root sets it well above what `gateway.context_tokens` can send).
    """

    CACHED_SESSIONS = 4096
    CACHED_HISTORIES = 512

    def __init__(self, store: Store, timeout: float,
                 clock: Callable[[], float] = time.time, history_turns: int = 50,
                 history_chars: int = 32_000) -> None:
        self.store = store
        self.history_chars = history_chars
        self.timeout = timeout
        self.clock = clock
        self.history_turns = history_turns
        self._active: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()
        self._turns: OrderedDict[str, deque[tuple[str, str]]] = OrderedDict()
        self._lock = threading.Lock()

    def open(self, channel: str, chat: str) -> Session:
        """The chat's current session, or a new one if there is none or it went idle."""
        now = self.clock()
        key = (channel, chat)
        with self._lock:
            known = self._active.get(key)
        if known is None:
            row = self.store.latest_session(channel, chat)
            known = (row.id, row.last_active) if row else None
        if known and now - known[1] <= self.timeout:
            self._remember(key, known[0], now)
            return Session(known[0], channel, chat, fresh=False)
        return self.reset(channel, chat)

    def reset(self, channel: str, chat: str) -> Session:
        session_id = "s" + secrets.token_hex(8)
        now = self.clock()
        self.store.start_session(session_id, channel, chat, now)
        self._remember((channel, chat), session_id, now)
        with self._lock:
            self._turns[session_id] = deque(maxlen=self.history_turns)
            self._trim(self._turns, self.CACHED_HISTORIES)
        return Session(session_id, channel, chat, fresh=True)

    def history(self, session_id: str) -> list[tuple[str, str]]:
        """The session's recent (user, assistant) turns, oldest first."""
        with self._lock:
            turns = self._turns.get(session_id)
            if turns is not None:
                self._turns.move_to_end(session_id)
                return list(turns)
        loaded = deque(self.store.history(session_id, self.history_turns),
                       maxlen=self.history_turns)
        _cut(loaded, self.history_chars)
        with self._lock:
            self._turns[session_id] = loaded
            self._trim(self._turns, self.CACHED_HISTORIES)
        return list(loaded)

    def remember_turn(self, session_id: str, user: str, assistant: str) -> None:
        """Called with each answered turn (the store records it in the same message's finish)."""
        with self._lock:
            turns = self._turns.get(session_id)
            if turns is not None:
                turns.append((user, assistant))
                _cut(turns, self.history_chars)

    def _remember(self, key: tuple[str, str], session_id: str, now: float) -> None:
        with self._lock:
            self._active[key] = (session_id, now)
            self._active.move_to_end(key)
            self._trim(self._active, self.CACHED_SESSIONS)

    @staticmethod
    def _trim(cache: OrderedDict[Any, Any], size: int) -> None:
        while len(cache) > size:
            cache.popitem(last=False)


def _cut(turns: deque[tuple[str, str]], max_chars: int) -> None:
    """Drop the oldest turns until the rest fit in `max_chars` (the newest always stays)."""
    while len(turns) > 1 and sum(len(u) + len(a) for u, a in turns) > max_chars:
        turns.popleft()


class ChatQueue:
    """First come, first answered, per chat key; waiting costs nothing for other chats.

    Each arrival appends its own event to the chat's line and waits until it is at the front,
    which gives strict arrival order (a plain lock does not promise FIFO wake-ups).
    """

    def __init__(self) -> None:
        self._lines: dict[str, deque[threading.Event]] = {}
        self._guard = threading.Lock()

    @contextmanager
    def turn(self, key: str, timeout: float | None = None) -> Iterator[None]:
        mine = threading.Event()
        with self._guard:
            line = self._lines.setdefault(key, deque())
            line.append(mine)
            if line[0] is mine:
                mine.set()
        try:
            if not mine.wait(timeout):
                raise TimeoutError(f"waited {timeout}s for earlier messages of this chat")
            yield
        finally:
            with self._guard:
                line = self._lines[key]
                was_first = line[0] is mine
                line.remove(mine)
                if not line:
                    del self._lines[key]
                elif was_first:
                    line[0].set()

    def waiting(self) -> int:
        with self._guard:
            return sum(len(line) for line in self._lines.values())
