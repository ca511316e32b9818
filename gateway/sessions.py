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
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from gateway.store import Store


@dataclass(frozen=True)
class Session:
    id: str
    channel: str
    chat: str
    fresh: bool


class SessionManager:
    def __init__(self, store: Store, timeout: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.timeout = timeout
        self.clock = clock

    def open(self, channel: str, chat: str) -> Session:
        """The chat's current session, or a new one if there is none or it went idle."""
        now = self.clock()
        row = self.store.latest_session(channel, chat)
        if row and now - row.last_active <= self.timeout:
            return Session(row.id, channel, chat, fresh=False)
        return self.reset(channel, chat)

    def reset(self, channel: str, chat: str) -> Session:
        session_id = "s" + secrets.token_hex(8)
        self.store.start_session(session_id, channel, chat, self.clock())
        return Session(session_id, channel, chat, fresh=True)


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
