"""The outbox in the real gateway process, against a fake chat platform: a reply stored when
the gateway is killed goes out once after the restart, Retry-After is honoured, a refusal is
failed with its reason in the trace, a skill sends to another chat, scripts send through
`POST /api/v1/send`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import GatewayProcess, run_cli
from tests.fakes.fake_im import FakeImPlatform
from tests.mqtt_broker import Broker, Device
from tests.test_enterprise_im import BOT, im  # noqa: F401  (the fixture `start` uses)
from tests.test_mqtt_gateway import broker, mqtt_gateway  # noqa: F401  (fixtures)
from tests.test_skills_gateway import wait_until

TELL = '''\
from moltbot_sdk import SendError, context

@context.handle(command="/tell")
def tell(msg):
    channel, chat, text = msg["text"].split(" ", 2)
    try:
        sent = context.send(channel, chat, text, to="bob")
    except SendError as e:
        return "refused: " + str(e)
    return "sent " + sent
'''


@pytest.fixture
def platform() -> Iterator[FakeImPlatform]:
    started = FakeImPlatform().start()
    yield started
    started.stop()


@pytest.fixture
def start(im: Callable[..., GatewayProcess], platform: FakeImPlatform,  # noqa: F811
          monkeypatch: pytest.MonkeyPatch) -> Callable[..., GatewayProcess]:
    """`start(**config)` starts a gateway whose enterprise_im answers through the platform's
    reply_url (strangers open); `faults=` sets MOLTBOT_TEST_FAULTS for that start only."""

    def go(faults: str = "", **config: Any) -> GatewayProcess:
        if faults:
            monkeypatch.setenv("MOLTBOT_TEST_FAULTS", faults)
        else:
            monkeypatch.delenv("MOLTBOT_TEST_FAULTS", raising=False)
        return im(security={"stranger_mode": "open"}, extra=config, reply_url=platform.url)

    return go


def say(gw: GatewayProcess, text: str, chat: str = "dave", msg_id: str | None = None
        ) -> str:
    """The platform posts a message; returns the gateway's msg_id (202: answered later)."""
    body = {"id": msg_id or f"p-{time.monotonic_ns()}", "sender": "dave", "chat": chat,
            "text": text}
    answer = httpx.post(f"{gw.url}/api/im", json=body, timeout=30,
                        headers={"Authorization": f"Bearer {BOT}"})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["msg_id"])


def deliveries(gw: GatewayProcess, msg_id: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{gw.url}/api/v1/messages/{msg_id}/trace", headers=gw.headers,
                       timeout=10)
    return list(answer.json().get("deliveries", [])) if answer.status_code == 200 else []


def delivery_in(gw: GatewayProcess, msg_id: str, *states: str) -> dict[str, Any]:
    """The message's first delivery, once it is in one of `states`."""
    return wait_until(lambda: next((d for d in deliveries(gw, msg_id)
                                    if d["state"] in states), None))


def kill(gw: GatewayProcess) -> None:
    """kill -9: no shutdown, nothing flushed."""
    assert gw.proc is not None
    gw.proc.kill()
    gw.proc.wait()


def test_a_reply_stored_when_the_gateway_is_killed_is_sent_once_after_restart(
        start: Callable[..., GatewayProcess], platform: FakeImPlatform) -> None:
    held = start(faults="hold-outbox")  # the outbox stores but sends nothing
    msg_id = say(held, "good morning", msg_id="p-1")
    stored = delivery_in(held, msg_id, "queued")
    assert stored["text"] == "echo: good morning" and platform.attempts == []
    kill(held)

    again = start()
    first = platform.wait_for(1)[0]
    assert first["body"]["outbound_id"] == stored["id"] == first["idempotency_key"]
    assert first["body"]["text"] == "echo: good morning" and first["body"]["id"] == "p-1"
    later = say(again, "and good night")  # delivered after the first, in the same chat
    assert platform.wait_for(2)[1]["body"]["msg_id"] == later
    assert len(platform.attempts) == 2 and platform.duplicates == 0  # sent once
    sent = delivery_in(again, msg_id, "sent")
    assert sent["attempts"] == 1 and sent["id"] == stored["id"]


