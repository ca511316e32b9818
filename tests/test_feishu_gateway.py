"""The Feishu channel end to end over the long connection: the real gateway process, its
child running the real SDK (lark-oapi) against FakeFeishu (`domain` is the fake's origin)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
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
from tests.fakes.fake_feishu import FakeFeishu
from tests.fakes.fake_model import FakeModelServer
from tests.feishu_support import channel, children, wait_state

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhg"
                       "GAWjR9awAAAABJRU5ErkJggg==")


@pytest.fixture(scope="module")
def feishu() -> Iterator[FakeFeishu]:
    with FakeFeishu() as fake:
        yield fake


def feishu_config(model_url: str, fake: FakeFeishu, **options: Any) -> dict[str, Any]:
    return {**model_config(model_url),
            "security": {"stranger_mode": "verification_code",
                         "allowlist": ["feishu:ou_alice", "feishu:ou_bob"]},
            "channels": {"feishu": {"app_id": fake.app_id, "app_secret": fake.app_secret,
                                    "domain": fake.domain, "stale_after": 4, **options}}}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, model: FakeModelServer,
       feishu: FakeFeishu) -> Iterator[GatewayProcess]:
    home = tmp_path_factory.mktemp("feishu") / "ai-gateway"
    write_config(home, feishu_config(model.url, feishu))
    gateway = GatewayProcess(home, free_port()).start()
    try:
        feishu.wait_connected(1, timeout=60)
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture(autouse=True)
def no_leftover_processes(gw: GatewayProcess) -> Iterator[None]:
    yield
    assert_only_gateway_left(gw)


def replies_to(fake: FakeFeishu, message_id: str) -> list[Any]:
    return [m for m in fake.sent if m.reply_to == message_id]


def test_a_p2p_message_is_acknowledged_at_once_and_answered_as_a_reply(
        gw: GatewayProcess, feishu: FakeFeishu, model: FakeModelServer) -> None:
    event = feishu.message_event("hello bot")
    message_id = event["event"]["message"]["message_id"]
    model.delay_first = 1.0  # the answer is slow: the ack must not wait for it
    try:
        frame = feishu.push_event(event)
        assert feishu.wait_ack(frame) == 200
        assert not replies_to(feishu, message_id)  # acknowledged before the answer
        feishu.wait_for(lambda: replies_to(feishu, message_id), what="the reply")
    finally:
        model.delay_first = 0.0
    reply = replies_to(feishu, message_id)[0]
    assert reply.text == "echo: hello bot"
    assert reply.body["msg_type"] == "text" and reply.body["uuid"]
    assert reply.body.get("reply_in_thread") is False
    row = channel(gw)
    assert row["state"] == "connected" and "last in" in row["status"], row
    assert len(children(gw)) == 1


def test_a_group_answers_only_an_at_mention_and_in_its_thread(gw: GatewayProcess,
                                                               feishu: FakeFeishu) -> None:
    chatter = feishu.message_event("people talking", chat="oc_group", chat_type="group")
    asked = feishu.message_event("what is up", chat="oc_group", chat_type="group",
                                 mention_bot=True, thread_id="omt_topic1", sender="ou_bob")
    assert feishu.wait_ack(feishu.push_event(chatter)) == 200
    feishu.push_event(asked)
    message_id = asked["event"]["message"]["message_id"]
    feishu.wait_for(lambda: replies_to(feishu, message_id), what="the group reply")
    reply = replies_to(feishu, message_id)[0]
    assert reply.text == "echo: what is up"  # the @mention is not part of the question
    assert reply.body["reply_in_thread"] is True
    assert not replies_to(feishu, chatter["event"]["message"]["message_id"])


def test_a_redelivered_message_new_event_id_is_answered_once(gw: GatewayProcess,
                                                             feishu: FakeFeishu) -> None:
    first = feishu.message_event("only once please", message_id="om_redelivered_1")
    again = json.loads(json.dumps(first))
    again["header"]["event_id"] = "a-new-event-id"
    assert feishu.wait_ack(feishu.push_event(first)) == 200
    assert feishu.wait_ack(feishu.push_event(again)) == 200
    after = feishu.message_event("and then this")
    feishu.push_event(after)
    feishu.wait_for(lambda: replies_to(feishu, after["event"]["message"]["message_id"]),
                    what="the reply after")
    feishu.wait_for(lambda: replies_to(feishu, "om_redelivered_1"), what="the reply")
    assert len(replies_to(feishu, "om_redelivered_1")) == 1


def test_rich_text_and_an_image_come_in(gw: GatewayProcess, feishu: FakeFeishu) -> None:
    post = feishu.message_event("", message_type="post", content={
        "title": "Report", "content": [[{"tag": "text", "text": "see "},
                                        {"tag": "a", "text": "this", "href": "https://x.cn"}],
                                       [{"tag": "img", "image_key": "img_k1"}]]})
    message_id = post["event"]["message"]["message_id"]
    feishu.put_resource(message_id, "img_k1", "photo.png", PNG)
    feishu.push_event(post)
    feishu.wait_for(lambda: replies_to(feishu, message_id), what="the reply")
    answer = replies_to(feishu, message_id)[0].text
    assert answer.startswith("echo: Report\nsee this (https://x.cn)")
    assert 'image "photo.png" (image/png, 70 bytes)' in answer  # downloaded into the inbox


def test_an_expired_token_is_renewed_once_and_a_rate_limit_retried(
        gw: GatewayProcess, feishu: FakeFeishu) -> None:
    before = feishu.state.token_requests
    feishu.expire_tokens()
    feishu.rate_limit(1)
    event = feishu.message_event("after the token expired")
    feishu.push_event(event)
    message_id = event["event"]["message"]["message_id"]
    feishu.wait_for(lambda: replies_to(feishu, message_id), timeout=30, what="the reply")
    assert len(replies_to(feishu, message_id)) == 1
    assert feishu.state.token_requests > before


def test_a_message_the_gateway_starts_is_created_in_the_chat(gw: GatewayProcess,
                                                             feishu: FakeFeishu) -> None:
    """`POST /api/v1/send` (what skills' context.send and reminders use): a new message."""
    event = feishu.message_event("remind me later")  # the gateway sends only to chats it knows
    feishu.push_event(event)
    feishu.wait_for(lambda: replies_to(feishu, event["event"]["message"]["message_id"]),
                    what="the first reply")
    answer = httpx.post(f"{gw.url}/api/v1/send", headers=gw.headers, timeout=10, json={
        "channel": "feishu", "chat": "oc_p2p_alice", "text": "your reminder"})
    assert answer.status_code == 202, answer.text
    feishu.wait_for(lambda: any(m.text == "your reminder" for m in feishu.sent),
                    what="the started message")
    created = next(m for m in feishu.sent if m.text == "your reminder")
    assert created.reply_to is None and created.body["receive_id"] == "oc_p2p_alice"
    assert created.path == "/open-apis/im/v1/messages"


def test_a_chat_the_bot_left_fails_the_message_with_feishus_reason(
        gw: GatewayProcess, feishu: FakeFeishu) -> None:
    event = feishu.message_event("hello", sender="ou_bob", chat="oc_p2p_bob")
    feishu.push_event(event)
    feishu.wait_for(lambda: replies_to(feishu, event["event"]["message"]["message_id"]),
                    what="the first reply")
    feishu.remove_bot_from("oc_p2p_bob")
    sent = httpx.post(f"{gw.url}/api/v1/send", headers=gw.headers, timeout=10, json={
        "channel": "feishu", "chat": "oc_p2p_bob", "text": "nobody will read this"})
    assert sent.status_code == 202, sent.text
    deadline = time.monotonic() + 30
    while (row := httpx.get(f"{gw.url}/api/v1/outbox/{sent.json()['id']}", headers=gw.headers,
                            timeout=10).json()["outbound"])["state"] != "failed":
        assert time.monotonic() < deadline and row["state"] != "sent", row
        time.sleep(0.1)
    assert "230002" in row["last_error"] and row["attempts"] == 1


def test_a_stranger_is_asked_for_a_pairing_code(gw: GatewayProcess,
                                                feishu: FakeFeishu) -> None:
    event = feishu.message_event("hi there", sender="ou_stranger", chat="oc_p2p_stranger")
    feishu.push_event(event)
    message_id = event["event"]["message"]["message_id"]
    feishu.wait_for(lambda: replies_to(feishu, message_id), what="the code")
    assert "code" in replies_to(feishu, message_id)[0].text.lower()


def test_the_socket_dropped_mid_conversation_reconnects_and_loses_nothing(
        gw: GatewayProcess, feishu: FakeFeishu, model: FakeModelServer) -> None:
    before = feishu.state.endpoint_requests
    event = feishu.message_event("answer me across the drop")
    message_id = event["event"]["message"]["message_id"]
    model.delay_first = 1.0
    try:
        assert feishu.wait_ack(feishu.push_event(event)) == 200
        feishu.drop()  # while the model is still answering
        feishu.wait_for(lambda: feishu.state.endpoint_requests > before, timeout=30,
                        what="a new endpoint request")
        feishu.wait_connected(1, timeout=30)
        feishu.wait_for(lambda: replies_to(feishu, message_id), what="the reply")
    finally:
        model.delay_first = 0.0
    later = feishu.message_event("and on the new socket")
    feishu.push_event(later)
    feishu.wait_for(lambda: replies_to(feishu, later["event"]["message"]["message_id"]),
                    what="the reply on the new socket")
    assert len(replies_to(feishu, message_id)) == 1
    wait_state(gw, "connected")


def test_an_outage_shows_as_retrying_until_the_platform_returns(gw: GatewayProcess,
                                                                 feishu: FakeFeishu) -> None:
    feishu.down = True
    try:
        feishu.drop()
        row = wait_state(gw, "retrying")
        assert "reconnecting" in row["detail"], row
    finally:
        feishu.down = False
    wait_state(gw, "connected")
    event = feishu.message_event("after the outage")
    feishu.push_event(event)
    feishu.wait_for(lambda: replies_to(feishu, event["event"]["message"]["message_id"]),
                    what="the reply after the outage")


def test_a_deaf_socket_goes_stale_and_is_replaced_once(gw: GatewayProcess,
                                                       feishu: FakeFeishu) -> None:
    """openclaw#91899: a socket that is open but carries nothing must not show as fine."""
    old = {p.pid for p in children(gw)}
    before = feishu.state.endpoint_requests
    feishu.deaf = True
    try:
        row = wait_state(gw, "stale")
        assert "channels.feishu.stale_after" in row["detail"]
        feishu.wait_for(lambda: feishu.state.endpoint_requests > before, timeout=30,
                        what="the restarted child connecting")
        deadline = time.monotonic() + 15
        while {p.pid for p in children(gw)} & old:
            assert time.monotonic() < deadline, "the old child is still alive"
            time.sleep(0.1)
        assert len(children(gw)) == 1
    finally:
        feishu.deaf = False
    wait_state(gw, "connected")  # a pong again: the episode is over


def test_switched_off_by_a_reload_leaves_no_child(gw: GatewayProcess, feishu: FakeFeishu,
                                                  model: FakeModelServer) -> None:
    home: Path = gw.home
    write_config(home, feishu_config(model.url, feishu, enabled=False))
    deadline = time.monotonic() + 30
    while children(gw) or channel(gw)["state"] != "stopped":
        assert time.monotonic() < deadline, channel(gw)
        time.sleep(0.1)
    feishu.wait_for(lambda: not feishu.sockets, what="the socket closed")
    write_config(home, feishu_config(model.url, feishu))
    wait_state(gw, "connected", timeout=60)
    assert len(children(gw)) == 1
