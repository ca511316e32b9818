"""The outbox's table: one row per outbound message, in the gateway's own database.

Same rules as `core.store` (whose engine this uses): each call is one short transaction,
writes go through `store.writes.begin()` (BEGIN IMMEDIATE, the lock waited for cooperatively),
nothing is held open across a delivery. Rows are kept after they are sent: they are the
delivery's part of a message's trace.

Order: `seq` is the order rows were stored in. A row is never sent before an earlier queued
(or sending) row of the same chat, so one chat's messages arrive in the order they were
written even when one of them has to wait for a retry; other chats go on meanwhile.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection

from gateway.core.outbound import Outbound
from gateway.core.store import Store, create_schema

metadata = MetaData()

outbound = Table(
    "outbound", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(40), unique=True, nullable=False),
    Column("msg_id", String(40), index=True),  # the message it answers or whose skill sent it
    Column("reply_to", String(256)),  # the platform's id of the message a reply answers
    Column("origin", String(16), nullable=False),  # reply | skill | api | reminder | schedule
    Column("channel", String(64), nullable=False),
    Column("chat", String(256), nullable=False),
    Column("to", String(256), nullable=False),
    Column("text", Text, nullable=False),
    Column("files", Text, nullable=False),  # JSON list of {name, path, media_type, size}
    Column("state", String(16), nullable=False),  # waiting | queued | sending | sent | failed
    Column("attempts", Integer, nullable=False),
    Column("next_try_at", Float, nullable=False),
    Column("last_error", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("sent_at", Float),
    Column("history", Text, nullable=False),  # JSON list of {at, outcome, detail}, per attempt
    Index("outbound_chat_order", "channel", "chat", "state", "seq"),
    Index("outbound_state", "state", "channel"),
)

PENDING = ("queued", "sending")  # rows that hold back later rows of their chat
KEPT_HISTORY = 20  # attempts remembered per row (the first ones and the last ones count)


class OutboxStore:
    def __init__(self, store: Store) -> None:
        self.engine = store.engine
        self.writes = store.writes
        with self.writes.begin() as conn:
            create_schema(conn, metadata)

    # -- writing -------------------------------------------------------------------------
    def insert(self, row: Outbound, conn: Connection | None = None) -> None:
        """Store `row`; inside `conn`'s transaction when given (a reminder stores its message
        and marks its run done in one, so a crash never keeps one without the other)."""
        if conn is not None:
            conn.execute(insert(outbound).values(**_values(row)))
            return
        with self.writes.begin() as conn:
            conn.execute(insert(outbound).values(**_values(row)))

    def fill_reply(self, outbound_id: str, *, msg_id: str, text: str, to: str,
                   reply_to: str | None, now: float,
                   files: tuple[dict[str, Any], ...] = ()) -> Outbound | None:
        """The reply a waiting row stood for is ready: queue it, in one transaction.

        If the message was answered before (a platform's retry of the same id), its earlier
        reply row stands and this one goes: a row already sent or failed is queued again
        (the platform asked again; its idempotency key is the same outbound id). Nothing to
        say (a blocked sender) removes the row. Returns the row that will be sent, if any.
        """
        with self.writes.begin() as conn:
            earlier = conn.execute(select(outbound).where(
                outbound.c.msg_id == msg_id, outbound.c.origin == "reply",
                outbound.c.id != outbound_id, outbound.c.state != "waiting")
                .order_by(outbound.c.seq).limit(1)).first()
            if earlier is not None or not (text or files):
                conn.execute(delete(outbound).where(outbound.c.id == outbound_id))
            if not (text or files):
                return None
            if earlier is not None:
                if earlier.state in ("sent", "failed"):
                    _record(conn, earlier.id, now, "again", "the platform sent the message "
                            "again: the reply is sent again", state="queued", attempts=0,
                            next_try_at=now)
                return _read(conn, earlier.id)
            conn.execute(update(outbound).where(outbound.c.id == outbound_id).values(
                msg_id=msg_id, text=text, to=to, reply_to=reply_to, state="queued",
                next_try_at=now, files=json.dumps(list(files), ensure_ascii=False)))
            return _read(conn, outbound_id)

    def drop(self, outbound_id: str) -> None:
        with self.writes.begin() as conn:
            conn.execute(delete(outbound).where(outbound.c.id == outbound_id))

    def claim_next(self, channel: str, now: float) -> tuple[Outbound | None, float | None]:
        """Take the next due row of `channel` (state `sending`, one attempt more), or say
        when one will be due: (row, None), or (None, when), or (None, None) if none waits."""
        with self.writes.begin() as conn:
            heads = conn.execute(_heads(channel)).all()
            due = [h for h in heads if h.next_try_at <= now]
            if not due:
                return None, min((h.next_try_at for h in heads), default=None)
            head = due[0]
            conn.execute(update(outbound).where(outbound.c.id == head.id).values(
                state="sending", attempts=head.attempts + 1))
            return _read(conn, head.id), None

    def mark_sent(self, outbound_id: str, at: float, detail: str = "") -> None:
        with self.writes.begin() as conn:
            _record(conn, outbound_id, at, "sent", detail, state="sent", sent_at=at,
                    last_error="")

    def mark_retry(self, outbound_id: str, at: float, why: str, next_try_at: float) -> None:
        with self.writes.begin() as conn:
            _record(conn, outbound_id, at, "retry", why, state="queued", last_error=why,
                    next_try_at=next_try_at)

    def mark_failed(self, outbound_id: str, at: float, why: str) -> None:
        with self.writes.begin() as conn:
            _record(conn, outbound_id, at, "failed", why, state="failed", last_error=why)

    def requeue_interrupted(self, at: float) -> int:
        """Rows left `sending` by a gateway that stopped mid-delivery go out again
        (at least once: the platform may drop the duplicate by its idempotency key)."""
        with self.writes.begin() as conn:
            ids = conn.execute(select(outbound.c.id).where(outbound.c.state == "sending")
                               ).scalars().all()
            for outbound_id in ids:
                _record(conn, outbound_id, at, "interrupted", "the gateway stopped during "
                        "this attempt; it is sent again", state="queued", next_try_at=at)
        return len(ids)

    def retry(self, outbound_id: str, at: float) -> Outbound | None:
        """A failed row queued again by hand (the console's Retry), with fresh attempts."""
        with self.writes.begin() as conn:
            row = conn.execute(select(outbound.c.state).where(
                outbound.c.id == outbound_id)).first()
            if row is None or row.state != "failed":
                return None
            _record(conn, outbound_id, at, "again", "queued again by hand", state="queued",
                    attempts=0, next_try_at=at)
            return _read(conn, outbound_id)

    # -- reading -------------------------------------------------------------------------
    def get(self, outbound_id: str) -> Outbound | None:
        with self.engine.connect() as conn:
            return _read(conn, outbound_id)

    def for_message(self, msg_id: str) -> list[Outbound]:
        """The deliveries of one message: its reply, and what its skill sent."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(outbound).where(outbound.c.msg_id == msg_id)
                                .order_by(outbound.c.seq)).all()
        return [_outbound(r) for r in rows]

    def with_state(self, state: str) -> list[Outbound]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(outbound).where(outbound.c.state == state)
                                .order_by(outbound.c.seq)).all()
        return [_outbound(r) for r in rows]

    def listing(self, state: str = "", channel: str = "", limit: int = 100) -> list[Outbound]:
        """Newest first, filtered by state and channel when given."""
        query = select(outbound).order_by(outbound.c.seq.desc()).limit(limit)
        if state:
            query = query.where(outbound.c.state == state)
        if channel:
            query = query.where(outbound.c.channel == channel)
        with self.engine.connect() as conn:
            return [_outbound(r) for r in conn.execute(query).all()]

    def counts(self) -> dict[str, int]:
        """Rows per state."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(outbound.c.state, func.count())
                                .group_by(outbound.c.state)).all()
        return {state: int(n) for state, n in rows}

    def channels_with(self, states: Iterable[str]) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.execute(select(outbound.c.channel).distinct().where(
                outbound.c.state.in_(tuple(states)))).scalars().all())