def test_a_delivery_cut_off_by_a_crash_goes_again_with_the_same_key(
        start: Callable[..., GatewayProcess], platform: FakeImPlatform) -> None:
    platform.hold_next = 1  # the platform takes it, but the gateway never hears back
    first = start()
    msg_id = say(first, "are you there")
    platform.wait_for_attempts(1)
    kill(first)
    platform.release()

    again = start()
    sent = delivery_in(again, msg_id, "sent")
    attempts = platform.wait_for_attempts(2)
    assert attempts[0]["idempotency_key"] == attempts[1]["idempotency_key"] == sent["id"]
    assert len(platform.replies) == 1 and platform.duplicates == 1  # dropped by its key
    assert [h["outcome"] for h in sent["history"]] == ["interrupted", "sent"]


def test_retry_after_is_honoured(start: Callable[..., GatewayProcess],
                                 platform: FakeImPlatform) -> None:
    platform.answers = [(429, {"Retry-After": "1"})]
    gw = start()
    msg_id = say(gw, "hello")
    assert platform.wait_for(1)[0]["body"]["text"] == "echo: hello"
    sent = delivery_in(gw, msg_id, "sent")
    retry, done = sent["history"]
    assert (retry["outcome"], retry["detail"]) == ("retry", "HTTP 429 (retry after 1 s)")
    assert done["outcome"] == "sent" and sent["attempts"] == 2
    assert done["at"] >= retry["at"] + 1  # not before the platform said
    metrics = httpx.get(f"{gw.url}/metrics", timeout=10).text
    assert 'moltbot_outbound_total{channel="enterprise_im",outcome="retried"} 1.0' in metrics
    assert 'moltbot_outbound_total{channel="enterprise_im",outcome="sent"} 1.0' in metrics


def test_a_refused_delivery_is_failed_with_its_reason_in_the_trace(
        start: Callable[..., GatewayProcess], platform: FakeImPlatform) -> None:
    platform.answers = [(400, {})]
    gw = start()
    msg_id = say(gw, "hello")
    failed = delivery_in(gw, msg_id, "failed")
    assert failed["last_error"] == "refused: HTTP 400: {}" and failed["attempts"] == 1
    shown = run_cli(gw.home, "trace", msg_id)
    assert shown.returncode == 0
    assert f"outbound {failed['id']} (reply) to enterprise_im/dave: failed" in shown.stdout
    assert "refused: HTTP 400" in shown.stdout
    listed = httpx.get(f"{gw.url}/api/v1/outbox?state=failed", headers=gw.headers,
                       timeout=10).json()
    assert [r["id"] for r in listed["outbound"]] == [failed["id"]]
    assert listed["counts"] == {"failed": 1}
    retried = httpx.post(f"{gw.url}/api/v1/outbox/{failed['id']}/retry", json={},
                         headers=gw.headers, timeout=10)  # the console's Retry
    assert retried.status_code == 200 and platform.wait_for(1)[0]["body"]["msg_id"] == msg_id


def test_a_skill_sends_a_message_to_another_chat(
        home: Path, start: Callable[..., GatewayProcess], platform: FakeImPlatform) -> None:
    (home / "skills").mkdir(parents=True)
    (home / "skills" / "tell.py").write_text(TELL, encoding="utf-8")
    gw = start()
    say(gw, "hello from the ops room", chat="ops-room")  # the platform names the chat
    platform.wait_for(1)

    asked = gw.post("/tell enterprise_im ops-room build 42 is green", chat="me").json()
    assert asked["reply"].startswith("sent o"), asked
    outbound_id = asked["reply"].removeprefix("sent ")
    body = platform.wait_for(2)[1]["body"]
    assert body == {"id": None, "chat": "ops-room", "to": "bob",
                    "text": "build 42 is green", "msg_id": asked["id"],
                    "outbound_id": outbound_id}
    trace = httpx.get(f"{gw.url}/api/v1/messages/{asked['id']}/trace", headers=gw.headers,
                      timeout=10).json()
    sends = [s for s in trace["spans"] if s["step"] == "send:enterprise_im"]
    assert sends and sends[0]["outcome"] == "ok" and outbound_id in sends[0]["detail"]
    sent = delivery_in(gw, asked["id"], "sent")
    assert (sent["id"], sent["origin"]) == (outbound_id, "skill")

    nowhere = gw.post("/tell enterprise_im nowhere hi", chat="me").json()["reply"]
    assert nowhere.startswith("refused: enterprise_im has no chat 'nowhere'")
    nochannel = gw.post("/tell sms room hi", chat="me").json()["reply"]
    assert nochannel.startswith("refused: There is no channel 'sms'; channels that can "
                                "send: ")
    assert "enterprise_im, " in nochannel  # and every other push channel
    off = gw.post("/tell mqtt room hi", chat="me").json()["reply"]
    assert off == "refused: mqtt is switched off: add channels.mqtt (url, ...) to config.yaml."
    http = gw.post("/tell http me hi", chat="me").json()["reply"]
    assert "The http channel answers only the request that asked" in http
    assert len(platform.attempts) == 2


