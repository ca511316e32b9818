"""How a notice reaches a person: a generic webhook, SMTP mail, a WeCom or DingTalk robot.

Each sender's `send(notice)` makes one attempt and raises `SendError` (with what to fix) when
it fails; retrying, queueing and logging are `dispatch`'s job. The robot payloads follow the
platforms' own documentation:

- WeCom group robot (企业微信群机器人): POST the webhook URL (it carries `?key=`) with
  `{"msgtype": "text", "text": {"content", "mentioned_list", "mentioned_mobile_list"}}` or
  `{"msgtype": "markdown", "markdown": {"content"}}`; it answers `{"errcode": 0, ...}`.
  Content is at most 2048 bytes (text) or 4096 bytes (markdown) of UTF-8.
- DingTalk custom robot (钉钉自定义机器人): POST the webhook URL (it carries
  `?access_token=`) with `{"msgtype": "text", "text": {"content"}, "at": {"atMobiles",
  "isAtAll"}}`. With 加签, `timestamp` (ms) and `sign` =
  urlencode(base64(HMAC-SHA256(secret, f"{timestamp}\\n{secret}"))) join the query. It answers
  `{"errcode": 0, ...}`. A robot with the keyword rule needs a keyword the text contains: every
  message starts with "Moltbot".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import smtplib
import ssl
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Protocol
from urllib.parse import quote_plus, urlsplit

import httpx

from gateway.observe.alerting.config import (
    DingTalkNotify,
    Notify,
    SmtpNotify,
    WebhookNotify,
    WeComNotify,
)
from gateway.observe.alerting.rules import Notice

WECOM_LIMITS = {"text": 2048, "markdown": 4096}
ROBOT_LATER = frozenset({-1, 45009})  # busy; over the robot's 20 messages a minute


class SendError(Exception):
    """One delivery attempt failed; the message says where and why. `temporary`: the same
    message may go later (the network, a 5xx or 429, a robot's rate limit or busy)."""

    def __init__(self, message: str, temporary: bool = False) -> None:
        super().__init__(message)
        self.temporary = temporary


class Sender(Protocol):
    name: str

    def send(self, notice: Notice) -> None: ...


def _cut(text: str, limit: int) -> str:
    """At most `limit` bytes of UTF-8, never splitting a character."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit - 3].decode("utf-8", errors="ignore") + "..."


def _where(url: str) -> str:
    """A URL for log lines without its query: robot URLs carry their key there."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _post(url: str, body: dict[str, Any], timeout: float,
          headers: dict[str, str] | None = None) -> httpx.Response:
    try:
        response = httpx.post(url, json=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as e:
        shown = str(e).replace(url, _where(url))
        raise SendError(f"{_where(url)}: {type(e).__name__}: {shown}", temporary=True) from e
    if response.status_code >= 400:
        raise SendError(f"{_where(url)} answered HTTP {response.status_code}: "
                        f"{response.text[:200]}", temporary=response.status_code == 429 or
                        response.status_code >= 500)
    return response


def _check_robot(response: httpx.Response, url: str) -> None:
    """Both robots answer HTTP 200 with `errcode` 0 on success, non-zero with `errmsg`."""
    try:
        answer = response.json()
    except ValueError as e:
        raise SendError(f"{_where(url)} did not answer JSON: {response.text[:200]}") from e
    if answer.get("errcode") != 0:
        raise SendError(f"{_where(url)} refused the message: errcode {answer.get('errcode')}, "
                        f"{answer.get('errmsg')}", temporary=answer.get("errcode") in ROBOT_LATER)


def post_wecom_robot(url: str, body: dict[str, Any], timeout: float) -> None:
    """One message to a WeCom group robot; raises SendError. The alerts and the WeCom
    channel's robots (`channels.wecom.robots`) both send through here."""
    _check_robot(_post(url, body, timeout), url)


def text_of(notice: Notice) -> str:
    return f"Moltbot {notice.state}: {notice.rule}\n{notice.message}"


class WebhookSender:
    def __init__(self, config: WebhookNotify) -> None:
        self.config = config
        self.name = f"webhook {_where(config.url)}"

    def send(self, notice: Notice) -> None:
        _post(self.config.url, notice.as_json(), self.config.timeout, self.config.headers)


class SmtpSender:
    """Plain SMTP, STARTTLS or SMTPS; login only when a username is set. `ssl_context`
    defaults to the system's trusted CAs with hostname checks."""

    def __init__(self, config: SmtpNotify, ssl_context: ssl.SSLContext | None = None) -> None:
        self.config = config
        self.ssl_context = ssl_context or ssl.create_default_context()
        self.name = f"smtp {config.host}:{config.port}"

    def send(self, notice: Notice) -> None:
        self.send_mail(notice.subject, f"{notice.message}\n\nrule: {notice.rule}\n"
                       f"state: {notice.state}\nvalue: {notice.value}\n"
                       f"threshold: {notice.threshold}\nat: {notice.as_json()['at']}\n")

    def send_mail(self, subject: str, body: str) -> None:
        c = self.config
        mail = EmailMessage()
        mail["Subject"] = subject.replace("\n", " ")[:200]
        mail["From"] = c.from_
        mail["To"] = ", ".join(c.to)
        mail["Date"] = formatdate(localtime=True)
        mail["Message-ID"] = make_msgid(domain=c.from_.rpartition("@")[2] or None)
        mail.set_content(body)
        try:
            if c.ssl:
                client: smtplib.SMTP = smtplib.SMTP_SSL(c.host, c.port, timeout=c.timeout,
                                                        context=self.ssl_context)
            else:
                client = smtplib.SMTP(c.host, c.port, timeout=c.timeout)
            with client:
                if c.starttls:
                    client.starttls(context=self.ssl_context)
                if c.username:
                    client.login(c.username, c.password or "")
                client.send_message(mail)
        except smtplib.SMTPAuthenticationError as e:
            raise SendError(f"{self.name} refused the login of {c.username!r}: check "
                            f"username and password under alerts.notify") from e
        except (smtplib.SMTPException, OSError) as e:
            raise SendError(f"{self.name}: {type(e).__name__}: {e}") from e


class WeComSender:
    def __init__(self, config: WeComNotify) -> None:
        self.config = config
        self.name = f"wecom {_where(config.webhook_url)}"

    def payload(self, notice: Notice) -> dict[str, Any]:
        c = self.config
        if c.msgtype == "markdown":
            color = "warning" if notice.state == "firing" else "info"
            content = (f"**Moltbot <font color=\"{color}\">{notice.state}</font>: "
                       f"{notice.rule}**\n> {notice.message}")
            return {"msgtype": "markdown",
                    "markdown": {"content": _cut(content, WECOM_LIMITS["markdown"])}}
        text: dict[str, Any] = {"content": _cut(text_of(notice), WECOM_LIMITS["text"])}
        if c.mentioned_list:
            text["mentioned_list"] = c.mentioned_list
        if c.mentioned_mobile_list:
            text["mentioned_mobile_list"] = c.mentioned_mobile_list
        return {"msgtype": "text", "text": text}

    def send(self, notice: Notice) -> None:
        post_wecom_robot(self.config.webhook_url, self.payload(notice), self.config.timeout)


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's 加签: urlencode(base64(HMAC-SHA256(secret, "timestamp\\nsecret")))."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(),
                      hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest))


