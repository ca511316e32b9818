"""DingTalk (钉钉): an enterprise internal app's robot, by stream mode (no public URL needed) or
the outgoing robot's HTTP callback.

    channels:
      dingtalk:
        client_id: "${DINGTALK_CLIENT_ID}"          # the app's AppKey (app_key: also taken)
        client_secret: "${keyring:dingtalk_secret}"  # the app's AppSecret (app_secret: too)
        mode: stream                                 # or callback
        robot_code: ""                              # default: client_id
        api_base: "https://api.dingtalk.com"        # a proxy, or a test's fake
        oapi_base: ""                # media/upload's host; default: oapi.dingtalk.com, or
                                     # api_base when api_base is not DingTalk's own
        callback_path: /api/dingtalk                # callback mode: the path served
        format: markdown                            # or text
        stale_after: 120s

Senders are `dingtalk:<senderStaffId, else senderId>` (each meets the stranger policy: the
app's secret proves DingTalk, not the person); a one-to-one chat is named by the person, a
group by its conversationId (`channels.dingtalk_api`). The robot's message id (`msgId`) is the
message's client id, so DingTalk's redelivery of a message is answered once.

Ack first, answer later: DingTalk delivers a message again when its acknowledgement waits, so
the message is acknowledged once it is stored (the pipeline's `on_stored`), never before and
not after the model's answer; the answer leaves through the outbox (`deliver`): to the
message's session webhook while it is valid, else through the robot send API. Its text is
cut into pieces of `dingtalk_api.TEXT_LIMIT` characters on line breaks; its files are uploaded
(`media/upload`) and sent after the text through the robot send API (a session webhook carries
no files); a file over DingTalk's 20 MB, or one for a person outside the organisation (whom
the send API cannot reach), is named in the text instead. The pieces DingTalk took are
remembered per outbound id, so the outbox's retry of a row sends only the rest.

Hosting: stream mode's SDK (`dingtalk-stream`, asyncio) runs in a child process,
`gateway.channels.dingtalk_stream_host`, one connection per life (`common.child_link`
restarts it on its backoff, 1 s doubling to 30 s, with the reason shown as `retrying`). The
callback rides on the gateway's Flask app; the send side is sync httpx on the loop.

Liveness: DingTalk's SYSTEM pings and every robot message are evidence; a stream silent beyond
`stale_after` is stale: the child is restarted once (a new connection) and `channel_stale`
fires if it stays so. A stop, a reload or a restart ends the child (and so its connection)
before a new one starts: never two connections, one of them swallowing messages.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlsplit

import gevent
from flask import jsonify, request
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
from gateway.channels.dingtalk_api import (
    IMAGE_TYPES,
    TEXT_LIMIT,
    UPLOAD_LIMITS,
    RobotApi,
    RobotMessage,
    is_group_chat,
    sign_problem,
    split_lines,
)
from gateway.channels.liveness import Liveness
from gateway.channels.platform import PlatformChannel
from gateway.channels.platform_address import platform_address
from gateway.channels.platform_state import StateLine
from gateway.channels.reply_files import not_carried
from gateway.common.child_link import ChildLink
from gateway.common.options import Duration
from gateway.core.inbox import FileRefused
from gateway.core.intake import Arrival
from gateway.core.message import Attachment, Message, Reply
from gateway.core.outbound import DeliveryRefused, Outbound, RetryLater
from gateway.web.door import client_address

log = logging.getLogger(__name__)

DRAIN = 5.0
STORE_WAIT = 25.0  # the child acknowledges with 500 after 30 s: DingTalk sends it again
MAX_BACKOFF = 30.0
ALIASES = {"app_key": "client_id", "app_secret": "client_secret"}  # DingTalk's older names
DINGTALK_API = "https://api.dingtalk.com"
DINGTALK_OAPI = "https://oapi.dingtalk.com"


class DingTalkOptions(SwitchedOnByConfig):
    """`channels.dingtalk:`; a client_id (or app_key) switches it on."""

    on_key = "client_id"
    client_id: str | None = None
    client_secret: str | None = Field(None, repr=False)
    robot_code: str | None = None
    mode: Literal["stream", "callback"] = "stream"
    api_base: str = DINGTALK_API
    oapi_base: str = ""
    callback_path: str = "/api/dingtalk"
    format: Literal["markdown", "text"] = "markdown"
    stale_after: Duration = Field(120.0, ge=1, le=86400)

    @model_validator(mode="before")
    @classmethod
    def _older_names(cls, data: Any) -> Any:
        """`app_key` / `app_secret` (DingTalk's console says AppKey, AppSecret) as aliases."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for old, new in ALIASES.items():
            if old in data:
                if new in data:
                    raise ValueError(f"give {new} or {old}, not both (they are the same key)")
                data[new] = data.pop(old)
        if "enabled" not in data:
            data["enabled"] = bool(data.get("client_id"))
        return data

    @field_validator("api_base", "oapi_base")
    @classmethod
    def _api_base(cls, value: str) -> str:
        if not value:
            return value  # oapi_base: derived (`oapi`)
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http(s) URL such as https://api.dingtalk.com")
        return value.rstrip("/")

    @field_validator("callback_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or "?" in value or "#" in value:
            raise ValueError("expected a path such as /api/dingtalk")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DingTalkOptions:
        if self.enabled and not (self.client_id and self.client_secret):
            raise ValueError('client_id and client_secret are required to switch dingtalk '
                             'on: the app\'s AppKey and AppSecret, e.g. client_secret: '
                             '"${keyring:dingtalk_secret}"')
        return self

    @property
    def bot_token(self) -> str | None:
        """What proves DingTalk to the guard chain (`PlatformToken`): the app's secret."""
        return self.client_secret

    @property
    def robot(self) -> str:
        return self.robot_code or self.client_id or ""

    @property
    def oapi(self) -> str:
        """media/upload's host: `oapi_base`, else DingTalk's oapi host when `api_base` is
        DingTalk's own, else `api_base` (a proxy or a fake serves both)."""
        if self.oapi_base:
            return self.oapi_base
        return DINGTALK_OAPI if self.api_base == DINGTALK_API else self.api_base


class DingTalkChannel(PlatformChannel):
    name = "dingtalk"
    Options = DingTalkOptions

    def __init__(self, services: Services, options: ChannelOptions) -> None:
        super().__init__(services, options)
        assert isinstance(options, DingTalkOptions)
        self.api: RobotApi | None = None
        self.link: ChildLink | None = None
        self.watcher: gevent.Greenlet | None = None
        self.liveness = Liveness(options.stale_after)
        self.peer = ""  # stream mode: DingTalk's API host, the network peer of every message
        self.child_why = ""  # what the stream child said last before it ended
        self.line = StateLine()
        # chat -> (session webhook, Unix time it expires): replies go there while valid
        self.webhooks: dict[str, tuple[str, float]] = {}
        self._parts_sent: dict[str, int] = {}  # outbound id -> pieces DingTalk already took
        # outbound id -> its files' media ids (by piece): a send refused for now is retried
        # with the same upload, not a second one of up to 20 MB
        self._uploaded: dict[str, dict[int, str]] = {}

    @property
    def dt(self) -> DingTalkOptions:
        assert isinstance(self.options, DingTalkOptions)
        return self.options

    # -- the channel contract --------------------------------------------------------------
    def start(self) -> None:
        if self.running:
            return  # never a second connection
        self.running = True
        self.liveness = Liveness(self.dt.stale_after)
        self.api = RobotApi(self.dt.api_base, self.dt.client_id or "",
                            self.dt.client_secret or "", self.dt.robot, self.dt.oapi)
        if self.dt.mode == "callback":
            self._answer_unanswered()
            self.liveness.connected()
            self.line.set("connected", f"callback at {self.path}")
            return
        self.peer = platform_address(self.dt.api_base)
        self._answer_unanswered()
        self.line.set("connecting", f"stream at {self.dt.api_base}")
        self.link = ChildLink("gateway.channels.dingtalk_stream_host",
                              cwd=self.services.outbox.workspace, env=dict(os.environ),
                              on_start=self._child_up, on_line=self._child_line,
                              on_ended=self._child_ended, cap=MAX_BACKOFF)
        self.link.start()
        self.watcher = gevent.spawn(self._watch)

    def stop(self) -> None:
        self.running = False
        if self.watcher is not None:
            self.watcher.kill()
            self.watcher = None
        link, self.link = self.link, None
        if link is not None:
            link.stop()  # the child and its connection are gone when this returns
        self.handlers.join(timeout=DRAIN)
        if self.api is not None:
            self.api.close()
            self.api = None
        self.liveness.disconnected()
        self.line.set("stopped", "")

    def status(self) -> ChannelStatus:
        if not self.running:
            return ChannelStatus("stopped", "channels.dingtalk needs a client_id and "
                                 "client_secret" if not self.dt.client_id else
                                 "channels.dingtalk.enabled is false")
        return self.line.status(self.liveness, "channels.dingtalk.stale_after",
                                self.dt.stale_after)

    def stale_for(self) -> float | None:
        return self.liveness.stale_for() if self.running and self.link else None

    def push_problem(self) -> str | None:
        if not self.running:
            return ("dingtalk is switched off: give channels.dingtalk a client_id and "
                    "client_secret in config.yaml.")
        return None

    def _answer_unanswered(self) -> None:
        """Messages stored but not answered when the gateway stopped: DingTalk has their
        acknowledgement and will not send them again, so they are answered now (once per
        process)."""
        if self.recovered:
            return
        self.recovered = True
        for msg in unanswered(self.services, self.name, self.peer):
            self.handlers.spawn(answer_into_outbox, self.services, msg, self.dt.client_secret)

    # -- stream mode: the child ------------------------------------------------------------
    def _child_up(self) -> None:
        """A new child: it gets the credentials on its stdin (never argv or env)."""
        self.child_why = ""
        link = self.link
        if link is not None:
            link.send({"op": "connect", "client_id": self.dt.client_id,
                       "client_secret": self.dt.client_secret, "api_base": self.dt.api_base})

    def _child_line(self, item: dict[str, Any]) -> None:
        if "message" in item:
            self._take(item["message"], lambda: self._ack(str(item.get("id", ""))))
        elif "heard" in item:
            self.liveness.mark_probe_back()  # DingTalk's frame, on the path messages take
        elif item.get("state") == "connected":
            self.liveness.connected()
            self.line.set("connected", f"stream {item.get('endpoint') or self.dt.api_base}")
        elif "ended" in item:
            self.child_why = str(item["ended"])

    def _child_ended(self, why: str, wait: float) -> None:
        self.liveness.disconnected()
        reason = _explain(self.child_why or f"the stream process ended ({why})")
        self.line.set("retrying", f"{reason}; reconnecting in {wait:.0f} s")
        log.warning("dingtalk: %s; reconnecting in %.0f s", reason, wait)

    def _ack(self, frame_id: str) -> None:
        link = self.link
        if link is None:
            return
        try:
            link.send({"op": "ack", "id": frame_id})
        except OSError:  # the child is gone: DingTalk delivers the message again
            log.info("dingtalk: the stream ended before message %s was acknowledged", frame_id)

    def _watch(self) -> None:
        """Stale when nothing came for `stale_after`: one restart of the child per episode."""
        while True:
            gevent.sleep(max(0.2, self.dt.stale_after / 4))
            if self.line.judge(self.liveness):
                log.warning("dingtalk: stale: nothing came from DingTalk for over %g s; "
                            "restarting the stream", self.dt.stale_after)
            if self.liveness.is_stale and not self.liveness.restarted and self.link:
                self.liveness.restarted = True
                self.link.stop()
                self.link.start()

    # -- receiving (both modes) ------------------------------------------------------------
    def _take(self, data: Any, acknowledge: Callable[[], None]) -> None:
        """Hand the robot message to a greenlet; acknowledge once it is stored (or refused):
        the platform's next message waits for that, so a chat keeps its order."""
        robot = RobotMessage.parse(data)
        if robot is None:
            acknowledge()
            return
        self.liveness.mark_in()
        if robot.webhook:
            now = time.time()
            self.webhooks = {chat: hook for chat, hook in self.webhooks.items()
                             if hook[1] > now}  # expired ones are of no use: dropped
            self.webhooks[robot.chat] = (robot.webhook, robot.webhook_expires)
        stored = Event()
        self.handlers.spawn(self._answer, robot, stored)
        stored.wait(STORE_WAIT)
        if stored.is_set():
            acknowledge()

    def _answer(self, robot: RobotMessage, stored: Event) -> None:
        try:
            found = self._message(robot)
            if isinstance(found, Reply):
                queue_refusal(self.services, self.name, found)
                return
            answer_into_outbox(self.services, found, self.dt.client_secret, stored.set)
        except Exception:
            log.exception("dingtalk: message %s failed", robot.msg_id)
        finally:
            stored.set()

    def _message(self, robot: RobotMessage) -> Message | Reply:
        """The robot message through the intake, its picture or file downloaded into the
        inbox; what cannot be read gets a sentence in the chat it came from."""
        receipt = self.intake.receive()
        problem = None
        if robot.download_code and self.api is not None:
            try:
                with receipt.open(robot.file_name, None) as incoming:
                    self.api.download(robot.download_code, incoming)
            except FileRefused as e:
                problem = e.message
            except (RetryLater, DeliveryRefused) as e:
                problem = f"The file could not be fetched from DingTalk ({e}); send it again."
        elif not robot.text:
            problem = ("This assistant reads text, pictures and files on DingTalk; send your "
                       "question as text.")
        arrival = Arrival(self.name, {"text": robot.text, "sender": robot.sender,
                                      "chat": robot.chat, "id": robot.msg_id},
                          credential=self.dt.client_secret, peer=self.peer, problem=problem,
                          received=receipt, takes_files=True, needs_sender=True)
        found = self.intake.message(arrival)
        if isinstance(found, Reply) and problem and not found.chat:
            # the sentence for the person, sent to the chat the message came from
            return Reply(found.msg_id, self.name, robot.chat, found.text, to=robot.sender,
                         client_id=robot.msg_id, error=found.error)
        return found

    # -- callback mode ---------------------------------------------------------------------
    def callback(self) -> ResponseReturnValue:
        """The outgoing robot's POST: sign checked, stored, then 200 at once."""
        if not self.running or self.dt.mode != "callback":
            return jsonify({"error": "dingtalk callback is off (channels.dingtalk.mode)"}), 503
        problem = sign_problem(self.dt.client_secret or "", request.headers.get("timestamp", ""),
                               request.headers.get("sign", ""), time.time())
        if problem:
            log.warning("dingtalk: a callback was refused: %s", problem)
            return jsonify({"error": problem}), 401
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            return jsonify({"error": "the body must be DingTalk's robot message (JSON)"}), 400
        self.peer = client_address(self.entry, request)
        self._take(data, lambda: None)
        return jsonify({})

    # -- sending ---------------------------------------------------------------------------
    def deliver(self, outbound: Outbound) -> None:
        """The text in pieces (the chat's session webhook while it is valid, else the robot
        send API), then the files (uploaded, then the send API); a retry skips the pieces
        DingTalk already took."""
        api = self.api
        if api is None:
            raise RetryLater("dingtalk is stopped")
        done = self._parts_sent.get(outbound.id, 0)
        try:
            for i, part in enumerate(self._parts(outbound)):
                if i < done:
                    continue  # DingTalk took it before a later piece failed: not twice
                if isinstance(part, str):
                    self._send_text(api, outbound, part, mention=i == 0)
                else:
                    uploaded = self._uploaded.setdefault(outbound.id, {})
                    if i not in uploaded:
                        uploaded[i] = api.upload(
                            self.services.outbox.workspace / part.path, part.name,
                            part.media_type or "application/octet-stream", _kind(part))
                    api.send_file(outbound.chat, uploaded[i], part.name, _kind(part))
                self._parts_sent[outbound.id] = i + 1
        except DeliveryRefused:
            self._forget(outbound.id)  # the row fails: no retry comes
            raise
        self._forget(outbound.id)
        self.liveness.mark_out()

    def _forget(self, outbound_id: str) -> None:
        self._parts_sent.pop(outbound_id, None)
        self._uploaded.pop(outbound_id, None)

    def _parts(self, outbound: Outbound) -> list[str | Attachment]:
        """The reply on DingTalk: its text in pieces, then each file it can carry; a file over
        DingTalk's limit, or for a person the send API cannot reach (outside the
        organisation, `$:` ids), is named in the text."""
        files = [Attachment(**f) for f in outbound.files]
        if outbound.chat.startswith("$:"):
            carried: list[Attachment] = []
            why = "DingTalk (to a person outside the organisation)"
        else:
            carried = [f for f in files if f.size <= UPLOAD_LIMITS[_kind(f)]]
            why = "DingTalk (20 MB at most)"
        left = tuple(f for f in files if f not in carried)
        text = (outbound.text + not_carried(left, why, outbound.msg_id or outbound.id)).strip()
        asker = self._asker(outbound)
        pieces: list[str | Attachment] = []
        pieces.extend(split_lines(text, TEXT_LIMIT - len(asker) - 4))  # room for the @asker
        pieces.extend(carried)
        return pieces

    def _asker(self, outbound: Outbound) -> str:
        """In a group, the staff id the reply @-mentions."""
        if is_group_chat(outbound.chat) and outbound.to and not outbound.to.startswith("$:"):
            return outbound.to
        return ""

    def _send_text(self, api: RobotApi, outbound: Outbound, text: str, mention: bool) -> None:
        """One piece; in a group the first @-mentions the asker (one notification)."""
        webhook, expires = self.webhooks.get(outbound.chat, ("", 0.0))
        if webhook and time.time() < expires - 5:
            asker = self._asker(outbound) if mention else ""
            api.send_webhook(webhook, self._webhook_body(text, asker))
        elif is_group_chat(outbound.chat):
            api.send_to_group(outbound.chat, *self._api_message(text))
        elif outbound.chat.startswith("$:"):
            raise DeliveryRefused("DingTalk's send API takes staff ids only; this person is "
                                  "outside the organisation and their session webhook "
                                  "expired")
        else:
            api.send_to_person(outbound.chat, *self._api_message(text))

    def _webhook_body(self, text: str, asker: str) -> dict[str, Any]:
        """In a group the reply @-mentions the person it answers (the `at` list notifies
        them; the `@<staff id>` in the text is where DingTalk shows the mention)."""
        at: dict[str, Any] = {}
        if asker:
            text, at = f"{text}\n\n@{asker}", {"at": {"atUserIds": [asker]}}
        if self.dt.format == "markdown":
            return {"msgtype": "markdown", "markdown": {"title": _title(text), "text": text},
                    **at}
        return {"msgtype": "text", "text": {"content": text}, **at}

    def _api_message(self, text: str) -> tuple[str, dict[str, Any]]:
        if self.dt.format == "markdown":
            return "sampleMarkdown", {"title": _title(text), "text": text}
        return "sampleText", {"content": text}


def _kind(f: Attachment) -> str:
    """media/upload's type: "image" for the picture formats DingTalk shows, else "file"."""
    return "image" if f.media_type in IMAGE_TYPES else "file"


def _title(text: str) -> str:
    """A markdown message's title: what DingTalk shows in the chat list."""
    return text.strip().splitlines()[0].lstrip("#> ").strip()[:40] or "Reply"


def _explain(why: str) -> str:
    """The child's reason in a sentence: the SDK's "open connection failed, error=401 ...,
    response.text={...}" becomes the status, DingTalk's code and the key to fix."""
    failed = re.search(r"error=(\d{3})\b", why)
    if failed is None and why.startswith("open connection failed"):
        host = re.search(r"host='([^']+)'", why)
        return (f"cannot reach DingTalk's stream gateway"
                f"{' at ' + host.group(1) if host else ''} (channels.dingtalk.api_base)")
    if failed is None:
        return why
    code = re.search(r'"code"\s*:\s*"([^"]+)"', why)
    said = f"{failed.group(1)}{' ' + code.group(1) if code else ''}"
    if failed.group(1) in ("400", "401", "403"):
        return (f"DingTalk refused the app's credentials ({said}): check "
                "channels.dingtalk.client_id and client_secret")
    return f"DingTalk's stream gateway answered {said}"
