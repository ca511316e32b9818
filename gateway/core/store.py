"""Durable state behind one small interface: messages, their traces and files, sessions and
login tokens.

SQLAlchemy Core over SQLite (WAL) by default, so a PostgreSQL URL can later take its place.
Every call is one short transaction: under gevent a SQLite call blocks the event loop while it
runs, so nothing here is ever held open across a model call.

Waiting for another process's write lock (`moltbot token create`, a second console) never
happens in C: SQLite's busy handler sleeps inside the call and would stop the whole loop for
the wait (a lock held 2 s stopped it 2 s, `bench/run.py loop-libraries`). So `busy_timeout`
is 0, every write transaction takes the lock up front with `BEGIN IMMEDIATE`, and a busy answer
is retried after `time.sleep`, which is gevent's in the gateway: other greenlets run meanwhile.
Reads need no lock in WAL mode and never wait for a writer.

The two writes of every message (`add_message`, `finish_message`) are the hot path: fixed SQL
on a `sqlite3` connection taken from the pool and kept (`_Writer`), with the same lock rule
and one commit each before the call returns. Everything else goes through SQLAlchemy Core.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from operator import itemgetter
from pathlib import Path
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
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.schema import DropIndex
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from gateway.core.message import Attachment, Message, ModelInput, Span
from gateway.guards.stranger import SenderRow

metadata = MetaData()

sessions = Table(
    "sessions", metadata,
    Column("id", String(40), primary_key=True),
    Column("channel", String(64), nullable=False),
    Column("chat", String(256), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_active", Float, nullable=False),
    Column("ended", Integer, nullable=False, default=0),
    # a chat's open session (every message) and ending it: not a scan of every session
    Index("sessions_of_chat", "channel", "chat", "created_at"),
)

messages = Table(
    "messages", metadata,
    Column("id", String(40), primary_key=True),
    Column("client_key", String(512), unique=True, nullable=True),
    Column("session_id", String(40)),
    Column("channel", String(64), nullable=False),
    Column("sender", String(256), nullable=False),
    Column("chat", String(256), nullable=False),
    Column("text", Text, nullable=False),
    Column("status", String(16), nullable=False),  # received | answered | failed
    Column("created_at", Float, nullable=False),
    Column("reply", Text),
    Column("error", String(64)),
    Column("route", String(128)),
    Column("replied_at", Float),
    # JSON list of spans, each [step, start_ms, duration_ms, outcome, detail] (objects before
    # issue 21): written once, read whole by `moltbot trace`
    Column("trace", Text),
    # a session's last turns, newest first, without sorting all of them (the history)
    Index("messages_of_session", "session_id", "created_at"),
)

files = Table(  # files that came with a message ("in") or went with its reply ("out")
    "files", metadata,
    Column("id", String(40), primary_key=True),  # the public handle: GET /api/v1/attachments/<id>
    Column("msg_id", String(40), nullable=False),
    Column("direction", String(4), nullable=False),  # in | out
    Column("position", Integer, nullable=False),  # the order they came in (or went out)
    Column("name", String(256), nullable=False),
    Column("media_type", String(128), nullable=False),
    Column("size", Integer, nullable=False),
    Column("path", Text, nullable=False),  # relative to the workspace
    Column("sha256", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Index("files_of_message", "msg_id", "direction", "position"),
)

# Indexes an older database has that one of the above replaced (a prefix of it).
SUPERSEDED = ("ix_messages_session_id", "ix_files_msg_id")

senders = Table(  # chat-platform senders the stranger policy has met
    "senders", metadata,
    Column("channel", String(64), primary_key=True),
    Column("sender", String(256), primary_key=True),
    Column("state", String(16), nullable=False),  # pending | awaiting_owner | approved | blocked
    Column("code_hash", String(64)),
    Column("code_expires_at", Float),
    Column("attempts", Integer, nullable=False, default=0),
    Column("updated_at", Float, nullable=False),
)

model_inputs = Table(  # one row per message that called a model: the console's replay and usage
    "model_inputs", metadata,
    Column("msg_id", String(40), primary_key=True),
    Column("channel", String(64), nullable=False),
    Column("model", String(128), nullable=False),
    Column("day", String(10), nullable=False, index=True),  # UTC date, for per-day totals
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("given", Text),  # masked JSON of the messages the model was given, bounded
)

config_versions = Table(  # every config.yaml the console applied, for its history and rollback
    "config_versions", metadata,
    Column("version", Integer, primary_key=True, autoincrement=True),
    Column("text", Text, nullable=False),
    Column("diff", Text, nullable=False),
    Column("who", String(256), nullable=False),
    Column("source", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
)

tokens = Table(
    "tokens", metadata,
    Column("hash", String(64), primary_key=True),
    Column("label", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)


@dataclass(frozen=True)
class StoredMessage:
    id: str
    session_id: str | None
    channel: str
    chat: str
    sender: str
    text: str
    status: str
    created_at: float
    reply: str | None
    error: str | None
    route: str | None


@dataclass(frozen=True)
class TokenRow:
    hash: str
    label: str
    created_at: float
    expires_at: float

    @property
    def id(self) -> str:
        """A public handle for `moltbot token revoke`: the hash's start, never the token."""
        return self.hash[:10]


