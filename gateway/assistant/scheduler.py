"""The scheduler: one greenlet that sends reminders and runs skills' schedules when they are due.

It sleeps on an event until the earliest active row's time (at most a minute, so a clock that
jumps, a suspended laptop, is noticed), and is woken when a reminder is added or cancelled,
the skills reload, or a test's clock moves. Time comes from the clock the composition root
hands in (`time.time`; a test fault's file clock in tests).

A due reminder is delivered by the scheduler itself: its message goes into the outbox in the
same transaction that moves the row on (`ScheduleStore.fire_reminder`), and the outbox's
sender retries, backs off and shows a failure with its reason; the model is never trusted to
send it at the time. A due skill schedule is claimed first, then its handler runs in the
skill host (on its own greenlet, so a slow skill holds up nothing), and its reply goes to the
outbox (`Outbox.send`, origin `schedule`); a failure is logged and shown on the row.

Missed runs: when the gateway starts, a row whose time passed while it was down is run once
(`schedules.missed: run_once`) or skipped (`skip`); a repeating one then goes on from now,
never in a burst of every run it missed. A run less than `ON_TIME` late counts as on time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.assistant.schedule_store import Schedule, ScheduleStore, skill_schedule_id
from gateway.assistant.schedule_time import local, next_cron
from gateway.core.outbound import SendRefused
from gateway.core.outbox import Outbox
from gateway.skills.errors import SkillError
from gateway.skills.handlers import ScheduledHandler

log = logging.getLogger(__name__)

MAX_NAP = 60.0  # the longest sleep: a wall clock that jumped is seen within a minute
ON_TIME = 60.0  # a run found this late at start is on time, not missed
TROUBLE_WAIT = 5.0  # after a failing step (the store), look again after this
BATCH = 20  # due rows run per look; a backlog (after downtime) goes in batches


def reminder_text(text: str) -> str:
    return f"⏰ Reminder: {text}"


class Scheduler:
    def __init__(self, rows: ScheduleStore, outbox: Outbox, *, clock: Callable[[], float],
                 zone: Callable[[], ZoneInfo], missed: Callable[[], str]) -> None:
        self.rows = rows
        self.outbox = outbox
        self.clock = clock
        self.zone = zone  # gateway.timezone, read at each use: a reload applies at once
        self.missed = missed  # schedules.missed
        self.skills: Mapping[str, ScheduledHandler] = {}  # by schedule id
        self.wakeup = threading.Event()
        self.seen = 0.0  # the clock's time at the last look (tests wait for it)
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="scheduler", daemon=True)

    # -- life ----------------------------------------------------------------------------
    def start(self) -> None:
        self.catch_up()
        self.thread.start()

    def stop(self) -> None:
        self.stopping = True
        self.wakeup.set()

    def wake(self) -> None:
        self.wakeup.set()

    def catch_up(self) -> None:
        """At start: runs missed while the gateway was down are kept (run_once: the loop
        runs each once) or skipped."""
        now = self.clock()
        if self.missed() != "skip":
            return
        for row in self.rows.active():
            if row.next_run is None or row.next_run >= now - ON_TIME:
                continue
            why = (f"missed while the gateway was down ({local(row.next_run, self._zone(row))}"
                   f"; schedules.missed: skip)")
            if row.cron:
                self.rows.move(row.id, next_cron(row.cron, self._zone(row), now), "active")
            else:
                self.rows.move(row.id, None, "skipped", why)
            log.warning("schedule %s (%s): %s", row.id, row.owner, why)

    # -- what the rest of the gateway calls ----------------------------------------------
    def add(self, row: Schedule) -> None:
        self.rows.add(row)
        log.info("schedule %s set by %s for %s/%s, first at %s UTC%s", row.id, row.owner,
                 row.channel, row.chat, _utc(row.next_run), f" (cron {row.cron})"
                 if row.cron else "")
        self.wake()

    def cancel(self, schedule_id: str, owner: str | None = None) -> Schedule | None:
        row = self.rows.cancel(schedule_id, owner)
        if row is not None:
            log.info("schedule %s cancelled", schedule_id)
            self.wake()
        return row

    def use_skills(self, declared: Sequence[ScheduledHandler]) -> None:
        """The skills (re)loaded: their schedules become rows (a new one is first due at its
        next time from now), rows of schedules no longer declared are `removed`."""
        now, zone = self.clock(), self.zone()
        known = {row.id: row for row in self.rows.of_kind("skill")}
        by_id = {id_of(s): s for s in declared}
        for sid, handler in by_id.items():
            row, spec = known.get(sid), handler.spec
            if row is None:
                self.rows.add(Schedule(
                    id=sid, kind="skill", owner=handler.source, channel=spec.channel,
                    chat=spec.chat, to="", text=spec.text, cron=spec.cron, zone=zone.key,
                    skill=handler.key, state="active",
                    next_run=next_cron(spec.cron, zone, now), created_at=now))
            elif row.state == "removed":
                self.rows.move(sid, next_cron(spec.cron, zone, now), "active")
        for row in known.values():
            if row.id not in by_id and row.state == "active":
                self.rows.move(row.id, None, "removed")
        self.skills = by_id
        self.wake()

    # -- the loop ------------------------------------------------------------------------
    def _run(self) -> None:
        while not self.stopping:
            self.wakeup.clear()
            try:
                wait = self.step()
            except Exception:  # the store failed: say so, look again later
                log.exception("scheduler: a step failed; it looks again in %.0f s",
                              TROUBLE_WAIT)
                wait = TROUBLE_WAIT
            if wait > 0:
                self.wakeup.wait(wait)
            else:
                time.sleep(0)  # between batches the loop serves everyone else

    def step(self) -> float:
        """Run what is due now; returns how long until the next look (0: a full batch ran,
        more may be due)."""
        now = self.clock()
        due = self.rows.due(now, BATCH)
        for row in due:
            if row.kind == "reminder":
                self._remind(row, now)
            else:  # one whose skill has not loaded yet waits for the reload's wake
                self._run_skill(row, now)
        self.seen = now
        if len(due) >= BATCH:
            return 0.0
        later = self.rows.soonest_after(now)
        return max(0.01, min(MAX_NAP, (later if later is not None else now + MAX_NAP) - now))

    def _following(self, row: Schedule, now: float) -> float | None:
        """The run after this one: from now, so a late run is never followed by a burst."""
        return next_cron(row.cron, self._zone(row), now) if row.cron else None

    def _remind(self, row: Schedule, now: float) -> None:
        assert row.next_run is not None
        sent = self.rows.fire_reminder(row.id, row.next_run, reminder_text(row.text),
                                       self.outbox.clock(),
                                       lambda r: self._following(r, now))
        if sent is None:
            return
        log.info("schedule %s due %s UTC: outbound %s stored for %s/%s", row.id,
                 _utc(row.next_run), sent.id, row.channel, row.chat)
        self.outbox.wake(row.channel)

    def _run_skill(self, row: Schedule, now: float) -> None:
        assert row.next_run is not None
        due = row.next_run
        handler = self.skills.get(row.id)
        if handler is None:  # declared by a skill that has not loaded (yet)
            return
        if not self.rows.claim_run(row.id, due, self._following(row, now)):
            return
        threading.Thread(target=self._skill_run, args=(handler, row, due),
                         name=f"schedule-{row.id}", daemon=True).start()

    def _skill_run(self, handler: ScheduledHandler, row: Schedule, due: float) -> None:
        spec = handler.spec
        msg: dict[str, Any] = {
            "id": f"{row.id}-{int(due)}", "text": spec.text, "sender": "", "chat": spec.chat,
            "channel": spec.channel, "session": None, "files": [],
            "schedule": {"id": row.id, "cron": spec.cron,
                         "due": datetime.fromtimestamp(due, UTC).isoformat()}}
        try:
            result = handler.call(msg)
            sent = self.outbox.send(spec.channel, spec.chat, result.text,
                                    files=result.files, origin="schedule")
        except (SkillError, SendRefused) as e:
            log.error("schedule %s (%s) run due %s UTC failed: %s", row.id, handler.key,
                      _utc(due), e)
            self.rows.record_run(row.id, None, str(e))
            return
        except Exception as e:  # a bug: shown on the row, never the end of the scheduler
            log.exception("schedule %s (%s) run failed", row.id, handler.key)
            self.rows.record_run(row.id, None, f"{type(e).__name__}: {e}")
            return
        log.info("schedule %s (%s) ran: outbound %s for %s/%s", row.id, handler.key,
                 sent.id, spec.channel, spec.chat)
        self.rows.record_run(row.id, sent.id, "")

    def _zone(self, row: Schedule) -> ZoneInfo:
        """A reminder keeps the zone it was set in; a skill's schedule follows
        gateway.timezone."""
        return ZoneInfo(row.zone) if row.kind == "reminder" else self.zone()


def id_of(handler: ScheduledHandler) -> str:
    spec = handler.spec
    return skill_schedule_id(handler.key, spec.cron, spec.channel, spec.chat)


def _utc(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at)) if at is not None else "-"

