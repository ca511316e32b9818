"""When a reminder or a schedule is due: time zones, cron (croniter), and the small `/remind`
syntax.

All times are Unix seconds; a zone turns them into the wall clock people speak in. A cron
expression is read in its zone by croniter, so "0 8 * * *" stays at 08:00 local across a DST
change (a wall time that does not exist that day, 02:30 on a spring-forward night, runs at the
first minute after the gap, as croniter does).

`/remind` takes, strictly (anything else gets the usage answer):
    /remind 9:00 call mom               the next 09:00 (today, else tomorrow)
    /remind tomorrow 8:00 call mom
    /remind 2026-12-24 18:00 call mom
    /remind in 20m tea                  s, m, h, d; combined: 1h30m
    /remind cron "0 8 * * *" stretch    repeating
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

USAGE = ('Use: /remind 9:00 call mom · /remind tomorrow 8:00 call mom · '
         '/remind 2026-12-24 18:00 call mom · /remind in 20m tea · '
         '/remind cron "0 8 * * *" stretch')
MAX_AHEAD = 5 * 366 * 86400  # a reminder further away than five years is a typo

_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?:in)?)?(?:(\d+)s)?$")


class WhenError(ValueError):
    """A time that cannot be used; `str(e)` says what to write instead."""


@dataclass(frozen=True)
class When:
    """A reminder's time: a one-off instant (`at`), or a cron expression (`cron`, first due
    at `at`)."""

    at: float
    cron: str | None = None


def zone_named(name: str) -> ZoneInfo:
    """The zone `name` (IANA, e.g. "Europe/Berlin"); WhenError naming examples if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise WhenError(f"unknown time zone {name!r}: use an IANA name such as "
                        f"'Europe/Berlin', 'Asia/Shanghai' or 'UTC'") from e


def check_cron(expr: str) -> str:
    """`expr` if croniter takes it as a five-field expression, else WhenError."""
    from croniter import croniter  # type: ignore[import-untyped]  # no stubs; ~40 ms: not at start

    expr = " ".join(expr.split())
    if len(expr.split(" ")) != 5 or not croniter.is_valid(expr):
        raise WhenError(f"{expr!r} is not a cron expression: write five fields, minute hour "
                        f"day-of-month month day-of-week, e.g. '0 8 * * *' (every day at "
                        f"08:00) or '0 9 * * 1-5' (weekdays at 09:00)")
    return expr


def next_cron(expr: str, zone: ZoneInfo, after: float) -> float:
    """The first time strictly after `after` that `expr` names, read in `zone`."""
    from croniter import croniter  # not at the top: see check_cron

    start = datetime.fromtimestamp(after, zone)
    return float(croniter(expr, start).get_next(datetime).timestamp())


def local(at: float, zone: ZoneInfo) -> str:
    """How a time reads to the owner: "Mon 2026-12-07 09:00"."""
    return datetime.fromtimestamp(at, zone).strftime("%a %Y-%m-%d %H:%M")


def parse_duration(text: str) -> float:
    """Seconds in "20m", "1h30m", "2d", "45s"; WhenError otherwise."""
    m = _DURATION.match(text.strip().lower())
    if not text.strip() or m is None or not any(m.groups()):
        raise WhenError(f"{text!r} is not a duration: write e.g. 20m, 1h30m, 2d or 45s")
    d, h, mins, s = (int(g or 0) for g in m.groups())
    return float(((d * 24 + h) * 60 + mins) * 60 + s)


def at_clock(hour: int, minute: int, zone: ZoneInfo, now: float,
             day: datetime | None = None) -> float:
    """`hour:minute` on `day` (a date in `zone`), or the next such time after `now`."""
    today = datetime.fromtimestamp(now, zone)
    base = day or today
    wall = datetime(base.year, base.month, base.day, hour, minute, tzinfo=zone)
    at = _existing(wall)
    if day is None and at <= now:
        tomorrow = base + timedelta(days=1)
        at = _existing(datetime(tomorrow.year, tomorrow.month, tomorrow.day, hour, minute,
                                tzinfo=zone))
    return at


