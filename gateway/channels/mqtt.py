"""MQTT: devices talk to the assistant through a broker.

    channels:
      mqtt:
        url: "mqtt://127.0.0.1:1883"      # mqtts:// for TLS (ca_file, cert_file, key_file)
        topic_prefix: moltbot             # in: moltbot/in/<client>, out: moltbot/out/<client>
        username: gateway                 # optional; password: "${keyring:mqtt}"
        client_id: moltbot-gateway        # fixed: the broker keeps the gateway's session

A device publishes to `<prefix>/in/<its client id>` a JSON object `{"id": "...", "text":
"..."}` (or plain text) and gets `{"id", "msg_id", "text"}` on `<prefix>/out/<its client id>`
(with `"error": "<code>"` when the text reports a failure), QoS 1 both ways. Devices
authenticate to the broker; the gateway treats each client id as a sender, `mqtt:<client>`,
so the stranger policy (`security:`), allowlists and per-sender limits apply to each. The
payload's `id` makes a device's retries (and the broker's redeliveries) answered once.

The transport lives in `mqtt_link` (paho-mqtt, the persistent session, reconnects); this
module turns what arrives into messages and replies, and judges liveness: a probe goes to
`<prefix>/in/<gateway's client id>` every `probe_interval`, through the very subscription the
devices' messages take, and a channel with no message in and no probe back for `stale_after`
is stale (`channels.liveness`): shown so, restarted once, and the `channel_stale` alert fires.

Replies go out in `_take`, before the device's message is acknowledged (the broker is their
outbox: an unacknowledged message is delivered again). Messages the gateway starts in a
device's chat (`context.send("mqtt", "<client id>", ...)`, `POST /api/v1/send`) come from the
outbox, whose sender calls `deliver`: the same topic and body, with `"outbound_id"` and `"id":
null`; a broker that does not take it is tried again.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import gevent
from gevent.pool import Group
from pydantic import Field, field_validator, model_validator

from gateway.channels.base import (
    ChannelOptions,
    ChannelStatus,
    PushChannel,
    Services,
    SwitchedOnByConfig,
)
from gateway.channels.liveness import Liveness
from gateway.channels.mqtt_link import Inbound, LinkDown, LinkSettings, MqttLink
from gateway.channels.reply_files import not_carried
from gateway.common.options import Duration
from gateway.core.intake import Arrival
from gateway.core.message import Attachment, Reply
from gateway.core.outbound import Outbound, RetryLater, new_outbound_id

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT = 10.0  # seconds the broker has to acknowledge a reply
DRAIN = 5.0  # seconds a stop waits for messages being answered
REMEMBERED = 10_000  # replies sent, by msg_id: a repeated id is not answered twice
PORTS = {"mqtt": 1883, "mqtts": 8883}
# Proves "this message came through the gateway's own MQTT channel" to the guard chain, as a
# platform's bot token does: made per process, never leaves it (`MqttOptions.bot_token`).
_CHANNEL_KEY = secrets.token_urlsafe(32)


def _topic_level(value: str, what: str) -> str:
    if not value or any(c in value for c in "+#/\0"):
        raise ValueError(f"{what} must be one topic level: not empty, without '/', '+', '#'")
    return value


class MqttOptions(SwitchedOnByConfig):
    """`channels.mqtt:`; a section with any key switches the channel on (`enabled: false`
    keeps it written down but off)."""

    url: str = Field("mqtt://127.0.0.1:1883", description="mqtt://host:port or mqtts://")
    topic_prefix: str = "moltbot"
    username: str | None = None
    password: str | None = Field(None, repr=False)
    client_id: str = Field("moltbot-gateway", min_length=1, max_length=128)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    keepalive: Duration = Field(60.0, ge=5, le=3600)
    session_expiry: Duration = Field(86400.0, ge=60, le=4_294_967_295,
                                     description="how long the broker keeps the gateway's "
                                     "session and its queued messages while it is away")
    probe_interval: Duration = Field(30.0, ge=0.1, le=3600)
    stale_after: Duration = Field(90.0, ge=0.5, le=86400)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in PORTS:
            raise ValueError("expected mqtt://host:port or mqtts://host:port (TLS)")
        if parts.username or parts.password:
            raise ValueError("put the credentials in channels.mqtt.username and password, "
                             "not in the URL")
        if not parts.hostname:
            raise ValueError("the URL names no host, e.g. mqtt://127.0.0.1:1883")
        try:
            parts.port  # noqa: B018 (urlsplit checks the port when it is read)
        except ValueError as e:
            raise ValueError("the port must be a number from 1 to 65535") from e
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("the URL takes host and port only, e.g. mqtt://127.0.0.1:1883")
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        levels = value.split("/")
        if not value or value.startswith("$") or any(not level for level in levels) or \
                any(c in value for c in "+#\0") or len(value) > 200:
            raise ValueError("expected topic levels such as 'moltbot' or 'home/assistant': "
                             "no '+', '#', empty level or leading '$'")
        return value

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, value: str) -> str:
        return _topic_level(value, "client_id (it names the gateway's probe topic)")

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _file(cls, value: str | None) -> str | None:
        if value is None:
            return None
        path = Path(value).expanduser()
        if not path.is_absolute():
            raise ValueError("expected an absolute path (or one starting with ~)")
        if not path.is_file():
            raise ValueError(f"no such file: {path}")
        return str(path)

    @model_validator(mode="after")
    def _consistent(self) -> MqttOptions:
        tls = self.tls
        named = [k for k in ("ca_file", "cert_file", "key_file") if getattr(self, k)]
        if named and not tls:
            raise ValueError(f"{', '.join(named)} need a TLS URL: mqtts://host:8883")
        if self.key_file and not self.cert_file:
            raise ValueError("key_file needs cert_file (the client certificate)")
        if self.password is not None and self.username is None:
            raise ValueError("a password needs a username")
        if self.stale_after <= self.probe_interval:
            raise ValueError(f"stale_after ({self.stale_after:g} s) must be longer than "
                             f"probe_interval ({self.probe_interval:g} s)")
        return self

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"

    @property
    def bot_token(self) -> str:
        """The channel's own credential for the guard chain (`PlatformToken`): it proves the
        message came through this channel, whose devices the broker authenticated."""
        return _CHANNEL_KEY

    def link_settings(self) -> LinkSettings:
        parts = urlsplit(self.url)
        return LinkSettings(
            host=parts.hostname or "", port=parts.port or PORTS[parts.scheme], tls=self.tls,
            client_id=self.client_id, username=self.username, password=self.password,
            ca_file=self.ca_file, cert_file=self.cert_file, key_file=self.key_file,
            keepalive=int(self.keepalive), session_expiry=int(self.session_expiry),
            subscriptions=(f"{self.topic_prefix}/in/+",),
            probe_topic=f"{self.topic_prefix}/in/{self.client_id}")


class MqttChannel(PushChannel):
    name = "mqtt"
    Options = MqttOptions
    chat_platform = True  # the broker authenticates devices; each one meets the policy

    def __init__(self, services: Services, options: ChannelOptions) -> None:
        super().__init__(services, options)
        self.link: MqttLink | None = None
        self.liveness = Liveness(self.mqtt.stale_after)
        self.handlers = Group()  # messages being answered
        self._watcher: gevent.Greenlet | None = None
        self._stale_wall: float | None = None
        self._sent: OrderedDict[str, None] = OrderedDict()  # msg_ids whose reply went out
        self._sending: set[str] = set()  # ... and those going out now

    @property
    def mqtt(self) -> MqttOptions:
        assert isinstance(self.options, MqttOptions)
        return self.options

    # -- the channel contract --------------------------------------------------------------
    def start(self) -> None:
        if self.link is not None:
            return
        self.liveness = Liveness(self.mqtt.stale_after)
        self.link = MqttLink(self.mqtt.link_settings(), self._arrived, self.liveness)
        self.link.start()
        self._watcher = gevent.spawn(self._watch, self.link, self.liveness)

    def stop(self, forget: bool = False) -> None:
        link, self.link = self.link, None
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.kill()
        if link is not None:
            link.stop(forget)
        self.handlers.join(timeout=DRAIN)

    def configure(self, options: ChannelOptions) -> None:
        """Stop the old client (unsubscribing first when the topics or the client id change,
        so the old session gathers nothing), then start one with the new options."""
        assert isinstance(options, MqttOptions)
        before = self.mqtt.link_settings()
        after = options.link_settings()
        moved = (before.client_id, before.subscriptions) != (after.client_id,
                                                              after.subscriptions)
        self.stop(forget=moved)
        self.options = options
        if options.enabled:
            self.start()

    def status(self) -> ChannelStatus:
        link = self.link
        if link is None:
            why = ("channels.mqtt.enabled is false" if self.options.enabled is False and
                   self._configured() else "channels.mqtt is not in config.yaml")
            return ChannelStatus("stopped", why)
        if link.state == "connected" and self.liveness.is_stale:
            return ChannelStatus("stale", self._stale_detail(), self._stale_wall)
        if link.state == "connected":
            topics = ", ".join(link.settings.subscriptions)
            return ChannelStatus("connected", f"{link.why}, in: {topics}; "
                                 f"{self.liveness.describe()}", link.since)
        if link.state in ("retrying", "connecting"):
            return ChannelStatus(link.state, link.why, link.since)  # type: ignore[arg-type]
        return ChannelStatus("stopped", "")

    def stale_for(self) -> float | None:
        link = self.link
        if link is None or link.state != "connected":
            return None
        return self.liveness.stale_for()

    def _configured(self) -> bool:
        return self.mqtt.model_fields_set != {"enabled"}

    def _stale_detail(self) -> str:
        restarted = "restarted once, still silent" if self.liveness.restarted else \
            "restarting"
        return (f"no message and no probe came back for over {self.mqtt.stale_after:g} s "
                f"(channels.mqtt.stale_after), though the broker is connected; {restarted}; "
                f"{self.liveness.describe()}")

    def push_problem(self) -> str | None:
        if self.link is None:
            return "mqtt is switched off: add channels.mqtt (url, ...) to config.yaml."
        return None

    def deliver(self, outbound: Outbound) -> None:
        """A message the gateway started, from the outbox (replies go out in `_take`)."""
        files = tuple(Attachment(**f) for f in outbound.files)
        text = outbound.text + not_carried(files, self.name, outbound.msg_id or outbound.id)
        body = {"id": None, "msg_id": outbound.msg_id, "text": text.strip(),
                "outbound_id": outbound.id}
        try:
            self._send(outbound.chat, body)
        except LinkDown as e:
            raise RetryLater(str(e)) from e

    # -- liveness --------------------------------------------------------------------------
    def _watch(self, link: MqttLink, liveness: Liveness) -> None:
        """Probe every `probe_interval`; judge staleness; restart once per stale episode."""
        interval = self.mqtt.probe_interval
        while True:
            gevent.sleep(interval)
            if not link.connected:
                continue
            if liveness.check():
                self._stale_wall = time.time()
                log.warning("mqtt: stale: %s", self._stale_detail())
            if liveness.is_stale and not liveness.restarted:
                liveness.restarted = True
                link.restart("stale: nothing came back through the subscription")
                _wait_connected(link, interval)  # then probe at once: did it help?
            link.send_probe()

    # -- messages --------------------------------------------------------------------------
    def _arrived(self, inbound: Inbound) -> None:
        """On paho's loop: hand off at once."""
        self.handlers.spawn(self._take, inbound)

    def _take(self, inbound: Inbound) -> None:
        """Answer one message, then acknowledge it; a reply the broker did not take leaves
        it unacknowledged, so the broker delivers it again on the next connection."""
        link = self.link
        if link is None:
            return
        keep = False
        try:
            device = _device(inbound.topic, self.mqtt.topic_prefix)
            if device == self.mqtt.client_id:
                if _is_probe(inbound.payload, link.probe_nonce):
                    self.liveness.mark_probe_back()
                return  # our own topic: a probe of an earlier run, or nobody's business
            if device is None:
                return
            self.liveness.mark_in()
            reply = self._answer(device, inbound.payload, link.peer)
            if reply is not None:
                self._sending.add(reply.msg_id)
                try:
                    self._publish(reply)
                finally:
                    self._sending.discard(reply.msg_id)
                self._sent[reply.msg_id] = None
                while len(self._sent) > REMEMBERED:
                    self._sent.popitem(last=False)
        except LinkDown as e:
            keep = True
            log.warning("mqtt: the reply to a message on %s was not sent (%s); the broker "
                        "delivers the message again", inbound.topic, e)
        except Exception:
            log.exception("mqtt: a message on %s failed", inbound.topic)
        finally:
            if not keep:
                link.ack(inbound)

    def _answer(self, device: str, payload: bytes, peer: str) -> Reply | None:
        """The intake's reply to one device message, or None when nothing goes back (a
        blocked sender; an id answered already)."""
        data, problem = read_payload(payload)
        arrival = Arrival(self.name, {**data, "sender": device, "chat": device},
                          credential=self.mqtt.bot_token, peer=peer, problem=problem,
                          needs_sender=True)
        found = self.intake.message(arrival)
        if isinstance(found, Reply):  # refused before a message was made
            return None if found.error == "blocked" else replace(found, chat=device, to=device)
        try:
            reply = self.entry.handle(found, arrival.credential)
        finally:
            self.intake.settle(found)
        if reply.error == "blocked":
            return None  # a blocked sender gets nothing back
        if reply.msg_id != found.id and (reply.msg_id in self._sent
                                         or reply.msg_id in self._sending):  # sent (or going)
            log.info("msg_id=%s mqtt: %s sent id %s again; it was answered once already",
                     reply.msg_id, device, found.client_id)
            return None
        return reply

    def _publish(self, reply: Reply) -> None:
        """Publish the reply, then file it among the outbox's rows as sent: the broker, not
        the outbox, carries replies, and the row is the send in the message's trace."""
        text = reply.text + not_carried(reply.files, self.name, reply.msg_id)
        body: dict[str, Any] = {"id": reply.client_id, "msg_id": reply.msg_id, "text": text}
        if reply.error:
            body["error"] = reply.error
        began = time.time()
        self._send(reply.chat, body)
        now = time.time()
        self.services.outbox.rows.insert(Outbound(
            id=new_outbound_id(), channel=self.name, chat=reply.chat, text=text, to=reply.chat,
            msg_id=reply.msg_id or None, reply_to=reply.client_id, state="sent", attempts=1,
            created_at=began, sent_at=now, history=({"at": now, "outcome": "sent", "detail": (
                f"published, acknowledged by the broker in {(now - began) * 1000:.1f} ms")},)))

    def _send(self, device: str, body: dict[str, Any]) -> None:
        """Publish on the device's out topic once the broker acknowledged; raises LinkDown."""
        link = self.link
        if link is None:
            raise LinkDown("mqtt is stopped")
        link.publish(f"{self.mqtt.topic_prefix}/out/{device}",
                     json.dumps(body, ensure_ascii=False).encode(), PUBLISH_TIMEOUT)


