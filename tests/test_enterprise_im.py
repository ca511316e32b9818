"""The guide's `enterprise_im` channel and stranger verification end to end, against the real
gateway process, tried as strangers and attackers would."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import GatewayProcess, free_port, model_config, run_cli, write_config
from tests.fakes.fake_im import FakeImPlatform
from tests.fakes.fake_model import FakeModelServer

BOT = "enterprise:abc123"


@pytest.fixture
def im(home: Path, fake_model: FakeModelServer, monkeypatch: pytest.MonkeyPatch
       ) -> Iterator[Any]:
    monkeypatch.setenv("IM_PLATFORM_TOKEN", BOT)  # the guide's way: an environment variable
    started: list[GatewayProcess] = []

    def start(security: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
              **channel: Any) -> GatewayProcess:
        config = {**model_config(fake_model.url), **(extra or {}),
                  "channels": {"enterprise_im": {"bot_token": "${IM_PLATFORM_TOKEN}",
                                                 "webhook_url": "https://example.com/api/im",
                                                 **channel}}}
        if security:
            config["security"] = security
        write_config(home, config)
        gw = GatewayProcess(home, free_port())
        started.append(gw.start())
        return gw

    yield start
    for gw in started:
        gw.stop()


def say(gw: GatewayProcess, sender: str, text: str, token: str = BOT,
        msg_id: str | None = None) -> httpx.Response:
    body = {"id": msg_id or f"{sender}-{time.monotonic_ns()}", "sender": sender, "chat": sender,
            "text": text}
    return httpx.post(f"{gw.url}/api/im", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {token}"})


def code_in(reply: str) -> str:
    found = re.search(r"\b(\d{4})\b", reply)
    assert found, reply
    return found.group(1)


def test_the_platform_must_show_its_bot_token(im: Any) -> None:
    gw = im()
    assert say(gw, "alice", "hi", token="wrong").status_code == 401
    no_token = httpx.post(f"{gw.url}/api/im", json={"id": "1", "sender": "a", "text": "hi"})
    assert no_token.status_code == 401
    user_token = say(gw, "alice", "hi", token=gw.token)  # a console token is no bot token...
    assert user_token.status_code == 200  # ...but the owner's token may speak; strangers rule
    assert httpx.post(f"{gw.url}/api/v1/messages", json={"text": "hi"},
                      headers={"Authorization": f"Bearer {BOT}"}).status_code == 401


def test_a_stranger_gets_a_code_and_nothing_reaches_the_model_until_it_is_right(
        im: Any, fake_model: FakeModelServer) -> None:
    gw = im()
    first = say(gw, "alice", "what is my bank password?").json()
    assert first["msg_id"] and "within 5 minutes" in first["reply"]
    code = code_in(first["reply"])
    wrong = "0000" if code != "0000" else "1111"
    assert "4 tries left" in say(gw, "alice", wrong).json()["reply"]
    assert fake_model.calls == 0  # nothing of the stranger's reached the model
    assert "verified" in say(gw, "alice", code).json()["reply"]
    assert say(gw, "alice", "hello now").json()["reply"] == "echo: hello now"
    listed = json.loads(run_cli(gw.home, "pairing", "list", "--json").stdout)["senders"]
    assert {"sender": "enterprise_im:alice", "state": "approved"}.items() <= listed[0].items()
    log = gw.log()
    assert code not in log and "bank password" not in log  # codes are never logged


def test_wrong_codes_block_and_a_blocked_sender_gets_an_empty_reply(im: Any) -> None:
    gw = im(security={"max_code_attempts": 3})
    code = code_in(say(gw, "mallory", "hi").json()["reply"])
    wrong = [c for c in ("1111", "2222", "3333", "4444") if c != code][:3]
    replies = [say(gw, "mallory", guess).json()["reply"] for guess in wrong]
    assert replies[-1] == "That code is not right either: you are blocked."
    assert say(gw, "mallory", code).json()["reply"] == ""  # even the right code, now
    assert run_cli(gw.home, "pairing", "unblock", "enterprise_im:mallory").returncode == 0
    assert code_in(say(gw, "mallory", "sorry").json()["reply"])  # a stranger again


def test_a_code_left_past_its_expiry_blacklists_the_sender(im: Any) -> None:
    gw = im(security={"code_expire": 1})
    code = code_in(say(gw, "slow", "hi").json()["reply"])
    time.sleep(1.2)  # let the code expire: the rule under test is about elapsed time
    assert say(gw, "slow", code).json()["reply"] == ""
    states = json.loads(run_cli(gw.home, "pairing", "list", "--json").stdout)["senders"]
    assert states[0]["state"] == "blocked"


def test_direct_block_answers_no_stranger_and_allowlisted_senders_pass(
        im: Any, fake_model: FakeModelServer) -> None:
    gw = im(security={"stranger_mode": "direct_block",
                      "allowlist": ["enterprise_im:boss"]})
    assert say(gw, "nobody", "hello?").json()["reply"] == ""
    assert "stranger enterprise_im:nobody blocked" in gw.log()
    assert say(gw, "boss", "status report").json()["reply"] == "echo: status report"


def test_the_owner_approves_after_the_code_when_required(im: Any) -> None:
    gw = im(security={"require_approval": True})
    code = code_in(say(gw, "carol", "hi").json()["reply"])
    assert "owner will approve" in say(gw, "carol", code).json()["reply"]
    assert "not approved you yet" in say(gw, "carol", "please").json()["reply"]
    assert run_cli(gw.home, "pairing", "approve", "enterprise_im:carol").returncode == 0
    assert say(gw, "carol", "thanks").json()["reply"] == "echo: thanks"


def test_with_reply_url_the_gateway_answers_202_then_posts_the_reply(
        im: Any, fake_model: FakeModelServer) -> None:
    platform = FakeImPlatform().start()
    try:
        platform.fail_times = 1  # the first delivery fails: the gateway tries again
        gw = im(security={"stranger_mode": "open"}, reply_url=platform.url)
        accepted = say(gw, "dave", "good morning", msg_id="p-1")
        assert accepted.status_code == 202 and accepted.json()["status"] == "accepted"
        delivered = platform.wait_for(1)[0]
        assert delivered["authorization"] == f"Bearer {BOT}"
        outbound_id = delivered["body"]["outbound_id"]
        assert delivered["body"] == {"id": "p-1", "chat": "dave", "to": "dave",
                                     "text": "echo: good morning",
                                     "msg_id": accepted.json()["msg_id"],
                                     "outbound_id": outbound_id}
        assert delivered["idempotency_key"] == outbound_id
        say(gw, "dave", "good morning", msg_id="p-1")  # the platform retries
        again = platform.wait_for_attempts(3)[2]  # 503, then 200, then the retry's reply
        assert again["body"]["msg_id"] == delivered["body"]["msg_id"]
        assert again["idempotency_key"] == outbound_id  # the same reply: the same key
        assert fake_model.calls == 1  # the retry was answered from the store
        assert say(gw, "dave", "x", token="bad").status_code == 401  # checked before the 202
    finally:
        platform.stop()


def test_the_guides_snippet_needs_its_token(home: Path) -> None:
    write_config(home, {"channels": {"enterprise_im": {"enabled": True,
                                                       "webhook_url": "https://x/api/im"}}})
    gw = GatewayProcess(home, free_port())
    gw.start(wait=False)
    assert gw.proc is not None and gw.proc.wait(30) == 2
    assert "channels.enterprise_im: bot_token is required" in gw.output()
