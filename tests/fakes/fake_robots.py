"""Local stand-ins for the WeCom and DingTalk group robots and for a generic webhook.

Each checks a request the way its platform documents it and answers the way it answers, so
the product's real sender is tested over real HTTP without the internet:

- WeCom group robot (企业微信群机器人 "消息推送配置说明"): `POST /cgi-bin/webhook/send?key=KEY`,
  JSON `{"msgtype": "text", "text": {"content", "mentioned_list"?, "mentioned_mobile_list"?}}`
  (content at most 2048 bytes) or `{"msgtype": "markdown", "markdown": {"content"}}` (4096).
  Answers HTTP 200 `{"errcode": 0, "errmsg": "ok"}`, or a non-zero errcode: 93000 bad key,
  40008 bad message type, 44004 empty content, 40058 content too long.
- DingTalk custom robot (钉钉 "自定义机器人安全设置" 加签): `POST
  /robot/send?access_token=TOKEN&timestamp=MS&sign=SIGN`, where SIGN is
  urlencode(base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}"))) and the timestamp
  is within an hour of the robot's clock. JSON `{"msgtype": "text", "text": {"content"},
  "at": {"atMobiles", "isAtAll"}?}`. Answers `{"errcode": 0, "errmsg": "ok"}`; 300001 bad
  token, 310000 sign not match / timestamp expired / keyword missing, 40035 bad body.

The signature is recomputed here from the documentation, not with the product's function.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Received:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    raw: bytes


class _Httpd(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, fake: RobotServer) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        TCPServer.server_bind(self)  # no getfqdn(): a reverse DNS lookup can stall
        self.server_name, self.server_port = self.server_address[:2]


class _Handler(BaseHTTPRequestHandler):
    server: _Httpd

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        received = Received(parts.path, query, dict(self.headers.items()), body, raw)
        status, answer = self.server.fake.answer(received)
        data = json.dumps(answer, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # http.server's signature
        """Quiet: the test reads `received`, not stderr."""


class RobotServer:
    """Base: records every request, answers with `check`; `fail_times` answers HTTP 500 to
    the next N requests (a platform having a bad minute)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.accepted: list[Received] = []
        self.fail_times = 0
        self._changed = threading.Condition()
        self._httpd: _Httpd | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start() first"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> RobotServer:
        self._httpd = _Httpd(self)
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> RobotServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def answer(self, received: Received) -> tuple[int, dict[str, Any]]:
        with self._changed:
            self.received.append(received)
            if self.fail_times > 0:
                self.fail_times -= 1
                status, answer = 500, {"errcode": -1, "errmsg": "system busy"}
            else:
                status, answer = self.check(received)
                if answer.get("errcode", 0) == 0 and status == 200:
                    self.accepted.append(received)
            self._changed.notify_all()
        return status, answer

    def check(self, received: Received) -> tuple[int, dict[str, Any]]:
        raise NotImplementedError

    def wait_accepted(self, count: int = 1, timeout: float = 10.0) -> list[Received]:
        """Wait (with a deadline, never a bare sleep) until `count` requests were accepted."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.accepted) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{type(self).__name__}: {len(self.accepted)} of "
                                         f"{count} accepted; received {self.received}")
                self._changed.wait(remaining)
            return list(self.accepted)


def _ok() -> tuple[int, dict[str, Any]]:
    return 200, {"errcode": 0, "errmsg": "ok"}


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


WECOM_LIMITS = {"text": 2048, "markdown": 4096}  # bytes of UTF-8 content


class WeComRobot(RobotServer):
    def __init__(self, key: str = "wecom-test-key") -> None:
        super().__init__()
        self.key = key

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/cgi-bin/webhook/send?key={self.key}"

    def check(self, r: Received) -> tuple[int, dict[str, Any]]:
        if r.path != "/cgi-bin/webhook/send" or r.query.get("key") != self.key:
            return 200, {"errcode": 93000, "errmsg": "invalid webhook url"}
        if not r.headers.get("Content-Type", "").startswith("application/json"):
            return 200, {"errcode": 40035, "errmsg": "invalid parameter: Content-Type"}
        body = r.body
        msgtype = body.get("msgtype") if isinstance(body, dict) else None
        if msgtype not in WECOM_LIMITS:
            return 200, {"errcode": 40008, "errmsg": "invalid message type"}
        if set(body) != {"msgtype", msgtype} or not isinstance(body[msgtype], dict):
            return 200, {"errcode": 40035, "errmsg": f"invalid parameter: keys {sorted(body)}"}
        part = body[msgtype]
        allowed = {"content"} | ({"mentioned_list", "mentioned_mobile_list"}
                                 if msgtype == "text" else set())
        if not set(part) <= allowed:
            return 200, {"errcode": 40035, "errmsg": f"invalid parameter: {sorted(part)}"}
        if any(not _is_str_list(part[k]) for k in set(part) - {"content"}):
            return 200, {"errcode": 40035, "errmsg": "mention lists must be string lists"}
        content = part.get("content")
        if not isinstance(content, str) or not content:
            return 200, {"errcode": 44004, "errmsg": "empty content"}
        if len(content.encode("utf-8")) > WECOM_LIMITS[msgtype]:
            return 200, {"errcode": 40058, "errmsg": "content exceed max length"}
        return _ok()


def documented_sign(secret: str, timestamp: str) -> str:
    """DingTalk's documentation, step by step; base64 text (before URL-encoding)."""
    string_to_sign = f"{timestamp}\n{secret}"
    hmac_code = hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"),
                         digestmod=hashlib.sha256).digest()
    return base64.b64encode(hmac_code).decode()


