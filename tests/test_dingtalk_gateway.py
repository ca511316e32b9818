"""The DingTalk channel end to end: the real gateway process, its stream child running the real
`dingtalk-stream` SDK, against FakeDingTalk (`api_base`), as a robot is used (and as DingTalk
fails). `installers/test.sh --latest` runs this module with the newest SDK and websockets
releases: the SDK once broke silently on a websockets upgrade (dingtalk-stream-sdk-python#65)."""

from __future__ import annotations

import json
import os
import re
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from tests.conftest import (
    ROOT,
    GatewayProcess,
    command_line,
    free_port,
    model_config,
    run_cli,
    write_config,
)
from tests.fakes.fake_dingtalk import CLIENT_ID, CLIENT_SECRET, FakeDingTalk, Sent
from tests.fakes.fake_model import FakeModelServer
from tests.skill_sources import report_skill
from tests.trace_check import assert_complete_trace

OPEN = {"stranger_mode": "open"}
GROUP = "cidGroupTeam001"
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360f8ffff3f0005fe02fea7d6a4860000"
                    "000049454e44ae426082")  # a 1x1 picture
FILES_SKILL = report_skill(chart=PNG, chart_reply="the chart")


def dingtalk_config(model: FakeModelServer, fake: FakeDingTalk,
                    security: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
    return {**model_config(model.url), "security": security or OPEN,
            "channels": {"dingtalk": {"client_id": CLIENT_ID,
                                      "client_secret": CLIENT_SECRET,
                                      "api_base": fake.api_base, "stale_after": "2s",
                                      **options}}}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeDingTalk]:
    with FakeDingTalk(ping_every=0.3) as server:
        yield server


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dingtalk") / "ai-gateway"


