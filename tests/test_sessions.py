"""Sessions: keyed by (channel, chat), idle time-out, reset, and one chat answered in order."""

from __future__ import annotations

import threading
from pathlib import Path

from gateway.sessions import ChatQueue, SessionManager
from gateway.store import Store


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_session_is_kept_until_idle_past_the_timeout(tmp_path: Path) -> None:
    store, clock = Store(f"sqlite:///{tmp_path / 'db.sqlite'}"), Clock()
    sessions = SessionManager(store, timeout=1800, clock=clock)
    first = sessions.open("ws", "chat-1")
    assert first.fresh
    clock.now += 1799
    assert sessions.open("ws", "chat-1").id == first.id
    assert sessions.open("http", "chat-1").id != first.id  # another channel, another session
    clock.now += 1801
    later = sessions.open("ws", "chat-1")
    assert later.fresh and later.id != first.id
    store.close()


def test_sessions_survive_a_new_store_on_the_same_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    clock = Clock()
    first = SessionManager(Store(url), 60, clock).open("ws", "c")
    assert SessionManager(Store(url), 60, clock).open("ws", "c").id == first.id


def test_reset_ends_the_open_session(tmp_path: Path) -> None:
    store, clock = Store(f"sqlite:///{tmp_path / 'db.sqlite'}"), Clock()
    sessions = SessionManager(store, 60, clock)
    old = sessions.open("ws", "c")
    new = sessions.reset("ws", "c")
    assert new.id != old.id and sessions.open("ws", "c").id == new.id


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
            _wait_until(lambda k=n: queue.waiting() == k + 1)
    gate.set()
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2, 3, 4]
    assert queue.waiting() == 0


def test_other_chats_do_not_wait() -> None:
    queue = ChatQueue()
    with queue.turn("a"), queue.turn("b"):
        assert queue.waiting() == 2


def _wait_until(condition: object, timeout: float = 5.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if condition():  # type: ignore[operator]
            return
        done.wait(0.01)
    raise AssertionError("condition not met")


def test_remembered_turns_stay_within_their_character_budget(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    sessions = SessionManager(store, 60, Clock())
    session = sessions.reset("ws", "c")
    for i in range(10):
        sessions.remember_turn(session.id, f"q{i} " + "x" * 10_000, f"a{i}")
    kept = sessions.history(session.id)
    assert kept[-1][1] == "a9"
    assert sum(len(u) + len(a) for u, a in kept) <= sessions.history_chars
    store.close()
