"""The gateway's one connection to an MQTT broker: paho-mqtt 2 kept up by a supervisor.

Where it runs (ARCHITECTURE.md, the thread rule): paho's network loop is `loop_start`'s
thread, which under gevent's patching is a greenlet whose waits are patched `select` and
socket calls; measured with the gateway's 10 ms ticker, the largest loop gap stays under
35 ms for a 2,000-message backlog, a 5,000-message QoS 0 burst, refused and unanswered
connects and a TLS handshake (`bench/run.py loop-libraries`, `tests/test_loop_libraries.py`).
Nothing is done inside paho's callbacks beyond bookkeeping: each message is handed to a
greenlet of its own (`on_message`), so a slow model never starves paho's keepalive.

One `paho.mqtt.client.Client` per connection: the supervisor greenlet connects (the reason a
connect fails is the exception's, which paho's own reconnect loop would swallow), starts
paho's loop, waits until the connection ends, and connects again with backoff (1 s doubling
to 60 s). The session is persistent (MQTT 5, clean start off, the fixed client id, a session
expiry): QoS 1 messages published while the gateway is away wait in the broker. Subscribing
happens in `on_connect`, so a broker that restarted without its sessions is subscribed again.
Inbound messages are acknowledged by hand (`ack`) once the channel has kept what it needs of
them, so a crash before that gets them delivered again. `restart` ends the connection for a
fresh one (the stale check's one restart); `stop` disconnects and leaves no client behind.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gevent
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.channels.liveness import Liveness

log = logging.getLogger(__name__)

BACKOFF_FIRST, BACKOFF_MAX = 1.0, 60.0
RECEIVE_MAXIMUM = 20  # QoS 1 messages the broker may have in flight to us, unacknowledged
CONNECT_TIMEOUT = 10.0
CLOSE_TIMEOUT = 2.0  # a DISCONNECT the broker does not take in this long: the socket is closed


@dataclass(frozen=True)
class LinkSettings:
    host: str
    port: int
    tls: bool
    client_id: str
    username: str | None
    password: str | None
    ca_file: str | None
    cert_file: str | None
    key_file: str | None
    keepalive: int
    session_expiry: int
    subscriptions: tuple[str, ...]  # topic filters, subscribed at QoS 1 on every connect
    probe_topic: str  # one of the subscriptions' topics, for messages to ourselves

    @property
    def where(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


@dataclass(frozen=True)
class Inbound:
    """One message from the broker, handed to the channel off paho's loop."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    link: int  # which connection it came on: an ack goes only on that one


class LinkDown(Exception):
    """The broker cannot take a message now; `str(e)` says why."""


