"""The WeCom channel end to end: the real gateway process with WeCom's callbacks signed and
encrypted as WeCom sends them, and its server API answered by FakeWeCom (`api_base`).

One gateway serves the module (open stranger mode); the stranger and hot-reload tests start
their own."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import (
    GatewayProcess,
    assert_only_gateway_left,
    free_port,
    model_config,
    write_config,
)
from tests.fakes.fake_model import FakeModelServer
from tests.fakes.fake_robots import WeComRobot
from tests.fakes.fake_wecom import FakeWeCom
from tests.skill_sources import report_skill

PATH = "/api/wecom"
REPORT_SKILL = report_skill()


def wecom_config(model: FakeModelServer, fake: FakeWeCom, robot: WeComRobot | None = None,
                 security: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
    """The README's snippet, with the fake's keys and api_base."""
    channel: dict[str, Any] = {
        "corp_id": fake.corp_id, "agent_id": fake.agent_id, "secret": fake.secret,
        "token": fake.token, "encoding_aes_key": fake.aes_key, "api_base": fake.api_base,
        "path": PATH, "probe_interval": 0.5, "stale_after": 30, **options}
    if robot is not None:
        channel["robots"] = {"ops": robot.webhook_url}
    return {**model_config(model.url), "security": security or {"stranger_mode": "open"},
            "channels": {"wecom": channel}}


def start(home: Path, config: dict[str, Any], fake: FakeWeCom) -> GatewayProcess:
    write_config(home, config)
    gw = GatewayProcess(home, free_port()).start()
    fake.callback_url = f"{gw.url}{PATH}"
    return gw


def listed(gw: GatewayProcess) -> dict[str, Any]:
    rows = httpx.get(f"{gw.url}/api/v1/channels", headers=gw.headers, timeout=10).json()
    return next(row for row in rows["channels"] if row["name"] == "wecom")


def poll(done: Callable[[], bool], timeout: float = 20.0) -> bool:
    """The gateway's state has no event to wait on from here: look again until a deadline."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def wait_state(gw: GatewayProcess, state: str, words: str = "") -> dict[str, Any]:
    found: dict[str, Any] = {}

    def there() -> bool:
        found.update(listed(gw))
        return found["state"] == state and words in found["status"]

    assert poll(there), found
    return found


@pytest.fixture(scope="module")
def wecom() -> Iterator[FakeWeCom]:
    with FakeWeCom() as fake:
        yield fake


@pytest.fixture(scope="module")
def robot() -> Iterator[WeComRobot]:
    with WeComRobot() as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, model: FakeModelServer, wecom: FakeWeCom,
       robot: WeComRobot) -> Iterator[GatewayProcess]:
    home = tmp_path_factory.mktemp("wecom") / "ai-gateway"
    (home / "skills").mkdir(parents=True)
    (home / "skills" / "report.py").write_text(REPORT_SKILL, encoding="utf-8")
    gateway = start(home, wecom_config(model, wecom, robot), wecom)
    yield gateway
    gateway.stop()


@pytest.fixture(autouse=True)
def no_leftover_processes(gw: GatewayProcess) -> Iterator[None]:
    """The suite's check, minus the module's shared gateway and its children."""
    yield
    assert_only_gateway_left(gw)


@pytest.fixture
def fresh(wecom: FakeWeCom) -> Iterator[FakeWeCom]:
    """The shared fake with nothing sent yet, and healthy again after the test."""
    with wecom._cond:
        wecom.sent.clear()
    yield wecom
    wecom.ip_allowed = True
    wecom.rate_limit(0)


def test_url_verification_answers_the_decrypted_echostr(gw: GatewayProcess,
                                                        fresh: FakeWeCom) -> None:
    answer = fresh.verify_url("1616140317555161061")
    assert answer.status_code == 200, answer.text
    assert answer.text == "1616140317555161061"
    assert answer.headers["Content-Type"].startswith("text/plain")


