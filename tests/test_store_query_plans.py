"""Every query of the message path uses an index: `EXPLAIN QUERY PLAN` of the SQL the store
really sends, captured with SQLite's own trace hook (values filled in), so a query written
another way later is checked too. A full table scan or a sort of a whole table's rows grows
with every session or message ever stored (a new chat scanned every session: 1.37 ms at 6,019
sessions, 12 us with the index); a database made before an index existed gets it at start.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event

from gateway.core.message import Message, ModelInput, Span
from gateway.core.outbound import Outbound, new_outbound_id
from gateway.core.outbox_store import OutboxStore
from gateway.core.store import Store
from gateway.guards.stranger import SenderRow

WHOLE_TABLE = ("SCAN ", "USE TEMP B-TREE")  # a scan of every row, a sort of every match


@contextmanager
def sent_sql(store: Store) -> Iterator[list[str]]:
    """The statements the store's connections execute meanwhile, values filled in."""
    seen: list[str] = []

    def trace(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        dbapi_conn.set_trace_callback(seen.append)

    event.listen(store.engine, "connect", trace)
    store.close()  # every connection closed (the message writer's kept one too): new ones
    try:  # each get the hook
        yield seen
    finally:
        event.remove(store.engine, "connect", trace)
        store.close()


def whole_table_steps(db: Path, statements: list[str]) -> dict[str, list[str]]:
    """statement -> the steps of its plan that read or sort a whole table."""
    found: dict[str, list[str]] = {}
    with sqlite3.connect(db) as conn:
        for sql in dict.fromkeys(statements):
            if not sql.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "INSERT")):
                continue  # BEGIN, COMMIT, PRAGMA
            steps = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
            if bad := [s for s in steps if s.startswith(WHOLE_TABLE)]:
                found[sql] = bad
    return found


def message_path(store: Store, outbox: OutboxStore, chat: str) -> None:
    """What one message costs the store, from its guard to its reply on a push channel."""
    now = time.time()
    store.token_row("0" * 64, now)
    store.sender("enterprise_im", "ada")
    msg = Message("enterprise_im", "ada", chat, "hello", client_id=f"{chat}-1")
    store.add_message(msg, f"key:{chat}")
    store.get_message(msg.id)
    store.find_by_client_key(f"key:{chat}")
    row = Outbound(id=new_outbound_id(), channel="enterprise_im", chat=chat, text="",
                   to="ada", msg_id=msg.id, origin="reply", state="waiting")
    outbox.insert(row)
    if store.latest_session("enterprise_im", chat) is None:
        store.start_session(f"s-{chat}", "enterprise_im", chat, now)
    store.history(f"s-{chat}", 50)
    store.finish_message(msg.id, session_id=f"s-{chat}", reply="hi", error=None,
                         route="chat:model", trace=[Span("model", now, 1.0, "ok")],
                         model_input=ModelInput("m", "[]", 3, 1), channel="enterprise_im")
    store.files_of(msg.id, "out")
    outbox.fill_reply(row.id, msg_id=msg.id, text="hi", to="ada", reply_to=None, now=now)
    outbox.claim_next("enterprise_im", now)


def fill(store: Store, outbox: OutboxStore, chats: int) -> None:
    for n in range(chats):
        message_path(store, outbox, f"old-{n}")
    store.put_sender(SenderRow("enterprise_im", "ada", "approved", None, None, 0, time.time()))


def plans_of(db: Path, run: Callable[[Store, OutboxStore], None]) -> dict[str, list[str]]:
    store = Store(f"sqlite:///{db}")
    outbox = OutboxStore(store)
    with sent_sql(store) as statements:
        run(store, outbox)
    store.close()
    assert any(s.startswith("SELECT") for s in statements)  # the hook saw the queries
    # and the message's two writes, which run on the pool's raw connection (store._Writer)
    assert any(s.startswith("UPDATE messages SET") for s in statements)
    return whole_table_steps(db, statements)


def test_the_message_path_reads_and_writes_through_indexes(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    store = Store(f"sqlite:///{db}")
    fill(store, OutboxStore(store), 5)
    store.close()
    scans = plans_of(db, lambda s, o: message_path(s, o, "new-chat"))  # a chat's first
    scans |= plans_of(db, lambda s, o: message_path(s, o, "old-1"))  # and a later message
    assert scans == {}


def test_a_database_made_before_the_indexes_gets_them_at_start(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    store = Store(f"sqlite:///{db}")
    fill(store, OutboxStore(store), 3)
    store.close()
    with sqlite3.connect(db) as conn:  # as main before issue 21 left it
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name IN "
            "('sessions', 'messages') AND sql IS NOT NULL")]
        for name in names:
            conn.execute(f"DROP INDEX {name}")
        conn.execute("CREATE INDEX ix_messages_session_id ON messages (session_id)")
    assert plans_of(db, lambda s, o: message_path(s, o, "new-chat")) == {}
    with sqlite3.connect(db) as conn:
        left = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "ix_messages_session_id" not in left  # superseded by (session_id, created_at)
    store = Store(f"sqlite:///{db}")  # the messages stored before are all still there
    assert store.latest_session("enterprise_im", "old-2") is not None
    assert [t for t, _ in store.history("s-old-2", 50)] == ["hello"]
    store.close()
