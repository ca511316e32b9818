"""A fake Feishu / Lark open platform for the Feishu channel, on 127.0.0.1.

The channel's real SDK (lark-oapi) talks to it because `channels.feishu.domain` takes an
origin (the option lark-oapi itself has, for Lark and proxies): `FakeFeishu.domain`.

- `POST /open-apis/auth/v3/tenant_access_token/internal` `{app_id, app_secret}` ->
  `{"code": 0, "tenant_access_token", "expire": 7200}`; a wrong secret is code 10014 "app
  secret invalid". Tokens a test expired (`expire_tokens`) answer 99991663 "Invalid access
  token for authorization" (HTTP 400) on every API below; no bearer token 99991661.
- `POST /callback/ws/endpoint` `{AppID, AppSecret}` -> `{"code": 0, "data": {"URL":
  "ws://...?device_id=..&service_id=..", "ClientConfig": {"ReconnectCount",
  "ReconnectInterval", "ReconnectNonce", "PingInterval"}}}`: the long connection's address
  (reconnect every 1 s, no jitter, pings every `ping_interval`); wrong credentials answer the
  app's error (10014), which the SDK raises as a ClientException; `down` answers 503.
- The long connection: a WebSocket speaking the SDK's protobuf `Frame`s
  (`lark_oapi.ws.pb.pbbp2_pb2`, the SDK's own classes). A control frame `type: ping` is
  answered `type: pong` (unless a test made the server `deaf`); `push_event` sends a data
  frame `type: event` with `message_id`, `trace_id`, `sum`, `seq` headers, and the client's
  answer frame (same headers, payload `{"code": 200}`) is recorded in `acks`. `drop()` closes
  every socket (the connection dies mid-conversation).
- `GET /open-apis/bot/v3/info` -> `{"bot": {"open_id", "app_name"}}`.
- `POST /open-apis/im/v1/messages/{message_id}/reply` `{content, msg_type, reply_in_thread,
  uuid}` and `POST /open-apis/im/v1/messages?receive_id_type=chat_id` `{receive_id, ...}`:
  recorded in `sent`; a `uuid` seen before is not sent again (Feishu's one-hour dedupe);
  `rate_limit(n)` answers the next n sends HTTP 429, code 99991400 "request trigger frequency
  limit", `x-ogw-ratelimit-reset: 1`; a chat the bot left (`remove_bot_from`) answers 400,
  code 230002.
- `GET /open-apis/im/v1/messages/{id}/resources/{key}?type=image|file` (files a test put with
  `put_resource`), `POST /open-apis/im/v1/images` and `/open-apis/im/v1/files` (multipart,
  recorded in `uploads`, answered with an `image_key` / `file_key`).
- The HTTP event callback (`post_callback`): the event encrypted as Feishu does with the
  app's encrypt key (AES-256-CBC, key SHA-256 of the encrypt key, random IV first, base64)
  and signed (`X-Lark-Signature` = SHA-256 hex of timestamp + nonce + encrypt key + body).

Left out: cards, reactions, message edits and recalls, user and chat lookups, the app ticket
(store apps), the `sum > 1` split of large frames.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import threading
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from lark_oapi.ws.pb.pbbp2_pb2 import Frame
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

APP_ID = "cli_moltbot_test"
APP_SECRET = "fake-app-secret"
BOT_OPEN_ID = "ou_bot_moltbot"
TENANT = "tenant-test"


@dataclass
class SentMessage:
    path: str
    body: dict[str, Any]
    reply_to: str | None  # the message replied to, or None for a new message

    @property
    def text(self) -> str:
        content = json.loads(self.body.get("content") or "{}")
        return str(content.get("text") or "")


@dataclass
class _Socket:
    connection: ServerConnection
    service_id: int
    pings: int = 0


@dataclass
class _State:
    tokens: set[str] = field(default_factory=set)
    sent: list[SentMessage] = field(default_factory=list)
    uuids: dict[str, str] = field(default_factory=dict)
    acks: dict[str, int] = field(default_factory=dict)  # frame message_id -> answer code
    uploads: list[dict[str, Any]] = field(default_factory=list)
    resources: dict[tuple[str, str], tuple[str, bytes]] = field(default_factory=dict)
    token_requests: int = 0
    endpoint_requests: int = 0
    rate_limited: int = 0
    left_chats: set[str] = field(default_factory=set)  # the bot was removed from these


class FakeFeishu:
    def __init__(self, ping_interval: int = 1) -> None:
        self.app_id, self.app_secret = APP_ID, APP_SECRET
        self.ping_interval = ping_interval
        self.state = _State()
        self.lock = threading.Condition()
        self.sockets: list[_Socket] = []
        self.deaf = False  # pings get no pong: the socket is open but the server is gone
        self.down = False  # the endpoint answers 503: the platform is out
        self.ids = itertools.count(1)
        self.ws = serve(self._ws, "127.0.0.1", 0)
        self.ws_port = self.ws.socket.getsockname()[1]
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.domain = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        for target in (self.ws.serve_forever, self.httpd.serve_forever):
            threading.Thread(target=target, daemon=True).start()

    def __enter__(self) -> FakeFeishu:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.drop()
        self.ws.shutdown()
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- the test's side ---------------------------------------------------------------------
    @property
    def sent(self) -> list[SentMessage]:
        with self.lock:
            return list(self.state.sent)

    def wait_for(self, predicate: Any, timeout: float = 20.0, what: str = "") -> None:
        with self.lock:
            if not self.lock.wait_for(predicate, timeout):
                raise AssertionError(f"waited {timeout:g} s for {what or predicate}; sent: "
                                     f"{self.state.sent}, acks: {self.state.acks}")

    def wait_for_sent(self, count: int, timeout: float = 20.0) -> list[SentMessage]:
        self.wait_for(lambda: len(self.state.sent) >= count, timeout, f"{count} sent")
        return self.sent

    def wait_connected(self, count: int = 1, timeout: float = 30.0) -> None:
        self.wait_for(lambda: len(self.sockets) >= count, timeout, f"{count} connections")

    def expire_tokens(self) -> None:
        with self.lock:
            self.state.tokens.clear()

    def rate_limit(self, sends: int) -> None:
        with self.lock:
            self.state.rate_limited = sends

    def remove_bot_from(self, chat: str) -> None:
        """New messages to `chat` are refused, as Feishu refuses a chat the bot left."""
        with self.lock:
            self.state.left_chats.add(chat)

    def put_resource(self, message_id: str, key: str, name: str, data: bytes) -> None:
        with self.lock:
            self.state.resources[(message_id, key)] = (name, data)

    def drop(self) -> None:
        """Close every long connection, as a network failure would."""
        with self.lock:
            sockets, self.sockets = list(self.sockets), []
        for sock in sockets:
            sock.connection.close()

    def message_event(self, text: str, *, sender: str = "ou_alice", chat: str = "oc_p2p_alice",
                      chat_type: str = "p2p", message_id: str | None = None,
                      mention_bot: bool = False, thread_id: str = "", message_type: str = "text",
                      content: dict[str, Any] | None = None,
                      token: str = "") -> dict[str, Any]:
        """An `im.message.receive_v1` event as Feishu sends it (schema 2.0)."""
        mentions = []
        if mention_bot:
            text = f"@_user_1 {text}"
            mentions = [{"key": "@_user_1", "id": {"open_id": BOT_OPEN_ID, "union_id": "on_b",
                                                    "user_id": ""},
                         "name": "Moltbot", "tenant_key": TENANT}]
        now = str(int(time.time() * 1000))
        message = {"message_id": message_id or f"om_{uuidlib.uuid4().hex[:16]}",
                   "root_id": "", "parent_id": "", "create_time": now, "update_time": now,
                   "chat_id": chat, "chat_type": chat_type, "message_type": message_type,
                   "content": json.dumps(content if content is not None else {"text": text},
                                         ensure_ascii=False),
                   "mentions": mentions}
        if thread_id:
            message["thread_id"] = thread_id
        return {"schema": "2.0",
                "header": {"event_id": uuidlib.uuid4().hex, "event_type": "im.message.receive_v1",
                           "create_time": now, "token": token, "app_id": APP_ID,
                           "tenant_key": TENANT},
                "event": {"sender": {"sender_id": {"open_id": sender, "union_id": "on_" + sender,
                                                   "user_id": ""},
                                     "sender_type": "user", "tenant_key": TENANT},
                          "message": message}}

    def push_event(self, event: dict[str, Any]) -> str:
        """Send the event on the newest long connection; returns the frame's message_id (the
        key of its answer in `acks`)."""
        with self.lock:
            if not self.sockets:
                raise AssertionError("no long connection to push on")
            sock = self.sockets[-1]
        frame_id = f"frame-{next(self.ids)}"
        frame = Frame(SeqID=next(self.ids), LogID=0, service=sock.service_id, method=1,
                      payload=json.dumps(event).encode())
        for key, value in (("type", "event"), ("message_id", frame_id), ("sum", "1"),
                           ("seq", "0"), ("trace_id", uuidlib.uuid4().hex)):
            header = frame.headers.add()
            header.key, header.value = key, value
        sock.connection.send(frame.SerializeToString())
        return frame_id

    def wait_ack(self, frame_id: str, timeout: float = 20.0) -> int:
        self.wait_for(lambda: frame_id in self.state.acks, timeout, f"the ack of {frame_id}")
        return self.state.acks[frame_id]

    def post_callback(self, url: str, event: dict[str, Any], encrypt_key: str,
                      signature: str | None = None) -> httpx.Response:
        """POST the event to the gateway's callback as Feishu does: encrypted and signed."""
        body = json.dumps({"encrypt": encrypt(event, encrypt_key)}).encode()
        timestamp, nonce = str(int(time.time())), uuidlib.uuid4().hex
        sign = hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()
        return httpx.post(url, content=body, timeout=20, headers={
            "Content-Type": "application/json", "X-Lark-Request-Timestamp": timestamp,
            "X-Lark-Request-Nonce": nonce, "X-Lark-Signature": signature or sign})

    # -- the long connection -----------------------------------------------------------------
    def _ws(self, connection: ServerConnection) -> None:
        query = parse_qs(urlsplit(connection.request.path).query)  # type: ignore[union-attr]
        sock = _Socket(connection, int(query.get("service_id", ["1"])[0]))
        with self.lock:
            self.sockets.append(sock)
            self.lock.notify_all()
        try:
            for data in connection:
                self._frame(sock, data if isinstance(data, bytes) else data.encode())
        except ConnectionClosed:
            pass
        finally:
            with self.lock:
                if sock in self.sockets:
                    self.sockets.remove(sock)
                self.lock.notify_all()

    def _frame(self, sock: _Socket, data: bytes) -> None:
        frame = Frame()
        frame.ParseFromString(data)
        headers = {h.key: h.value for h in frame.headers}
        if frame.method == 0 and headers.get("type") == "ping":
            sock.pings += 1
            if self.deaf:
                return
            pong = Frame(SeqID=0, LogID=0, service=sock.service_id, method=0,
                         payload=json.dumps(self._client_config()).encode())
            header = pong.headers.add()
            header.key, header.value = "type", "pong"
            sock.connection.send(pong.SerializeToString())
        elif frame.method == 1:
            answer = json.loads(frame.payload or b"{}")
            with self.lock:
                self.state.acks[headers.get("message_id", "")] = int(answer.get("code") or 0)
                self.lock.notify_all()

    def _client_config(self) -> dict[str, int]:
        return {"ReconnectCount": -1, "ReconnectInterval": 1, "ReconnectNonce": 0,
                "PingInterval": self.ping_interval}

    # -- the open API ------------------------------------------------------------------------
    def answer(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, Any,
                                                                                dict[str, str]]:
        """(status, JSON body or raw bytes, extra headers) for one request."""
        parts = urlsplit(path)
        route = parts.path
        if route == "/open-apis/auth/v3/tenant_access_token/internal":
            given = json.loads(body or b"{}")
            with self.lock:
                self.state.token_requests += 1
            if (given.get("app_id"), given.get("app_secret")) != (APP_ID, self.app_secret):
                return 200, {"code": 10014, "msg": "app secret invalid"}, {}
            token = f"t-{uuidlib.uuid4().hex}"
            with self.lock:
                self.state.tokens.add(token)
            return 200, {"code": 0, "msg": "ok", "tenant_access_token": token,
                         "expire": 7200}, {}
        if route == "/callback/ws/endpoint":
            given = json.loads(body or b"{}")
            with self.lock:
                self.state.endpoint_requests += 1
            if self.down:
                return 503, {"code": 1, "msg": "system busy"}, {}
            if (given.get("AppID"), given.get("AppSecret")) != (APP_ID, self.app_secret):
                return 200, {"code": 10014, "msg": "app secret invalid"}, {}
            url = (f"ws://127.0.0.1:{self.ws_port}/ws?device_id={uuidlib.uuid4().hex}"
                   f"&service_id={next(self.ids)}")
            return 200, {"code": 0, "msg": "ok",
                         "data": {"URL": url, "ClientConfig": self._client_config()}}, {}
        auth = headers.get("Authorization") or ""
        if not auth.startswith("Bearer "):
            return 400, {"code": 99991661, "msg": "Missing access token for authorization"}, {}
        with self.lock:
            valid = auth[7:] in self.state.tokens
        if not valid:
            return 400, {"code": 99991663, "msg": "Invalid access token for authorization"}, {}
        if route == "/open-apis/bot/v3/info":
            return 200, {"code": 0, "msg": "ok", "bot": {"open_id": BOT_OPEN_ID,
                                                         "app_name": "Moltbot",
                                                         "activate_status": 2}}, {}
        if route.startswith("/open-apis/im/v1/messages") and method == "POST" and (
                route.endswith("/reply") or route == "/open-apis/im/v1/messages"):
            return self._send(route, json.loads(body or b"{}"))
        if "/resources/" in route and method == "GET":
            message_id, key = route.split("/")[-3], route.split("/")[-1]
            with self.lock:
                found = self.state.resources.get((message_id, key))
            if found is None:
                return 400, {"code": 234003, "msg": "File not in msg."}, {}
            return 200, found[1], {"Content-Disposition": f'attachment; filename="{found[0]}"',
                                   "Content-Type": "application/octet-stream"}
        if route in ("/open-apis/im/v1/images", "/open-apis/im/v1/files"):
            fields = _multipart(headers.get("Content-Type") or "", body)
            kind = "image" if route.endswith("images") else "file"
            key = f"{kind[:3]}_{uuidlib.uuid4().hex[:12]}"
            with self.lock:
                self.state.uploads.append({"kind": kind, "key": key, **fields})
            return 200, {"code": 0, "msg": "ok", "data": {f"{kind}_key": key}}, {}
        return 404, {"code": 404, "msg": "not found"}, {}

    def _send(self, route: str, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            if self.state.rate_limited > 0:
                self.state.rate_limited -= 1
                return 429, {"code": 99991400, "msg": "request trigger frequency limit"}, {
                    "x-ogw-ratelimit-reset": "1"}
            if body.get("receive_id") in self.state.left_chats:
                return 400, {"code": 230002, "msg": "Bot/User can NOT be out of the chat."}, {}
            known = self.state.uuids.get(str(body.get("uuid")))
            if body.get("uuid") and known:
                return 200, {"code": 0, "msg": "ok", "data": {"message_id": known}}, {}
            message_id = f"om_sent_{len(self.state.sent) + 1}"
            if body.get("uuid"):
                self.state.uuids[str(body["uuid"])] = message_id
            reply_to = route.split("/")[-2] if route.endswith("/reply") else None
            self.state.sent.append(SentMessage(route, body, reply_to))
            self.lock.notify_all()
        return 200, {"code": 0, "msg": "ok", "data": {"message_id": message_id}}, {}


def encrypt(event: dict[str, Any], encrypt_key: str) -> str:
    """Feishu's event encryption: AES-256-CBC, key = SHA-256(encrypt key), IV first."""
    key = hashlib.sha256(encrypt_key.encode()).digest()
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    data = padder.update(json.dumps(event).encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return base64.b64encode(iv + encryptor.update(data) + encryptor.finalize()).decode()


def _multipart(content_type: str, body: bytes) -> dict[str, Any]:
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        binary = part.get_filename() or name in ("file", "image")
        fields[str(name)] = payload if binary else payload.decode()
    return fields


def _handler(fake: FakeFeishu) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, answer, extra = fake.answer(method, self.path, self.headers, body)
            data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
            self.send_response(status)
            if not isinstance(answer, bytes):
                self.send_header("Content-Type", "application/json; charset=utf-8")
            for key, value in extra.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

    return Handler