def _heads(channel: str) -> Any:
    """Each chat's first pending row: the only rows that may be sent next."""
    earlier = outbound.alias("earlier")
    held = select(earlier.c.seq).where(
        earlier.c.channel == outbound.c.channel, earlier.c.chat == outbound.c.chat,
        earlier.c.state.in_(PENDING), earlier.c.seq < outbound.c.seq).exists()
    return (select(outbound.c.id, outbound.c.attempts, outbound.c.next_try_at)
            .where(outbound.c.channel == channel, outbound.c.state == "queued", ~held)
            .order_by(outbound.c.seq))


def _record(conn: Connection, outbound_id: str, at: float, outcome: str, detail: str,
            **values: Any) -> None:
    """Change a row and add one entry to its history."""
    found = conn.execute(select(outbound.c.history).where(outbound.c.id == outbound_id)).first()
    if found is None:
        return
    history = json.loads(found.history)
    history.append({"at": at, "outcome": outcome, "detail": detail[:500]})
    if len(history) > KEPT_HISTORY:  # keep the first attempts and the latest ones
        history = history[:5] + history[-(KEPT_HISTORY - 5):]
    conn.execute(update(outbound).where(outbound.c.id == outbound_id).values(
        history=json.dumps(history, ensure_ascii=False), **values))


def _read(conn: Connection, outbound_id: str) -> Outbound | None:
    row = conn.execute(select(outbound).where(outbound.c.id == outbound_id)).first()
    return _outbound(row) if row else None


def _values(row: Outbound) -> dict[str, Any]:
    return {"id": row.id, "msg_id": row.msg_id, "reply_to": row.reply_to,
            "origin": row.origin, "channel": row.channel, "chat": row.chat, "to": row.to,
            "text": row.text, "files": json.dumps(list(row.files), ensure_ascii=False),
            "state": row.state, "attempts": row.attempts, "next_try_at": row.next_try_at,
            "last_error": row.last_error, "created_at": row.created_at,
            "sent_at": row.sent_at, "history": json.dumps(list(row.history),
                                                          ensure_ascii=False)}


def _outbound(row: Any) -> Outbound:
    r = row._mapping
    return Outbound(id=r["id"], channel=r["channel"], chat=r["chat"], text=r["text"],
                    to=r["to"], files=tuple(json.loads(r["files"])), msg_id=r["msg_id"],
                    reply_to=r["reply_to"], origin=r["origin"], state=r["state"],
                    attempts=r["attempts"], next_try_at=r["next_try_at"],
                    last_error=r["last_error"], created_at=r["created_at"],
                    sent_at=r["sent_at"], history=tuple(json.loads(r["history"])))
