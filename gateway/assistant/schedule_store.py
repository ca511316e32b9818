"""The `schedules` table: every reminder and every skill schedule, in the gateway's database.

A row is due at `next_run`. A reminder's run stores its message in the outbox and moves the
row on (to its next cron time, or `done`) in one transaction (`fire_reminder`): a crash
before the commit leaves it due, after the commit it is in the outbox, so it is sent once
and never lost, and the outbound id, made from the row and its due time, is the platform's
idempotency key for a delivery the outbox repeats. A skill's run is claimed the same way
before the skill runs (`claim_run`), and its outcome recorded after (`record_run`).

Same rules as `core.store`: short transactions, writes through `store.writes.begin()`. The
CLI reads and cancels here directly, so `moltbot schedules` works with the gateway stopped
too; the scheduler reads the row again inside the transaction that fires it, so a row
cancelled from outside is never sent.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection

from gateway.assistant.schedule_time import local
from gateway.core.outbound import Outbound
from gateway.core.outbox_store import OutboxStore
from gateway.core.store import Store, create_schema

Kind = Literal["reminder", "skill"]
# active: waits for next_run; done: a one-off that ran; skipped: missed while the gateway was
# down with schedules.missed: skip; cancelled; removed: a skill schedule whose skill is gone
State = Literal["active", "done", "skipped", "cancelled", "removed"]

metadata = MetaData()

schedules = Table(
    "schedules", metadata,
    Column("id", String(24), primary_key=True),
    Column("kind", String(16), nullable=False),  # reminder | skill
    Column("owner", String(300), nullable=False),  # reminder: channel:sender; skill: its file
    Column("channel", String(64), nullable=False),
    Column("chat", String(256), nullable=False),
    Column("to", String(256), nullable=False),
    Column("text", Text, nullable=False),
    Column("cron", String(120)),  # None: once
    Column("zone", String(64), nullable=False),  # the zone the time was given in
    Column("skill", String(300)),  # a skill schedule's "<file>#<function>"
    Column("state", String(16), nullable=False),
    Column("next_run", Float),
    Column("runs", Integer, nullable=False),
    Column("last_run", Float),
    Column("last_outbound", String(40)),
    Column("last_error", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("schedules_due", "state", "next_run"),
    Index("schedules_owner", "owner", "state"),
)


@dataclass(frozen=True)
class Schedule:
    id: str
    kind: Kind
    owner: str
    channel: str
    chat: str
    to: str
    text: str
    cron: str | None
    zone: str
    skill: str | None
    state: State
    next_run: float | None
    runs: int = 0
    last_run: float | None = None
    last_outbound: str | None = None
    last_error: str = ""
    created_at: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def new_reminder_id() -> str:
    """Short enough to type in `/reminders cancel <id>`, unguessable enough to be one's own."""
    return "r" + secrets.token_hex(3)


def skill_schedule_id(skill: str, cron: str, channel: str, chat: str) -> str:
    """The same declaration keeps its id (and its next run) across reloads and restarts."""
    digest = hashlib.sha256(f"{skill}|{cron}|{channel}|{chat}".encode()).hexdigest()
    return "s" + digest[:8]


def run_outbound_id(schedule_id: str, due: float) -> str:
    """One outbound id per run: a run stored twice would be one row, sent once."""
    return f"o{int(due * 1000):x}{hashlib.sha256(f'{schedule_id}@{due}'.encode()).hexdigest()[:10]}"