class DingTalkSender:
    def __init__(self, config: DingTalkNotify,
                 wall: Callable[[], float] = time.time) -> None:
        self.config = config
        self.wall = wall
        self.name = f"dingtalk {_where(config.webhook_url)}"

    def signed_url(self) -> str:
        url = self.config.webhook_url
        if not self.config.secret:
            return url
        timestamp = round(self.wall() * 1000)
        joiner = "&" if urlsplit(url).query else "?"
        sign = dingtalk_sign(self.config.secret, timestamp)
        return f"{url}{joiner}timestamp={timestamp}&sign={sign}"

    def payload(self, notice: Notice) -> dict[str, Any]:
        return {"msgtype": "text", "text": {"content": text_of(notice)},
                "at": {"atMobiles": self.config.at_mobiles, "isAtAll": self.config.at_all}}

    def send(self, notice: Notice) -> None:
        url = self.signed_url()
        _check_robot(_post(url, self.payload(notice), self.config.timeout), url)


def build_sender(config: Notify, ssl_context: ssl.SSLContext | None = None) -> Sender:
    """`ssl_context` is for SMTP's TLS (default: the system's CAs)."""
    if isinstance(config, WebhookNotify):
        return WebhookSender(config)
    if isinstance(config, SmtpNotify):
        return SmtpSender(config, ssl_context)
    if isinstance(config, WeComNotify):
        return WeComSender(config)
    return DingTalkSender(config)