def test_a_message_is_acknowledged_at_once_and_answered_in_its_chat(
        gw: GatewayProcess, fresh: FakeWeCom) -> None:
    answer, _ = fresh.user_says("alice", "hello wecom")
    assert answer.status_code == 200 and answer.text == ""  # the ack: no passive reply
    sent = fresh.wait_for_sent(1)
    assert (sent[0].touser, sent[0].msgtype, sent[0].content) == ("alice", "text",
                                                                  "echo: hello wecom")
    state = wait_state(gw, "connected", "callbacks at /api/wecom for app Moltbot")
    assert "last in" in state["status"] and "probe back" in state["status"]
    stored = httpx.get(f"{gw.url}/api/v1/messages", params={"sender": "alice"},
                       headers=gw.headers, timeout=10).json()["messages"]
    assert stored[0]["channel"] == "wecom" and stored[0]["chat"] == "alice"


def test_a_redelivered_msgid_is_answered_once(gw: GatewayProcess, fresh: FakeWeCom) -> None:
    answer, plain = fresh.user_says("alice", "only once please")
    assert answer.status_code == 200
    again = fresh.send_callback(plain)  # WeCom's retry of the same MsgId
    assert again.status_code == 200 and again.text == ""
    fresh.wait_for_sent(1)
    fresh.user_says("alice", "next one")
    sent = fresh.wait_for_sent(2)
    assert [s.content for s in sent] == ["echo: only once please", "echo: next one"]


def test_a_long_reply_is_split_on_utf8_byte_boundaries(gw: GatewayProcess, fresh: FakeWeCom,
                                                       model: FakeModelServer) -> None:
    long = "企业微信" * 300 + "\n" + "答" * 700 + "🙂" * 200  # 3,600 + 1 + 2,100 + 800 bytes
    model.reply_when(contains="long please", reply=long)
    fresh.user_says("alice", "long please")
    assert fresh.wait_for(lambda: "".join(s.content for s in fresh.sent) == long)
    sizes = [len(s.content.encode()) for s in fresh.sent]
    assert len(sizes) >= 4 and max(sizes) <= 2048 and not any(s.truncated for s in fresh.sent)


def test_an_expired_token_is_refreshed_once(gw: GatewayProcess, fresh: FakeWeCom) -> None:
    fresh.user_says("alice", "warm up")
    fresh.wait_for_sent(1)
    issued = fresh.tokens_issued
    fresh.expire_tokens()
    fresh.user_says("alice", "after the token ended")
    sent = fresh.wait_for_sent(2)
    assert sent[1].content == "echo: after the token ended"
    assert fresh.tokens_issued == issued + 1
    assert ("/cgi-bin/message/send", 42001) in fresh.calls or \
        ("/cgi-bin/agent/get", 42001) in fresh.calls


def test_a_bad_signature_is_refused_and_nothing_is_taken(gw: GatewayProcess,
                                                        fresh: FakeWeCom) -> None:
    plain, _ = fresh.message_xml("mallory", "text", {"Content": "let me in"})
    answer = fresh.send_callback(plain, tamper=True)
    assert answer.status_code == 403
    verify = httpx.get(fresh.callback_url, params={"msg_signature": "0" * 40, "timestamp": "1",
                                                   "nonce": "n", "echostr": "abc"}, timeout=10)
    assert verify.status_code == 403 and verify.text != "abc"
    stored = httpx.get(f"{gw.url}/api/v1/messages", params={"sender": "mallory"},
                       headers=gw.headers, timeout=10).json()["messages"]
    assert stored == []
    assert "refused for a bad signature" in listed(gw)["status"]


def test_a_callback_for_another_company_says_what_to_fix(gw: GatewayProcess,
                                                         fresh: FakeWeCom) -> None:
    plain, _ = fresh.message_xml("alice", "text", {"Content": "wrong receive id"})
    assert fresh.send_callback(plain, receive_id="wwsomeoneelse").status_code == 403
    wait_state(gw, "retrying", "channels.wecom.corp_id")
    fresh.user_says("alice", "a good one")  # a callback that decrypts clears it
    fresh.wait_for_sent(1)
    wait_state(gw, "connected")


def test_an_image_comes_in_through_media_get(gw: GatewayProcess, fresh: FakeWeCom) -> None:
    jpeg = b"\xff\xd8\xff\xe0 a tiny jpeg"
    answer = fresh.user_sends_image("bob", jpeg)
    assert answer.status_code == 200
    fresh.wait_for_sent(1)
    assert any(path == "/cgi-bin/media/get" and code == 0 for path, code in fresh.calls)
    stored = httpx.get(f"{gw.url}/api/v1/messages", params={"sender": "bob"},
                       headers=gw.headers, timeout=10).json()["messages"]
    trace = httpx.get(f"{gw.url}/api/v1/messages/{stored[0]['id']}/trace",
                      headers=gw.headers, timeout=10).json()
    assert [(f["name"], f["media_type"], f["size"]) for f in trace["files"]["in"]] == [
        ("photo.jpg", "image/jpeg", len(jpeg))]