class MqttLink:
    def __init__(self, settings: LinkSettings, on_message: Callable[[Inbound], None],
                 liveness: Liveness) -> None:
        """`on_message` runs on paho's loop: it must hand the message off (spawn) at once."""
        self.settings = settings
        self.on_message = on_message
        self.liveness = liveness
        self.state = "stopped"  # connecting, connected, retrying, stopped
        self.why = ""
        self.since = time.time()
        self.peer = ""  # the broker's address, the network peer of every device's message
        self.probe_nonce = secrets.token_hex(8)
        self._client: mqtt.Client | None = None
        self._generation = 0
        self._ended = threading.Event()  # the current connection is over (or must end)
        self._end_why = ""
        self._stopping = False
        self._supervisor: gevent.Greenlet | None = None
        self._wake = threading.Event()

    # -- the channel's side ----------------------------------------------------------------
    def start(self) -> None:
        if self._supervisor is not None:
            return
        self._stopping = False
        self._set("connecting", f"connecting to {self.settings.where}")
        self._supervisor = gevent.spawn(self._run)

    def stop(self, forget: bool = False) -> None:
        """Disconnect (the broker keeps the session) and end the supervisor; returns when no
        client of this link is left. `forget`: unsubscribe first, so the session the broker
        keeps gathers nothing more for a prefix or client id the gateway no longer uses."""
        client = self._client
        if forget and client is not None and self.connected:
            done = threading.Event()
            client.on_unsubscribe = lambda *_: done.set()
            client.unsubscribe(list(self.settings.subscriptions))
            done.wait(CLOSE_TIMEOUT)
        self._stopping = True
        self._end("stopping")
        self._wake.set()
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.join(CONNECT_TIMEOUT + CLOSE_TIMEOUT)
            if not supervisor.dead:
                supervisor.kill()  # stuck in a connect: drop the half-made client
        client, self._client = self._client, None
        if client is not None:
            self._close(client)
        self._set("stopped", "")

    def restart(self, why: str) -> None:
        """End the current connection and connect again at once."""
        log.warning("mqtt: restarting the connection to %s: %s", self.settings.where, why)
        self._end(f"restart: {why}")

    @property
    def connected(self) -> bool:
        return self.state == "connected"

    def publish(self, topic: str, payload: bytes, timeout: float) -> None:
        """Publish at QoS 1 and return once the broker acknowledged it; raises LinkDown."""
        client, generation = self._client, self._generation
        if client is None or not self.connected:
            raise LinkDown(f"not connected to the broker ({self.why or self.state})")
        info = client.publish(topic, payload, qos=1)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise LinkDown(f"the broker did not take it: {mqtt.error_string(info.rc)}")
        deadline = time.monotonic() + timeout
        while not info.is_published():
            if self._generation != generation or not self.connected:
                raise LinkDown("the connection to the broker dropped before it acknowledged")
            if time.monotonic() > deadline:
                raise LinkDown(f"the broker did not acknowledge within {timeout:.0f} s")
            info.wait_for_publish(0.25)
        self.liveness.mark_out()

    def ack(self, inbound: Inbound) -> None:
        """Acknowledge a QoS 1 message on the connection it came on; on a later connection
        the broker delivers it again instead (the channel's dedupe answers it once)."""
        client = self._client
        if inbound.qos and client is not None and inbound.link == self._generation:
            client.ack(inbound.mid, inbound.qos)

    def send_probe(self) -> None:
        """A message to ourselves through the devices' own subscription (QoS 0: its
        return, not its acknowledgement, is the evidence)."""
        client = self._client
        if client is not None and self.connected:
            client.publish(self.settings.probe_topic, f'{{"probe": "{self.probe_nonce}"}}', 0)
            self.liveness.mark_probe_sent()

    # -- the supervisor --------------------------------------------------------------------
    def _run(self) -> None:
        delay = BACKOFF_FIRST
        while not self._stopping:
            was_connected, why = self._one_connection()
            if self._stopping:
                break
            if was_connected:
                delay = BACKOFF_FIRST
            if why.startswith("restart:"):
                continue  # the stale check's restart: at once
            self._set("retrying", why)
            log.warning("mqtt: %s; trying again in %.0f s", why, delay)
            self._wake.clear()
            self._wake.wait(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    def _one_connection(self) -> tuple[bool, str]:
        """Connect, serve until the connection ends; (whether it got connected, why it
        ended)."""
        self._generation += 1
        self._ended.clear()
        self._end_why = ""
        client = self._build_client()
        self._client = client
        s = self.settings
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = s.session_expiry
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        if self.state != "retrying":
            self._set("connecting", f"connecting to {s.where}")
        try:
            client.connect(s.host, s.port, keepalive=s.keepalive, clean_start=False,
                           properties=props)
        except (OSError, ValueError) as e:  # ssl errors are OSErrors
            self._client = None
            return False, _connect_error(s, e)
        try:
            self.peer = getattr(client.socket(), "getpeername", lambda: ("",))()[0]
        except OSError:
            self.peer = ""
        with contextlib.suppress(OSError):
            # Nagle's algorithm would hold a reply until the broker ACKs the last packet, which
            # it delays: ~40 ms a round trip (bench/README.md, "mqtt")
            if isinstance(sock := client.socket(), socket.socket):  # TLS: an SSLSocket
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.loop_start()
        self._ended.wait()
        was_connected = self.connected
        self.liveness.disconnected()
        self._close(client)
        self._client = None
        return was_connected, self._end_why

    def _close(self, client: mqtt.Client) -> None:
        """Disconnect politely, or close the socket when the broker does not answer."""
        if client.is_connected():
            client.disconnect()
        if not _joined(client, CLOSE_TIMEOUT):
            sock = client.socket()
            if sock is not None:
                sock.close()  # paho's select fails and its loop ends
        client.loop_stop()

    def _build_client(self) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=s.client_id,
                             protocol=mqtt.MQTTv5, reconnect_on_failure=False, manual_ack=True)
        client.suppress_exceptions = True  # a callback's bug is logged, the loop goes on
        client.connect_timeout = CONNECT_TIMEOUT
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        if s.tls:
            context = ssl.create_default_context(cafile=s.ca_file)
            if s.cert_file:
                context.load_cert_chain(s.cert_file, s.key_file)
            client.tls_set_context(context)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_log = self._on_log
        return client

    def _end(self, why: str) -> None:
        if not self._end_why:
            self._end_why = why
        self._ended.set()

    def _set(self, state: str, why: str) -> None:
        if state != self.state:
            self.since = time.time()
        self.state, self.why = state, why

    # -- paho's callbacks (on its loop: bookkeeping only) ------------------------------------
    def _on_connect(self, client: mqtt.Client, _userdata: Any, flags: Any,
                    reason: ReasonCode, _props: Any) -> None:
        if reason.is_failure:
            self._end(_refused(self.settings, reason))
            return
        log.info("mqtt: connected to %s as %s (session %s)", self.settings.where,
                 self.settings.client_id, "resumed" if flags.session_present else "new")
        client.subscribe([(topic, 1) for topic in self.settings.subscriptions])

    def _on_subscribe(self, client: mqtt.Client, _userdata: Any, _mid: int,
                      reasons: list[ReasonCode], _props: Any) -> None:
        refused = [f"{topic} ({reason})" for topic, reason in
                   zip(self.settings.subscriptions, reasons, strict=False) if reason.is_failure]
        if refused:
            self._end(f"the broker refused the subscription to {', '.join(refused)}: allow "
                      f"client {self.settings.client_id} to read it in the broker's ACL")
            return
        self.liveness.connected()
        self._set("connected", f"{self.settings.where} as {self.settings.client_id}")

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any,
                       reason: ReasonCode, _props: Any) -> None:
        self._end(_dropped(self.settings, reason))

    def _on_message(self, _client: mqtt.Client, _userdata: Any,
                    message: mqtt.MQTTMessage) -> None:
        self.liveness.mark_heard()
        self.on_message(Inbound(message.topic, bytes(message.payload), message.mid,
                                message.qos, self._generation))

    def _on_log(self, _client: mqtt.Client, _userdata: Any, _level: int, text: str) -> None:
        if text.startswith("Received "):  # any packet from the broker: PINGRESP, PUBACK, ...
            self.liveness.mark_heard()


