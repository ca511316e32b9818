"""A real Mosquitto broker and a real paho-mqtt device for the MQTT channel's tests.

`Broker` runs `mosquitto` on a free port of 127.0.0.1 from a config of its own in a temporary
folder, persistence on (sessions and queued messages survive a restart), Nagle's algorithm
off (`set_tcp_nodelay`, as installers/docker/mosquitto.conf has it), logging to a file the
failure message can show; optional users (a password file) and an ACL. `Device` is a
paho-mqtt client as a device uses it: it subscribes to its out topic and publishes to its in
topic, QoS 1, and collects the replies in a queue. Both run in plain threads of the test
process (no gevent here).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import free_port


class Broker:
    def __init__(self, folder: Path, users: dict[str, str] | None = None,
                 acl: str | None = None) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.users = users
        self.acl = acl
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def write_config(self) -> None:
        lines = [f"listener {self.port} 127.0.0.1", "persistence true",
                 f"persistence_location {self.folder}/", f"log_dest file {self.folder}/log",
                 "log_type all", "max_queued_messages 1000", "set_tcp_nodelay true"]
        if os.geteuid() == 0:  # as root it would switch to the mosquitto user
            lines.append("user root")
        if self.users is None:
            lines.append("allow_anonymous true")
        else:
            passwords = self.folder / "passwords"
            passwords.write_text("", encoding="utf-8")
            for user, password in self.users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password],
                               check=True, capture_output=True)
            passwords.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        if self.acl is not None:
            (self.folder / "acl").write_text(self.acl, encoding="utf-8")
            (self.folder / "acl").chmod(0o600)
            lines.append(f"acl_file {self.folder / 'acl'}")
        (self.folder / "mosquitto.conf").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def start(self) -> Broker:
        self.write_config()
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.folder / "mosquitto.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError), \
                    socket.create_connection(("127.0.0.1", self.port), 0.2):
                return self
            time.sleep(0.02)
        raise AssertionError(f"mosquitto is not listening on {self.port}:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # mosquitto saves its sessions on SIGTERM
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def set_acl(self, acl: str) -> None:
        """A new ACL, read at once (SIGHUP): mosquitto checks it on every delivery."""
        assert self.proc is not None
        self.acl = acl
        (self.folder / "acl").write_text(acl, encoding="utf-8")
        self.proc.send_signal(signal.SIGHUP)

    def log(self) -> str:
        path = self.folder / "log"
        return path.read_text(encoding="utf-8", errors="replace")[-4000:] if path.exists() \
            else ""

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Device:
    """One device: client id `name`, replies from `<prefix>/out/<name>` in `self.replies`."""

    def __init__(self, broker: Broker, name: str, prefix: str = "moltbot",
                 username: str | None = None, password: str | None = None) -> None:
        self.broker = broker
        self.name = name
        self.prefix = prefix
        self.replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name,
                                  protocol=mqtt.MQTTv5)
        if username is not None:
            self.client.username_pw_set(username, password)
        self._subscribed = threading.Event()
        self.client.on_message = lambda _c, _u, m: self.replies.put(json.loads(m.payload))
        self.client.on_subscribe = lambda *_: self._subscribed.set()

    def connect(self) -> Device:
        self.client.connect("127.0.0.1", self.broker.port, keepalive=30)
        self.client.loop_start()
        self.client.subscribe(f"{self.prefix}/out/{self.name}", qos=1)
        assert self._subscribed.wait(10), "the device's subscription was not acknowledged"
        return self

    def send(self, text: str | None = None, id: str | None = None, raw: bytes | None = None,
             qos: int = 1) -> None:
        """Publish `{"id", "text"}` (or `raw` bytes) and wait for the broker to take it."""
        payload = raw if raw is not None else json.dumps({"id": id, "text": text}).encode()
        info = self.client.publish(f"{self.prefix}/in/{self.name}", payload, qos=qos)
        info.wait_for_publish(10)
        assert info.is_published(), "the broker did not take the device's message"

    def reply(self, timeout: float = 30) -> dict[str, Any]:
        try:
            return self.replies.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.name} got no reply in {timeout:.0f} s") from None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Device:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()
