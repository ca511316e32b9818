"""WeCom (企业微信): a self-built app's callback URL in, its send API out; group robots out.

    channels:
      wecom:
        corp_id: "ww0123456789abcdef"            # 我的企业 > 企业ID (also the receive id)
        agent_id: 1000002                        # the app's AgentId
        secret: "${WECOM_SECRET}"                # the app's Secret
        token: "${WECOM_TOKEN}"                  # 接收消息: Token
        encoding_aes_key: "${WECOM_AES_KEY}"     # 接收消息: EncodingAESKey (43 characters)
        path: /api/wecom                         # the callback route on the gateway
        api_base: "https://qyapi.weixin.qq.com"  # a proxy, or a test's fake
        robots:                                  # group robots: outbound only
          ops: "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=..."

A self-built app has only the callback (no connection the gateway opens itself): WeCom must
reach `path` over the internet (a tunnel, or the nginx example). The callback is encrypted
and signed with the app's Token and EncodingAESKey: wechatpy's `WeChatCrypto` checks the
signature before anything is decrypted (a bad one: 403) and the receive id (the corp id).
WeCom's URL check (GET with `echostr`) is answered with the decrypted echostr as text/plain.

Senders are `wecom:<userid>` (each meets the stranger policy: the signature proves WeCom, not
the person); the chat is the userid (an app's conversation is one person's). A message is
acknowledged as soon as it is stored, with an empty 200 (WeCom sends it again after 5 s
without one, three times), and answered through the outbox (`deliver`: `message/send`, text
split at 2,048 bytes of UTF-8 never inside a character; files by `media/upload`). WeCom
redelivers the same MsgId: one seen in this process is acknowledged and dropped at once, and
after a restart the store answers it from its earlier answer without sending it again. Images,
voice, video and files come in through `media/get` into the inbox.

Group robots (`robots:`) are chats `robot:<name>` of this channel for `context.send` and
`POST /api/v1/send`; they send through the alerts' robot sender. They carry text only.

Liveness: every callback is evidence; the probe (`agent/get`, every `probe_interval`) proves
the secret, the agent id and the trusted IP, and fetches the access token when it ended. A
failed probe shows `retrying` with what to fix (a wrong secret names channels.wecom.secret);
callbacks WeCom signed but this config cannot decrypt say so too (-40005, -40007).
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from importlib import import_module
from types import ModuleType
from typing import TYPE_CHECKING, Any

import gevent
import httpx
import xmltodict  # type: ignore[import-untyped]  # no stubs (pyproject is shared)
from flask import Response, request
from flask.typing import ResponseReturnValue
from gevent.event import Event
from pydantic import Field, field_validator, model_validator

from gateway.channels.answer_later import answer_into_outbox, queue_refusal, unanswered
from gateway.channels.base import (
    ChannelOptions,
    ChannelStatus,
    Services,
    SwitchedOnByConfig,
)
from gateway.channels.liveness import Liveness, ago
from gateway.channels.platform import PlatformChannel
from gateway.channels.reply_files import not_carried
from gateway.channels.wecom_api import WeComApi, WeComError, explain, split_utf8
from gateway.common.options import Duration
from gateway.core.inbox import FileRefused, media_type_of, safe_name
from gateway.core.intake import Arrival
from gateway.core.message import Attachment, Message, Reply
from gateway.core.outbound import DeliveryRefused, Outbound, RetryLater

if TYPE_CHECKING:
    from gateway.channels.wecom_crypto import CallbackCrypto
from gateway.observe.alerting.senders import SendError, post_wecom_robot
from gateway.web.door import client_address

log = logging.getLogger(__name__)

DRAIN = 5.0
MAX_BACKOFF = 60.0
MAX_CALLBACK = 1 << 20  # bytes: WeCom's callbacks are a few KB
SEEN = 4096  # MsgIds remembered for redeliveries
MEDIA = {"image": ("image/jpeg", ".jpg"), "voice": ("audio/amr", ".amr"),
         "video": ("video/mp4", ".mp4"), "file": (None, "")}
UPLOAD_LIMITS = {"image": 10 << 20, "file": 20 << 20}  # bytes WeCom's media/upload takes
# Codes the owner fixes in config or in WeCom's admin console: the row waits for that.
CONFIG_ERRORS = frozenset({40001, 40013, 40014, 42001, 40056, 60020, 48002})
APP_KEYS = ("corp_id", "agent_id", "secret", "token", "encoding_aes_key")


class WeComOptions(SwitchedOnByConfig):
    """`channels.wecom:`; writing the section switches it on."""

    corp_id: str | None = None
    agent_id: int | None = None
    secret: str | None = Field(None, repr=False)
    token: str | None = Field(None, repr=False)
    encoding_aes_key: str | None = Field(None, repr=False)
    api_base: str = "https://qyapi.weixin.qq.com"
    path: str = "/api/wecom"
    robots: dict[str, str] = Field(default_factory=dict, repr=False)  # URLs carry their key
    probe_interval: Duration = Field(300.0, ge=0.1, le=7200)
    stale_after: Duration = Field(900.0, ge=0.5, le=86400)

    @field_validator("api_base")
    @classmethod
    def _api_base(cls, value: str) -> str:
        return _http_url(value, "https://qyapi.weixin.qq.com").rstrip("/")

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or value.startswith("/api/v1/") or " " in value:
            raise ValueError("expected a route such as /api/wecom (not under /api/v1/)")
        return value

    @field_validator("encoding_aes_key")
    @classmethod
    def _aes_key(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            key = base64.b64decode(value + "=", validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(value) != 43 or len(key) != 32:
            raise ValueError("WeCom's EncodingAESKey is 43 letters and digits (接收消息 > "
                             "EncodingAESKey in the app's API receive settings)")
        return value

    @field_validator("token")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        if value is not None and not (1 <= len(value) <= 32 and value.isascii() and
                                      value.isalnum()):
            raise ValueError("WeCom's Token is 1-32 letters and digits (接收消息 > Token)")
        return value

    @field_validator("robots")
    @classmethod
    def _robots(cls, value: dict[str, str]) -> dict[str, str]:
        for name, url in value.items():
            if not name or ":" in name:
                raise ValueError(f"robot name {name!r}: a short name without ':' (the chat "
                                 f"is robot:<name>)")
            _http_url(url, "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> WeComOptions:
        if not self.enabled:
            return self
        missing = [key for key in APP_KEYS if getattr(self, key) in (None, "")]
        if missing and (len(missing) < len(APP_KEYS) or not self.robots):
            raise ValueError(f"the WeCom app needs {', '.join(missing)} (from the app's page "
                             f"in the WeCom admin console); or give only robots: for group "
                             f"robots")
        if self.stale_after <= self.probe_interval:
            raise ValueError(f"stale_after ({self.stale_after:g} s) must be longer than "
                             f"probe_interval ({self.probe_interval:g} s)")
        return self

    @property
    def app(self) -> bool:
        """The self-built app is configured (not only robots)."""
        return self.corp_id is not None and self.secret is not None

    @property
    def bot_token(self) -> str | None:
        """The credential a verified callback's messages carry (the guards' platform
        token): the app's callback Token, which only WeCom and the owner know."""
        return self.token