class ScheduleStore:
    def __init__(self, store: Store, outbox_rows: OutboxStore) -> None:
        self.engine = store.engine
        self.writes = store.writes
        self.outbox_rows = outbox_rows
        with self.writes.begin() as conn:
            create_schema(conn, metadata)

    # -- writing -------------------------------------------------------------------------
    def add(self, row: Schedule) -> None:
        with self.writes.begin() as conn:
            conn.execute(insert(schedules).values(**row.as_dict()))

    def cancel(self, schedule_id: str, owner: str | None = None) -> Schedule | None:
        """Cancel an active row (only `owner`'s when given); the row as it was, or None."""
        with self.writes.begin() as conn:
            row = _read(conn, schedule_id)
            if row is None or row.state != "active" or (owner and row.owner != owner):
                return None
            conn.execute(update(schedules).where(schedules.c.id == schedule_id).values(
                state="cancelled", next_run=None))
            return row

    def fire_reminder(self, schedule_id: str, due: float, text: str, now: float,
                      after: Callable[[Schedule], float | None]) -> Outbound | None:
        """Store the run due at `due` in the outbox and move the row on, in one transaction.
        `after(row)` is the next run (None: it was the last). None if the row is no longer
        due then (cancelled, already fired)."""
        with self.writes.begin() as conn:
            row = _read(conn, schedule_id)
            if row is None or row.state != "active" or row.next_run != due:
                return None
            message = Outbound(id=run_outbound_id(row.id, due), channel=row.channel,
                               chat=row.chat, to=row.to, text=text, origin="reminder",
                               state="queued", next_try_at=now, created_at=now)
            self.outbox_rows.insert(message, conn)
            following = after(row)
            conn.execute(update(schedules).where(schedules.c.id == row.id).values(
                runs=row.runs + 1, last_run=due, last_outbound=message.id, last_error="",
                next_run=following, state="active" if following is not None else "done"))
            return message

    def claim_run(self, schedule_id: str, due: float, following: float | None) -> bool:
        """A skill schedule's run is taken (moved on to `following`) before the skill runs,
        so a crash mid-run never runs it twice."""
        with self.writes.begin() as conn:
            row = _read(conn, schedule_id)
            if row is None or row.state != "active" or row.next_run != due:
                return False
            conn.execute(update(schedules).where(schedules.c.id == schedule_id).values(
                runs=row.runs + 1, last_run=due, next_run=following,
                state="active" if following is not None else "done"))
            return True

    def record_run(self, schedule_id: str, outbound_id: str | None, error: str) -> None:
        with self.writes.begin() as conn:
            conn.execute(update(schedules).where(schedules.c.id == schedule_id).values(
                last_outbound=outbound_id, last_error=error[:1000]))

    def move(self, schedule_id: str, next_run: float | None, state: State,
             why: str = "") -> None:
        """Set a row's next run and state (a missed run skipped, a skill schedule removed
        or back)."""
        with self.writes.begin() as conn:
            values: dict[str, Any] = {"next_run": next_run, "state": state}
            if why:
                values["last_error"] = why
            conn.execute(update(schedules).where(schedules.c.id == schedule_id)
                         .values(**values))

    # -- reading -------------------------------------------------------------------------
    def get(self, schedule_id: str) -> Schedule | None:
        with self.engine.connect() as conn:
            return _read(conn, schedule_id)

    def active(self) -> list[Schedule]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(schedules).where(schedules.c.state == "active")
                                .order_by(schedules.c.next_run)).all()
        return [_schedule(r) for r in rows]

    def due(self, now: float, limit: int) -> list[Schedule]:
        """Active rows due by `now`, earliest first (the index `schedules_due` serves it)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(schedules).where(
                schedules.c.state == "active", schedules.c.next_run <= now)
                .order_by(schedules.c.next_run).limit(limit)).all()
        return [_schedule(r) for r in rows]

    def soonest_after(self, now: float) -> float | None:
        """The earliest `next_run` after `now` of an active row."""
        with self.engine.connect() as conn:
            found = conn.execute(select(func.min(schedules.c.next_run)).where(
                schedules.c.state == "active", schedules.c.next_run > now)).scalar()
        return None if found is None else float(found)

    def of_kind(self, kind: Kind) -> list[Schedule]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(schedules).where(schedules.c.kind == kind)).all()
        return [_schedule(r) for r in rows]

    def listing(self, owner: str | None = None, everything: bool = False,
                limit: int = 500) -> list[Schedule]:
        """Active rows by next run (only `owner`'s when given); with `everything`, the
        finished ones too, newest first after them."""
        query = select(schedules).limit(limit)
        if owner:
            query = query.where(schedules.c.owner == owner)
        if not everything:
            query = query.where(schedules.c.state == "active")
        query = query.order_by((schedules.c.state != "active"), schedules.c.next_run,
                               schedules.c.created_at.desc())
        with self.engine.connect() as conn:
            return [_schedule(r) for r in conn.execute(query).all()]

    def describe(self, row: Schedule, zone: ZoneInfo) -> dict[str, Any]:
        """A row for the console and the CLI: its next run as `zone` reads it, and what
        became of its last run."""
        return {**row.as_dict(), "next_local": local(row.next_run, zone)
                if row.next_run is not None else "", "shown_in": zone.key,
                "last_state": self.delivery_state(row)}

    def delivery_state(self, row: Schedule) -> str:
        """What became of the last run: its outbound row's state (and why it failed), the
        skill's error, or "" before the first run."""
        if row.last_error:
            return f"{'skipped' if row.state == 'skipped' else 'failed'}: {row.last_error}"
        if not row.last_outbound:
            return ""
        sent = self.outbox_rows.get(row.last_outbound)
        if sent is None:
            return ""
        if sent.last_error and sent.state != "sent":
            return f"{sent.state}: {sent.last_error}"
        return sent.state


def _read(conn: Connection, schedule_id: str) -> Schedule | None:
    row = conn.execute(select(schedules).where(schedules.c.id == schedule_id)).first()
    return _schedule(row) if row else None


def _schedule(row: Any) -> Schedule:
    return Schedule(**dict(row._mapping))
