"""The WeCom channel's parts without a gateway: its API client against FakeWeCom over real
HTTP, the byte splitter, the errcode sentences, the options check and the robots' sender."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.channels.wecom import WeComOptions
from gateway.channels.wecom_api import WeComApi, WeComError, explain, split_utf8
from gateway.observe.alerting.senders import SendError, post_wecom_robot
from tests.fakes.fake_robots import WeComRobot
from tests.fakes.fake_wecom import FakeWeCom, Media


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeWeCom]:
    with FakeWeCom() as server:
        yield server


@pytest.fixture
def wecom(fake: FakeWeCom) -> Iterator[FakeWeCom]:
    yield fake
    fake.issue_expired = False
    fake.ip_allowed = True
    fake.secret = "fake-app-secret-0123456789abcdefghijklmn"
    fake.rate_limit(0)


def api_for(fake: FakeWeCom, secret: str | None = None) -> WeComApi:
    return WeComApi(fake.api_base, fake.corp_id, secret or fake.secret)


def gettokens(fake: FakeWeCom) -> int:
    return sum(1 for path, _ in fake.calls if path == "/cgi-bin/gettoken")


def send(api: WeComApi, fake: FakeWeCom, text: str) -> dict[str, Any]:
    return api.call("POST", "message/send", json={"touser": "alice", "msgtype": "text",
                                                  "agentid": fake.agent_id,
                                                  "text": {"content": text}})


def test_the_token_is_fetched_once_and_reused(wecom: FakeWeCom) -> None:
    api = api_for(wecom)
    before = gettokens(wecom)
    send(api, wecom, "one")
    send(api, wecom, "two")
    assert gettokens(wecom) == before + 1
    api.close()


def test_an_expired_token_is_fetched_again_once_never_twice(wecom: FakeWeCom) -> None:
    api = api_for(wecom)
    send(api, wecom, "warm")
    wecom.expire_tokens()
    before = gettokens(wecom)
    send(api, wecom, "after expiry")
    assert gettokens(wecom) == before + 1
    wecom.issue_expired = True  # every new token is refused too: one more try, then the error
    wecom.expire_tokens()
    before = gettokens(wecom)
    with pytest.raises(WeComError) as refused:
        send(api, wecom, "still expired")
    assert refused.value.errcode == 42001 and gettokens(wecom) == before + 1
    api.close()


def test_a_wrong_secret_names_the_key(wecom: FakeWeCom) -> None:
    api = api_for(wecom, secret="wrong")
    with pytest.raises(WeComError) as refused:
        api.call("GET", "agent/get", params={"agentid": wecom.agent_id})
    assert refused.value.errcode == 40001 and not refused.value.temporary
    assert "channels.wecom.secret" in refused.value.explain()
    api.close()


def test_rate_limit_and_ip_errors_say_what_they_are(wecom: FakeWeCom) -> None:
    api = api_for(wecom)
    wecom.rate_limit(1)
    with pytest.raises(WeComError) as limited:
        send(api, wecom, "busy")
    assert limited.value.errcode == 45009 and limited.value.temporary
    wecom.ip_allowed = False
    with pytest.raises(WeComError) as ip:
        send(api, wecom, "from here?")
    assert ip.value.errcode == 60020 and "Trusted IP" in ip.value.explain()
    api.close()


def test_media_round_trip_with_the_file_name(wecom: FakeWeCom) -> None:
    api = api_for(wecom)
    stream = io.BytesIO(b"%PDF-1.4 minutes")
    uploaded = api.call("POST", "media/upload", params={"type": "file"},
                        files={"media": ("会议纪要.pdf", stream, "application/pdf")})
    assert wecom.media[uploaded["media_id"]] == Media("file", "会议纪要.pdf", "application/pdf",
                                                      b"%PDF-1.4 minutes")
    into = io.BytesIO()
    assert api.download(uploaded["media_id"], into) == ("会议纪要.pdf", "application/pdf")
    assert into.getvalue() == b"%PDF-1.4 minutes"
    with pytest.raises(WeComError) as missing:
        api.download("nope", io.BytesIO())
    assert missing.value.errcode == 40007
    api.close()


@pytest.mark.parametrize("text", ["a" * 5000, "企" * 1500, "🙂" * 1000 + "x",
                                  ("line of text\n" * 400), "ab" + "é" * 1500])
def test_split_keeps_characters_whole_within_2048_bytes(text: str) -> None:
    pieces = split_utf8(text)
    assert "".join(pieces) == text
    assert all(0 < len(p.encode()) <= 2048 for p in pieces)


def test_split_prefers_a_line_break() -> None:
    text = "x" * 1500 + "\n" + "y" * 1000
    assert split_utf8(text) == ["x" * 1500 + "\n", "y" * 1000]


def test_callback_errors_name_the_key() -> None:
    assert "channels.wecom.encoding_aes_key" in explain(-40007, "x")
    assert "channels.wecom.corp_id" in explain(-40005, "x")
    assert "channels.wecom.token" in explain(-40001, "x")
    assert explain(12345, "something new") == "WeCom answered 12345: something new"


APP = {"corp_id": "ww1", "agent_id": 1000002, "secret": "s", "token": "Tok123",
       "encoding_aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"}


def problems(**given: Any) -> str:
    with pytest.raises(ValidationError) as refused:
        WeComOptions.model_validate(given)
    return str(refused.value)


def test_options_say_what_is_missing_or_wrong() -> None:
    assert WeComOptions.model_validate(APP).enabled
    assert "secret, token, encoding_aes_key" in problems(corp_id="ww1", agent_id=1)
    assert "43 letters" in problems(**{**APP, "encoding_aes_key": "short"})
    assert "1-32 letters" in problems(**{**APP, "token": "has space"})
    assert "http(s) URL" in problems(**{**APP, "robots": {"ops": "qyapi.weixin.qq.com"}})
    assert "not under /api/v1/" in problems(**{**APP, "path": "/api/v1/wecom"})
    assert "stale_after" in problems(**{**APP, "probe_interval": 60, "stale_after": 30})
    robots_only = WeComOptions.model_validate({"robots": {"ops": "https://example.com/x"}})
    assert robots_only.enabled and not robots_only.app and robots_only.bot_token is None
    assert not WeComOptions.model_validate({}).enabled
    assert "secret" not in repr(WeComOptions.model_validate(APP)).replace("secret=", "")


def test_robot_failures_tell_later_from_never() -> None:
    robot = WeComRobot().start()
    assert isinstance(robot, WeComRobot)
    try:
        body = {"msgtype": "text", "text": {"content": "hi"}}
        robot.fail_times = 1
        with pytest.raises(SendError) as busy:
            post_wecom_robot(robot.webhook_url, body, 5)
        assert busy.value.temporary
        post_wecom_robot(robot.webhook_url, body, 5)
        with pytest.raises(SendError) as bad_key:
            post_wecom_robot(robot.webhook_url.replace("wecom-test-key", "other"), body, 5)
        assert not bad_key.value.temporary and "93000" in str(bad_key.value)
        assert "other" not in str(bad_key.value)  # the key stays out of messages
    finally:
        robot.stop()
