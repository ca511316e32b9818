"""The Feishu channel's HTTP event callback end to end: FakeFeishu posts events encrypted with
the app's encrypt key and signed, the gateway's child decrypts and verifies them with the SDK,
and replies (files too) leave through the message API."""

from __future__ import annotations

import base64
from collections.abc import Iterator
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
from tests.fakes.fake_feishu import FakeFeishu, encrypt
from tests.feishu_support import wait_state
from tests.skill_sources import report_skill

ENCRYPT_KEY = "test-encrypt-key-2026"
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhg"
                       "GAWjR9awAAAABJRU5ErkJggg==")
TOKEN = "test-verification-token"
REPORT_SKILL = report_skill(chart=PNG, chart_reply="")


@pytest.fixture(scope="module")
def feishu() -> Iterator[FakeFeishu]:
    with FakeFeishu() as fake:
        yield fake


def callback_config(model_url: str, fake: FakeFeishu, **options: Any) -> dict[str, Any]:
    return {**model_config(model_url), "security": {"stranger_mode": "open"},
            "channels": {"feishu": {"app_id": fake.app_id, "app_secret": fake.app_secret,
                                    "domain": fake.domain, "mode": "callback",
                                    "encrypt_key": ENCRYPT_KEY, "verification_token": TOKEN,
                                    **options}}}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, model: Any,
       feishu: FakeFeishu) -> Iterator[GatewayProcess]:
    home = tmp_path_factory.mktemp("feishu-cb") / "ai-gateway"
    (home / "skills").mkdir(parents=True)
    (home / "skills" / "report.py").write_text(REPORT_SKILL, encoding="utf-8")
    write_config(home, callback_config(model.url, feishu))
    gateway = GatewayProcess(home, free_port()).start()
    try:
        wait_state(gateway, "connected", timeout=60)
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture(autouse=True)
def no_leftover_processes(gw: GatewayProcess) -> Iterator[None]:
    yield
    assert_only_gateway_left(gw)


def url(gw: GatewayProcess) -> str:
    return f"{gw.url}/api/feishu/events"


def test_the_url_verification_challenge_is_answered(gw: GatewayProcess) -> None:
    body = {"encrypt": encrypt({"challenge": "ch-123", "token": TOKEN,
                                "type": "url_verification"}, ENCRYPT_KEY)}
    answer = httpx.post(url(gw), json=body, timeout=20)
    assert answer.status_code == 200 and answer.json() == {"challenge": "ch-123"}


def test_an_encrypted_event_is_stored_acknowledged_and_answered_once(
        gw: GatewayProcess, feishu: FakeFeishu) -> None:
    event = feishu.message_event("over the callback", token=TOKEN)
    message_id = event["event"]["message"]["message_id"]
    assert feishu.post_callback(url(gw), event, ENCRYPT_KEY).status_code == 200
    event["header"]["event_id"] = "redelivered-event-id"
    assert feishu.post_callback(url(gw), event, ENCRYPT_KEY).status_code == 200
    feishu.wait_for(lambda: any(m.reply_to == message_id for m in feishu.sent),
                    what="the reply")
    later = feishu.message_event("the next one", token=TOKEN)
    feishu.post_callback(url(gw), later, ENCRYPT_KEY)
    later_id = later["event"]["message"]["message_id"]
    feishu.wait_for(lambda: any(m.reply_to == later_id for m in feishu.sent), what="reply 2")
    replies = [m for m in feishu.sent if m.reply_to == message_id]
    assert [m.text for m in replies] == ["echo: over the callback"]


def test_a_wrong_signature_is_refused_and_not_answered(gw: GatewayProcess,
                                                       feishu: FakeFeishu) -> None:
    event = feishu.message_event("forged", token=TOKEN)
    answer = feishu.post_callback(url(gw), event, ENCRYPT_KEY, signature="0" * 64)
    assert answer.status_code == 401
    stored = httpx.get(f"{gw.url}/api/v1/messages", params={"sender": "ou_alice"},
                       headers=gw.headers, timeout=10).json()["messages"]
    assert not any(m["text"] == "forged" for m in stored)


def test_a_skills_file_is_uploaded_then_sent(gw: GatewayProcess, feishu: FakeFeishu) -> None:
    event = feishu.message_event("/report weekly", token=TOKEN)
    message_id = event["event"]["message"]["message_id"]
    feishu.post_callback(url(gw), event, ENCRYPT_KEY)
    feishu.wait_for(lambda: len([m for m in feishu.sent if m.reply_to == message_id]) >= 2,
                    what="the file and the text")
    file_message, text = [m for m in feishu.sent if m.reply_to == message_id]
    assert file_message.body["msg_type"] == "file" and text.text == "here it is"
    upload = feishu.state.uploads[-1]
    assert upload["kind"] == "file" and upload["file"] == b"report for weekly"
    assert upload["file_name"] == "report.txt"
    assert file_message.body["content"] == f'{{"file_key": "{upload["key"]}"}}'


def test_a_skills_image_is_uploaded_as_an_image(gw: GatewayProcess,
                                                feishu: FakeFeishu) -> None:
    event = feishu.message_event("/chart", token=TOKEN)
    message_id = event["event"]["message"]["message_id"]
    feishu.post_callback(url(gw), event, ENCRYPT_KEY)
    feishu.wait_for(lambda: any(m.reply_to == message_id for m in feishu.sent),
                    what="the image")
    sent = next(m for m in feishu.sent if m.reply_to == message_id)
    upload = feishu.state.uploads[-1]
    assert upload["kind"] == "image" and upload["image"] == PNG
    assert upload["image_type"] == "message"
    assert sent.body["msg_type"] == "image"
    assert sent.body["content"] == f'{{"image_key": "{upload["key"]}"}}'


def test_a_wrong_app_secret_shows_as_retrying_naming_the_key(gw: GatewayProcess,
                                                             feishu: FakeFeishu,
                                                             model: Any) -> None:
    write_config(gw.home, callback_config(model.url, feishu, app_secret="wrong"))
    row = wait_state(gw, "retrying", timeout=60)
    assert "channels.feishu.app_secret" in row["detail"], row
    write_config(gw.home, callback_config(model.url, feishu))
    wait_state(gw, "connected", timeout=60)
