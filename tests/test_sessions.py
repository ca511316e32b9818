"""Sessions: keyed by (channel, chat), idle time-out, reset, and one chat answered in order."""

from __future__ import annotations

import threading
from pathlib import Path

from gateway.core.sessions import SessionManager, SessionPolicy
from gateway.core.state import LocalChatOrder as ChatQueue
from gateway.core.store import Store


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_session_is_kept_until_idle_past_the_timeout(tmp_path: Path) -> None:
    store, clock = Store(f"sqlite:///{tmp_path / 'db.sqlite'}"), Clock()
    sessions, policy = SessionManager(store, clock=clock), SessionPolicy(timeout=1800)
    first = sessions.open("ws", "chat-1", policy)
    assert first.fresh
    clock.now += 1799
    assert sessions.open("ws", "chat-1", policy).id == first.id
    assert sessions.open("http", "chat-1", policy).id != first.id  # another channel
    clock.now += 1801
    later = sessions.open("ws", "chat-1", policy)
    assert later.fresh and later.id != first.id
    store.close()


def test_sessions_survive_a_new_store_on_the_same_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    clock = Clock()
    policy = SessionPolicy(timeout=60)
    first = SessionManager(Store(url), clock=clock).open("ws", "c", policy)
    assert SessionManager(Store(url), clock=clock).open("ws", "c", policy).id == first.id


def test_reset_ends_the_open_session(tmp_path: Path) -> None:
    store, clock = Store(f"sqlite:///{tmp_path / 'db.sqlite'}"), Clock()
    sessions, policy = SessionManager(store, clock=clock), SessionPolicy(timeout=60)
    old = sessions.open("ws", "c", policy)
    new = sessions.reset("ws", "c")
    assert new.id != old.id and sessions.open("ws", "c", policy).id == new.id


def test_chat_queue_answers_in_arrival_order() -> None:
    queue, order, started = ChatQueue(), [], []
    gate = threading.Event()

    def worker(n: int, arrived: threading.Event) -> None:
        with queue.turn("chat"):
            arrived.set()
            if n == 0:
                gate.wait(5)
            order.append(n)

    threads = []
    for n in range(5):
        arrived = threading.Event()
        t = threading.Thread(target=worker, args=(n, arrived))
        t.start()
        threads.append(t)
        started.append(arrived)
        if n == 0:
            assert arrived.wait(5)
        else:  # each later one is queued behind the first before the next arrives
            _wait_until(lambda k=n: len(queue._lines["chat"]) == k + 1)
    gate.set()
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2, 3, 4]
    assert queue._lines == {}  # an empty line is dropped, never kept per chat forever


def test_other_chats_do_not_wait() -> None:
    queue = ChatQueue()
    with queue.turn("a"), queue.turn("b", timeout=0):  # TimeoutError if b waited for a
        pass


def _wait_until(condition: object, timeout: float = 5.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if condition():  # type: ignore[operator]
            return
        done.wait(0.01)
    raise AssertionError("condition not met")


def test_remembered_turns_stay_within_their_character_budget(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    sessions, policy = SessionManager(store, clock=Clock()), SessionPolicy(history_chars=32_000)
    session = sessions.reset("ws", "c")
    for i in range(10):
        sessions.remember_turn(session.id, f"q{i} " + "x" * 10_000, f"a{i}", policy)
    kept = sessions.history(session.id, policy)
    assert kept[-1][1] == "a9"
    assert sum(len(u) + len(a) for u, a in kept) <= policy.history_chars
    store.close()