def _http_url(value: str, example: str) -> str:
    if not value.startswith(("http://", "https://")) or len(value) < 10:
        raise ValueError(f"expected an http(s) URL such as {example}")
    return value


class WeComChannel(PlatformChannel):
    name = "wecom"
    Options = WeComOptions
    path_attr = "path"
    path_key = "path"
    methods = ("GET", "POST")

    def __init__(self, services: Services, options: ChannelOptions) -> None:
        super().__init__(services, options)
        assert isinstance(options, WeComOptions)
        self.api: WeComApi | None = None
        self.crypto: CallbackCrypto | None = None
        self.watcher: gevent.Greenlet | None = None
        self.liveness = Liveness(options.stale_after)
        self.state: tuple[str, str, float] = ("stopped", "", time.time())
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.callback_problem: tuple[str, float] | None = None  # signed, not decrypted
        self.refused: tuple[int, float] = (0, 0.0)  # bad signatures: how many, last when
        self._parts_sent: dict[str, int] = {}  # outbound id -> pieces WeCom already took
        self._stale_wall: float | None = None
        if options.enabled and options.app:
            _crypto()  # wechatpy's import (~0.3 s) at build, before the gateway serves

    @property
    def wc(self) -> WeComOptions:
        assert isinstance(self.options, WeComOptions)
        return self.options

    # -- the channel contract --------------------------------------------------------------
    def start(self) -> None:
        if self.running:
            return
        self.running = True
        self.liveness = Liveness(self.wc.stale_after)
        self.callback_problem = None
        self.refused = (0, 0.0)
        if not self.wc.app:
            self._set("connected", f"robots only: {', '.join(self.wc.robots)}")
            return
        self.crypto = _crypto().CallbackCrypto(self.wc.token or "",
                                               self.wc.encoding_aes_key or "",
                                               self.wc.corp_id or "")
        self.api = WeComApi(self.wc.api_base, self.wc.corp_id or "", self.wc.secret or "",
                            on_token=self.liveness.mark_heard)
        self._set("connecting", f"fetching an access token from {self.wc.api_base}")
        self.watcher = gevent.spawn(self._watch)
        if not self.recovered:
            self.recovered = True
            for msg in unanswered(self.services, self.name, ""):
                self.handlers.spawn(self._answer_stored, msg)

    def stop(self) -> None:
        self.running = False
        if self.watcher is not None:
            self.watcher.kill()
            self.watcher = None
        self.handlers.join(timeout=DRAIN)
        if self.api is not None:
            self.api.close()
            self.api = None
        self.crypto = None
        self.liveness.disconnected()
        self._set("stopped", "")

    def status(self) -> ChannelStatus:
        if not self.running:
            return ChannelStatus("stopped", "channels.wecom.enabled is false")
        state, detail, since = self.state
        if self.callback_problem is not None and state == "connected":
            why, at = self.callback_problem
            return ChannelStatus("retrying", f"{why}; WeCom retries each message 3 times",
                                 at)
        if state == "connected" and self.liveness.is_stale:
            return ChannelStatus("stale", self.liveness.stale_detail(self.name),
                                 self._stale_wall)
        if state == "connected" and self.wc.app:
            detail = f"{detail}; {self.liveness.describe()}"
        count, last = self.refused
        if count:
            detail += (f"; {count} callback(s) refused for a bad signature (last "
                       f"{ago(time.time() - last)}): if they were WeCom's, "
                       f"{explain(-40001, 'signature mismatch')}")
        return ChannelStatus(state, detail, since)  # type: ignore[arg-type]

    def stale_for(self) -> float | None:
        return self.liveness.stale_for() if self.running and self.wc.app else None

    def push_problem(self) -> str | None:
        if not self.running:
            return ("wecom is switched off: set channels.wecom in config.yaml (the app's keys, "
                    "or robots:).")
        return None

    def knows_chat(self, chat: str) -> bool:
        if chat.startswith("robot:"):
            return chat[len("robot:"):] in self.wc.robots
        return self.wc.app and super().knows_chat(chat)

    def _set(self, state: str, detail: str) -> None:
        if self.state[0] != state or self.state[1] != detail:
            since = self.state[2] if self.state[0] == state else time.time()
            self.state = (state, detail, since)

    # -- liveness --------------------------------------------------------------------------
    def _watch(self) -> None:
        """The probe: `agent/get` now and every `probe_interval` (on failure, 1 s doubling
        to 60 s); a stale episode drops the token and probes at once, once."""
        backoff = 1.0
        while (api := self.api) is not None:
            wait = self.wc.probe_interval
            try:
                agent = api.call("GET", "agent/get", params={"agentid": self.wc.agent_id})
                if self.liveness.connected_at is None:
                    self.liveness.connected()
                self.liveness.mark_probe_back()
                self._set("connected", f"callbacks at {self.path} for app "
                          f"{agent.get('name') or self.wc.agent_id}")
                backoff = 1.0
            except (WeComError, httpx.HTTPError) as e:
                why = e.explain() if isinstance(e, WeComError) else \
                    f"{type(e).__name__} reaching {self.wc.api_base}"
                self._set("retrying", why)
                log.warning("wecom: %s; next try in %.0f s", why, backoff)
                wait, backoff = backoff, min(backoff * 2, MAX_BACKOFF)
            if self.liveness.check():
                self._stale_wall = time.time()
                log.warning("wecom: stale: no callback and no probe back for over %g s; "
                            "fetching a new token", self.wc.stale_after)
            if self.liveness.is_stale and not self.liveness.restarted:
                self.liveness.restarted = True
                api.forget_token()
                wait = 0.0
            gevent.sleep(wait)

    # -- receiving -------------------------------------------------------------------------
    def callback(self) -> ResponseReturnValue:
        crypto = self.crypto
        if not self.running or crypto is None:
            return _text("wecom's app is not running (channels.wecom in config.yaml)", 503)
        args = request.args
        signature, timestamp, nonce = (args.get("msg_signature"), args.get("timestamp"),
                                       args.get("nonce"))
        if not (signature and timestamp and nonce):
            return _text("msg_signature, timestamp and nonce are required", 400)
        if request.method == "GET":
            echo = args.get("echostr")
            if not echo:
                return _text("echostr is required", 400)
            plain = self._decrypt(lambda: crypto.echo(signature, timestamp, nonce, echo))
            return _text(plain) if plain is not None else _text("refused", 403)
        if (request.content_length or 0) > MAX_CALLBACK:
            return _text("the callback is too large", 413)
        body = request.get_data(cache=False)
        try:
            outer = xmltodict.parse(body)["xml"]
            if not isinstance(outer, dict) or not outer.get("Encrypt"):
                raise ValueError("no Encrypt")
        except (ValueError, KeyError, TypeError, xmltodict.expat.ExpatError):
            return _text("expected WeCom's callback XML with Encrypt", 400)
        plain = self._decrypt(lambda: crypto.message(outer, signature, timestamp, nonce))
        if plain is None:
            return _text("refused", 403)
        try:
            message = xmltodict.parse(plain)["xml"]
        except (ValueError, KeyError, xmltodict.expat.ExpatError):
            log.warning("wecom: a decrypted callback is not XML; ignored")
            return _text("")
        self.liveness.mark_in()
        if isinstance(message, dict):
            self._take(message)
        return _text("")  # WeCom's "received, no passive reply"

    def _decrypt(self, decrypt: Callable[[], str]) -> str | None:
        """The plain text, or None: a bad signature is counted (nothing was decrypted), a
        signed callback this config cannot decrypt is the channel's problem to show."""
        try:
            plain = decrypt()
        except _crypto().CallbackRefused as e:
            if e.code == -40001:
                self.refused = (self.refused[0] + 1, time.time())
                log.warning("wecom: a callback from %s was refused: bad signature",
                            client_address(self.entry, request))
            else:
                self._callback_failed(e.code, e.said)
            return None
        self.callback_problem = None
        return plain

    def _callback_failed(self, code: int, said: str) -> None:
        why = explain(code, said)
        if self.callback_problem is None:
            self.callback_problem = (why, time.time())
        log.warning("wecom: %s", why)

    def _take(self, message: dict[str, Any]) -> None:
        """Store one message (return once stored, so the 200 means stored) and answer it on
        a greenlet. Events (entering the app, ...) are not messages: acknowledged only."""
        kind = str(message.get("MsgType") or "")
        msg_id = str(message.get("MsgId") or "")
        sender = str(message.get("FromUserName") or "")
        if kind == "event" or not msg_id or not sender:
            return
        key = f"{sender}:{msg_id}"
        if key in self.seen:
            log.info("wecom: MsgId %s from %s delivered again; already taken", msg_id, sender)
            return
        self.seen[key] = None
        while len(self.seen) > SEEN:
            self.seen.popitem(last=False)
        stored = Event()
        self.handlers.spawn(self._answer, message, client_address(self.entry, request),
                            stored)
        stored.wait()

    def _answer(self, message: dict[str, Any], peer: str, stored: Event) -> None:
        try:
            found = self._message(message, peer)
            if isinstance(found, Reply):
                queue_refusal(self.services, self.name, found)
                return
            self._answer_stored(found, stored.set)
        except Exception:
            log.exception("wecom: a message from %s failed", message.get("FromUserName"))
            if not stored.is_set():  # not stored: WeCom's redelivery may try again
                self.seen.pop(f"{message.get('FromUserName')}:{message.get('MsgId')}", None)
        finally:
            stored.set()

    def _answer_stored(self, msg: Message, on_stored: Any = None) -> None:
        answer_into_outbox(self.services, msg, self.wc.bot_token, on_stored)

    def _message(self, message: dict[str, Any], peer: str) -> Message | Reply:
        """The callback's message through the intake, its media fetched into the inbox."""
        sender = str(message["FromUserName"])
        receipt = self.intake.receive()
        problem = None
        try:
            self._download(message, receipt)
        except FileRefused as e:
            problem = e.message
        except (WeComError, httpx.HTTPError) as e:
            problem = f"The file could not be fetched from WeCom ({e}); send it again."
        arrival = Arrival(self.name, {"text": _text_of(message), "sender": sender,
                                      "chat": sender, "id": str(message["MsgId"])},
                          credential=self.wc.bot_token, peer=peer, problem=problem,
                          received=receipt, takes_files=True, needs_sender=True)
        return self.intake.message(arrival)

    def _download(self, message: dict[str, Any], receipt: Any) -> None:
        kind = str(message.get("MsgType") or "")
        media_id = message.get("MediaId")
        api = self.api
        if kind not in MEDIA or not media_id or api is None:
            return
        media_type, suffix = MEDIA[kind]
        fallback = str(message.get("FileName") or message.get("Title") or
                       f"{kind}-{message['MsgId']}{suffix}")
        with receipt.open(fallback, media_type) as incoming:
            name, given_type = api.download(str(media_id), incoming)
            if name:  # WeCom's own file name
                incoming.name = safe_name(name)
                incoming.media_type = media_type_of(name, media_type or given_type)

    # -- sending ---------------------------------------------------------------------------
    def deliver(self, outbound: Outbound) -> None:
        if outbound.chat.startswith("robot:"):
            self._to_robot(outbound)
            return
        api = self.api
        if api is None:
            raise (RetryLater("wecom is stopped") if self.running else
                   DeliveryRefused("channels.wecom has no app configured, only robots"))
        done = self._parts_sent.get(outbound.id, 0)
        try:
            parts = self._parts(outbound)
            for i, part in enumerate(parts):
                if i < done:
                    continue  # WeCom took it before a later part failed: not twice
                self._send(api, outbound.chat, part)
                self._parts_sent[outbound.id] = i + 1
        except WeComError as e:
            why = e.explain()
            if e.temporary or e.errcode in CONFIG_ERRORS:
                if e.errcode in CONFIG_ERRORS:
                    self._set("retrying", why)
                raise RetryLater(why) from e
            self._parts_sent.pop(outbound.id, None)
            raise DeliveryRefused(why) from e
        except httpx.HTTPError as e:
            raise RetryLater(f"{type(e).__name__} reaching {self.wc.api_base}") from e
        self._parts_sent.pop(outbound.id, None)
        self.liveness.mark_out()

    def _parts(self, outbound: Outbound) -> list[dict[str, Any] | str]:
        """What one outbound message is on WeCom: its files (uploaded when their turn
        comes), then its text in pieces of 2,048 bytes."""
        parts: list[dict[str, Any] | str] = []
        too_big: list[Attachment] = []
        for f in outbound.files:
            kind = "image" if str(f.get("media_type") or "").startswith("image/") else "file"
            if f["size"] > UPLOAD_LIMITS[kind]:
                kind = "file"
            if f["size"] > UPLOAD_LIMITS[kind]:
                too_big.append(Attachment(**f))
                continue
            parts.append({**f, "kind": kind})
        text = outbound.text + not_carried(tuple(too_big), "WeCom (20 MB at most)",
                                           outbound.msg_id or outbound.id)
        parts.extend(split_utf8(text.strip()))
        return parts

    def _send(self, api: WeComApi, user: str, part: dict[str, Any] | str) -> None:
        body: dict[str, Any] = {"touser": user, "agentid": self.wc.agent_id}
        if isinstance(part, str):
            body.update(msgtype="text", text={"content": part})
        else:
            path = self.services.outbox.workspace / part["path"]
            with path.open("rb") as stream:
                media = api.call("POST", "media/upload", params={"type": part["kind"]},
                                 files={"media": (part["name"], stream, part.get(
                                     "media_type") or "application/octet-stream")})
            body.update(msgtype=part["kind"], **{part["kind"]: {"media_id":
                                                                 media["media_id"]}})
        answer = api.call("POST", "message/send", json=body)
        if answer.get("invaliduser"):
            raise WeComError(81013, f"invaliduser {answer['invaliduser']}")

    def _to_robot(self, outbound: Outbound) -> None:
        name = outbound.chat[len("robot:"):]
        url = self.wc.robots.get(name)
        if url is None:
            raise DeliveryRefused(f"channels.wecom.robots has no robot {name!r}")
        files = tuple(Attachment(**f) for f in outbound.files)
        text = outbound.text + not_carried(files, "a WeCom group robot",
                                           outbound.msg_id or outbound.id)
        done = self._parts_sent.get(outbound.id, 0)
        for i, piece in enumerate(split_utf8(text.strip())):
            if i < done:
                continue
            try:
                post_wecom_robot(url, {"msgtype": "text", "text": {"content": piece}}, 10.0)
            except SendError as e:
                if e.temporary:
                    raise RetryLater(str(e)) from e
                self._parts_sent.pop(outbound.id, None)
                raise DeliveryRefused(f"{e} (check channels.wecom.robots.{name})") from e
            self._parts_sent[outbound.id] = i + 1
        self._parts_sent.pop(outbound.id, None)


def _crypto() -> ModuleType:
    """`channels.wecom_crypto`, imported when first needed: wechatpy's import costs ~0.3 s,
    which reading config.yaml (every CLI command) should not pay. A gateway whose app is on
    imports it while it builds its channels; a reload that first switches the app on pays it
    once on the loop."""
    return import_module("gateway.channels.wecom_crypto")


def _text(body: str, status: int = 200) -> Response:
    return Response(body, status=status, mimetype="text/plain")


def _text_of(message: dict[str, Any]) -> str:
    """What the person said, for the kinds that are not plain text."""
    kind = message.get("MsgType")
    if kind == "text":
        return str(message.get("Content") or "")
    if kind == "link":
        return f"{message.get('Title') or ''}\n{message.get('Description') or ''}\n" \
               f"{message.get('Url') or ''}".strip()
    if kind == "location":
        return (f"[location] {message.get('Label') or ''} ({message.get('Location_X')}, "
                f"{message.get('Location_Y')})")
    return str(message.get("Content") or "")