def test_a_skills_file_goes_out_through_media_upload(gw: GatewayProcess,
                                                     fresh: FakeWeCom) -> None:
    fresh.user_says("alice", "/report weekly")
    document, text = fresh.wait_for_sent(2)
    assert (document.msgtype, text.content) == ("file", "here it is")
    uploaded = fresh.media[document.media_id]
    assert (uploaded.name, uploaded.data) == ("report.txt", b"report for weekly")


def test_wecom_down_mid_conversation_loses_nothing(gw: GatewayProcess,
                                                  fresh: FakeWeCom) -> None:
    fresh.user_says("alice", "before the outage")
    fresh.wait_for_sent(1)
    fresh.stop()
    try:
        fresh.user_says("alice", "during the outage")  # the callback still reaches us
        wait_state(gw, "retrying", "ConnectError reaching")
    finally:
        fresh.start()
    sent = fresh.wait_for_sent(2, timeout=30)
    assert sent[1].content == "echo: during the outage"
    wait_state(gw, "connected")


def test_a_rate_limited_send_goes_later(gw: GatewayProcess, fresh: FakeWeCom) -> None:
    fresh.rate_limit(1)
    fresh.user_says("alice", "busy hour")
    assert fresh.wait_for_sent(1)[0].content == "echo: busy hour"
    rows = httpx.get(f"{gw.url}/api/v1/outbox", params={"channel": "wecom"},
                     headers=gw.headers, timeout=10).json()["outbound"]
    row = next(r for r in rows if r["text"] == "echo: busy hour")
    assert row["state"] == "sent" and "45009" in row["history"][0]["detail"]


def test_group_robot_is_a_target_for_send(gw: GatewayProcess, robot: WeComRobot) -> None:
    text = "部署完成 " * 400  # 5,200 bytes: three robot messages
    answer = httpx.post(f"{gw.url}/api/v1/send", headers=gw.headers, timeout=10,
                        json={"channel": "wecom", "chat": "robot:ops", "text": text})
    assert answer.status_code == 202, answer.text
    accepted = robot.wait_accepted(3)
    assert "".join(r.body["text"]["content"] for r in accepted) == text.strip()
    unknown = httpx.post(f"{gw.url}/api/v1/send", headers=gw.headers, timeout=10,
                         json={"channel": "wecom", "chat": "robot:nobody", "text": "x"})
    assert unknown.status_code == 400


def test_a_stranger_gets_a_code_and_reloads_name_a_wrong_secret_and_switch_off(
        home: Path, fake_model: FakeModelServer) -> None:
    with FakeWeCom(users=("carol",)) as fake:
        config = wecom_config(fake_model, fake, security={"stranger_mode":
                                                          "verification_code"})
        gw = start(home, config, fake)
        try:
            answer, _ = fake.user_says("carol", "hi there")
            assert answer.status_code == 200, answer.text
            assert fake.wait_for(lambda: len(fake.sent) == 1), gw.log()[-3000:]
            sent = fake.sent
            assert sent[0].touser == "carol" and re.search(r"\b\d{4}\b", sent[0].content)
            assert fake_model.calls == 0

            config["channels"]["wecom"]["secret"] = "not-the-secret"  # hot reload
            write_config(home, config)
            state = wait_state(gw, "retrying", "channels.wecom.secret")
            assert "40001" in state["status"]

            config["channels"]["wecom"]["enabled"] = False  # switched off: nothing answers
            write_config(home, config)
            wait_state(gw, "stopped")
            assert fake.verify_url().status_code == 503

            config["channels"]["wecom"].update(enabled=True, secret=fake.secret)
            write_config(home, config)
            wait_state(gw, "connected")
            assert fake.verify_url("back again").text == "back again"

            config["channels"]["wecom"] = {"robots": {"ops": "https://example.invalid/x"}}
            write_config(home, config)  # robots only: no app, no callback
            wait_state(gw, "connected", "robots only: ops")
            assert fake.verify_url().status_code == 503
        finally:
            gw.stop()
