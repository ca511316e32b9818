"""The `/remind` syntax, the reminder tool's times and cron's next run across time zones and
DST changes (gateway.assistant.schedule_time); `@context.schedule`'s checks."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.assistant.schedule_time import (
    USAGE,
    When,
    WhenError,
    next_cron,
    parse_duration,
    parse_remind,
    when_of,
)
from gateway.common.options import ConfigError
from gateway.config import parse_config
from moltbot_sdk import context
from moltbot_sdk.skill import SCHEDULES, HandlerDefinitionError, ScheduleSpec

BERLIN = ZoneInfo("Europe/Berlin")
SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(zone: ZoneInfo, *parts: int) -> float:
    return datetime(*parts, tzinfo=zone).timestamp()  # type: ignore[misc]


NOW = at(BERLIN, 2026, 12, 7, 8, 30)  # Monday 08:30 in Berlin


@pytest.mark.parametrize(("args", "when", "text"), [
    ("9:00 call mom", When(at(BERLIN, 2026, 12, 7, 9, 0)), "call mom"),
    ("08:00 call mom", When(at(BERLIN, 2026, 12, 8, 8, 0)), "call mom"),  # passed: tomorrow
    ("tomorrow 8:00 call  mom", When(at(BERLIN, 2026, 12, 8, 8, 0)), "call mom"),
    ("2026-12-24 18:00 presents", When(at(BERLIN, 2026, 12, 24, 18, 0)), "presents"),
    ("in 20m tea", When(NOW + 1200), "tea"),
    ("in 1h30m tea", When(NOW + 5400), "tea"),
    ('cron "0 8 * * *" stretch now', When(at(BERLIN, 2026, 12, 8, 8, 0), "0 8 * * *"),
     "stretch now"),
])
def test_remind_reads_its_small_syntax(args: str, when: When, text: str) -> None:
    got_when, got_text = parse_remind(args, BERLIN, NOW)
    assert got_when == when and " ".join(got_text.split()) == text


@pytest.mark.parametrize(("args", "problem"), [
    ("", USAGE), ("tea", USAGE), ("9:00", USAGE), ("at noon call mom", USAGE),
    ("25:00 call", USAGE), ("in tea", "is not a duration"), ("in 20x tea", "is not a duration"),
    ("in 20m", USAGE), ("2026-02-30 9:00 x", "is not a date"),
    ("2026-12-01 9:00 x", "has already passed"), ("2099-01-01 9:00 x", "five years"),
    ('cron "0 8 * *" x', "is not a cron expression"), ("cron 0 8 * * * x", "is not a cron"),
    ('cron "0 8 * * *"', "Put the cron expression in quotes"),
])
def test_remind_refuses_anything_else_saying_what_to_write(args: str, problem: str) -> None:
    with pytest.raises(WhenError, match=re.escape(problem)):
        parse_remind(args, BERLIN, NOW)


def test_nine_in_shanghai_is_one_utc() -> None:
    now = datetime(2026, 12, 7, 0, 58, tzinfo=UTC).timestamp()
    when, _ = parse_remind("9:00 call mom", SHANGHAI, now)
    assert datetime.fromtimestamp(when.at, UTC) == datetime(2026, 12, 7, 1, 0, tzinfo=UTC)


def test_cron_keeps_local_time_across_dst_changes() -> None:
    before_spring = at(BERLIN, 2026, 3, 28, 9, 0)  # Saturday; DST starts Sunday 02:00
    sunday = next_cron("0 8 * * *", BERLIN, before_spring)
    assert datetime.fromtimestamp(sunday, BERLIN).hour == 8
    assert sunday - before_spring == 22 * 3600  # 23 hours on the wall, one of them skipped
    before_autumn = at(BERLIN, 2026, 10, 24, 9, 0)
    assert next_cron("0 8 * * *", BERLIN, before_autumn) - before_autumn == 24 * 3600
    # 02:30 does not exist on the spring night: croniter runs it at the first minute after
    gap = next_cron("30 2 * * *", BERLIN, at(BERLIN, 2026, 3, 28, 12, 0))
    assert datetime.fromtimestamp(gap, BERLIN).date().isoformat() == "2026-03-29"


def test_a_time_in_the_dst_gap_moves_forward_like_clocks_do() -> None:
    when, _ = parse_remind("2026-03-29 2:30 x", BERLIN, at(BERLIN, 2026, 3, 28, 12, 0))
    assert datetime.fromtimestamp(when.at, BERLIN).strftime("%H:%M") == "03:30"


def test_the_tools_times_are_iso_local_a_duration_or_cron() -> None:
    assert when_of(at="2026-12-07T09:00", zone=BERLIN, now=NOW).at == at(BERLIN, 2026, 12, 7,
                                                                         9, 0)
    assert when_of(at="09:00", zone=BERLIN, now=NOW).at == at(BERLIN, 2026, 12, 7, 9, 0)
    assert when_of(at="2026-12-07T08:00:00Z", zone=BERLIN, now=NOW).at == \
        at(UTC, 2026, 12, 7, 8, 0)  # type: ignore[arg-type]
    assert when_of(after="2d", zone=BERLIN, now=NOW).at == NOW + 2 * 86400
    assert when_of(cron="0 8 * * *", zone=BERLIN, now=NOW).cron == "0 8 * * *"
    for wrong, problem in (({}, "exactly one"), ({"at": "x", "after": "5m"}, "exactly one"),
                           ({"at": "tomorrow morning"}, "not a time"),
                           ({"at": "2026-12-07T08:00"}, "already passed")):
        with pytest.raises(WhenError, match=problem):
            when_of(**wrong, zone=BERLIN, now=NOW)  # type: ignore[arg-type]


def test_durations() -> None:
    assert parse_duration("45s") == 45 and parse_duration("1d2h3m4s") == 93784
    assert parse_duration("10min") == 600
    with pytest.raises(WhenError):
        parse_duration("")


def test_gateway_timezone_defaults_to_the_machine_and_refuses_unknown_zones() -> None:
    assert ZoneInfo(parse_config({}).gateway.timezone)
    assert parse_config({"gateway": {"timezone": "Asia/Shanghai"}}).gateway.timezone == \
        "Asia/Shanghai"
    with pytest.raises(ConfigError, match=r"gateway\.timezone: unknown time zone 'Mars/Base'"):
        parse_config({"gateway": {"timezone": "Mars/Base"}})
    with pytest.raises(ConfigError, match=r"schedules\.missed"):
        parse_config({"schedules": {"missed": "sometimes"}})


def test_context_schedule_attaches_specs_and_refuses_wrong_arguments() -> None:
    @context.schedule("0 9 * * 1-5", channel="telegram", chat="42")
    @context.schedule("0  18 * * *", channel="telegram", chat="42", text="evening")
    def digest(msg: dict[str, str]) -> str:
        return "news"

    assert getattr(digest, SCHEDULES) == (ScheduleSpec("0 18 * * *", "telegram", "42",
                                                       "evening"),
                                          ScheduleSpec("0 9 * * 1-5", "telegram", "42"))
    with pytest.raises(HandlerDefinitionError, match="cron must be five fields"):
        context.schedule("every morning", channel="telegram", chat="42")
    with pytest.raises(HandlerDefinitionError, match="chat must name where the reply goes"):
        context.schedule("0 9 * * *", channel="telegram", chat="")


def test_a_run_is_stored_once_with_its_row_moved_on_and_a_cancelled_one_never(
        tmp_path: Path) -> None:
    from gateway.assistant.schedule_store import Schedule, ScheduleStore, run_outbound_id
    from gateway.core.outbox_store import OutboxStore
    from gateway.core.store import Store

    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        rows = ScheduleStore(store, OutboxStore(store))
        for sid in ("r1", "r2"):
            rows.add(Schedule(id=sid, kind="reminder", owner="telegram:7", channel="telegram",
                              chat="7", to="7", text="tea", cron=None, zone="UTC", skill=None,
                              state="active", next_run=100.0, created_at=1.0))
        sent = rows.fire_reminder("r1", 100.0, "⏰ Reminder: tea", 100.5, lambda r: None)
        assert sent is not None and sent.id == run_outbound_id("r1", 100.0)
        assert rows.fire_reminder("r1", 100.0, "again", 101.0, lambda r: None) is None
        done = rows.get("r1")
        assert done is not None and done.state == "done" and done.last_outbound == sent.id
        assert rows.cancel("r2", owner="telegram:8") is None  # someone else's
        assert rows.cancel("r2", owner="telegram:7") is not None
        assert rows.fire_reminder("r2", 100.0, "tea", 101.0, lambda r: None) is None
        assert [o.text for o in rows.outbox_rows.listing()] == ["⏰ Reminder: tea"]
    finally:
        store.close()