@dataclass(frozen=True)
class SessionRow:
    id: str
    channel: str
    chat: str
    created_at: float
    last_active: float


@dataclass(frozen=True)
class SessionSummary:
    id: str
    channel: str
    chat: str
    created_at: float
    last_active: float
    ended: bool
    messages: int


@dataclass(frozen=True)
class ConfigVersion:
    version: int
    text: str
    diff: str
    who: str
    source: str
    created_at: float


BUSY_WAIT = 5.0  # seconds a write waits for another process's write lock, then fails
_WRITE = "moltbot_write"  # execution option of the connections that write (see Store.writes)


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    dbapi_conn.isolation_level = None  # type: ignore[attr-defined]  # BEGIN is ours: _begin
    cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=0")  # never wait in C (module docstring)
    cur.close()


def _begin(conn: Connection) -> None:
    """A writing connection takes the write lock now; a reading one begins nothing, so each
    SELECT reads the latest commit on its own (as pysqlite's own mode did)."""
    if conn.get_execution_options().get(_WRITE):
        lock_for_write(conn.connection.driver_connection)


def lock_for_write(dbapi_conn: object, wait: float = BUSY_WAIT) -> None:
    """BEGIN IMMEDIATE, retried while another connection holds the write lock: pauses of
    1 ms doubling to 50 ms through `time.sleep` (gevent's in the gateway), for at most `wait`
    seconds. An uncontended write costs nothing more than the BEGIN pysqlite sent anyway."""
    deadline = time.monotonic() + wait
    pause = 0.001
    while True:
        try:
            dbapi_conn.execute("BEGIN IMMEDIATE")  # type: ignore[attr-defined]
            return
        except sqlite3.OperationalError as e:
            busy = getattr(e, "sqlite_errorcode", sqlite3.SQLITE_BUSY) & 0xFF == \
                sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() + pause > deadline:
                raise OperationalError("BEGIN IMMEDIATE", None, e) from e
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def build_engine(url: str) -> Engine:
    """An engine with the SQLite settings we rely on (WAL, writes that wait for the lock
    cooperatively, any thread)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False},
                               pool_size=8, max_overflow=16)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _begin)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    with engine.execution_options(**{_WRITE: True}).begin() as conn:
        create_schema(conn, metadata, SUPERSEDED)
    return engine


def create_schema(conn: Connection, schema: MetaData, superseded: Iterable[str] = ()) -> None:
    """The tables of `schema` and every index they declare, also in a database made before
    an index was added (`create_all` only indexes the tables it creates), and without the
    `superseded` indexes a newer one replaced: the migration, run at every start (a few
    `IF NOT EXISTS` checks; building a missing index takes its table's write lock once)."""
    schema.create_all(conn)
    for table in schema.sorted_tables:
        for index in table.indexes:
            index.create(conn, checkfirst=True)
    for name in superseded:
        conn.execute(DropIndex(Index(name), if_exists=True))


class FixedSql:
    """A statement compiled once, for the engine's dialect, and run as its driver's SQL text:
    building and caching a Core statement cost a message ~1 ms of CPU in SQLAlchemy (issue
    21's profile) against ~0.1 ms for SQLite itself. Values go by name (`params`)."""

    def __init__(self, engine: Engine, statement: ClauseElement) -> None:
        compiled = statement.compile(dialect=engine.dialect)
        assert isinstance(compiled, SQLCompiler)  # DML compiles to SQL, never DDL
        self.sql = compiled.string
        order = tuple(compiled.positiontup or ()) if compiled.positional else None
        self._pick = None if order is None else _picker(order)

    def params(self, values: dict[str, Any]) -> Any:
        """The driver's parameters: `values` itself for a named style, else in SQL order."""
        return values if self._pick is None else self._pick(values)

    def run(self, conn: sqlite3.Connection, values: dict[str, Any]) -> None:
        conn.execute(self.sql, self.params(values))

    def run_many(self, conn: sqlite3.Connection, rows: Iterable[dict[str, Any]]) -> None:
        conn.executemany(self.sql, [self.params(values) for values in rows])


def _picker(order: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    if len(order) == 1:  # itemgetter of one name gives the value, not a tuple of it
        name = order[0]
        return lambda values: (values[name],)
    return itemgetter(*order)


def _named(*names: str) -> dict[str, Any]:
    return {name: bindparam(name) for name in names}


MESSAGE_ROW = ("id", "client_key", "session_id", "channel", "sender", "chat", "text", "status",
               "created_at")
ANSWER = ("session_id", "reply", "error", "route", "status", "replied_at", "trace")
MODEL_INPUT = ("msg_id", "channel", "model", "day", "prompt_tokens", "completion_tokens", "given")
FILE_ROW = ("id", "msg_id", "direction", "position", "name", "media_type", "size", "path",
            "sha256", "created_at")


class _HotPath:
    """The fixed statements of every message's two writes (`add_message`, `finish_message`)
    and of a chat's session (`latest_session`, `start_session`)."""

    def __init__(self, engine: Engine) -> None:
        self.add = FixedSql(engine, insert(messages).values(_named(*MESSAGE_ROW)))
        self.answer = FixedSql(engine, update(messages).where(
            messages.c.id == bindparam("msg_id")).values(_named(*ANSWER)))
        self.model_input = FixedSql(engine, insert(model_inputs).values(_named(*MODEL_INPUT)))
        self.active = FixedSql(engine, update(sessions).where(
            sessions.c.id == bindparam("session_id")).values(_named("last_active")))
        self.add_file = FixedSql(engine, insert(files).values(_named(*FILE_ROW)))
        # a message answered again: its first answer's files and model input go
        self.drop_files = FixedSql(engine, delete(files).where(
            files.c.msg_id == bindparam("msg_id"), files.c.direction == bindparam("direction")))
        self.drop_model_input = FixedSql(engine, delete(model_inputs).where(
            model_inputs.c.msg_id == bindparam("msg_id")))
        # a new chat's first message (and every chat's first after a restart): its session
        chat_is = (sessions.c.channel == bindparam("channel"), sessions.c.chat == bindparam("chat"))
        self.latest_session = FixedSql(engine, text(
            "SELECT id, channel, chat, created_at, last_active FROM sessions WHERE channel = "
            ":channel AND chat = :chat AND ended = 0 ORDER BY created_at DESC LIMIT 1"))
        self.end_sessions = FixedSql(engine, update(sessions).where(*chat_is).values(
            _named("ended")))
        self.new_session = FixedSql(engine, insert(sessions).values(
            _named("id", "channel", "chat", "created_at", "last_active", "ended")))


class _Writer:
    """The two writes of every message, on one of the pool's SQLite connections itself
    (`sqlite3`, no SQLAlchemy `Connection`), kept checked out between writes: SQLAlchemy's
    connection, event and transaction objects cost ~100 us of a message's ~210, a checkout
    from the pool and its return ~10 us a write. The rules are the store's: `BEGIN IMMEDIATE`
    through `lock_for_write` (another process's lock waited for with gevent's sleep, never in
    C), the statements, `COMMIT` before the call returns, so a message is stored before it is
    answered. Writers that wait for the lock together (or run in threads) each take a
    connection of their own, as with `writes.begin()`; one is kept when they are done. A write
    that failed gives its connection back to the pool, which rolls it back or drops it.
    SQLite's: a PostgreSQL store would begin its own way here."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._kept: list[PoolProxiedConnection] = []  # at most one, idle between writes

    @contextmanager
    def begin(self) -> Iterator[sqlite3.Connection]:
        pooled = self._take()
        conn: sqlite3.Connection = pooled.driver_connection  # type: ignore[assignment]
        try:
            lock_for_write(conn)
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except BaseException:
            pooled.close()
            raise
        self._keep(pooled)

    def first(self, sql: str, params: Any) -> tuple[Any, ...] | None:
        """The first row of a read on the kept connection, outside any transaction (WAL: it
        sees the last commit and never waits for a writer)."""
        pooled = self._take()
        try:
            row: tuple[Any, ...] | None = pooled.driver_connection.execute(  # type: ignore[union-attr]
                sql, params).fetchone()
        except BaseException:
            pooled.close()
            raise
        self._keep(pooled)
        return row

    def _take(self) -> PoolProxiedConnection:
        try:
            return self._kept.pop()  # atomic: two threads never take the same one
        except IndexError:
            return self.engine.raw_connection()

    def _keep(self, pooled: PoolProxiedConnection) -> None:
        """Keep a connection that served well; with one kept already (writers that waited
        together), it goes back to the pool."""
        self._kept.append(pooled)
        if len(self._kept) > 1:
            self._release()

    def _release(self) -> None:
        with suppress(IndexError):  # another thread took it meanwhile
            self._kept.pop().close()  # back to the pool

    def close(self) -> None:
        """Give the kept connection back to the pool (to be closed with it)."""
        while self._kept:
            self._release()


class Store:
    """The gateway's only door to the database. Writes go through `self.writes.begin()`,
    which takes SQLite's write lock at BEGIN; reads through `self.engine.connect()`."""

    def __init__(self, url: str) -> None:
        self.engine = build_engine(url)
        self.writes = self.engine.execution_options(**{_WRITE: True})
        self._hot = _HotPath(self.engine)
        self._writer = _Writer(self.engine)

    def close(self) -> None:
        """Close every connection; a later call opens new ones."""
        self._writer.close()
        self.engine.dispose()

    # messages ---------------------------------------------------------------------------
    def add_message(self, msg: Message, client_key: str | None) -> StoredMessage | None:
        """Store an inbound message and its files' rows; if `client_key` was seen before,
        return that one instead (and store nothing)."""
        row = {"id": msg.id, "client_key": client_key, "session_id": None,
               "channel": msg.channel, "sender": msg.sender, "chat": msg.chat,
               "text": msg.text, "status": "received", "created_at": msg.received_at}
        hot = self._hot
        try:
            with self._writer.begin() as conn:
                hot.add.run(conn, row)
                if msg.files:
                    _add_files(conn, hot, msg.id, "in", msg.files, msg.received_at)
        except sqlite3.IntegrityError:
            if client_key is None:
                raise
            return self.find_by_client_key(client_key)
        return None

    def find_by_client_key(self, client_key: str) -> StoredMessage | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(messages).where(messages.c.client_key == client_key)).first()
        return _message(row) if row else None

    def unanswered(self, channel: str, since: float) -> list[tuple[StoredMessage, str]]:
        """Messages of `channel` stored since `since` and never answered (the gateway stopped
        while answering), oldest first, each with its client key: a channel whose platform
        will not send them again answers them after a start."""
        query = select(messages).where(
            messages.c.channel == channel, messages.c.status == "received",
            messages.c.created_at >= since, messages.c.client_key.is_not(None)
        ).order_by(messages.c.created_at)
        with self.engine.connect() as conn:
            return [(_message(r), r.client_key) for r in conn.execute(query).all()]

    def get_message(self, msg_id: str) -> StoredMessage | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(messages).where(messages.c.id == msg_id)).first()
        return _message(row) if row else None

    def finish_message(self, msg_id: str, *, session_id: str | None, reply: str,
                       error: str | None, route: str, trace: Iterable[Span],
                       model_input: ModelInput | None = None, channel: str = "",
                       again: bool = False, reply_files: tuple[Attachment, ...] = ()) -> None:
        """Record the answer, its trace, its files, what the model was given (if one was
        called) and the session's activity in one transaction. `again`: the message was stored
        before and is answered anew, so an earlier model input row and reply files are
        replaced (deletes a first answer does not need)."""
        now = time.time()
        # one array per span, not an object: half the bytes, ~40% less to encode (get_trace)
        spans = json.dumps([(s.step, s.start_ms, s.duration_ms, s.outcome, s.detail)
                            for s in trace], ensure_ascii=False)
        hot = self._hot
        with self._writer.begin() as conn:
            hot.answer.run(conn, {
                "msg_id": msg_id, "session_id": session_id, "reply": reply, "error": error,
                "route": route, "status": "failed" if error else "answered",
                "replied_at": now, "trace": spans})
            if again:
                hot.drop_files.run(conn, {"msg_id": msg_id, "direction": "out"})
            if reply_files:
                _add_files(conn, hot, msg_id, "out", reply_files, now)
            if model_input is not None:
                if again:
                    hot.drop_model_input.run(conn, {"msg_id": msg_id})
                hot.model_input.run(conn, {
                    "msg_id": msg_id, "channel": channel, "model": model_input.model,
                    "day": time.strftime("%Y-%m-%d", time.gmtime(now)),
                    "prompt_tokens": model_input.prompt_tokens,
                    "completion_tokens": model_input.completion_tokens,
                    "given": model_input.given})
            if session_id:
                hot.active.run(conn, {"session_id": session_id, "last_active": now})

    def files_of(self, msg_id: str, direction: str) -> tuple[Attachment, ...]:
        """The files that came with a message (`in`) or went with its reply (`out`)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(files).where(files.c.msg_id == msg_id,
                                                    files.c.direction == direction)
                                .order_by(files.c.position)).all()
        return tuple(_attachment(r) for r in rows)

    def file(self, file_id: str) -> Attachment | None:
        """One file by its public id (a download), in or out."""
        with self.engine.connect() as conn:
            row = conn.execute(select(files).where(files.c.id == file_id)).first()
        return _attachment(row) if row else None

    def get_trace(self, msg_id: str) -> list[Span]:
        with self.engine.connect() as conn:
            row = conn.execute(select(messages.c.trace).where(messages.c.id == msg_id)).first()
        if not row or not row.trace:
            return []
        # an array per span; a trace stored before issue 21's step 6 has an object per span
        return [Span(*s) if isinstance(s, list) else Span(**s) for s in json.loads(row.trace)]

    def count_messages_since(self, since: float) -> int:
        """How many messages arrived at or after `since` (the tray's "messages today")."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(messages)
                                    .where(messages.c.created_at >= since)).scalar_one())

    def history(self, session_id: str, limit: int) -> list[tuple[str, str]]:
        """The session's last `limit` answered chat turns, oldest first, as (user, assistant)."""
        return [(m.text, m.reply or "") for m in self.conversation(session_id, limit)]

    def conversation(self, session_id: str, limit: int) -> list[StoredMessage]:
        """The session's last `limit` answered chat messages, oldest first: the turns the model
        remembers (`history`), whole, for the console's chat to show again after a reload.

        Commands such as /reset are not conversation and are left out.
        """
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(messages)
                .where(messages.c.session_id == session_id, messages.c.status == "answered",
                       messages.c.route.notlike("command:%"))
                .order_by(messages.c.created_at.desc()).limit(limit)).all()
        return [_message(r) for r in reversed(rows)]

    # sessions ---------------------------------------------------------------------------
    def latest_session(self, channel: str, chat: str) -> SessionRow | None:
        latest = self._hot.latest_session
        row = self._writer.first(latest.sql, latest.params({"channel": channel, "chat": chat}))
        return SessionRow(*row) if row else None

    def start_session(self, session_id: str, channel: str, chat: str, now: float) -> None:
        """End the chat's open sessions and open a new one, atomically."""
        hot, chat_of = self._hot, {"channel": channel, "chat": chat}
        with self._writer.begin() as conn:
            hot.end_sessions.run(conn, {**chat_of, "ended": 1})
            hot.new_session.run(conn, {"id": session_id, **chat_of, "created_at": now,
                                       "last_active": now, "ended": 0})

    # senders ----------------------------------------------------------------------------
    def sender(self, channel: str, sender: str) -> SenderRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(senders).where(senders.c.channel == channel,
                                                     senders.c.sender == sender)).first()
        return SenderRow(**row._mapping) if row else None

    def put_sender(self, row: SenderRow) -> None:
        """Insert or replace the sender's row."""
        values = asdict(row)
        with self.writes.begin() as conn:
            conn.execute(delete(senders).where(senders.c.channel == row.channel,
                                               senders.c.sender == row.sender))
            conn.execute(insert(senders).values(**values))

    def forget_sender(self, channel: str, sender: str) -> bool:
        with self.writes.begin() as conn:
            done = conn.execute(delete(senders).where(senders.c.channel == channel,
                                                      senders.c.sender == sender))
        return bool(done.rowcount)

    def senders(self) -> list[SenderRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(senders).order_by(senders.c.updated_at)).all()
        return [SenderRow(**r._mapping) for r in rows]

    # tokens -----------------------------------------------------------------------------
    def add_token(self, token_hash: str, label: str, expires_at: float) -> None:
        with self.writes.begin() as conn:
            conn.execute(insert(tokens).values(hash=token_hash, label=label,
                                               created_at=time.time(), expires_at=expires_at))

    def tokens(self, now: float) -> list[TokenRow]:
        """Every unexpired issued token (never its value: only the store's hash is kept)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(tokens).where(tokens.c.expires_at > now)
                                .order_by(tokens.c.created_at)).all()
        return [TokenRow(r.hash, r.label, r.created_at, r.expires_at) for r in rows]

    def expire_tokens(self, hashes: list[str], at: float) -> None:
        """End these tokens at `at` (now, to revoke; later, for a rotation's grace period)."""
        with self.writes.begin() as conn:
            conn.execute(update(tokens).where(tokens.c.hash.in_(hashes), tokens.c.expires_at > at)
                         .values(expires_at=at))

    def token_row(self, token_hash: str, now: float) -> tuple[str, float] | None:
        """(label, expires_at) of a stored, unexpired token, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(tokens.c.label, tokens.c.expires_at).where(
                tokens.c.hash == token_hash, tokens.c.expires_at > now)).first()
        return (row.label, row.expires_at) if row else None

    # console: search, replay, usage, config history --------------------------------------
    def find_messages(self, *, text: str = "", sender: str = "", msg_id: str = "",
                      session_id: str = "", limit: int = 50) -> list[StoredMessage]:
        """Newest first: messages whose text or reply holds `text`, whose sender holds
        `sender`, whose id starts with `msg_id`, of `session_id` (each filter when given)."""
        query = select(messages).order_by(messages.c.created_at.desc()).limit(limit)
        if text:
            query = query.where(messages.c.text.contains(text, autoescape=True)
                                | messages.c.reply.contains(text, autoescape=True))
        if sender:
            query = query.where(messages.c.sender.contains(sender, autoescape=True))
        if msg_id:
            query = query.where(messages.c.id.startswith(msg_id, autoescape=True))
        if session_id:
            query = query.where(messages.c.session_id == session_id)
        with self.engine.connect() as conn:
            return [_message(r) for r in conn.execute(query).all()]

    def find_sessions(self, text: str = "", limit: int = 50) -> list[SessionSummary]:
        """Most recently active first, with their message counts; `text` matches the chat,
        the channel or any of the session's messages."""
        count = (select(func.count()).where(messages.c.session_id == sessions.c.id)
                 .scalar_subquery())
        query = (select(sessions, count.label("messages"))
                 .order_by(sessions.c.last_active.desc()).limit(limit))
        if text:
            holding = select(messages.c.session_id).where(
                messages.c.text.contains(text, autoescape=True)
                | messages.c.reply.contains(text, autoescape=True))
            query = query.where(sessions.c.chat.contains(text, autoescape=True)
                                | sessions.c.channel.contains(text, autoescape=True)
                                | sessions.c.id.in_(holding))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [SessionSummary(r.id, r.channel, r.chat, r.created_at, r.last_active,
                               bool(r.ended), r.messages) for r in rows]

    def model_input(self, msg_id: str) -> dict[str, Any] | None:
        """What the model was given for this message and the tokens it counted, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(model_inputs).where(
                model_inputs.c.msg_id == msg_id)).first()
        if row is None:
            return None
        return {"model": row.model, "prompt_tokens": row.prompt_tokens,
                "completion_tokens": row.completion_tokens,
                "given": _given(row.given)}

    def token_usage(self, since_day: str) -> list[dict[str, Any]]:
        """Prompt and completion tokens (the model's own counts) per day, model and channel
        from `since_day` (YYYY-MM-DD, UTC) on, oldest day first."""
        c = model_inputs.c
        query = (select(c.day, c.model, c.channel, func.count().label("messages"),
                        func.sum(c.prompt_tokens).label("prompt"),
                        func.sum(c.completion_tokens).label("completion"))
                 .where(c.day >= since_day).group_by(c.day, c.model, c.channel)
                 .order_by(c.day, c.model, c.channel))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query).all()]

    def add_config_version(self, text: str, diff: str, who: str, source: str) -> int:
        with self.writes.begin() as conn:
            result = conn.execute(insert(config_versions).values(
                text=text, diff=diff, who=who, source=source, created_at=time.time()))
        key = result.inserted_primary_key
        assert key is not None  # an INSERT into a table with a primary key always has one
        return int(key[0])

    def config_versions(self, limit: int = 100) -> list[ConfigVersion]:
        """Newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(config_versions).order_by(
                config_versions.c.version.desc()).limit(limit)).all()
        return [ConfigVersion(**r._mapping) for r in rows]

    def config_version(self, version: int) -> ConfigVersion | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(config_versions).where(
                config_versions.c.version == version)).first()
        return ConfigVersion(**row._mapping) if row else None