def test_scripts_send_through_the_api(start: Callable[..., GatewayProcess],
                                      platform: FakeImPlatform) -> None:
    gw = start(outbox={"per_chat": "2/min"})
    say(gw, "hi", chat="ops-room")
    platform.wait_for(1)
    url = f"{gw.url}/api/v1/send"

    def send(body: Any, **kwargs: Any) -> httpx.Response:
        return httpx.post(url, json=body, headers=kwargs.pop("headers", gw.headers),
                          timeout=10, **kwargs)

    good = {"channel": "enterprise_im", "chat": "ops-room", "text": "deploy done"}
    assert send(good, headers={}).status_code == 401
    problems = {
        "nope": "The body is not valid UTF-8 JSON",
        "[1]": "Send a JSON object such as",
        json.dumps({**good, "sender": "x"}): "Unknown field(s) sender",
        json.dumps({**good, "channel": "http"}): "answers only the request that asked",
        json.dumps({**good, "channel": "sms"}): "There is no channel 'sms'",
        json.dumps({**good, "chat": "ghost"}): "enterprise_im has no chat 'ghost'",
        json.dumps({**good, "text": ""}): '"text" must not be empty',
    }
    for raw, says in problems.items():
        refused = httpx.post(url, content=raw, timeout=10,
                             headers={**gw.headers, "Content-Type": "application/json"})
        assert refused.status_code == 400 and says in refused.json()["error"]["message"], raw

    accepted = send({**good, "to": "ann"})
    assert accepted.status_code == 202 and accepted.json()["state"] == "queued"
    outbound_id = accepted.json()["id"]
    body = platform.wait_for(2)[1]["body"]
    assert (body["outbound_id"], body["to"], body["msg_id"]) == (outbound_id, "ann", None)
    state = wait_until(lambda: (r := httpx.get(f"{gw.url}/api/v1/outbox/{outbound_id}",
                                               headers=gw.headers, timeout=10).json()
                                ["outbound"])["state"] == "sent" and r)
    assert state["origin"] == "api" and state["attempts"] == 1
    assert httpx.get(f"{gw.url}/api/v1/outbox/o-none", headers=gw.headers,
                     timeout=10).status_code == 404

    assert send(good).status_code == 202
    limited = send(good)  # the third for this chat within a minute
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert "outbox.per_chat" in limited.json()["error"]["message"]
    audit = (gw.home / "data" / "logs" / "audit.log").read_text(encoding="utf-8")
    assert audit.count('"event.action": "outbox.send"') == 2


def test_a_script_sends_to_an_mqtt_device(
        mqtt_gateway: Callable[..., GatewayProcess], broker: Broker) -> None:  # noqa: F811
    gw = mqtt_gateway()
    with Device(broker, "kitchen") as device:
        device.send("hello", id="k-1")
        assert device.reply()["text"] == "echo: hello"  # the gateway knows this chat now
        sent = httpx.post(f"{gw.url}/api/v1/send", headers=gw.headers, timeout=10,
                          json={"channel": "mqtt", "chat": "kitchen", "text": "oven is hot"})
        assert sent.status_code == 202, sent.text
        assert device.reply() == {"id": None, "msg_id": None, "text": "oven is hot",
                                  "outbound_id": sent.json()["id"]}
    unknown = httpx.post(f"{gw.url}/api/v1/send", headers=gw.headers, timeout=10,
                         json={"channel": "mqtt", "chat": "garage", "text": "hi"})
    assert unknown.status_code == 400 and "mqtt has no chat 'garage'" in unknown.text