def readme_snippet() -> dict[str, Any]:
    """The config snippet of README's DingTalk section, as a user pastes it."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## DingTalk"):]
    found = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert found, "README's DingTalk section has no yaml snippet"
    return dict(yaml.safe_load(textwrap.dedent(found.group(1))))


@pytest.fixture(scope="module")
def gw(home: Path, model: FakeModelServer, fake: FakeDingTalk) -> Iterator[GatewayProcess]:
    """One stream-mode gateway for the module (its start is most of a test's time), started
    from README's snippet as written (its ${ENV} values set, as in a shell), on the fake."""
    (home / "skills").mkdir(parents=True, exist_ok=True)
    (home / "skills" / "files.py").write_text(FILES_SKILL, encoding="utf-8")
    snippet = readme_snippet()
    snippet["channels"]["dingtalk"].update(api_base=fake.api_base, stale_after="2s")
    write_config(home, {**model_config(model.url), "security": OPEN, **snippet})
    os.environ.update(DINGTALK_CLIENT_ID=CLIENT_ID, DINGTALK_CLIENT_SECRET=CLIENT_SECRET)
    try:
        proc = GatewayProcess(home, free_port()).start()
        SHARED.append(proc)
        fake.wait_for_connections(1)
        yield proc
        proc.stop()
        SHARED.clear()
    finally:
        for name in ("DINGTALK_CLIENT_ID", "DINGTALK_CLIENT_SECRET"):
            os.environ.pop(name, None)


SHARED: list[GatewayProcess] = []  # the module's gateway, while it runs


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """The suite's check, minus the gateway the module shares and its stream child (stopped
    when the module ends): no test leaves another process behind."""
    yield
    shared: set[int] = set()
    for gateway in SHARED:
        assert gateway.proc is not None
        if gateway.proc.poll() is None:
            shared |= {gateway.proc.pid} | {p.pid for p in
                                            psutil.Process(gateway.proc.pid).children(True)}
    deadline = time.monotonic() + 10
    while left := [p for p in psutil.Process().children(recursive=True)
                   if p.pid not in shared and p.status() != psutil.STATUS_ZOMBIE]:
        assert time.monotonic() < deadline, f"test left processes running: {left}"
        time.sleep(0.05)


def channel(gw: GatewayProcess) -> dict[str, Any]:
    rows = httpx.get(f"{gw.url}/api/v1/channels", headers=gw.headers, timeout=10).json()
    return next(row for row in rows["channels"] if row["name"] == "dingtalk")


def new_sent(fake: FakeDingTalk, before: int, count: int = 1) -> list[Sent]:
    return fake.wait_for_sent(before + count, timeout=30)[before:]


def reload_with(gw: GatewayProcess, home: Path, config: dict[str, Any]) -> None:
    done = gw.log().count("channel dingtalk reconfigured")
    write_config(home, config)
    deadline = time.monotonic() + 30
    while gw.log().count("channel dingtalk reconfigured") <= done:
        assert time.monotonic() < deadline, gw.log()[-3000:]
        time.sleep(0.05)


def test_one_to_one_answered_through_the_session_webhook(gw: GatewayProcess,
                                                         fake: FakeDingTalk) -> None:
    before = len(fake.sent)
    data = fake.user_says("hello robot", staff_id="alice01")
    sent = new_sent(fake, before)
    assert (sent[0].via, sent[0].target) == ("webhook", data["conversationId"])
    assert sent[0].body["msgtype"] == "markdown"
    assert sent[0].text == "echo: hello robot"
    assert data["msgId"] not in fake.pending  # acknowledged
    row = channel(gw)
    assert row["state"] == "connected", row
    stored = httpx.get(f"{gw.url}/api/v1/messages", params={"sender": "alice01"},
                       headers=gw.headers, timeout=10).json()["messages"]
    assert stored[0]["channel"] == "dingtalk" and stored[0]["chat"] == "alice01"
    assert_complete_trace(gw, stored[0]["id"], sent_on="dingtalk")


def test_group_message_answered_in_the_group(gw: GatewayProcess, fake: FakeDingTalk) -> None:
    before = len(fake.sent)
    fake.user_says("what is on today?", staff_id="bob02", group=GROUP)
    sent = new_sent(fake, before)
    assert (sent[0].via, sent[0].target) == ("webhook", GROUP)
    assert sent[0].text == "echo: what is on today?\n\n@bob02"  # the asker is mentioned
    assert sent[0].body["at"] == {"atUserIds": ["bob02"]}


def test_expired_webhook_goes_through_the_send_api_with_a_refreshed_token(
        gw: GatewayProcess, fake: FakeDingTalk) -> None:
    before = len(fake.sent)
    fake.user_says("reply later please", staff_id="carol03", ttl=-1)
    sent = new_sent(fake, before)
    assert (sent[0].via, sent[0].target) == ("person", "carol03")
    assert sent[0].body["robotCode"] == CLIENT_ID
    assert sent[0].body["msgKey"] == "sampleMarkdown"
    assert sent[0].text == "echo: reply later please"

    fake.user_says("in the group, later", staff_id="carol03", group=GROUP, ttl=-1)
    sent = new_sent(fake, before + 1)
    assert (sent[0].via, sent[0].target) == ("group", GROUP)

    # the cached token is refused (expired early): fetched again once, the send goes through
    calls = fake.token_calls
    fake.expire_tokens()
    fake.user_says("third one please", staff_id="carol03", ttl=-1)
    sent = new_sent(fake, before + 2)
    assert sent[0].text == "echo: third one please"
    assert fake.token_calls == calls + 1


def test_rate_limited_send_is_retried_by_the_outbox(gw: GatewayProcess,
                                                    fake: FakeDingTalk) -> None:
    before = len(fake.sent)
    fake.throttle(1)
    fake.user_says("busy platform", staff_id="dave04", ttl=-1)
    sent = new_sent(fake, before)
    assert sent[0].text == "echo: busy platform"
    rows = httpx.get(f"{gw.url}/api/v1/outbox", params={"channel": "dingtalk"},
                     headers=gw.headers, timeout=10).json()
    row = next(r for r in rows["outbound"] if r["text"] == "echo: busy platform")
    assert row["state"] == "sent" and row["attempts"] == 2, row


def test_a_skills_picture_and_file_go_out_as_uploaded_media(gw: GatewayProcess,
                                                             fake: FakeDingTalk) -> None:
    before = len(fake.sent)
    fake.user_says("/chart q3", staff_id="erin05")
    text, picture = new_sent(fake, before, 2)
    assert (text.via, text.text) == ("webhook", "the chart")  # the text first, then the file
    assert (picture.via, picture.target, picture.msg_key) == ("person", "erin05",
                                                              "sampleImageMsg")
    assert picture.media is not None
    assert (picture.media.type, picture.media.name, picture.media.data) == (
        "image", "chart.png", PNG)

    fake.user_says("/report weekly", staff_id="erin05", group=GROUP)
    text, document = new_sent(fake, before + 2, 2)
    assert (text.via, text.target, text.text) == ("webhook", GROUP, "here it is\n\n@erin05")
    assert (document.via, document.target, document.msg_key) == ("group", GROUP, "sampleFile")
    param = json.loads(document.body["msgParam"])
    assert (param["fileName"], param["fileType"]) == ("report.txt", "txt")
    assert document.media is not None
    assert (document.media.type, document.media.data) == ("file", b"report for weekly")


def test_a_long_reply_arrives_in_pieces_in_order(gw: GatewayProcess, fake: FakeDingTalk,
                                                 model: FakeModelServer) -> None:
    # 40 lines of 280 characters (40 "words": under the fake model's max_tokens)
    long = "\n".join(f"{i:02d}:" + "钉" * 277 for i in range(40))
    model.reply_when(contains="a long answer", reply=long)
    before = len(fake.sent)
    fake.user_says("a long answer please", staff_id="fay06", group=GROUP)
    pieces = [s.text for s in new_sent(fake, before, 3)]
    assert all(len(p) <= 5000 for p in pieces)
    assert pieces[0].endswith("\n\n@fay06")  # the first piece mentions the asker, once
    assert "\n".join([pieces[0].removesuffix("\n\n@fay06"), *pieces[1:]]) == long


def test_a_retried_reply_does_not_resend_what_dingtalk_took(gw: GatewayProcess,
                                                            fake: FakeDingTalk) -> None:
    before, uploads = len(fake.sent), len(fake.media)
    fake.throttle(1)  # the file's send is refused once: the outbox sends the row again
    fake.user_says("/report retried", staff_id="gus07")
    text, document = new_sent(fake, before, 2)
    assert (text.text, document.msg_key) == ("here it is", "sampleFile")
    assert document.media is not None and document.media.data == b"report for retried"
    rows = httpx.get(f"{gw.url}/api/v1/outbox", params={"channel": "dingtalk"},
                     headers=gw.headers, timeout=10).json()
    row = next(r for r in rows["outbound"] if r["chat"] == "gus07")
    assert row["state"] == "sent" and row["attempts"] == 2, row
    assert [s.text for s in fake.sent[before:]].count("here it is") == 1
    assert len(fake.media) == uploads + 1  # the retry sent the file uploaded the first time


def test_dropped_stream_reconnects_and_loses_nothing(gw: GatewayProcess,
                                                     fake: FakeDingTalk) -> None:
    before, opened = len(fake.sent), len(fake.opened)
    fake.drop()
    # written while no connection is open: DingTalk holds it for the next one
    fake.user_says("are you still there?", staff_id="erin05")
    fake.wait_for(lambda: len(fake.opened) > opened)
    fake.wait_for_connections(1)
    sent = new_sent(fake, before)
    assert sent[0].text == "echo: are you still there?"
    # DingTalk moves a client with its disconnect frame: reconnected again, one connection
    fake.disconnect()
    fake.user_says("and now?", staff_id="erin05")
    sent = new_sent(fake, before + 1)
    assert sent[0].text == "echo: and now?"
    assert len(fake.connections) == 1


def test_an_outage_shows_retrying_and_nothing_is_lost(gw: GatewayProcess, fake: FakeDingTalk,
                                                      home: Path) -> None:
    before = len(fake.sent)
    fake.outage(True)
    try:
        deadline = time.monotonic() + 30
        while (row := channel(gw))["state"] != "retrying" or "503" not in row["detail"]:
            assert time.monotonic() < deadline, row
            time.sleep(0.1)
        assert "stream gateway answered 503" in row["detail"]
        listed = run_cli(home, "channels", "list")
        assert "dingtalk" in listed.stdout and "retrying" in listed.stdout, listed.stdout
        fake.user_says("written during the outage", staff_id="ivan09")
    finally:
        fake.outage(False)
    sent = new_sent(fake, before)
    assert sent[0].text == "echo: written during the outage"
    assert channel(gw)["state"] == "connected"


def test_a_redelivered_message_is_answered_once(gw: GatewayProcess,
                                                fake: FakeDingTalk) -> None:
    before = len(fake.sent)
    data = fake.user_says("only once", staff_id="frank06")
    new_sent(fake, before)
    fake.redeliver(data)  # DingTalk sends it again (its ack was lost)
    fake.wait_for(lambda: fake.delivered.count(data["msgId"]) == 2 and not fake.pending)
    fake.user_says("next", staff_id="frank06")
    sent = new_sent(fake, before + 1)
    assert [s.text for s in fake.sent[before:]] == ["echo: only once", "echo: next"], sent


def test_pictures_and_files_arrive_in_the_inbox(gw: GatewayProcess, fake: FakeDingTalk,
                                                home: Path) -> None:
    before = len(fake.sent)
    fake.user_sends_file(b"\x89PNG fake picture", staff_id="hana08")
    fake.user_sends_file(b"quarterly numbers", "report.csv", staff_id="hana08")
    new_sent(fake, before, 2)
    inbox = home / "files" / "inbox"
    assert [p.read_bytes() for p in inbox.rglob("*report.csv")] == [b"quarterly numbers"]
    assert [p.read_bytes() for p in inbox.rglob("*-picture-*.png")] == [b"\x89PNG fake picture"]

    # what the robot cannot read gets a sentence in the same chat
    card = {**fake.robot_message("", staff_id="hana08"), "msgtype": "interactiveCard"}
    del card["text"]
    fake.redeliver(card)
    sent = new_sent(fake, before + 2)
    assert sent[0].via == "webhook" and "as text" in sent[0].text
    gone = {**fake.robot_message("", staff_id="hana08"), "msgtype": "file",
            "content": {"downloadCode": "expired-code", "fileName": "old.pdf"}}
    del gone["text"]
    fake.redeliver(gone)
    new_sent(fake, before + 3)
    assert "could not be fetched from DingTalk" in fake.sent[-1].text, fake.sent[before:]


def test_silent_stream_goes_stale_and_restarts_once(gw: GatewayProcess,
                                                    fake: FakeDingTalk) -> None:
    opened = len(fake.opened)
    fake.mute(True)  # no pings, no frames: a connection that is open but carries nothing
    try:
        deadline = time.monotonic() + 30
        while "restarted once" not in (row := channel(gw))["detail"]:
            assert time.monotonic() < deadline, row
            time.sleep(0.1)
        assert row["state"] == "stale"
        fake.wait_for(lambda: len(fake.opened) == opened + 1)  # the one restart
        fake.wait_for_connections(1)
        row = channel(gw)
        assert row["state"] == "stale" and "restarted once" in row["detail"], row
        assert len(fake.opened) == opened + 1  # still stale, and not restarted in a loop
    finally:
        fake.mute(False)
    deadline = time.monotonic() + 30
    while (row := channel(gw))["state"] != "connected":
        assert time.monotonic() < deadline, row
        time.sleep(0.1)


def test_wrong_secret_shows_retrying_with_the_key_to_fix(
        gw: GatewayProcess, fake: FakeDingTalk, home: Path, model: FakeModelServer) -> None:
    config = dingtalk_config(model, fake)
    config["channels"]["dingtalk"]["client_secret"] = "not-the-secret"
    reload_with(gw, home, config)
    deadline = time.monotonic() + 30
    while (row := channel(gw))["state"] != "retrying":
        assert time.monotonic() < deadline, row
        time.sleep(0.1)
    assert "client_secret" in row["detail"] and "not-the-secret" not in row["detail"]
    assert "not-the-secret" not in gw.log()
    reload_with(gw, home, dingtalk_config(model, fake))
    fake.wait_for_connections(1)


def test_reloads_leave_one_connection_and_strangers_get_a_code(
        gw: GatewayProcess, fake: FakeDingTalk, home: Path, model: FakeModelServer) -> None:
    reload_with(gw, home, dingtalk_config(model, fake, enabled=False))
    fake.wait_for_connections(0)  # switched off: its connection is gone, not left open
    assert channel(gw)["state"] == "stopped"
    for n in range(2):
        reload_with(gw, home, dingtalk_config(model, fake, {"stranger_mode":
                                                            "verification_code"},
                                              stale_after=f"{3 + n % 2}s"))
    fake.wait_for_connections(1)
    before = len(fake.sent)
    fake.user_says("hi, who are you?", staff_id="stranger99")
    sent = new_sent(fake, before)
    assert "code" in sent[0].text.lower() and sent[0].text != "echo: hi, who are you?"
    assert len(fake.connections) == 1
    reload_with(gw, home, dingtalk_config(model, fake))


def test_callback_mode_checks_the_sign_and_answers(
        gw: GatewayProcess, fake: FakeDingTalk, home: Path, model: FakeModelServer) -> None:
    """Switched to the outgoing robot's callback by a reload: the stream's connection is gone
    (nothing left to swallow messages), the POST is checked, stored, answered later."""
    reload_with(gw, home, dingtalk_config(model, fake, mode="callback"))
    fake.wait_for_connections(0)
    opened, before = len(fake.opened), len(fake.sent)
    url = f"{gw.url}/api/dingtalk"
    data = fake.robot_message("hello by callback", staff_id="gina07")
    refused = fake.post_outgoing(url, data, secret="wrong")
    assert refused.status_code == 401 and "client_secret" in refused.json()["error"]
    old = int((time.time() - 7200) * 1000)
    assert fake.post_outgoing(url, data, timestamp=old).status_code == 401
    answer = fake.post_outgoing(url, data)
    assert answer.status_code == 200, answer.text
    sent = new_sent(fake, before)
    assert (sent[0].via, sent[0].text) == ("webhook", "echo: hello by callback")
    # DingTalk posts it again: answered once
    assert fake.post_outgoing(url, data).status_code == 200
    later = fake.robot_message("second", staff_id="gina07", ttl=-1)
    assert fake.post_outgoing(url, later).status_code == 200
    new_sent(fake, before + 1)
    assert [(s.via, s.text) for s in fake.sent[before:]] == [
        ("webhook", "echo: hello by callback"), ("person", "echo: second")]
    assert channel(gw)["state"] == "connected"
    assert len(fake.opened) == opened  # no stream in callback mode
    reload_with(gw, home, dingtalk_config(model, fake))
    fake.wait_for_connections(1)


def test_a_killed_gateway_leaves_no_stream_and_answers_after_its_start(
        gw: GatewayProcess, fake: FakeDingTalk, home: Path, model: FakeModelServer) -> None:
    """Last in the module: SIGKILL while a stored message waits for the model. The child sees
    its pipe close and ends, and its connection with it (nothing left to swallow messages);
    DingTalk has the message's ack and will not send it again, so the next start answers it
    from the store (its session webhook is gone with the process: the send API takes it)."""
    assert gw.proc is not None
    before = len(fake.sent)
    model.delay_first = 60.0  # the answer is still coming when the gateway dies
    data = fake.user_says("answer me after the crash", staff_id="kate10")
    fake.wait_for(lambda: data["msgId"] not in fake.pending)  # stored, then acknowledged
    children = psutil.Process(gw.proc.pid).children(recursive=True)
    streams = [p for p in children if "dingtalk_stream_host" in command_line(p)]
    assert len(streams) == 1
    gw.proc.kill()
    gw.proc.wait(10)
    streams[0].wait(10)  # ended (psutil.TimeoutExpired if it still ran)
    fake.wait_for_connections(0)
    model.delay_first = 0.0
    again = GatewayProcess(home, free_port()).start()
    try:
        sent = new_sent(fake, before)
        assert (sent[0].via, sent[0].target) == ("person", "kate10")
        assert sent[0].text == "echo: answer me after the crash"
        assert fake.delivered.count(data["msgId"]) == 1  # not delivered again
    finally:
        again.stop()
