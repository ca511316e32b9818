"""The DingTalk channel's parts on their own: its options, the robot message, the outgoing
robot's sign, the send client against FakeDingTalk, and the stream child (the real
`dingtalk-stream` SDK) speaking its JSON lines. The whole channel: test_dingtalk_gateway.py."""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from pydantic import ValidationError

from gateway.channels.dingtalk import DingTalkChannel, DingTalkOptions, _explain
from gateway.channels.dingtalk_api import (
    RobotApi,
    RobotMessage,
    expected_sign,
    is_group_chat,
    sign_problem,
    split_lines,
)
from gateway.core.outbound import DeliveryRefused, Outbound, RetryLater
from tests.conftest import ROOT, free_port
from tests.fakes.fake_dingtalk import CLIENT_ID, CLIENT_SECRET, FakeDingTalk, Uploaded


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeDingTalk]:
    with FakeDingTalk(ping_every=0.2) as server:
        yield server


# -- options -------------------------------------------------------------------------------
def test_options_take_dingtalks_older_names_and_say_what_is_missing() -> None:
    options = DingTalkOptions.model_validate({"app_key": "k", "app_secret": "s3cr3t"})
    assert (options.enabled, options.client_id, options.bot_token, options.robot) == \
        (True, "k", "s3cr3t", "k")
    assert "s3cr3t" not in repr(options)
    assert DingTalkOptions.model_validate({}).enabled is False
    with pytest.raises(ValidationError, match="client_id or app_key, not both"):
        DingTalkOptions.model_validate({"client_id": "k", "app_key": "k2"})
    with pytest.raises(ValidationError, match="client_secret are required"):
        DingTalkOptions.model_validate({"client_id": "k"})
    with pytest.raises(ValidationError, match="http"):
        DingTalkOptions.model_validate({"client_id": "k", "client_secret": "s",
                                        "api_base": "api.dingtalk.com"})
    with pytest.raises(ValidationError, match="path"):
        DingTalkOptions.model_validate({"client_id": "k", "client_secret": "s",
                                        "callback_path": "api/dingtalk"})
    with pytest.raises(ValidationError, match="extra"):
        DingTalkOptions.model_validate({"client_id": "k", "client_secret": "s",
                                        "webhook": "x"})


# -- the robot message and the sign --------------------------------------------------------
def test_robot_message_names_people_and_groups(fake: FakeDingTalk) -> None:
    private = RobotMessage.parse(fake.robot_message("  hi  ", staff_id="alice01"))
    assert private is not None
    assert (private.chat, private.sender, private.text, private.group) == \
        ("alice01", "alice01", "hi", False)
    assert private.webhook_expires > time.time() + 3000
    group = RobotMessage.parse(fake.robot_message("hi", staff_id="bob", group="cidG1"))
    assert group is not None and (group.chat, group.sender) == ("cidG1", "bob")
    assert is_group_chat(group.chat) and not is_group_chat(private.chat)
    outside = fake.robot_message("hi")
    del outside["senderStaffId"]
    found = RobotMessage.parse(outside)
    assert found is not None and found.sender.startswith("$:")
    rich = {**fake.robot_message(""), "msgtype": "richText",
            "content": {"richText": [{"text": "one "}, {"downloadCode": "x"}, {"text": "two"}]}}
    assert RobotMessage.parse(rich).text == "one two"  # type: ignore[union-attr]
    assert RobotMessage.parse({"text": {"content": "no id"}}) is None
    picture = {**fake.robot_message(""), "msgtype": "picture",
               "content": {"downloadCode": "dc1"}}
    found = RobotMessage.parse(picture)
    assert found is not None and found.download_code == "dc1"
    assert found.file_name == f"picture-{picture['msgId']}.png"
    file = {**fake.robot_message(""), "msgtype": "file",
            "content": {"downloadCode": "dc2", "fileName": "a.pdf"}}
    assert RobotMessage.parse(file).file_name == "a.pdf"  # type: ignore[union-attr]
    voice = {**fake.robot_message(""), "msgtype": "audio",
             "content": {"downloadCode": "dc3", "duration": 4000, "recognition": "明天开会"}}
    found = RobotMessage.parse(voice)
    assert found is not None and (found.text, found.download_code) == ("明天开会", "dc3")
    assert found.file_name.endswith(".amr")


def test_sign_is_checked_with_its_hour() -> None:
    now = time.time()
    stamp = str(int(now * 1000))
    good = expected_sign(CLIENT_SECRET, stamp)
    assert sign_problem(CLIENT_SECRET, stamp, good, now) is None
    assert "client_secret" in (sign_problem(CLIENT_SECRET, stamp, good[:-2] + "xx", now) or "")
    assert "missing" in (sign_problem(CLIENT_SECRET, "", "", now) or "")
    assert "hour" in (sign_problem(CLIENT_SECRET, stamp, good, now + 3601) or "")
    assert "hour" in (sign_problem(CLIENT_SECRET, stamp, good, now - 3601) or "")