class DingTalkRobot(RobotServer):
    def __init__(self, token: str = "dingtalk-test-token", secret: str | None = "SEC0123test",
                 keyword: str | None = None) -> None:
        super().__init__()
        self.token = token
        self.secret = secret
        self.keyword = keyword

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/robot/send?access_token={self.token}"

    def check(self, r: Received) -> tuple[int, dict[str, Any]]:
        if r.path != "/robot/send" or r.query.get("access_token") != self.token:
            return 200, {"errcode": 300001, "errmsg": "token is not exist"}
        if self.secret is not None:
            timestamp, sign = r.query.get("timestamp", ""), r.query.get("sign", "")
            if not timestamp.isdigit() or abs(time.time() * 1000 - int(timestamp)) > 3600_000:
                return 200, {"errcode": 310000, "errmsg": "timestamp invalid or expired"}
            # parse_qs has already URL-decoded `sign`: compare with the plain base64 text
            if not hmac.compare_digest(sign, documented_sign(self.secret, timestamp)):
                return 200, {"errcode": 310000, "errmsg": "sign not match"}
        body = r.body
        if not isinstance(body, dict) or body.get("msgtype") != "text":
            return 200, {"errcode": 40035, "errmsg": "msgtype must be text here"}
        if not set(body) <= {"msgtype", "text", "at"}:
            return 200, {"errcode": 40035, "errmsg": f"unknown keys {sorted(body)}"}
        text = body.get("text")
        if not isinstance(text, dict) or set(text) != {"content"} or not text["content"]:
            return 200, {"errcode": 40035, "errmsg": "text.content is required"}
        at = body.get("at", {})
        if not isinstance(at, dict) or not set(at) <= {"atMobiles", "atUserIds", "isAtAll"}:
            return 200, {"errcode": 40035, "errmsg": "bad at"}
        if "atMobiles" in at and not _is_str_list(at["atMobiles"]):
            return 200, {"errcode": 40035, "errmsg": "atMobiles must be a string list"}
        if "isAtAll" in at and not isinstance(at["isAtAll"], bool):
            return 200, {"errcode": 40035, "errmsg": "isAtAll must be a boolean"}
        if self.keyword and self.keyword not in text["content"]:
            return 200, {"errcode": 310000, "errmsg": "keywords not in content"}
        return _ok()


class WebhookReceiver(RobotServer):
    """A generic webhook endpoint: accepts any JSON object, answers 200 `{}`."""

    def check(self, r: Received) -> tuple[int, dict[str, Any]]:
        if not isinstance(r.body, dict):
            return 400, {"error": "expected a JSON object"}
        return 200, {}