def _message(row: object) -> StoredMessage:
    r = row._mapping  # type: ignore[attr-defined]
    return StoredMessage(r["id"], r["session_id"], r["channel"], r["chat"], r["sender"],
                         r["text"], r["status"], r["created_at"], r["reply"], r["error"],
                         r["route"])


def _add_files(conn: sqlite3.Connection, hot: _HotPath, msg_id: str, direction: str,
               attached: tuple[Attachment, ...], now: float) -> None:
    hot.add_file.run_many(conn, ({
        "id": f.id, "msg_id": msg_id, "direction": direction, "position": n, "name": f.name,
        "media_type": f.media_type, "size": f.size, "path": f.path, "sha256": f.sha256,
        "created_at": now} for n, f in enumerate(attached)))


def _attachment(row: object) -> Attachment:
    r = row._mapping  # type: ignore[attr-defined]
    return Attachment(r["name"], r["media_type"], r["size"], r["path"], r["sha256"], r["id"])


def _given(text: str | None) -> list[dict[str, Any]]:
    """The recorded model input; masking runs over its JSON text, so in the rare case that it
    made the text unreadable as JSON, the text is shown as one note rather than lost."""
    if not text:
        return []
    try:
        given: list[dict[str, Any]] = json.loads(text)
    except ValueError:
        return [{"role": "note", "content": text}]
    return given