def test_the_streams_reasons_become_sentences() -> None:
    refused = ("open connection failed, error=401 Client Error: Unauthorized for url: "
               'http://x/v1.0/gateway/connections/open, response.text={"code": '
               '"InvalidAuthentication", "message": "bad"}')
    assert _explain(refused) == ("DingTalk refused the app's credentials (401 "
                                 "InvalidAuthentication): check channels.dingtalk.client_id "
                                 "and client_secret")
    assert _explain("open connection failed, error=503 Server Error") == \
        "DingTalk's stream gateway answered 503"
    assert _explain("open connection failed, error=HTTPSConnectionPool(host='api.dingtalk.com'"
                    ", port=443): Max retries exceeded, response.text=") == \
        "cannot reach DingTalk's stream gateway at api.dingtalk.com (channels.dingtalk.api_base)"
    assert _explain("the stream connection closed (1011)") == \
        "the stream connection closed (1011)"


# -- sending -------------------------------------------------------------------------------
def test_send_client_caches_refreshes_and_maps_failures(fake: FakeDingTalk) -> None:
    api = RobotApi(fake.api_base, CLIENT_ID, CLIENT_SECRET, CLIENT_ID)
    try:
        calls = fake.token_calls
        api.send_to_person("alice01", "sampleText", {"content": "one"})
        api.send_to_group("cidG1", "sampleText", {"content": "two"})
        assert fake.token_calls == calls + 1  # one token for both
        fake.expire_tokens()
        api.send_to_person("alice01", "sampleText", {"content": "three"})
        assert fake.token_calls == calls + 2  # refused once: fetched again, sent
        assert [s.text for s in fake.sent[-3:]] == ["one", "two", "three"]

        fake.throttle(1)
        with pytest.raises(RetryLater, match="429"):
            api.send_to_person("alice01", "sampleText", {"content": "four"})
        webhook = fake.robot_message("x", ttl=-1)["sessionWebhook"]
        with pytest.raises(DeliveryRefused, match="300001"):
            api.send_webhook(webhook, {"msgtype": "text", "text": {"content": "late"}})
    finally:
        api.close()
    wrong_robot = RobotApi(fake.api_base, CLIENT_ID, CLIENT_SECRET, "another-robot")
    with pytest.raises(DeliveryRefused, match=r"robot\.notExist"):
        wrong_robot.send_to_person("alice01", "sampleText", {"content": "x"})
    wrong_robot.close()
    wrong_secret = RobotApi(fake.api_base, CLIENT_ID, "nope", CLIENT_ID)
    with pytest.raises(DeliveryRefused, match="client_secret"):
        wrong_secret.send_to_person("alice01", "sampleText", {"content": "x"})
    wrong_secret.close()
    nobody = RobotApi(f"http://127.0.0.1:{free_port()}", CLIENT_ID, CLIENT_SECRET, CLIENT_ID)
    with pytest.raises(RetryLater, match="ConnectError"):
        nobody.send_to_person("alice01", "sampleText", {"content": "x"})
    nobody.close()


