"""The Telegram channel end to end: the real gateway process against FakeTelegram (`api_base`),
as a bot is used (and as Telegram fails)."""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import GatewayProcess, free_port, model_config, write_config
from tests.fakes.fake_model import FakeModelServer
from tests.fakes.fake_telegram import FakeTelegram
from tests.skill_sources import report_skill
from tests.trace_check import assert_complete_trace

OPEN = {"stranger_mode": "open"}
ALICE = 5001


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


Start = Callable[..., GatewayProcess]


def telegram_config(fake_model: FakeModelServer, fake: FakeTelegram,
                    security: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
    return {**model_config(fake_model.url), "security": security or OPEN,
            "channels": {"telegram": {"bot_token": fake.token, "api_base": fake.api_base,
                                      "poll_timeout": 1, "probe_interval": 0.5,
                                      "stale_after": 3, **options}}}


@pytest.fixture
def tg_gateway(home: Path, fake_model: FakeModelServer,
               telegram: FakeTelegram) -> Iterator[Start]:
    started: list[GatewayProcess] = []

    def start(security: dict[str, Any] | None = None, **options: Any) -> GatewayProcess:
        write_config(home, telegram_config(fake_model, telegram, security, **options))
        gw = GatewayProcess(home, started[0].port if started else free_port()).start()
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


def channel(gw: GatewayProcess) -> dict[str, Any]:
    rows = httpx.get(f"{gw.url}/api/v1/channels", headers=gw.headers, timeout=10).json()
    return next(row for row in rows["channels"] if row["name"] == "telegram")


def test_private_text_in_reply_out_with_typing(tg_gateway: Start,
                                               telegram: FakeTelegram) -> None:
    gw = tg_gateway()
    telegram.wait_for_pollers(1, timeout=20)
    telegram.user_says(ALICE, "hello bot")
    sent = telegram.wait_for_sent(1, timeout=20)
    assert sent[0].chat_id == ALICE and sent[0].text
    assert sent[0].reply_parameters is None  # private chats: a plain answer
    assert (ALICE, "typing") in telegram.actions
    assert channel(gw)["state"] == "connected"
    assert telegram.pollers.in_flight <= 1
    stored = httpx.get(f"{gw.url}/api/v1/messages", params={"sender": str(ALICE)},
                       headers=gw.headers, timeout=10).json()["messages"]
    assert_complete_trace(gw, stored[0]["id"], sent_on="telegram")


def test_messages_queued_in_one_chat_share_one_typing_indicator(
        tg_gateway: Start, telegram: FakeTelegram, fake_model: FakeModelServer) -> None:
    """A chat's messages are answered one at a time; while they wait, one "typing" loop runs
    for the chat, not one per message (those took sendMessage's connections in a burst)."""
    tg_gateway()
    telegram.wait_for_pollers(1, timeout=20)
    fake_model.delay_first = 0.5  # the five queue behind each other for ~2.5 s
    for i in range(5):
        telegram.user_says(ALICE, f"question {i}")
    sent = telegram.wait_for_sent(5, timeout=30)
    assert [m.text for m in sent] == [f"echo: question {i}" for i in range(5)]
    typing = [a for a in telegram.actions if a == (ALICE, "typing")]
    assert 1 <= len(typing) < 5  # one now and one each 4.5 s: 1 or 2 unless very slow


def test_group_answered_only_when_mentioned_as_a_reply(tg_gateway: Start,
                                                       telegram: FakeTelegram) -> None:
    tg_gateway()
    telegram.wait_for_pollers(1, timeout=20)
    group = -100200
    telegram.user_says(group, "just people talking", chat_type="supergroup",
                       user={"id": ALICE, "first_name": "Alice"})
    asked = telegram.user_says(group, "@moltbot_test_bot what time is it",
                               chat_type="supergroup", user={"id": ALICE, "first_name": "A"})
    sent = telegram.wait_for_sent(1, timeout=20)
    assert telegram.wait_for(lambda: not telegram.pending_updates, timeout=10)
    assert len(telegram.sent) == 1
    assert sent[0].chat_id == group
    assert sent[0].reply_parameters["message_id"] == asked["message_id"]


def test_stranger_start_gets_the_verification_code(tg_gateway: Start,
                                                   telegram: FakeTelegram) -> None:
    tg_gateway(security={"stranger_mode": "verification_code"})
    telegram.wait_for_pollers(1, timeout=20)
    telegram.user_says(ALICE, "/start")
    sent = telegram.wait_for_sent(1, timeout=20)
    assert "code" in (sent[0].text or "") and sent[0].chat_id == ALICE


def test_webhook_set_elsewhere_is_deleted_and_one_poller_runs(tg_gateway: Start,
                                                              telegram: FakeTelegram) -> None:
    telegram.set_webhook_externally("https://elsewhere.example/hook")
    gw = tg_gateway()
    assert telegram.wait_for(lambda: any(c.method.lower() == "deletewebhook"
                                         for c in telegram.calls), timeout=20)
    telegram.wait_for_pollers(1, timeout=20)
    telegram.user_says(ALICE, "still there?")
    telegram.wait_for_sent(1, timeout=20)
    assert telegram.pollers.in_flight == 1
    assert "409" in gw.log() or "webhook" in gw.log()

    # a second program polls the same bot: the gateway's poll ends with 409, it backs off
    # and polls again alone (two pollers of its own would keep ending each other's polls)
    other = httpx.post(f"{telegram.bot_url}/getUpdates", json={"timeout": 0}, timeout=10)
    assert other.json()["ok"] is True

    def conflicts() -> list[Any]:
        return [c for c in telegram.calls if c.method.lower() == "getupdates"
                and c.status == 409 and "other getUpdates" in str(c.answer)]

    assert telegram.wait_for(lambda: len(conflicts()) == 1, timeout=20)
    assert telegram.wait_for(lambda: "another program polls this bot (409)" in gw.log()
                             and "next try in 1 s" in gw.log(), timeout=20), gw.log()[-2000:]
    telegram.wait_for_pollers(1, timeout=20)
    telegram.user_says(ALICE, "after the other one")
    telegram.wait_for_sent(2, timeout=20)
    polled = telegram.pollers.started
    assert telegram.wait_for(lambda: telegram.pollers.started >= polled + 2, timeout=20)
    assert len(conflicts()) == 1 and telegram.pollers.in_flight == 1


def killed_while_answering(tg_gateway: Start, telegram: FakeTelegram,
                           fake_model: FakeModelServer) -> GatewayProcess:
    """A gateway killed (-9) after it stored "remember me" and while the model (hung) was
    answering it; the model hangs on until the test says."""
    fake_model.hang = True
    gw = tg_gateway()
    telegram.wait_for_pollers(1, timeout=20)
    telegram.user_says(ALICE, "remember me")
    # stored: the next poll confirms the update, so Telegram forgets it
    assert telegram.wait_for(lambda: not telegram.pending_updates and
                             telegram.pollers.in_flight == 1, timeout=20)
    assert gw.proc is not None
    gw.proc.send_signal(signal.SIGKILL)
    gw.proc.wait()
    return gw


def test_offset_confirmed_after_store_kill_and_restart_answers_once(
        tg_gateway: Start, telegram: FakeTelegram, fake_model: FakeModelServer) -> None:
    gw = killed_while_answering(tg_gateway, telegram, fake_model)
    fake_model.hang = False
    gw.start()
    sent = telegram.wait_for_sent(1, timeout=30)
    telegram.wait_for_pollers(1, timeout=20)
    telegram.user_says(ALICE, "and now?")
    sent = telegram.wait_for_sent(2, timeout=30)
    assert len(sent) == 2  # the stored message answered once, not lost, not repeated


def test_a_reply_stored_before_its_send_was_queued_is_sent_after_a_kill(
        tg_gateway: Start, telegram: FakeTelegram, fake_model: FakeModelServer,
        home: Path) -> None:
    gw = killed_while_answering(tg_gateway, telegram, fake_model)
    # the reply row waits from before the answer; the crash came just after the answer was
    # stored, before the row was filled: what the database holds then
    with contextlib.closing(sqlite3.connect(home / "data" / "moltbot.db")) as db, db:
        rows = db.execute("SELECT state FROM outbound WHERE channel = 'telegram' AND "
                          "origin = 'reply'").fetchall()
        assert rows == [("waiting",)]
        db.execute("UPDATE messages SET status = 'answered', reply = 'the stored answer', "
                   "replied_at = created_at WHERE channel = 'telegram'")
    fake_model.hang = False
    gw.start()
    sent = telegram.wait_for_sent(1, timeout=30)
    assert sent[0].text == "the stored answer" and sent[0].chat_id == ALICE
    telegram.wait_for_pollers(1, timeout=20)
    telegram.user_says(ALICE, "and now?")
    sent = telegram.wait_for_sent(2, timeout=30)
    assert len(sent) == 2 and sent[1].text != "the stored answer"  # sent once, not again


def test_429_retry_after_is_honoured_through_the_outbox(tg_gateway: Start,
                                                        telegram: FakeTelegram) -> None:
    gw = tg_gateway()
    telegram.wait_for_pollers(1, timeout=20)
    telegram.fail_next("sendMessage", 429, retry_after=2)
    telegram.user_says(ALICE, "hello")
    telegram.wait_for_sent(1, timeout=30)
    failed = [c for c in telegram.calls if c.method.lower() == "sendmessage"]
    assert failed[0].status == 429
    assert "retry after 2" in gw.log()


def test_long_reply_split_and_bad_formatting_falls_back(tg_gateway: Start,
                                                        telegram: FakeTelegram,
                                                        fake_model: FakeModelServer) -> None:
    tg_gateway(format="html")
    telegram.wait_for_pollers(1, timeout=20)
    fake_model.reply_when("long please", "<b>" + "x" * 5000 + "</b>")
    telegram.user_says(ALICE, "long please")
    sent = telegram.wait_for_sent(2, timeout=30)
    assert all(s.text and s.text.startswith("<b>") and s.text.endswith("</b>") for s in sent)
    fake_model.reply_when("broken please", "<b>broken")
    telegram.user_says(ALICE, "broken please")
    sent = telegram.wait_for_sent(3, timeout=30)
    assert sent[2].text == "<b>broken" and sent[2].parse_mode is None
    # the second piece is refused: only it goes as plain text, the first is not sent again
    fake_model.reply_when("half broken", "x" * 4000 + "\n<div>" + "y" * 200 + "</div>")
    telegram.user_says(ALICE, "half broken")
    sent = telegram.wait_for_sent(5, timeout=30)
    assert (sent[3].text, sent[3].parse_mode) == ("x" * 4000 + "\n", "HTML")
    assert (sent[4].text, sent[4].parse_mode) == ("y" * 200, None)
    fake_model.reply_when("and then", "the next answer")
    telegram.user_says(ALICE, "and then")
    sent = telegram.wait_for_sent(6, timeout=30)
    assert sent[5].text == "the next answer"  # nothing more of the long reply came before it


def test_a_hung_getupdates_is_restarted_by_the_liveness_check(tg_gateway: Start,
                                                             telegram: FakeTelegram) -> None:
    telegram.hang_getupdates()
    tg_gateway(poll_timeout=1, stale_after=2, probe_interval=0.3)
    assert telegram.wait_for(lambda: telegram.pollers.started >= 2, timeout=30)
    telegram.user_says(ALICE, "after the hang")
    telegram.wait_for_sent(1, timeout=30)


FILES_SKILL = '''\
import base64
import contextlib
import json
from pathlib import Path
from moltbot_sdk import Skill, context

class Files(Skill):
    @context.handle(command="/files")
    def show(self, msg):
        return {"reply": json.dumps([
            {"name": f["name"], "media_type": f["media_type"], "size": f["size"],
             "content": base64.b64encode(Path(f["path"]).read_bytes()).decode()}
            for f in msg["files"]])}
'''
# the smallest JPEG header the fake (and Telegram) takes as a 32x16 photo
JPEG = (b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x10\x00\x20\x03" + b"\x00" * 14
        + b"\xff\xd9")


def files_seen(sent: Any) -> list[dict[str, Any]]:
    """What the /files skill saw, from the text the user sees (the bot's HTML parsed)."""
    return list(json.loads(sent.message["text"]))


def test_files_in_and_out_and_a_model_that_is_down(
        tg_gateway: Start, telegram: FakeTelegram, home: Path,
        fake_model: FakeModelServer) -> None:
    (home / "skills").mkdir(parents=True, exist_ok=True)
    (home / "skills" / "tg_files.py").write_text(FILES_SKILL, encoding="utf-8")
    (home / "skills" / "report.py").write_text(report_skill(), encoding="utf-8")
    gw = tg_gateway()
    telegram.wait_for_pollers(1, timeout=20)
    telegram.user_sends_document(ALICE, b"hello file", file_name="notes.txt",
                                 caption="read this")
    telegram.wait_for_sent(1, timeout=30)
    inbox = list((home / "files" / "inbox").rglob("*notes.txt"))
    assert inbox and inbox[0].read_bytes() == b"hello file"

    photo = telegram.user_sends_photo(ALICE, JPEG, caption="/files")
    sent = telegram.wait_for_sent(2, timeout=30)
    assert files_seen(sent[1]) == [{"name": f"photo-{photo['message_id']}.jpg",
                                    "media_type": "image/jpeg", "size": len(JPEG),
                                    "content": base64.b64encode(JPEG).decode()}]
    voice = telegram.user_sends_voice(ALICE, b"OggS voice bytes", caption="/files")
    sent = telegram.wait_for_sent(3, timeout=30)
    assert files_seen(sent[2]) == [{"name": f"voice-{voice['message_id']}.ogg",
                                    "media_type": "audio/ogg", "size": 16,
                                    "content": base64.b64encode(b"OggS voice bytes").decode()}]

    # a skill's reply files go out before its text
    telegram.user_says(ALICE, "/report weekly")
    sent = telegram.wait_for_sent(5, timeout=30)
    document, text = sent[3], sent[4]
    assert document.method.lower() == "senddocument" and document.chat_id == ALICE
    assert document.files["document"].file_name == "report.txt"
    assert document.files["document"].data == b"report for weekly"
    assert text.method.lower() == "sendmessage" and text.text == "here it is"

    # the model is down: the message is stored and the chat gets a sentence saying so
    fake_model.stop()
    telegram.user_says(ALICE, "anyone there?")
    sent = telegram.wait_for_sent(6, timeout=60)
    assert sent[5].chat_id == ALICE
    assert "model" in (sent[5].text or "").lower() and "http" not in (sent[5].text or "")
    found = httpx.get(f"{gw.url}/api/v1/messages", params={"q": "anyone there"},
                      headers=gw.headers, timeout=10).json()["messages"]
    assert [(m["channel"], m["error"]) for m in found] == [("telegram", "model_unavailable")]


def test_ten_reloads_leave_exactly_one_poller(tg_gateway: Start, telegram: FakeTelegram,
                                              home: Path, fake_model: FakeModelServer) -> None:
    gw = tg_gateway()
    telegram.wait_for_pollers(1, timeout=20)
    for n in range(10):
        write_config(home, telegram_config(fake_model, telegram, None,
                                           poll_timeout=1 + (n + 1) % 2))
        deadline = time.monotonic() + 30
        while gw.log().count("channel telegram reconfigured") < n + 1:
            assert time.monotonic() < deadline, gw.log()[-3000:]
            time.sleep(0.05)
    telegram.user_says(ALICE, "after reloads")
    telegram.wait_for_sent(1, timeout=30)
    assert telegram.wait_for_pollers(1, timeout=20).in_flight == 1


def test_webhook_mode_checks_the_secret(tg_gateway: Start, telegram: FakeTelegram) -> None:
    port = free_port()
    secret = "s3cret_token"
    telegram.add_chat(ALICE)
    gw = tg_gateway(mode="webhook", webhook_url=f"http://127.0.0.1:{port}/api/telegram",
                    webhook_secret=secret)
    update = {"update_id": 1, "message": {"message_id": 7, "date": 0, "text": "hi",
                                          "chat": {"id": ALICE, "type": "private"},
                                          "from": {"id": ALICE, "first_name": "A"}}}
    wrong = httpx.post(f"{gw.url}/api/telegram", json=update, timeout=10,
                       headers={"X-Telegram-Bot-Api-Secret-Token": "nope"})
    assert wrong.status_code == 401
    ok = httpx.post(f"{gw.url}/api/telegram", json=update, timeout=10,
                    headers={"X-Telegram-Bot-Api-Secret-Token": secret})
    assert ok.status_code == 200
    assert telegram.wait_for_sent(1, timeout=20)[0].chat_id == ALICE, gw.log()[-3000:]


def test_telegram_bot_example_notifies_the_owner(home: Path, fake_model: FakeModelServer,
                                                 telegram: FakeTelegram) -> None:
    config = telegram_config(fake_model, telegram)
    config["skills"] = {"env": {"TELEGRAM_OWNER_CHAT": str(ALICE)}}
    write_config(home, config)
    gw = GatewayProcess(home, free_port()).start()
    try:
        assert (home / "skills" / "telegram_bot.py").exists()  # copied into the workspace
        telegram.wait_for_pollers(1, timeout=20)
        telegram.user_says(ALICE, "hi")  # the owner's chat becomes one the gateway knows
        telegram.wait_for_sent(1, timeout=20)
        answer = gw.post("/notify the build is green")
        assert answer.status_code == 200, answer.text
        sent = telegram.wait_for_sent(2, timeout=30)
        assert sent[1].chat_id == ALICE and "the build is green" in (sent[1].text or "")
    finally:
        gw.stop()
