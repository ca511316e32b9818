"""State that lives in one gateway process's memory, behind small interfaces.

Each interface below has one in-memory implementation today, and each is *per process*: two
gateway processes (`gateway.worker_processes` > 1, not supported yet) would each have their own
and would not see each other's. The performance issue adds shared implementations (SQLite or
Redis) behind the same interfaces; nothing outside this module may assume which one it has.

- `InFlight`: messages being answered now, by client key, so a retry waits for the first
  attempt instead of calling the model twice. Per process: a retry that reaches another process
  falls back to the store's unique client key (it is answered from the store once the first
  attempt finishes, or answered again if that attempt died).
- `ChatOrder`: one chat's messages are answered one at a time, in arrival order.
- `SessionCache`: each chat's current session and its recent turns (the store stays the truth).
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from gateway.core.message import Reply

K = TypeVar("K")
V = TypeVar("V")


@dataclass
class Attempt:
    """One message being answered; `done` is set when `reply` is final."""

    done: threading.Event = field(default_factory=threading.Event)
    reply: Reply | None = None


class InFlight(Protocol):
    def claim(self, key: str) -> tuple[Attempt, bool]:
        """The attempt for `key` and whether it is ours (False: an earlier one is running)."""
        ...

    def release(self, key: str, attempt: Attempt) -> None: ...


class ChatOrder(Protocol):
    def turn(self, key: str, timeout: float | None = None) -> AbstractContextManager[None]:
        """Wait until every earlier message of this chat is answered; TimeoutError if not."""
        ...


class SessionCache(Protocol):
    def active(self, key: tuple[str, str]) -> tuple[str, float] | None: ...

    def set_active(self, key: tuple[str, str], session_id: str, now: float) -> None: ...

    def turns(self, session_id: str) -> deque[tuple[str, str]] | None: ...

    def set_turns(self, session_id: str, turns: deque[tuple[str, str]]) -> None: ...


class LocalInFlight:
    """Per-process `InFlight`."""

    def __init__(self) -> None:
        self._attempts: dict[str, Attempt] = {}
        self._lock = threading.Lock()

    def claim(self, key: str) -> tuple[Attempt, bool]:
        with self._lock:
            earlier = self._attempts.get(key)
            if earlier is not None:
                return earlier, False
            mine = self._attempts[key] = Attempt()
            return mine, True

    def release(self, key: str, attempt: Attempt) -> None:
        with self._lock:
            if self._attempts.get(key) is attempt:
                del self._attempts[key]
        attempt.done.set()


class LocalChatOrder:
    """Per-process `ChatOrder`: first come, first answered, per chat key.

    Each arrival appends its own event to the chat's line and waits until it is at the front,
    which gives strict arrival order (a plain lock does not promise FIFO wake-ups); waiting
    costs nothing for other chats.
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


class _Lru(OrderedDict[K, V]):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def keep(self, key: K, value: V) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


class LocalSessionCache:
    """Per-process `SessionCache`: at most `sessions` current sessions and the turns of at most
    `histories` of them, least recently used dropped first (they reload from the store)."""

    def __init__(self, sessions: int = 4096, histories: int = 512) -> None:
        self._active: _Lru[tuple[str, str], tuple[str, float]] = _Lru(sessions)
        self._turns: _Lru[str, deque[tuple[str, str]]] = _Lru(histories)
        self._lock = threading.Lock()

    def active(self, key: tuple[str, str]) -> tuple[str, float] | None:
        with self._lock:
            return self._active.get(key)

    def set_active(self, key: tuple[str, str], session_id: str, now: float) -> None:
        with self._lock:
            self._active.keep(key, (session_id, now))

    def turns(self, session_id: str) -> deque[tuple[str, str]] | None:
        with self._lock:
            found = self._turns.get(session_id)
            if found is not None:
                self._turns.move_to_end(session_id)
            return found

    def set_turns(self, session_id: str, turns: deque[tuple[str, str]]) -> None:
        with self._lock:
            self._turns.keep(session_id, turns)