# -- the stream child ----------------------------------------------------------------------
class Child:
    """`python -m gateway.channels.dingtalk_stream_host` with its lines in a queue."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m",
                                      "gateway.channels.dingtalk_stream_host"], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.send({"op": "connect", **config})

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def send(self, line: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(line) + "\n")
        self.proc.stdin.flush()

    def next_with(self, key: str, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if key in line:
                return line

    def close(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        code = self.proc.wait(10)
        self.reader.join(10)  # it reads to the end of the pipe, then the pipe is closed
        self.proc.stdout.close()
        return code


def test_stream_child_acks_a_message_only_once_the_gateway_stored_it(
        fake: FakeDingTalk) -> None:
    child = Child({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                   "api_base": fake.api_base})
    try:
        assert child.next_with("state")["state"] == "connecting"
        assert child.next_with("endpoint")["state"] == "connected"
        assert child.next_with("heard")["heard"] == "ping"
        data = fake.user_says("store me first", staff_id="alice01")
        line = child.next_with("message")
        assert line["message"]["msgId"] == data["msgId"]
        assert line["message"]["text"]["content"] == "store me first"
        child.next_with("heard")  # frames keep flowing while the message waits...
        assert data["msgId"] in fake.pending  # ...and DingTalk has no ack before "stored"
        child.send({"op": "ack", "id": line["id"]})
        fake.wait_for(lambda: data["msgId"] not in fake.pending)
        assert fake.connections[-1].pongs >= 1  # the SDK answered DingTalk's pings
    finally:
        assert child.close() == 0
    fake.wait_for_connections(0)  # its connection ended with it


def test_stream_child_ends_saying_why_the_connection_was_refused(fake: FakeDingTalk) -> None:
    child = Child({"client_id": CLIENT_ID, "client_secret": "wrong",
                   "api_base": fake.api_base})
    try:
        ended = child.next_with("ended")["ended"]
        assert "401" in ended and "InvalidAuthentication" in ended and "wrong" not in ended
    finally:
        assert child.close() == 0  # it ended itself: the gateway starts the next one


# -- files out and long replies ------------------------------------------------------------
def test_the_upload_host_follows_api_base_unless_given() -> None:
    keys = {"client_id": "k", "client_secret": "s"}
    assert DingTalkOptions.model_validate(keys).oapi == "https://oapi.dingtalk.com"
    proxied = DingTalkOptions.model_validate({**keys, "api_base": "http://127.0.0.1:9/"})
    assert proxied.oapi == "http://127.0.0.1:9"  # a proxy or a fake serves both hosts
    given = DingTalkOptions.model_validate({**keys, "oapi_base": "https://oapi.example/"})
    assert given.oapi == "https://oapi.example"
    with pytest.raises(ValidationError, match="http"):
        DingTalkOptions.model_validate({**keys, "oapi_base": "oapi.dingtalk.com"})


def test_split_cuts_on_line_breaks_within_the_limit() -> None:
    text = "\n".join(f"{i:02d}" + "钉" * 27 for i in range(10))  # lines of 29 characters
    pieces = split_lines(text, 100)
    assert [len(p) for p in pieces] == [89, 89, 89, 29]  # three whole lines, then the last
    assert "\n".join(pieces) == text
    assert split_lines("x" * 250, 100) == ["x" * 100, "x" * 100, "x" * 50]  # one long line
    assert split_lines("short", 100) == ["short"] and split_lines("  \n", 100) == []


def test_upload_and_send_a_picture_and_a_file(fake: FakeDingTalk, tmp_path: Path) -> None:
    picture, document = tmp_path / "chart.png", tmp_path / "会议纪要.pdf"
    picture.write_bytes(b"\x89PNG fake")
    document.write_bytes(b"%PDF-1.4 fake")
    api = RobotApi(fake.api_base, CLIENT_ID, CLIENT_SECRET, CLIENT_ID, fake.api_base)
    try:
        media = api.upload(picture, "chart.png", "image/png", "image")
        api.send_file("alice01", media, "chart.png", "image")
        fake.expire_tokens()  # the oapi's 40014: the token is fetched again once
        calls = fake.token_calls
        media = api.upload(document, document.name, "application/pdf", "file")
        assert fake.token_calls == calls + 1
        api.send_file("cidG1", media, document.name, "file")
    finally:
        api.close()
    image, sent = fake.sent[-2:]
    assert (image.via, image.msg_key, image.media) == (
        "person", "sampleImageMsg", Uploaded("image", "chart.png", "image/png",
                                             b"\x89PNG fake"))
    assert (sent.via, sent.msg_key, json.loads(sent.body["msgParam"])["fileType"]) == (
        "group", "sampleFile", "pdf")
    assert sent.media is not None and sent.media.name == "会议纪要.pdf"
    wrong_kind = RobotApi(fake.api_base, CLIENT_ID, CLIENT_SECRET, CLIENT_ID, fake.api_base)
    with pytest.raises(DeliveryRefused, match="40004"):
        wrong_kind.upload(picture, "chart.png", "image/png", "sticker")
    with pytest.raises(DeliveryRefused, match=r"gone\.png cannot be read"):
        wrong_kind.upload(tmp_path / "gone.png", "gone.png", "image/png", "image")
    wrong_kind.close()


def test_files_over_the_limit_or_to_outsiders_are_named_in_the_text() -> None:
    services = SimpleNamespace(app=Flask(__name__), entry=None, intake=None)  # what it reads
    channel = DingTalkChannel(services,  # type: ignore[arg-type]
                              DingTalkOptions.model_validate({"client_id": "k",
                                                              "client_secret": "s"}))
    small = {"name": "a.png", "path": "files/out/a.png", "media_type": "image/png", "size": 10}
    big = {"name": "big.zip", "path": "files/out/big.zip", "media_type": "application/zip",
           "size": 21 * 1024 * 1024}
    parts = channel._parts(Outbound("o1", "dingtalk", "alice01", "here", files=(small, big),
                                    msg_id="m1"))
    assert isinstance(parts[0], str) and "big.zip" in parts[0] and "a.png" not in parts[0]
    assert [p.name for p in parts[1:] if not isinstance(p, str)] == ["a.png"]
    outsider = channel._parts(Outbound("o2", "dingtalk", "$:LWCP_v1:$x", "here",
                                       files=(small,), msg_id="m2"))
    assert len(outsider) == 1 and "a.png" in str(outsider[0])
