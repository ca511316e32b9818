"""Reminders as people set them: `/remind`, `/reminders`, `/unremind`, and the model's
`set_reminder` tool.

A reminder belongs to its sender (`channel:sender`) and goes back to the chat it was set in,
at the time given in `gateway.timezone`. Only a push channel (one that can send on its own:
enterprise_im, telegram, mqtt) can receive one later; a reminder asked for on a channel that
only answers requests (HTTP, WebSocket) is refused, saying where reminders work. Unverified
strangers never get this far (the guard chain answers them), so the tool is offered to every
sender the model serves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from gateway.assistant.schedule_store import Schedule, new_reminder_id
from gateway.assistant.schedule_time import USAGE, When, WhenError, local, parse_remind, when_of
from gateway.assistant.scheduler import Scheduler
from gateway.core.builtins import Command, CommandError
from gateway.core.fields import storable
from gateway.core.message import Message
from gateway.core.outbound import PushTarget
from gateway.core.settings import Settings
from gateway.tools.base import Tool, ToolError

MAX_TEXT = 1000
MAX_PER_OWNER = 100


def owner_of(msg: Message) -> str:
    return f"{msg.channel}:{msg.sender}"


class Reminders:
    def __init__(self, scheduler: Scheduler,
                 channels: Callable[[], Mapping[str, object]]) -> None:
        self.scheduler = scheduler
        self.channels = channels

    # -- setting one ---------------------------------------------------------------------
    def _pushes_to(self, msg: Message) -> bool:
        """Can this chat's channel send on its own? (One protocol check: the tool's offer is
        decided per message, and checking every channel cost 7 % of a message's CPU.)"""
        return isinstance(self.channels().get(msg.channel), PushTarget)

    def where_problem(self, msg: Message) -> str | None:
        """Why a reminder cannot come back to this chat, or None."""
        if self._pushes_to(msg):
            return None
        channels = self.channels()
        pushers = sorted(n for n, c in channels.items() if isinstance(c, PushTarget))
        where = ", ".join(pushers) if pushers else "none is switched on here (enterprise_im, " \
            "telegram or mqtt)"
        return (f"Reminders are sent later on a channel that can send on its own, and "
                f"{msg.channel} only answers the request that asked. Set it from a chat on "
                f"one that can: {where}.")

    def set(self, msg: Message, when: When, text: str, zone: ZoneInfo) -> str:
        """Store the reminder; the sentence saying what was set. WhenError if it cannot be."""
        problem = self.where_problem(msg)
        if problem:
            raise WhenError(problem)
        text = " ".join(text.split())
        if not text or len(text) > MAX_TEXT or not storable(text):
            raise WhenError(f"Say what to be reminded of, in at most {MAX_TEXT} characters.")
        owner = owner_of(msg)
        if len(self.scheduler.rows.listing(owner)) >= MAX_PER_OWNER:
            raise WhenError(f"You have {MAX_PER_OWNER} reminders waiting: cancel some first "
                            f"(/reminders lists them).")
        row = Schedule(id=new_reminder_id(), kind="reminder", owner=owner,
                       channel=msg.channel, chat=msg.chat, to=msg.sender, text=text,
                       cron=when.cron, zone=zone.key, skill=None, state="active",
                       next_run=when.at, created_at=self.scheduler.clock())
        self.scheduler.add(row)
        repeat = f", then by cron '{when.cron}'" if when.cron else ""
        return (f"Reminder set for {local(when.at, zone)} ({zone.key}){repeat}: {text} "
                f"(id {row.id}; /reminders cancel {row.id} cancels it)")

    # -- commands ------------------------------------------------------------------------
    def commands(self) -> list[Command]:
        return [Command("remind", "set a reminder: /remind 9:00 call mom, /remind in 20m tea",
                        self._remind),
                Command("reminders", "your reminders; /reminders cancel <id>",
                        self._reminders),
                Command("unremind", "cancel a reminder: /unremind <id>", self._unremind)]

    def _remind(self, msg: Message, args: str, settings: Settings) -> str:
        zone = ZoneInfo(settings.config.gateway.timezone)
        try:
            when, text = parse_remind(args, zone, self.scheduler.clock())
            return self.set(msg, when, text, zone)
        except WhenError as e:
            raise CommandError(str(e)) from e

    def _reminders(self, msg: Message, args: str, settings: Settings) -> str:
        words = args.split()
        if words and words[0].lower() == "cancel":
            return self._unremind(msg, " ".join(words[1:]), settings)
        if words:
            raise CommandError("Use /reminders to list yours, /reminders cancel <id> to "
                               "cancel one.")
        zone = ZoneInfo(settings.config.gateway.timezone)
        rows = self.scheduler.rows.listing(owner_of(msg))
        if not rows:
            return f"You have no reminders. {USAGE}"
        lines = [f"{r.id}  {local(r.next_run or 0, zone)}"
                 + (f" (cron '{r.cron}')" if r.cron else "") + f"  {r.text}" for r in rows]
        return f"Your reminders ({zone.key}):\n" + "\n".join(lines)

    def _unremind(self, msg: Message, args: str, settings: Settings) -> str:
        wanted = args.strip()
        if not wanted or " " in wanted:
            raise CommandError("Name the reminder: /unremind <id> (/reminders lists the ids).")
        row = self.scheduler.cancel(wanted, owner_of(msg))
        if row is None:
            raise CommandError(f"You have no waiting reminder {wanted} (/reminders lists "
                               f"yours).")
        return f"Cancelled {row.id}: {row.text}"

    # -- the model's tool ----------------------------------------------------------------
    def tools(self, msg: Message, settings: Settings) -> dict[str, Tool]:
        if not self._pushes_to(msg):
            return {}  # the model is not offered what cannot be delivered here
        zone = ZoneInfo(settings.config.gateway.timezone)
        return {"set_reminder": ReminderTool(self, msg, zone)}


_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {
    "text": {"type": "string", "description": "what to remind of, e.g. 'call mom'"},
    "at": {"type": "string", "description": "local time, ISO 8601"},
    "in": {"type": "string", "description": "from now: 20m, 1h30m, 2d"},
    "cron": {"type": "string", "description": "five-field cron, repeating"}},
    "required": ["text"]}


class ReminderTool(Tool):
    """`set_reminder` for the model, made for one message's sender and chat."""

    name = "set_reminder"
    parameters = _PARAMETERS

    def __init__(self, reminders: Reminders, msg: Message, zone: ZoneInfo) -> None:
        self.reminders, self.msg, self.zone = reminders, msg, zone
        now = local(reminders.scheduler.clock(), zone)
        self.description = (
            f"Remind the user later in this chat: the gateway itself sends 'text' at the "
            f"time. It is now {now} ({zone.key}). Give exactly one of 'at' (local time, "
            f"ISO 8601, e.g. '2026-12-07T09:00'), 'in' (a duration, e.g. '20m', '1h30m') or "
            f"'cron' (repeating: '0 8 * * *' is every day at 08:00).")

    def call(self, arguments: dict[str, Any]) -> str:
        given = {k: arguments.get(k) or "" for k in ("text", "at", "in", "cron")}
        if not all(isinstance(v, str) for v in given.values()):
            raise ToolError("set_reminder: text, at, in and cron must be strings")
        try:
            when = when_of(at=given["at"], after=given["in"], cron=given["cron"],
                           zone=self.zone, now=self.reminders.scheduler.clock())
            return self.reminders.set(self.msg, when, given["text"], self.zone)
        except WhenError as e:
            raise ToolError(f"set_reminder: {e}") from e
