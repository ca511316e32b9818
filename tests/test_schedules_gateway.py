"""Reminders and skill schedules in the real gateway process, on a clock the test moves
(the `clock=PATH` test fault), against a fake chat platform (enterprise_im's reply_url).

The gateway's zone is Asia/Shanghai: a reminder for 9:00 is due at 01:00 UTC. Nothing here
sleeps to wait for time: the test writes the time, waits until the scheduler has looked at it
(`now` in the schedules API), then looks at what the platform got.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import GatewayProcess, free_port, model_config, run_cli, write_config
from tests.fakes.fake_im import FakeImPlatform
from tests.fakes.fake_model import FakeModelServer
from tests.test_enterprise_im import BOT
from tests.test_skills_gateway import wait_until

START = datetime(2026, 12, 7, 0, 58, tzinfo=UTC).timestamp()  # Mon 08:58 in Shanghai

DIGEST = '''\
from moltbot_sdk import context

@context.schedule(cron="*/30 * * * *", channel="enterprise_im", chat="dave", text="digest")
def digest(msg):
    return "morning digest (" + msg["text"] + ", due " + msg["schedule"]["due"] + ")"

@context.schedule(cron="*/30 * * * *", channel="enterprise_im", chat="nobody")
def lost(msg):
    return "to a chat the gateway never answered"
'''


class Rig:
    """One workspace, a fake model, a fake platform and the clock file; gateways start and
    stop on it."""

    def __init__(self, home: Path, model: FakeModelServer, platform: FakeImPlatform) -> None:
        self.home, self.model, self.platform = home, model, platform
        self.clock = home.parent / "clock"
        self.gw: GatewayProcess | None = None

    def configure(self, **extra: Any) -> None:
        write_config(self.home, {
            **model_config(self.model.url), "gateway": {"timezone": "Asia/Shanghai"},
            "security": {"stranger_mode": "open"}, **extra,
            "channels": {"enterprise_im": {"bot_token": BOT, "reply_url": self.platform.url,
                                           "webhook_url": "https://example.com/api/im"}}})

    def start(self) -> GatewayProcess:
        os.environ["MOLTBOT_TEST_FAULTS"] = f"clock={self.clock}"
        try:
            self.gw = GatewayProcess(self.home, free_port()).start()
        finally:
            del os.environ["MOLTBOT_TEST_FAULTS"]
        return self.gw

    def stop(self) -> None:
        if self.gw is not None:
            self.gw.stop()

    def set_time(self, at: float) -> None:
        """Move the clock and wait until the scheduler has looked at that time."""
        self.clock.write_text(repr(at), encoding="utf-8")
        if self.gw is not None and self.gw.proc and self.gw.proc.poll() is None:
            wait_until(lambda: self.listing()["now"] == at)

    def listing(self, everything: bool = False) -> dict[str, Any]:
        assert self.gw is not None
        answer = httpx.get(f"{self.gw.url}/api/v1/schedules",
                           params={"all": "1"} if everything else {},
                           headers=self.gw.headers, timeout=10)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def say(self, text: str, chat: str = "dave") -> None:
        """dave writes on the platform; his answer arrives as one more platform message."""
        assert self.gw is not None
        before = len(self.platform.replies)
        answer = httpx.post(f"{self.gw.url}/api/im", timeout=30,
                            headers={"Authorization": f"Bearer {BOT}"},
                            json={"id": f"p-{os.urandom(4).hex()}", "sender": "dave",
                                  "chat": chat, "text": text})
        assert answer.status_code == 202, answer.text
        self.platform.wait_for(before + 1)

    def texts(self) -> list[str]:
        return [r["body"]["text"] for r in self.platform.replies]

    def last_text(self) -> str:
        return self.texts()[-1]


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """The suite's check is per test; here one gateway serves the module's tests (`rig`), and
    the test that restarts gateways stops each in its `finally`."""
    yield


@contextmanager
def running_rig(home: Path, **config: Any) -> Iterator[Rig]:
    """A gateway started at START on a fresh fake model and platform, all stopped after."""
    model, platform = FakeModelServer(), FakeImPlatform().start()
    model.start()
    made = Rig(home, model, platform)
    try:
        made.set_time(START)
        made.configure(**config)
        made.start()
        yield made
    finally:
        made.stop()
        platform.stop()
        model.stop()


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with running_rig(tmp_path_factory.mktemp("schedules") / "ai-gateway") as made:
        yield made


def test_a_reminder_set_with_remind_arrives_at_its_minute_and_not_before(rig: Rig) -> None:
    rig.say("/remind 9:00 call mom")
    answer = rig.last_text()
    assert answer.startswith("Reminder set for Mon 2026-12-07 09:00 (Asia/Shanghai): "
                             "call mom (id r"), answer
    reminder = next(r for r in rig.listing()["schedules"] if r["text"] == "call mom")
    assert reminder["next_run"] == datetime(2026, 12, 7, 1, 0, tzinfo=UTC).timestamp()
    sent_before = len(rig.platform.replies)

    rig.set_time(START + 119)  # 08:59:59 in Shanghai: not yet
    assert len(rig.platform.replies) == sent_before
    rig.set_time(START + 120)  # 09:00:00
    arrived = rig.platform.wait_for(sent_before + 1)[-1]["body"]
    assert arrived["text"] == "⏰ Reminder: call mom"
    assert arrived["chat"] == "dave" and arrived["to"] == "dave"
    done = wait_until(lambda: next(r for r in rig.listing(everything=True)["schedules"]
                                   if r["id"] == reminder["id"] and r["last_state"] == "sent"))
    assert done["state"] == "done" and done["runs"] == 1


def test_the_model_sets_a_reminder_through_its_tool(rig: Rig) -> None:
    rig.model.tool_call_when(contains="remind me about tea", name="set_reminder",
                             arguments={"text": "tea", "in": "20m"})
    now = rig.listing()["now"]
    rig.say("please remind me about tea in 20 minutes")
    assert "Reminder set for" in rig.last_text() and ": tea (id r" in rig.last_text()
    sent_before = len(rig.platform.replies)
    rig.set_time(now + 20 * 60 - 1)
    assert len(rig.platform.replies) == sent_before
    rig.set_time(now + 20 * 60)
    assert rig.platform.wait_for(sent_before + 1)[-1]["body"]["text"] == "⏰ Reminder: tea"


def test_a_refused_delivery_is_retried_and_shown(rig: Rig) -> None:
    now = rig.listing()["now"]
    rig.say("/remind in 5m stretch")
    sent_before = len(rig.platform.replies)
    rig.platform.fail_times = 1  # the platform is down for the first attempt
    rig.set_time(now + 300)
    assert rig.platform.wait_for(sent_before + 1)[-1]["body"]["text"] == "⏰ Reminder: stretch"
    row = wait_until(lambda: next(r for r in rig.listing(everything=True)["schedules"]
                                  if r["text"] == "stretch" and r["last_state"] == "sent"))
    outbound = httpx.get(f"{rig.gw.url}/api/v1/outbox/{row['last_outbound']}",  # type: ignore[union-attr]
                         headers=rig.gw.headers, timeout=10).json()  # type: ignore[union-attr]
    assert [h["outcome"] for h in outbound["outbound"]["history"]] == ["retry", "sent"]


def test_reminders_are_listed_and_cancelled_in_chat_cli_and_console(rig: Rig) -> None:
    for what in ("water plants", "pay rent", "feed cat"):
        rig.say(f"/remind tomorrow 8:00 {what}")
    rig.say("/reminders")
    listed = rig.last_text()
    assert listed.startswith("Your reminders (Asia/Shanghai):") and "pay rent" in listed
    ids = {r["text"]: r["id"] for r in rig.listing()["schedules"]}

    rig.say(f"/reminders cancel {ids['water plants']}")
    assert rig.last_text() == f"Cancelled {ids['water plants']}: water plants"
    cli = run_cli(rig.home, "schedules", "cancel", ids["pay rent"])
    assert cli.returncode == 0 and "Cancelled" in cli.stdout, cli.stderr
    console = httpx.post(f"{rig.gw.url}/api/v1/schedules/{ids['feed cat']}/cancel",  # type: ignore[union-attr]
                         headers=rig.gw.headers, timeout=10)  # type: ignore[union-attr]
    assert console.status_code == 200, console.text
    again = httpx.post(f"{rig.gw.url}/api/v1/schedules/{ids['feed cat']}/cancel",  # type: ignore[union-attr]
                       headers=rig.gw.headers, timeout=10)  # type: ignore[union-attr]
    assert again.status_code == 404
    waiting = {r["text"] for r in rig.listing()["schedules"]}
    assert not waiting & {"water plants", "pay rent", "feed cat"}
    listing = json.loads(run_cli(rig.home, "schedules", "list", "--all", "--json").stdout)
    states = {r["text"]: r["state"] for r in listing["schedules"]}
    assert states["pay rent"] == states["feed cat"] == "cancelled"
    assert listing["zone"] == "Asia/Shanghai"


def test_bad_times_get_the_usage_and_a_channel_that_cannot_push_is_refused(rig: Rig) -> None:
    rig.say("/remind at noon call mom")
    assert rig.last_text().startswith("Use: /remind 9:00 call mom")
    rig.say('/remind cron "0 8 * *" stretch')
    assert "is not a cron expression" in rig.last_text()
    assert rig.gw is not None
    answer = rig.gw.post("/remind in 5m tea").json()
    assert "Reminders are sent later on a channel that can send on its own" in answer["reply"]
    assert "enterprise_im" in answer["reply"]


def test_a_skill_schedule_runs_and_its_reply_arrives(rig: Rig) -> None:
    rig.say("hello")  # the gateway sends only to chats it has answered
    (rig.home / "skills" / "digest.py").write_text(DIGEST, encoding="utf-8")
    def skill_rows() -> dict[str, dict[str, Any]] | None:
        found = {r["skill"]: r for r in rig.listing()["schedules"] if r["kind"] == "skill"}
        return found if len(found) == 2 else None

    rows = wait_until(skill_rows)
    row, lost = rows["skills/digest.py#digest"], rows["skills/digest.py#lost"]
    assert row["cron"] == "*/30 * * * *"
    sent_before = len(rig.platform.replies)
    rig.set_time(row["next_run"])
    arrived = rig.platform.wait_for(sent_before + 1)[-1]["body"]
    assert arrived["text"].startswith("morning digest (digest, due ")
    ran = wait_until(lambda: next(r for r in rig.listing()["schedules"]
                                  if r["id"] == row["id"] and r["last_state"] == "sent"))
    assert ran["runs"] == 1 and ran["next_run"] == row["next_run"] + 1800
    failed = wait_until(lambda: next(r for r in rig.listing()["schedules"]
                                     if r["id"] == lost["id"] and r["last_state"]))
    assert failed["last_state"].startswith("failed: enterprise_im has no chat 'nobody'")
    assert failed["state"] == "active"  # the next run still comes
    (rig.home / "skills" / "digest.py").unlink()  # hot reload takes the schedule away
    wait_until(lambda: not any(r["kind"] == "skill" for r in rig.listing()["schedules"]))


@pytest.mark.parametrize("missed", ["run_once", "skip"])
def test_a_reminder_missed_while_down_is_sent_once_or_skipped(
        tmp_path: Path, missed: str) -> None:
    with running_rig(tmp_path / "ai-gateway", schedules={"missed": missed}) as rig:
        platform = rig.platform
        rig.say("/remind 9:00 call mom")
        rig.say("/remind cron \"0 * * * *\" hourly")
        rig.stop()
        sent_before = len(platform.replies)
        rig.set_time(START + 3 * 3600)  # down over 09:00, 10:00 and 11:00
        rig.start()
        rig.set_time(START + 3 * 3600 + 1)  # the scheduler has looked since the start
        rows = {r["text"]: r for r in rig.listing(everything=True)["schedules"]}
        hourly_next = datetime(2026, 12, 7, 4, 0, tzinfo=UTC).timestamp()
        if missed == "run_once":
            got = sorted(r["body"]["text"] for r in platform.wait_for(sent_before + 2)[
                sent_before:])
            assert got == ["⏰ Reminder: call mom", "⏰ Reminder: hourly"]  # once, no burst
        else:
            assert len(platform.replies) == sent_before
            assert rows["call mom"]["state"] == "skipped"
            assert "missed while the gateway was down" in rows["call mom"]["last_state"]
        assert rows["hourly"]["state"] == "active" and rows["hourly"]["next_run"] == hourly_next
        assert platform.duplicates == 0
