"""A fake WeCom (企业微信) for a self-built app: its server API, and WeCom's side of the callback.

The server API answers on 127.0.0.1 as qyapi.weixin.qq.com does, so the channel's real client
is tested over real HTTP by pointing `channels.wecom.api_base` at `FakeWeCom.api_base`. Every
answer is HTTP 200 with WeCom's envelope `{"errcode", "errmsg", ...}` (企业微信 "全局错误码"):

- `GET /cgi-bin/gettoken?corpid=&corpsecret=`: `{"access_token", "expires_in": 7200}`; a
  wrong corp id 40013 "invalid corpid", a wrong secret 40001 "invalid credential".
- Every other call needs `?access_token=`: missing 41001 "access_token missing", unknown 40014
  "invalid access_token", one a test expired (`expire_tokens`) 42001 "access_token expired";
  with `ip_allowed` False, 60020 "not allow to access from your ip".
- `GET /cgi-bin/agent/get?agentid=`: the app; another id 40056 "invalid agentid".
- `POST /cgi-bin/message/send` JSON `{"touser", "msgtype", "agentid", "text": {"content"} |
  "image"/"file": {"media_id"}}`: a user not in the app's range alone is 81013 "user & party &
  tag all invalid" (with others, `invaliduser` lists it); text over 2,048 bytes is truncated as
  WeCom documents it ("超过将截断"; recorded as `truncated`); `rate_limit(n)` answers the next n
  with 45009 "api freq out of limit".
- `POST /cgi-bin/media/upload?type=image|voice|video|file`, multipart field `media` with a
  filename: `{"type", "media_id", "created_at"}`; `GET /cgi-bin/media/get?media_id=`: the
  bytes with Content-Type and Content-Disposition, or 40007 "invalid media_id" as JSON.

WeCom's side of the callback (企业微信 "接收消息与事件", "加解密方案说明"): `verify_url` sends
the URL check (GET with an encrypted `echostr`), `user_says`, `user_sends_image` and
`user_sends_file` POST a message the way WeCom does: the plain XML encrypted with AES-256-CBC
(wechatpy's `PrpCrypto`, the documented algorithm: random(16) + length + msg + receive id,
PKCS#7), wrapped in `<xml><ToUserName/><AgentID/><Encrypt/></xml>`, with `msg_signature` =
sha1 of the sorted token, timestamp, nonce and Encrypt computed here from the documentation.
`send_callback` sends one again (WeCom's redelivery after 5 s without an answer).

Left out: the markdown/textcard/news/miniprogram message types, `safe`, `enable_id_trans` and
duplicate checks, party and tag recipients, app chats (appchat), the passive encrypted reply,
and the real rate limits (a test switches 45009 on).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
from wechatpy.enterprise.crypto import PrpCrypto  # type: ignore[import-untyped]

CORP_ID = "ww7e5f0000fake0001"
AGENT_ID = 1000002
SECRET = "fake-app-secret-0123456789abcdefghijklmn"
TOKEN = "MoltbotFakeToken42"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters
TEXT_LIMIT = 2048


@dataclass
class Sent:
    touser: str
    msgtype: str
    content: str = ""
    media_id: str = ""
    truncated: bool = False


@dataclass
class Media:
    kind: str
    name: str
    media_type: str
    data: bytes


def signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    """The documented msg_signature: sha1 of the four strings sorted and joined."""
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, encrypt])).encode()).hexdigest()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True  # restart on the same port

    def __init__(self, address: tuple[str, int], fake: FakeWeCom) -> None:
        self.fake = fake
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        TCPServer.server_bind(self)  # no getfqdn(): a reverse DNS lookup can stall
        self.server_name, self.server_port = "127.0.0.1", int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # a client that vanished
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:  # http.server's signature
        """Quiet: tests read what the fake recorded, not stderr."""

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        answer = self.server.fake._answer(self.command, parts.path, query,
                                          self.headers.get("Content-Type", ""), raw)
        if isinstance(answer, Media):
            data, headers = answer.data, {
                "Content-Type": answer.media_type,
                "Content-Disposition": f"attachment; filename*=UTF-8''{quote(answer.name)}"}
        else:
            data = json.dumps(answer, ensure_ascii=False).encode()
            headers = {"Content-Type": "application/json; charset=UTF-8"}
        self.send_response(200)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FakeWeCom:
    """One company with one self-built app; everything recorded is guarded by one condition
    variable, and every change wakes `wait_for`."""

    def __init__(self, port: int = 0, users: tuple[str, ...] = ("alice", "bob")) -> None:
        self.port = port
        self.corp_id, self.agent_id, self.secret = CORP_ID, AGENT_ID, SECRET
        self.token, self.aes_key = TOKEN, AES_KEY
        self.users = set(users)
        self.ip_allowed = True
        self.issue_expired = False  # every new token is already expired (a broken platform)
        self.callback_url = ""  # the gateway's callback route, set by the test
        self.sent: list[Sent] = []
        self.calls: list[tuple[str, int]] = []  # (path, errcode) of every API call
        self.tokens_issued = 0
        self.media: dict[str, Media] = {}
        self._tokens: dict[str, bool] = {}  # token -> still valid
        self._rate_limited = 0
        self._next_msg_id = 7_000_000_000_000_000_000
        self._cond = threading.Condition()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeWeCom:
        """Listen (on the same port again after a stop)."""
        self._httpd = _Server(("127.0.0.1", self.port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True,
                                        name=f"fake-wecom-{self.port}")
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeWeCom:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- trouble --------------------------------------------------------------------------
    def expire_tokens(self) -> None:
        """Every token issued so far ends (42001), as when it outlived expires_in."""
        with self._cond:
            self._tokens = dict.fromkeys(self._tokens, False)

    def rate_limit(self, calls: int) -> None:
        with self._cond:
            self._rate_limited = calls

    # -- waiting --------------------------------------------------------------------------
    def wait_for(self, done: Callable[[], bool], timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not done():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def wait_for_sent(self, count: int, timeout: float = 20.0) -> list[Sent]:
        if not self.wait_for(lambda: len(self.sent) >= count, timeout):
            raise AssertionError(f"{len(self.sent)} of {count} messages sent: {self.sent}; "
                                 f"calls {self.calls[-10:]}")
        return list(self.sent)

    # -- WeCom's side of the callback -----------------------------------------------------
    def _signed(self, encrypt: str) -> dict[str, str]:
        timestamp, nonce = str(int(time.time())), secrets.token_hex(5)
        return {"msg_signature": signature(self.token, timestamp, nonce, encrypt),
                "timestamp": timestamp, "nonce": nonce}

    def encrypt(self, plain: str, receive_id: str | None = None) -> str:
        crypto = PrpCrypto(base64.b64decode(self.aes_key + "="))
        return crypto.encrypt(plain, receive_id or self.corp_id).decode()

    def verify_url(self, echo: str = "echo-1234567890") -> httpx.Response:
        encrypted = self.encrypt(echo)
        return httpx.get(self.callback_url, params={**self._signed(encrypted),
                                                    "echostr": encrypted}, timeout=30)

    def message_xml(self, user: str, kind: str, fields: dict[str, str]) -> tuple[str, str]:
        """(plain XML, MsgId) of one message from `user` to the app."""
        with self._cond:
            self._next_msg_id += 1
            msg_id = str(self._next_msg_id)
        inner = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items())
        return (f"<xml><ToUserName><![CDATA[{self.corp_id}]]></ToUserName>"
                f"<FromUserName><![CDATA[{user}]]></FromUserName>"
                f"<CreateTime>{int(time.time())}</CreateTime>"
                f"<MsgType><![CDATA[{kind}]]></MsgType>{inner}<MsgId>{msg_id}</MsgId>"
                f"<AgentID>{self.agent_id}</AgentID></xml>"), msg_id

    def send_callback(self, plain: str, *, receive_id: str | None = None,
                      tamper: bool = False) -> httpx.Response:
        """POST one message as WeCom does; `tamper` breaks the signature."""
        encrypted = self.encrypt(plain, receive_id)
        query = self._signed(encrypted)
        if tamper:
            query["msg_signature"] = "0" * 40
        body = (f"<xml><ToUserName><![CDATA[{self.corp_id}]]></ToUserName>"
                f"<AgentID><![CDATA[{self.agent_id}]]></AgentID>"
                f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>")
        return httpx.post(self.callback_url, params=query, content=body.encode(),
                          headers={"Content-Type": "text/xml"}, timeout=30)

    def user_says(self, user: str, text: str) -> tuple[httpx.Response, str]:
        plain, _ = self.message_xml(user, "text", {"Content": text})
        return self.send_callback(plain), plain

    def user_sends_image(self, user: str, data: bytes) -> httpx.Response:
        media_id = self._store(Media("image", "photo.jpg", "image/jpeg", data))
        plain, _ = self.message_xml(user, "image", {"PicUrl": "http://example.invalid/p",
                                                    "MediaId": media_id})
        return self.send_callback(plain)

    def _store(self, media: Media) -> str:
        with self._cond:
            return self._store_locked(media)

    # -- the server API -------------------------------------------------------------------
    def _answer(self, method: str, path: str, query: dict[str, str], content_type: str,
                raw: bytes) -> dict[str, Any] | Media:
        with self._cond:
            answer = self._route(method, path, query, content_type, raw)
            code = answer.get("errcode", 0) if isinstance(answer, dict) else 0
            self.calls.append((path, code))
            self._cond.notify_all()
            return answer

    def _route(self, method: str, path: str, query: dict[str, str], content_type: str,
               raw: bytes) -> dict[str, Any] | Media:
        if not self.ip_allowed:
            return _error(60020, "not allow to access from your ip")
        if path == "/cgi-bin/gettoken":
            if query.get("corpid") != self.corp_id:
                return _error(40013, "invalid corpid")
            if query.get("corpsecret") != self.secret:
                return _error(40001, "invalid credential")
            issued = secrets.token_urlsafe(48)
            self._tokens[issued] = not self.issue_expired
            self.tokens_issued += 1
            return {"errcode": 0, "errmsg": "ok", "access_token": issued, "expires_in": 7200}
        token = query.get("access_token")
        if not token:
            return _error(41001, "access_token missing")
        if token not in self._tokens:
            return _error(40014, "invalid access_token")
        if not self._tokens[token]:
            return _error(42001, "access_token expired")
        if path == "/cgi-bin/agent/get" and method == "GET":
            if query.get("agentid") != str(self.agent_id):
                return _error(40056, "invalid agentid")
            return {"errcode": 0, "errmsg": "ok", "agentid": self.agent_id, "name": "Moltbot"}
        if path == "/cgi-bin/message/send" and method == "POST":
            return self._send(raw)
        if path == "/cgi-bin/media/upload" and method == "POST":
            return self._upload(query.get("type", ""), content_type, raw)
        if path == "/cgi-bin/media/get" and method == "GET":
            return self.media.get(query.get("media_id", "")) or _error(40007,
                                                                      "invalid media_id")
        return _error(404, "api not found")

    def _send(self, raw: bytes) -> dict[str, Any]:
        if self._rate_limited > 0:
            self._rate_limited -= 1
            return _error(45009, "api freq out of limit")
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(47001, "data format error")
        if body.get("agentid") != self.agent_id:
            return _error(40056, "invalid agentid")
        kind = body.get("msgtype")
        users = str(body.get("touser") or "").split("|")
        invalid = [u for u in users if u not in self.users]
        if len(invalid) == len(users):
            return _error(81013, "user & party & tag all invalid")
        part = body.get(kind)
        if kind == "text" and isinstance(part, dict) and isinstance(part.get("content"), str):
            data = part["content"].encode()
            if not data:
                return _error(44004, "empty content")
            content = data[:TEXT_LIMIT].decode("utf-8", errors="ignore")
            sent = [Sent(u, kind, content, truncated=len(data) > TEXT_LIMIT)
                    for u in users if u in self.users]
        elif kind in ("image", "file") and isinstance(part, dict) and \
                part.get("media_id") in self.media:
            sent = [Sent(u, kind, media_id=part["media_id"]) for u in users if u in self.users]
        elif kind in ("image", "file"):
            return _error(40007, "invalid media_id")
        else:
            return _error(40008, "invalid message type")
        self.sent.extend(sent)
        return {"errcode": 0, "errmsg": "ok", "invaliduser": "|".join(invalid),
                "msgid": secrets.token_hex(8)}

    def _upload(self, kind: str, content_type: str, raw: bytes) -> dict[str, Any]:
        if kind not in ("image", "voice", "video", "file"):
            return _error(40004, "invalid media type")
        form = BytesParser().parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
        for part in form.walk():
            if part.get_param("name", header="Content-Disposition") == "media" and \
                    part.get_filename():
                data = part.get_payload(decode=True)
                assert isinstance(data, bytes)
                # the raw UTF-8 name as browsers and httpx send it (the parser mangles it)
                raw_name = re.search(rb'name="media"; filename="([^"]*)"', raw)
                name = raw_name.group(1).decode("utf-8") if raw_name else ""
                media_id = self._store_locked(Media(kind, name, part.get_content_type(),
                                                    data))
                return {"errcode": 0, "errmsg": "ok", "type": kind, "media_id": media_id,
                        "created_at": str(int(time.time()))}
        return _error(41005, "media data missing")

    def _store_locked(self, media: Media) -> str:
        media_id = f"3{secrets.token_hex(16)}"
        self.media[media_id] = media
        return media_id


def _error(code: int, message: str) -> dict[str, Any]:
    return {"errcode": code, "errmsg": f"{message}, hint: [fake], from ip: 127.0.0.1"}