def _joined(client: mqtt.Client, timeout: float) -> bool:
    """Wait for paho's loop to end after a DISCONNECT; False when it did not in time."""
    deadline = time.monotonic() + timeout
    while client.is_connected() or client.socket() is not None:
        if time.monotonic() > deadline:
            return False
        gevent.sleep(0.02)
    return True


def _connect_error(s: LinkSettings, e: Exception) -> str:
    if isinstance(e, ssl.SSLCertVerificationError):
        return (f"the broker's TLS certificate at {s.where} was not accepted "
                f"({e.verify_message}): set channels.mqtt.ca_file to the CA that signed it")
    if isinstance(e, ssl.SSLError):
        return f"TLS with {s.where} failed ({e.reason or e}): check the mqtts:// port and files"
    if isinstance(e, TimeoutError):
        return f"cannot reach {s.where}: no answer in {CONNECT_TIMEOUT:.0f} s"
    if isinstance(e, OSError):
        return f"cannot reach {s.where}: {e.strerror or e}"
    return f"cannot connect to {s.where}: {e}"


def _refused(s: LinkSettings, reason: ReasonCode) -> str:
    name = str(reason)
    if reason.value in (0x86, 0x87, 0x04, 0x05):  # bad user name or password; not authorized
        return (f"the broker at {s.where} refused the login ({name}): check "
                f"channels.mqtt.username and password")
    if reason.value == 0x85:
        return (f"the broker at {s.where} refused client id {s.client_id!r} ({name}): "
                f"change channels.mqtt.client_id")
    return f"the broker at {s.where} refused the connection ({name})"


def _dropped(s: LinkSettings, reason: ReasonCode) -> str:
    name = str(reason)
    if reason.value == 0x8E:
        return (f"another client with id {s.client_id!r} took the session over: give each "
                f"gateway its own channels.mqtt.client_id")
    if name == "Normal disconnection":
        return f"disconnected from {s.where}"
    return f"the connection to {s.where} ended ({name})"
