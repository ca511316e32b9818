"""A fake DingTalk open platform (https://open.dingtalk.com) for the DingTalk channel.

It answers on 127.0.0.1 as api.dingtalk.com does, so the channel's real code (the
`dingtalk-stream` SDK in the stream child, the robot send client in the gateway) is tested
over real HTTP and WebSocket by pointing `channels.dingtalk.api_base` at `FakeDingTalk.api_base`:

- Stream mode: `POST /v1.0/gateway/connections/open` with `{"clientId", "clientSecret",
  "subscriptions", "ua", "localIp"}` answers `{"endpoint", "ticket"}` (wrong credentials: 401
  `{"code": "InvalidAuthentication"}`); the endpoint is a WebSocket taking `?ticket=` once
  (an unknown or used ticket: 401 at the handshake). On it the fake sends SYSTEM `ping` frames
  every `ping_every` seconds and CALLBACK frames of topic `/v1.0/im/bot/messages/get` (the
  robot message JSON as the frame's `data` string), and takes ack frames `{"code", "headers":
  {"messageId"}, "message", "data"}`. A robot message not acknowledged with code 200 is
  delivered again on the next connection (DingTalk retries unacknowledged messages), and
  messages are delivered on the newest connection only, as DingTalk does with one app's
  several connections; `disconnect()` sends the SYSTEM `disconnect` frame and closes,
  `drop()` closes every connection at once, `outage(True)` also answers connections/open 503
  until `outage(False)`.
- The session webhook `/robot/sendBySession?session=...` of each message: `{"msgtype": "text"
  | "markdown", ...}` answered `{"errcode": 0, "errmsg": "ok"}` while it is valid (until its
  `sessionWebhookExpiredTime`), `{"errcode": 300001}` after.
- `POST /v1.0/oauth2/accessToken` `{"appKey", "appSecret"}` -> `{"accessToken", "expireIn"}`
  (wrong: 400 `{"code": "invalidClientIdOrSecret"}`); `expire_tokens()` makes every token
  issued so far refused with 401 `{"code": "InvalidAuthentication"}`.
- `POST /v1.0/robot/oToMessages/batchSend` `{"robotCode", "userIds", "msgKey", "msgParam"}` and
  `POST /v1.0/robot/groupMessages/send` `{"robotCode", "openConversationId", "msgKey",
  "msgParam"}` with `x-acs-dingtalk-access-token`: `{"processQueryKey"}`; a wrong robotCode
  400 `{"code": "robot.notExist"}`; `throttle(n)` answers the next n sends 429
  `{"code": "Throttling.Api"}`.
- `POST /v1.0/robot/messageFiles/download` `{"downloadCode", "robotCode"}` ->
  `{"downloadUrl"}` for a picture or file a user sent (`user_sends_file`); the URL serves its
  bytes; an unknown code: 400 `{"code": "invalidParameter.downloadCode"}`.
- `POST /media/upload?access_token=...&type=image|file` (the oapi host's, served here too:
  the channel's `oapi_base` follows `api_base`), multipart field `media`: `{"errcode": 0,
  "media_id": "@lA..."}`, the bytes kept in `media` (an unknown token: `{"errcode": 40014}`);
  the send APIs take `sampleImageMsg` (`{"photoURL": media id}`) and `sampleFile`
  (`{"mediaId", "fileName", "fileType"}`), recorded with `Sent.media`.
- The outgoing robot (callback mode): `post_outgoing(url, ...)` POSTs a robot message to the
  gateway with the `timestamp` and `sign` headers DingTalk computes.

Left out: cards, EVENT frames, the legacy oapi.dingtalk.com API but its media/upload.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import WSMsgType, web

CLIENT_ID = "dingfakeappkey"
CLIENT_SECRET = "fake-app-secret-0123456789"
ROBOT_TOPIC = "/v1.0/im/bot/messages/get"


@dataclass
class Sent:
    """One message the robot sent: `via` is "webhook", "person" or "group"."""

    via: str
    target: str  # the conversation (webhook, group) or the staff id (person)
    text: str
    body: dict[str, Any]
    msg_key: str = ""  # the send API's msgKey ("" for the session webhook)
    media: Uploaded | None = None  # the picture or file a sampleImageMsg / sampleFile sent


@dataclass
class Uploaded:
    """One `media/upload`: the file as the gateway sent it."""

    type: str  # "image" or "file"
    name: str
    content_type: str
    data: bytes


@dataclass
class Connection:
    id: str
    ws: web.WebSocketResponse
    acked: list[str] = field(default_factory=list)
    pongs: int = 0


class FakeDingTalk:
    def __init__(self, ping_every: float = 0.5, webhook_ttl: float = 3600.0) -> None:
        self.ping_every = ping_every
        self.webhook_ttl = webhook_ttl
        self.sent: list[Sent] = []
        self.opened: list[dict[str, Any]] = []  # connections/open request bodies
        self.connections: list[Connection] = []  # open WebSockets, oldest first
        self.pending: dict[str, dict[str, Any]] = {}  # msgId -> frame not acked yet
        self.delivered: list[str] = []  # msgIds, each time one was sent on a WebSocket
        self.tokens: dict[str, bool] = {}  # accessToken -> still valid
        self.token_calls = 0
        self._tickets: set[str] = set()
        self._webhooks: dict[str, tuple[str, float]] = {}  # session -> (conversation, until)
        self._throttle = 0
        self.muted = False
        self.down = False
        self.files: dict[str, bytes] = {}  # downloadCode -> the bytes a user sent
        self.media: dict[str, Uploaded] = {}  # media_id -> what media/upload took
        self._ids = itertools.count(1)
        self._changed = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- life ------------------------------------------------------------------------------
    def __enter__(self) -> FakeDingTalk:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/v1.0/gateway/connections/open", self._open)
        app.router.add_get("/connect", self._socket)
        app.router.add_post("/robot/sendBySession", self._webhook)
        app.router.add_post("/v1.0/oauth2/accessToken", self._token)
        app.router.add_post("/v1.0/robot/oToMessages/batchSend", self._to_person)
        app.router.add_post("/v1.0/robot/groupMessages/send", self._to_group)
        app.router.add_post("/v1.0/robot/messageFiles/download", self._download)
        app.router.add_get("/files/{code}", self._file)
        app.router.add_post("/media/upload", self._upload)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._pinging = self._loop.create_task(self._pinger())
        ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _close(self) -> None:
        self._pinging.cancel()
        for conn in list(self.connections):
            await conn.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, check: Callable[[], Any], timeout: float = 20.0) -> Any:
        """Wait until `check()` is truthy (woken by every change), and return it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (found := check()):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout} s; sent={self.sent}, "
                                         f"connections={len(self.connections)}, "
                                         f"pending={list(self.pending)}")
                self._changed.wait(min(left, 0.2))
        return found

    def wait_for_sent(self, count: int, timeout: float = 20.0) -> list[Sent]:
        return list(self.wait_for(lambda: len(self.sent) >= count and self.sent, timeout))

    def wait_for_connections(self, count: int, timeout: float = 20.0) -> None:
        self.wait_for(lambda: len(self.connections) == count, timeout)

    # -- the test's side -------------------------------------------------------------------
    def robot_message(self, text: str, staff_id: str = "manager1234", group: str | None = None,
                      ttl: float | None = None, mentioned: bool = True) -> dict[str, Any]:
        """A robot message as DingTalk sends it; its session webhook valid for `ttl` s."""
        number = next(self._ids)
        conversation = group or f"cidPrivate{staff_id}"
        session = uuid.uuid4().hex
        until = time.time() + (self.webhook_ttl if ttl is None else ttl)
        self._webhooks[session] = (conversation, until)
        return {
            "conversationId": conversation, "conversationType": "2" if group else "1",
            "chatbotCorpId": "dingcorp", "chatbotUserId": "$:LWCP_v1:$bot",
            "msgId": f"msg{number:06d}", "senderNick": "Alice", "isAdmin": False,
            "senderStaffId": staff_id, "senderId": f"$:LWCP_v1:${staff_id}",
            "sessionWebhookExpiredTime": int(until * 1000), "createAt": int(time.time() * 1000),
            "senderCorpId": "dingcorp", "robotCode": CLIENT_ID, "isInAtList": mentioned,
            "sessionWebhook": f"{self.api_base}/robot/sendBySession?session={session}",
            "msgtype": "text", "text": {"content": text},
            **({"conversationTitle": "Team"} if group else {}),
        }

    def user_says(self, text: str, **kwargs: Any) -> dict[str, Any]:
        """A robot message delivered on the stream (held until a connection is open)."""
        data = self.robot_message(text, **kwargs)
        self.redeliver(data)
        return data

    def user_sends_file(self, content: bytes, file_name: str | None = None,
                        **kwargs: Any) -> dict[str, Any]:
        """A picture (no `file_name`) or a file, delivered on the stream."""
        data = self.robot_message("", **kwargs)
        del data["text"]
        code = uuid.uuid4().hex
        self.files[code] = content
        data["msgtype"] = "file" if file_name else "picture"
        data["content"] = ({"downloadCode": code, "fileName": file_name} if file_name else
                           {"downloadCode": code, "pictureDownloadCode": code})
        self.redeliver(data)
        return data

    def redeliver(self, data: dict[str, Any]) -> None:
        """`data` (again) on the stream, as DingTalk retries a message whose ack it missed."""
        frame = {"specVersion": "1.0", "type": "CALLBACK", "data": json.dumps(data),
                 "headers": {"appId": "fake-app", "connectionId": "", "contentType":
                             "application/json", "messageId": f"frame-{data['msgId']}",
                             "time": str(int(time.time() * 1000)), "topic": ROBOT_TOPIC}}
        self.pending[data["msgId"]] = frame
        asyncio.run_coroutine_threadsafe(self._deliver(frame), self._loop).result(10)

    def mute(self, muted: bool) -> None:
        """Muted: the stream stays open but carries nothing (no pings, no messages)."""
        self.muted = muted

    def post_outgoing(self, url: str, data: dict[str, Any], secret: str = CLIENT_SECRET,
                      timestamp: int | None = None, sign: str | None = None) -> httpx.Response:
        """The outgoing robot's POST (callback mode), signed as DingTalk signs it."""
        stamp = str(timestamp if timestamp is not None else int(time.time() * 1000))
        if sign is None:
            digest = hmac.new(secret.encode(), f"{stamp}\n{secret}".encode(), hashlib.sha256)
            sign = base64.b64encode(digest.digest()).decode()
        return httpx.post(url, json=data, timeout=30,
                          headers={"timestamp": stamp, "sign": sign})

    def disconnect(self) -> None:
        """DingTalk's way of moving a client: a SYSTEM disconnect frame, then the close."""
        asyncio.run_coroutine_threadsafe(self._disconnect(), self._loop).result(10)

    def drop(self) -> None:
        """Every connection closed at once, with no word (a crash, a network cut)."""
        async def close_all() -> None:
            for conn in list(self.connections):
                await conn.ws.close(code=1011, message=b"fake dropped the connection")
        asyncio.run_coroutine_threadsafe(close_all(), self._loop).result(10)

    def outage(self, down: bool) -> None:
        """Down: connections/open answers 503 and every connection is dropped; up again:
        DingTalk is back, with what it holds."""
        self.down = down
        if down:
            self.drop()

    def expire_tokens(self) -> None:
        for token in self.tokens:
            self.tokens[token] = False

    def throttle(self, count: int) -> None:
        self._throttle = count

    # -- stream mode -----------------------------------------------------------------------
    async def _open(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.opened.append(body)
        if self.down:
            return web.json_response({"code": "ServiceUnavailable",
                                      "message": "the service is down"}, status=503)
        if body.get("clientId") != CLIENT_ID or body.get("clientSecret") != CLIENT_SECRET:
            return web.json_response({"code": "InvalidAuthentication",
                                      "message": "clientId or clientSecret is invalid"},
                                     status=401)
        ticket = uuid.uuid4().hex
        self._tickets.add(ticket)
        return web.json_response({"endpoint": f"ws://127.0.0.1:{self.port}/connect",
                                  "ticket": ticket})

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            return web.json_response({"code": "InvalidTicket"}, status=401)
        self._tickets.discard(ticket)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = Connection(uuid.uuid4().hex, ws)
        self.connections.append(conn)
        self._notify()
        for frame in list(self.pending.values()):  # what was never acked comes again
            await self._send(conn, frame)
        try:
            async for raw in ws:
                if raw.type == WSMsgType.TEXT:
                    self._take_ack(conn, json.loads(raw.data))
        finally:
            with contextlib.suppress(ValueError):
                self.connections.remove(conn)
            self._notify()
        return ws

    def _take_ack(self, conn: Connection, ack: dict[str, Any]) -> None:
        message_id = str((ack.get("headers") or {}).get("messageId") or "")
        if message_id.startswith("ping-"):
            conn.pongs += 1
        elif ack.get("code") == 200:
            conn.acked.append(message_id)
            self.pending.pop(message_id.removeprefix("frame-"), None)
        self._notify()

    async def _deliver(self, frame: dict[str, Any]) -> None:
        if self.connections and not self.muted:
            await self._send(self.connections[-1], frame)

    async def _send(self, conn: Connection, frame: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await conn.ws.send_str(json.dumps(frame))
            if frame["type"] == "CALLBACK":
                self.delivered.append(json.loads(frame["data"])["msgId"])
        self._notify()

    async def _pinger(self) -> None:
        while True:
            await asyncio.sleep(self.ping_every)
            for conn in list(self.connections) if not self.muted else []:
                await self._send(conn, self._system("ping", {"opaque": uuid.uuid4().hex}))

    async def _disconnect(self) -> None:
        for conn in list(self.connections):
            await self._send(conn, self._system("disconnect", {"reason": "moved"}))
            await conn.ws.close()

    def _system(self, topic: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"specVersion": "1.0", "type": "SYSTEM", "data": json.dumps(data),
                "headers": {"contentType": "application/json", "messageId":
                            f"{topic}-{uuid.uuid4().hex}", "time": str(int(time.time() * 1000)),
                            "topic": topic}}

    # -- sending ---------------------------------------------------------------------------
    async def _webhook(self, request: web.Request) -> web.Response:
        session = request.query.get("session", "")
        conversation, until = self._webhooks.get(session, ("", 0.0))
        if time.time() > until:
            return web.json_response({"errcode": 300001, "errmsg": "session is expired"})
        body = await request.json()
        return self._record("webhook", conversation, body)

    async def _token(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.token_calls += 1
        if body.get("appKey") != CLIENT_ID or body.get("appSecret") != CLIENT_SECRET:
            return web.json_response({"code": "invalidClientIdOrSecret",
                                      "message": "无效的clientId或者clientSecret"}, status=400)
        token = uuid.uuid4().hex
        self.tokens[token] = True
        return web.json_response({"accessToken": token, "expireIn": 7200})

    async def _to_person(self, request: web.Request) -> web.Response:
        body, refused = await self._robot_call(request)
        if refused is not None:
            return refused
        return self._record("person", ",".join(body.get("userIds") or []), body)

    async def _to_group(self, request: web.Request) -> web.Response:
        body, refused = await self._robot_call(request)
        if refused is not None:
            return refused
        return self._record("group", str(body.get("openConversationId")), body)

    async def _robot_call(self, request: web.Request) -> tuple[dict[str, Any],
                                                               web.Response | None]:
        if not self.tokens.get(request.headers.get("x-acs-dingtalk-access-token", ""), False):
            return {}, web.json_response({"code": "InvalidAuthentication",
                                          "message": "不合法的access_token"}, status=401)
        if self._throttle > 0:
            self._throttle -= 1
            return {}, web.json_response({"code": "Throttling.Api",
                                          "message": "API throttled"}, status=429)
        body = await request.json()
        if body.get("robotCode") != CLIENT_ID:
            return body, web.json_response({"code": "robot.notExist",
                                             "message": "robot does not exist"}, status=400)
        return body, None

    async def _download(self, request: web.Request) -> web.Response:
        body, refused = await self._robot_call(request)
        if refused is not None:
            return refused
        if body.get("downloadCode") not in self.files:
            return web.json_response({"code": "invalidParameter.downloadCode",
                                      "message": "downloadCode is invalid"}, status=400)
        return web.json_response({"downloadUrl": f"{self.api_base}/files/"
                                                 f"{body['downloadCode']}"})

    async def _file(self, request: web.Request) -> web.Response:
        content = self.files.get(request.match_info["code"])
        if content is None:
            return web.Response(status=404)
        return web.Response(body=content, content_type="application/octet-stream")

    async def _upload(self, request: web.Request) -> web.Response:
        if not self.tokens.get(request.query.get("access_token", ""), False):
            return web.json_response({"errcode": 40014, "errmsg": "不合法的access_token"})
        kind = request.query.get("type", "")
        if kind not in ("image", "file", "voice", "video"):
            return web.json_response({"errcode": 40004, "errmsg": "不合法的媒体文件类型"})
        form = await request.post()
        media = form.get("media")
        if not isinstance(media, web.FileField):
            return web.json_response({"errcode": 41001, "errmsg": "缺少media参数"})
        media_id = f"@lA{uuid.uuid4().hex}"
        self.media[media_id] = Uploaded(kind, media.filename, media.content_type,
                                        media.file.read())
        self._notify()
        return web.json_response({"errcode": 0, "errmsg": "ok", "media_id": media_id,
                                  "type": kind, "created_at": int(time.time() * 1000)})

    def _record(self, via: str, target: str, body: dict[str, Any]) -> web.Response:
        key, media = str(body.get("msgKey") or ""), None
        if "msgParam" in body:
            param = json.loads(body["msgParam"])
            text = param.get("text") or param.get("content") or ""
            if key in ("sampleImageMsg", "sampleFile"):
                media_id = param.get("photoURL") or param.get("mediaId") or ""
                if media_id not in self.media:
                    return web.json_response({"code": "invalidParameter.mediaId",
                                              "message": "mediaId is invalid"}, status=400)
                media = self.media[media_id]
        else:
            kind = str(body.get("msgtype") or "")
            text = (body.get(kind) or {}).get("text" if kind == "markdown" else "content", "")
        self.sent.append(Sent(via, target, text, body, key, media))
        self._notify()
        if via == "webhook":
            return web.json_response({"errcode": 0, "errmsg": "ok"})
        return web.json_response({"processQueryKey": uuid.uuid4().hex})
