"""The store: one short transaction per call, idempotent client keys, traces, history."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, astuple
from pathlib import Path

import pytest

from gateway.core.message import Attachment, Message, ModelInput, Span
from gateway.core.store import Store


def store_at(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'db.sqlite'}")


def test_a_client_key_seen_before_returns_the_first_message(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    first = Message("http", "ada", "c", "hello", client_id="k")
    assert store.add_message(first, "http:p:k") is None
    again = store.add_message(Message("http", "ada", "c", "hello", client_id="k"), "http:p:k")
    assert again is not None and (again.id, again.status) == (first.id, "received")
    store.close()


def test_finish_records_reply_route_trace_and_session_activity(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    msg = Message("ws", "ada", "c", "hi")
    store.add_message(msg, None)
    store.start_session("s1", "ws", "c", time.time() - 100)
    spans = [Span("guard", 0.0, 0.1, "ok", "authentication: token:x")]
    store.finish_message(msg.id, session_id="s1", reply="hey", error=None, route="chat:model",
                         trace=spans)
    stored = store.get_message(msg.id)
    assert stored is not None and (stored.status, stored.reply, stored.route) == (
        "answered", "hey", "chat:model")
    assert store.get_trace(msg.id) == spans
    session = store.latest_session("ws", "c")
    assert session is not None and time.time() - session.last_active < 5
    store.close()


def test_files_are_kept_with_their_message_and_reply_in_order(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    sent = tuple(Attachment(n, "text/plain", 1, f"files/inbox/d/{n}") for n in ("b", "a", "c"))
    msg = Message("http", "ada", "c", "", client_id="k", files=sent)
    store.add_message(msg, "http:p:k")
    retry = Message("http", "ada", "c", "", client_id="k", files=sent[:1])
    assert store.add_message(retry, "http:p:k") is not None  # a retry stores no file rows
    assert store.files_of(msg.id, "in") == sent  # the order they came in, not by name
    answer = (Attachment("r.csv", "text/csv", 4, "out/r.csv", "ab" * 32),)
    store.finish_message(msg.id, session_id=None, reply="x", error=None, route="skill:r",
                         trace=[], reply_files=answer)
    assert store.files_of(msg.id, "out") == answer and store.file(answer[0].id) == answer[0]
    other = (Attachment("s.csv", "text/csv", 4, "out/s.csv"),)
    store.finish_message(msg.id, session_id=None, reply="y", error=None, route="skill:r",
                         trace=[], again=True, reply_files=other)
    assert store.files_of(msg.id, "out") == other and store.file(answer[0].id) is None
    assert store.files_of(msg.id, "in") == sent
    store.close()


def test_history_is_answered_conversation_only_oldest_first(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    store.start_session("s1", "ws", "c", time.time())
    for text, route, error in (("one", "chat:model", None), ("/reset", "command:reset", None),
                               ("two", "skill:faq", None), ("three", "chat:model", "model_error")):
        msg = Message("ws", "ada", "c", text)
        store.add_message(msg, None)
        store.finish_message(msg.id, session_id="s1", reply=f"re {text}", error=error,
                             route=route, trace=[])
        time.sleep(0.002)  # created_at orders them
    assert store.history("s1", 10) == [("one", "re one"), ("two", "re two")]
    store.close()


def test_a_token_is_found_by_hash_until_it_expires(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    store.add_token("h" * 64, "tray", time.time() + 60)
    assert store.token_row("h" * 64, time.time())[0] == "tray"  # type: ignore[index]
    assert store.token_row("h" * 64, time.time() + 61) is None
    assert store.token_row("x" * 64, time.time()) is None
    store.close()


def test_a_failed_answer_stores_none_of_it_and_the_next_write_goes_through(
        tmp_path: Path) -> None:
    """The two writes run on the pool's raw SQLite connection (`store._Writer`): a statement
    that fails rolls back the whole transaction before the connection goes back to the pool."""
    store = store_at(tmp_path)
    store.start_session("s1", "http", "c", time.time() - 100)
    before = store.latest_session("http", "c")
    msg = Message("http", "ada", "c", "hi", client_id="k")
    store.add_message(msg, "http:p:k")
    twice = Attachment("r.csv", "text/csv", 4, "out/r.csv")
    with pytest.raises(sqlite3.IntegrityError):  # the second row's id is the first's
        store.finish_message(msg.id, session_id="s1", reply="hey", error=None, route="skill:r",
                             trace=[Span("skill", 1.0, 2.0, "ok")],
                             model_input=ModelInput("m", "[]", 3, 1), channel="http",
                             reply_files=(twice, twice))
    assert store.engine.pool.checkedout() == 0  # type: ignore[attr-defined]  # given back
    stored = store.get_message(msg.id)
    assert stored is not None and (stored.status, stored.reply) == ("received", None)
    assert store.files_of(msg.id, "out") == () and store.model_input(msg.id) is None
    assert store.get_trace(msg.id) == [] and store.latest_session("http", "c") == before
    assert store.add_message(Message("http", "ada", "c", "hi", client_id="k"), "http:p:k")
    store.finish_message(msg.id, session_id="s1", reply="hey", error=None, route="skill:r",
                         trace=[], reply_files=(twice,))
    stored = store.get_message(msg.id)
    assert stored is not None and stored.status == "answered"
    assert store.files_of(msg.id, "out") == (twice,)
    store.close()


def test_messages_written_while_another_connection_holds_the_lock_are_stored_after_it(
        tmp_path: Path) -> None:
    """Another process (`moltbot token create`) holding the write lock: the messages' writes
    wait for it (`lock_for_write`: `time.sleep`, gevent's in the gateway), each on a
    connection of its own, and go through once it lets go; then one connection stays with
    the writer and the others are back in the pool. The loop stays free meanwhile:
    `tests/test_loop_libraries.py`'s sqlite probe."""
    store = store_at(tmp_path)
    holder = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    sent = [Message("http", "ada", "c", f"hi {n}") for n in range(4)]
    failed: list[BaseException] = []

    def write(msg: Message) -> None:
        try:
            store.add_message(msg, None)
            store.finish_message(msg.id, session_id=None, reply="hey", error=None,
                                 route="chat:model", trace=[])
        except BaseException as e:  # the test reports it, not the thread
            failed.append(e)

    writers = [threading.Thread(target=write, args=(m,)) for m in sent]
    for writer in writers:
        writer.start()
    assert all(store.get_message(m.id) is None for m in sent)  # no commit while it is held
    holder.execute("COMMIT")
    for writer in writers:
        writer.join(30)
    holder.close()
    assert not any(w.is_alive() for w in writers) and failed == []
    assert all(getattr(store.get_message(m.id), "status", None) == "answered" for m in sent)
    assert store.engine.pool.checkedout() == 1  # type: ignore[attr-defined]  # QueuePool's
    store.close()


def test_a_trace_stored_before_the_compact_encoding_reads_the_same(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    spans = [Span("guard", 0.0, 0.1, "ok", "token:x"), Span("model", 0.2, 310.5, "error")]
    encodings: tuple[Callable[[Span], object], ...] = (lambda s: list(astuple(s)), asdict)
    for n, encode in enumerate(encodings):  # today's, and the objects stored before
        msg = Message("ws", "ada", "c", f"hi {n}")
        store.add_message(msg, None)
        with sqlite3.connect(tmp_path / "db.sqlite") as conn:
            conn.execute("UPDATE messages SET trace = ? WHERE id = ?",
                         (json.dumps([encode(s) for s in spans]), msg.id))
        assert store.get_trace(msg.id) == spans
    store.close()
