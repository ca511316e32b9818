"""Each sender against a real server: aiosmtpd for mail, local robots that check the WeCom
and DingTalk payloads and signature as documented, and delivery that retries and never
waits on a network in `submit`."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import unquote_plus

import pytest

from gateway.observe.alerting.config import (
    DingTalkNotify,
    SmtpNotify,
    WebhookNotify,
    WeComNotify,
)
from gateway.observe.alerting.dispatch import Delivery, RetryPolicy
from gateway.observe.alerting.rules import Notice
from gateway.observe.alerting.senders import (
    DingTalkSender,
    SendError,
    SmtpSender,
    WebhookSender,
    WeComSender,
    dingtalk_sign,
)
from tests.fakes.fake_robots import DingTalkRobot, WebhookReceiver, WeComRobot, documented_sign
from tests.fakes.mail_server import MailServer

NOTICE = Notice("latency", "firing", 3.2, 2.0, 1_700_000_000.0,
                "Message latency p95 is 3.20 s for 1m on box (alert above 2.00 s).")
FAST_RETRY = RetryPolicy(attempts=4, backoff=0.01, max_wait=0.05)


@pytest.fixture
def wecom() -> Iterator[WeComRobot]:
    with WeComRobot() as robot:
        yield robot  # type: ignore[misc]


@pytest.fixture
def dingtalk() -> Iterator[DingTalkRobot]:
    with DingTalkRobot(keyword="Moltbot") as robot:
        yield robot  # type: ignore[misc]


def smtp_config(server: MailServer, **extra: object) -> SmtpNotify:
    return SmtpNotify.model_validate({"type": "smtp", "host": "127.0.0.1", "port": server.port,
                                      "starttls": False, "from": "moltbot@example.com",
                                      "to": ["ops@example.com", "me@example.com"], **extra})


# -- webhook ------------------------------------------------------------------------------
def test_webhook_posts_the_documented_json() -> None:
    with WebhookReceiver() as receiver:
        config = WebhookNotify(type="webhook", url=f"{receiver.url}/hook",
                               headers={"X-Token": "abc"})
        WebhookSender(config).send(NOTICE)
        got = receiver.wait_accepted()[0]
    assert got.path == "/hook"
    assert got.headers["X-Token"] == "abc"
    assert got.headers["Content-Type"] == "application/json"
    assert got.body == {"rule": "latency", "state": "firing", "value": 3.2, "threshold": 2.0,
                        "at": "2023-11-14T22:13:20+00:00", "message": NOTICE.message}


def test_a_refused_webhook_says_where_without_the_query() -> None:
    with WebhookReceiver() as receiver:
        receiver.fail_times = 1
        sender = WebhookSender(WebhookNotify(type="webhook", url=f"{receiver.url}/h?key=s3"))
        with pytest.raises(SendError, match="HTTP 500") as caught:
            sender.send(NOTICE)
    assert "s3" not in str(caught.value)


# -- WeCom ----------------------------------------------------------------------------------
def test_wecom_text_with_mentions_is_accepted(wecom: WeComRobot) -> None:
    config = WeComNotify(type="wecom", webhook_url=wecom.webhook_url,
                         mentioned_list=["@all"], mentioned_mobile_list=["13800001111"])
    WeComSender(config).send(NOTICE)
    body = wecom.wait_accepted()[0].body
    assert body == {"msgtype": "text", "text": {
        "content": f"Moltbot firing: latency\n{NOTICE.message}",
        "mentioned_list": ["@all"], "mentioned_mobile_list": ["13800001111"]}}


def test_wecom_markdown_is_accepted(wecom: WeComRobot) -> None:
    config = WeComNotify(type="wecom", webhook_url=wecom.webhook_url, msgtype="markdown")
    WeComSender(config).send(NOTICE)
    body = wecom.wait_accepted()[0].body
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["content"].startswith(
        '**Moltbot <font color="warning">firing</font>: latency**\n> Message latency')


def test_wecom_long_chinese_text_is_cut_to_the_byte_limit(wecom: WeComRobot) -> None:
    long = Notice("cpu", "firing", 99.0, 80.0, 0.0, "中" * 1500)  # 4,500 bytes of UTF-8
    WeComSender(WeComNotify(type="wecom", webhook_url=wecom.webhook_url)).send(long)
    content = wecom.wait_accepted()[0].body["text"]["content"]
    assert len(content.encode()) <= 2048 and content.endswith("中...")


def test_wecom_with_a_wrong_key_fails_with_the_platforms_answer(wecom: WeComRobot) -> None:
    url = wecom.webhook_url.replace(wecom.key, "wrong")
    with pytest.raises(SendError, match="errcode 93000, invalid webhook url") as caught:
        WeComSender(WeComNotify(type="wecom", webhook_url=url)).send(NOTICE)
    assert "wrong" not in str(caught.value)  # the key stays out of logs


# -- DingTalk -------------------------------------------------------------------------------
def test_dingtalk_signature_matches_the_documentation() -> None:
    # the documentation's recipe, computed independently by the fake, then URL-encoded
    secret, timestamp = "SEC0123test", 1_700_000_000_123
    sign = dingtalk_sign(secret, timestamp)
    assert unquote_plus(sign) == documented_sign(secret, str(timestamp))
    assert sign.endswith("%3D") and "=" not in sign  # URL-encoded, ready for the query


def test_dingtalk_signed_text_is_accepted(dingtalk: DingTalkRobot) -> None:
    config = DingTalkNotify(type="dingtalk", webhook_url=dingtalk.webhook_url,
                            secret=dingtalk.secret, at_mobiles=["13800001111"])
    DingTalkSender(config).send(NOTICE)
    got = dingtalk.wait_accepted()[0]
    assert set(got.query) == {"access_token", "timestamp", "sign"}
    assert got.body == {"msgtype": "text",
                        "text": {"content": f"Moltbot firing: latency\n{NOTICE.message}"},
                        "at": {"atMobiles": ["13800001111"], "isAtAll": False}}


def test_dingtalk_with_a_wrong_secret_is_refused(dingtalk: DingTalkRobot) -> None:
    config = DingTalkNotify(type="dingtalk", webhook_url=dingtalk.webhook_url, secret="SECbad")
    with pytest.raises(SendError, match="errcode 310000, sign not match"):
        DingTalkSender(config).send(NOTICE)


def test_dingtalk_with_a_stale_timestamp_is_refused(dingtalk: DingTalkRobot) -> None:
    config = DingTalkNotify(type="dingtalk", webhook_url=dingtalk.webhook_url,
                            secret=dingtalk.secret)
    two_hours_ago = DingTalkSender(config, wall=lambda: time.time() - 7200)
    with pytest.raises(SendError, match="errcode 310000, timestamp invalid or expired"):
        two_hours_ago.send(NOTICE)


def test_dingtalk_without_a_secret_sends_no_signature() -> None:
    with DingTalkRobot(secret=None) as robot:
        DingTalkSender(DingTalkNotify(type="dingtalk",
                                      webhook_url=robot.webhook_url)).send(NOTICE)
        assert set(robot.wait_accepted()[0].query) == {"access_token"}


# -- SMTP -----------------------------------------------------------------------------------
def test_smtp_plain_delivers_to_every_recipient() -> None:
    with MailServer() as server:
        SmtpSender(smtp_config(server)).send(NOTICE)
        mail = server.wait_for(1)[0]
        envelope = server.envelopes[0]
    assert envelope.mail_from == "moltbot@example.com"
    assert envelope.rcpt_tos == ["ops@example.com", "me@example.com"]
    assert mail["Subject"] == f"[Moltbot] FIRING latency: {NOTICE.message}"
    assert mail["To"] == "ops@example.com, me@example.com"
    body = mail.get_content()
    assert NOTICE.message in body and "threshold: 2.0" in body


def test_smtp_starttls_and_login() -> None:
    with MailServer(tls=True, users={"ops": "s3cret"}) as server:
        config = smtp_config(server, starttls=True, username="ops", password="s3cret")
        SmtpSender(config, server.client_context()).send(NOTICE)
        assert server.wait_for(1)[0]["Subject"].startswith("[Moltbot] FIRING latency")
        assert server.logins == ["ops"]


def test_smtp_refuses_an_untrusted_certificate() -> None:
    with MailServer(tls=True) as server, pytest.raises(SendError, match="CERTIFICATE_VERIFY"):
        SmtpSender(smtp_config(server, starttls=True)).send(NOTICE)  # system CAs only


def test_smtp_wrong_password_says_what_to_fix() -> None:
    with MailServer(tls=True, users={"ops": "s3cret"}) as server:
        config = smtp_config(server, starttls=True, username="ops", password="nope")
        with pytest.raises(SendError, match="refused the login of 'ops'"):
            SmtpSender(config, server.client_context()).send(NOTICE)


# -- delivery -------------------------------------------------------------------------------
def test_delivery_retries_until_the_robot_recovers(wecom: WeComRobot) -> None:
    wecom.fail_times = 2
    delivery = Delivery([WeComSender(WeComNotify(type="wecom", webhook_url=wecom.webhook_url))],
                        policy=FAST_RETRY)
    delivery.start()
    try:
        delivery.submit(NOTICE)
        assert len(wecom.wait_accepted()) == 1
        assert len(wecom.received) == 3
    finally:
        delivery.stop()
    assert delivery.workers[0].delivered == 1


def test_a_hanging_receiver_neither_blocks_submit_nor_the_other_senders(
        wecom: WeComRobot) -> None:
    connected, release = threading.Event(), threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))

    def hang() -> None:  # accepts, never answers until released
        conn, _ = listener.accept()
        connected.set()
        release.wait(30)
        conn.close()

    threading.Thread(target=hang, daemon=True).start()
    hanging = WebhookSender(WebhookNotify(type="webhook", timeout=30,
                                          url=f"http://127.0.0.1:{listener.getsockname()[1]}"))
    delivery = Delivery([hanging, WeComSender(WeComNotify(type="wecom",
                                                          webhook_url=wecom.webhook_url))],
                        policy=RetryPolicy(attempts=1))
    delivery.start()
    try:
        delivery.submit(NOTICE)  # returns at once: the workers do the sending
        assert connected.wait(10)  # the webhook's request is open and will not be answered
        assert wecom.wait_accepted()[0].body["text"]["content"].endswith(NOTICE.message)
    finally:
        release.set()
        delivery.stop()
        listener.close()


def test_a_full_queue_drops_the_oldest(caplog: pytest.LogCaptureFixture) -> None:
    delivery = Delivery([WebhookSender(WebhookNotify(type="webhook", url="http://127.0.0.1:9"))],
                        queue_size=2)
    for state in ("firing", "resolved", "firing"):
        delivery.submit(Notice("cpu", state, 1.0, 1.0, 0.0, "m"))  # not started: queues fill
    assert [n.state for n in delivery.workers[0].queue] == ["resolved", "firing"]
    assert "dropped the firing notice of cpu" in caplog.text