def _wait_connected(link: MqttLink, bound: float) -> None:
    deadline = time.monotonic() + bound
    gevent.sleep(0.05)  # the restart ends the old connection first
    while not link.connected and time.monotonic() < deadline:
        gevent.sleep(0.05)


def read_payload(payload: bytes) -> tuple[dict[str, Any], str | None]:
    """A device's payload as message fields: a JSON object as it is, anything else as the
    text itself; (fields, what is wrong)."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return {}, "The payload is not UTF-8 text; send UTF-8 or JSON {\"id\", \"text\"}."
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            return {}, 'The payload starts with "{" but is not JSON; send {"id", "text"}.'
        if isinstance(data, dict):
            if "text" not in data:
                return data, 'The JSON payload has no "text": send {"id": "...", "text": "..."}.'
            return {k: data[k] for k in ("id", "text", "files") if k in data}, None
    return {"text": text}, None


def _device(topic: str, prefix: str) -> str | None:
    """The client id in `<prefix>/in/<client>`, or None for any other topic."""
    head = f"{prefix}/in/"
    if not topic.startswith(head):
        return None
    device = topic[len(head):]
    return device if device and "/" not in device else None


def _is_probe(payload: bytes, nonce: str) -> bool:
    try:
        return bool(json.loads(payload).get("probe") == nonce)
    except (ValueError, AttributeError):
        return False