def _existing(wall: datetime) -> float:
    """A wall time as an instant. zoneinfo reads one with fold=0 at the offset before a
    change: a time in the spring gap (02:30) comes out an hour later (03:30), as clocks
    moved, and one the autumn repeats is its first occurrence."""
    return wall.replace(fold=0).timestamp()


def parse_iso(text: str, zone: ZoneInfo, now: float) -> float:
    """An ISO 8601 time ("2026-12-07T09:00", "2026-12-07 09:00", "09:00", with or without an
    offset); a time without a date is the next one; without an offset it is read in `zone`."""
    text = text.strip()
    clock = _CLOCK.match(text)
    if clock:
        return at_clock(int(clock.group(1)), int(clock.group(2)), zone, now)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise WhenError(f"{text!r} is not a time: write ISO 8601 local time such as "
                        f"'2026-12-07T09:00' (or just '09:00' for the next 09:00)") from e
    if parsed.tzinfo is None:
        return _existing(parsed.replace(tzinfo=zone))
    return parsed.timestamp()


def check_future(at: float, now: float, zone: ZoneInfo) -> float:
    if at <= now:
        raise WhenError(f"{local(at, zone)} has already passed (it is now {local(now, zone)} "
                        f"in {zone.key}): give a time in the future")
    if at - now > MAX_AHEAD:
        raise WhenError(f"{local(at, zone)} is more than five years away: check the year")
    return at


def parse_remind(args: str, zone: ZoneInfo, now: float) -> tuple[When, str]:
    """`/remind`'s arguments as (when, text); WhenError with the usage answer otherwise."""
    words = args.split()
    if len(words) < 2:
        raise WhenError(USAGE)
    head = words[0].lower()
    if head == "cron":
        try:
            parts = shlex.split(args)
        except ValueError:
            parts = []
        if len(parts) < 3:
            raise WhenError(f'Put the cron expression in quotes, then the text. {USAGE}')
        expr = check_cron(parts[1])
        return When(next_cron(expr, zone, now), expr), " ".join(parts[2:])
    if head == "in":
        seconds = parse_duration(words[1])
        if seconds <= 0 or len(words) < 3:
            raise WhenError(USAGE)
        return When(check_future(now + seconds, now, zone)), " ".join(words[2:])
    day: datetime | None = None
    if head == "tomorrow":
        day = datetime.fromtimestamp(now, zone) + timedelta(days=1)
        words = words[1:]
    elif (date := _DATE.match(head)) is not None:
        try:
            day = datetime(int(date.group(1)), int(date.group(2)), int(date.group(3)))
        except ValueError as e:
            raise WhenError(f"{head} is not a date. {USAGE}") from e
        words = words[1:]
    clock = _CLOCK.match(words[0]) if words else None
    if clock is None or len(words) < 2:
        raise WhenError(USAGE)
    at = at_clock(int(clock.group(1)), int(clock.group(2)), zone, now, day)
    return When(check_future(at, now, zone)), " ".join(words[1:])


def when_of(*, at: str = "", after: str = "", cron: str = "", zone: ZoneInfo,
            now: float) -> When:
    """The reminder tool's time: exactly one of `at` (ISO 8601, local), `after` (a duration)
    and `cron`."""
    given = [name for name, value in (("at", at), ("in", after), ("cron", cron)) if value]
    if len(given) != 1:
        raise WhenError("give exactly one of 'at' (ISO 8601 local time, e.g. "
                        "'2026-12-07T09:00'), 'in' (a duration, e.g. '20m') or 'cron' (e.g. "
                        "'0 8 * * *' for every day at 08:00)")
    if cron:
        expr = check_cron(cron)
        return When(next_cron(expr, zone, now), expr)
    if after:
        return When(check_future(now + parse_duration(after), now, zone))
    return When(check_future(parse_iso(at, zone, now), now, zone))
