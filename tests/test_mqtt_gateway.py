"""The MQTT channel end to end: a real Mosquitto, real paho-mqtt devices and the real gateway
process, as devices, brokers and owners use them (and as they fail)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import GatewayProcess, free_port, model_config, run_cli, write_config
from tests.fakes.fake_model import FakeModelServer
from tests.mqtt_broker import Broker, Device
from tests.trace_check import assert_complete_trace

OPEN = {"stranger_mode": "open"}
QUICK = {"probe_interval": 0.3, "stale_after": 1.5}  # liveness judged within seconds


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with Broker(tmp_path / "broker") as running:
        yield running


Start = Callable[..., GatewayProcess]


@pytest.fixture
def mqtt_gateway(home: Path, fake_model: FakeModelServer, broker: Broker) -> Iterator[Start]:
    """`start(security=..., **mqtt_options)`: the gateway with channels.mqtt on `broker`."""
    started: list[GatewayProcess] = []

    def start(security: dict[str, Any] | None = None, wait: str | None = "connected",
              **mqtt: Any) -> GatewayProcess:
        write_config(home, gateway_config(fake_model, broker, security, **mqtt))
        gw = GatewayProcess(home, started[0].port if started else free_port()).start()
        started.append(gw)
        if wait:
            wait_for_state(gw, wait)
        return gw

    yield start
    for gw in started:
        gw.stop()


def gateway_config(fake_model: FakeModelServer, broker: Broker,
                   security: dict[str, Any] | None = None, **mqtt: Any) -> dict[str, Any]:
    config: dict[str, Any] = {**model_config(fake_model.url),
                              "channels": {"mqtt": {"url": broker.url, **QUICK, **mqtt}},
                              "security": security or OPEN}
    return config


def channel(gw: GatewayProcess) -> dict[str, Any]:
    rows = httpx.get(f"{gw.url}/api/v1/channels", headers=gw.headers, timeout=10).json()
    return next(row for row in rows["channels"] if row["name"] == "mqtt")


def wait_for_state(gw: GatewayProcess, state: str, saying: str = "",
                   deadline_s: float = 30) -> dict[str, Any]:
    """Poll the channel (never a bare sleep) until it is `state` with `saying` in its
    detail."""
    row: dict[str, Any] = {}
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        row = channel(gw)
        if row["state"] == state and saying in row["detail"]:
            return row
        time.sleep(0.05)
    raise AssertionError(f"channel mqtt is {row.get('status')!r}, not {state} saying "
                         f"{saying!r}:\n{gw.log()[-3000:]}")


def test_a_device_is_answered_on_its_out_topic(mqtt_gateway: Start, broker: Broker) -> None:
    gw = mqtt_gateway()
    with Device(broker, "kitchen") as device:
        device.send("hello there", id="k-1")
        reply = device.reply()
        assert reply["id"] == "k-1" and reply["text"] == "echo: hello there"
        assert re.fullmatch(r"m[0-9a-f]+", reply["msg_id"])
        assert_complete_trace(gw, reply["msg_id"], sent_on="mqtt")
        assert "error" not in reply
        device.send(raw=b"plain words")
        reply = device.reply()
        assert reply["text"] == "echo: plain words" and reply["id"] is None
        device.send(raw=b"\xff\xfe not text")
        reply = device.reply()
        assert reply["error"] == "bad_request" and "UTF-8" in reply["text"]
        device.send(raw=b'{"id": "k-2", "text": "see file", "files": []}')
        reply = device.reply()
        assert reply["id"] == "k-2" and reply["error"] == "bad_request"
        assert "does not take files" in reply["text"]


def test_messages_sent_while_the_gateway_was_away_are_answered_when_it_returns(
        mqtt_gateway: Start, broker: Broker) -> None:
    gw = mqtt_gateway()  # the gateway's session and subscription now live in the broker
    gw.stop()
    with Device(broker, "porch") as device:
        device.send("while you were out", id="p-1")
        device.send("and again", id="p-2")
        mqtt_gateway()
        assert [device.reply()["text"] for _ in range(2)] == [
            "echo: while you were out", "echo: and again"]


def test_a_broker_restart_is_survived_without_restarting_the_gateway(
        mqtt_gateway: Start, broker: Broker) -> None:
    gw = mqtt_gateway()
    pid = gw.proc.pid if gw.proc else 0
    broker.restart()  # persistence on: the gateway's session comes back with the broker
    with Device(broker, "garage") as device:
        device.send("still there?", id="g-1")
        assert device.reply()["text"] == "echo: still there?"
    assert wait_for_state(gw, "connected") and gw.proc and gw.proc.pid == pid
    assert gw.log().count("mqtt: connected to") >= 2


def test_a_duplicate_id_is_answered_once(mqtt_gateway: Start, broker: Broker,
                                         fake_model: FakeModelServer) -> None:
    gw = mqtt_gateway()
    with Device(broker, "hall") as device:
        device.send("first", id="h-1")
        first = device.reply()
        device.send("first", id="h-1")  # the device retried
        fake_model.wait_for(lambda: "sent id h-1 again" in gw.log(), timeout=30)
        assert "sent id h-1 again" in gw.log()
        device.send("second", id="h-2")
        second = device.reply()
        assert (first["id"], second["id"]) == ("h-1", "h-2")
        assert fake_model.calls == 2


def test_a_stranger_device_meets_the_stranger_policy(mqtt_gateway: Start,
                                                     broker: Broker) -> None:
    gw = mqtt_gateway(security={"stranger_mode": "verification_code",
                                "allowlist": ["mqtt:kitchen"]})
    with Device(broker, "kitchen") as known, Device(broker, "intruder") as stranger:
        known.send("lights", id="1")
        assert known.reply()["text"] == "echo: lights"
        stranger.send("lights", id="1")
        challenge = stranger.reply()["text"]
        assert "echo" not in challenge
        code = re.search(r"\b(\d{4})\b", challenge)
        assert code, challenge
        stranger.send(code.group(1), id="2")
        assert "echo" not in stranger.reply()["text"]
        stranger.send("lights now", id="3")
        assert stranger.reply()["text"] == "echo: lights now"
    assert "mqtt:intruder" in run_cli(gw.home, "pairing", "list").stdout


def test_a_model_that_is_down_gets_a_clear_error_reply(mqtt_gateway: Start, broker: Broker,
                                                      fake_model: FakeModelServer) -> None:
    gw = mqtt_gateway()
    fake_model.stop()
    with Device(broker, "attic") as device:
        device.send("anyone?", id="a-1")
        reply = device.reply()
    assert reply["id"] == "a-1" and reply["error"] == "model_unavailable"
    assert "model" in reply["text"].lower() and "http" not in reply["text"]
    trace = run_cli(gw.home, "trace", reply["msg_id"])
    assert trace.returncode == 0 and "mqtt/attic" in trace.stdout  # the message was stored
    assert "status=failed" in trace.stdout


@pytest.mark.parametrize("case", ["wrong password", "unreachable broker"])
def test_a_broker_that_refuses_or_is_missing_leaves_the_channel_retrying(
        case: str, home: Path, fake_model: FakeModelServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MQTT_PASSWORD", "not-the-password")
    with Broker(tmp_path / "locked", users={"gateway": "the-password"}) as locked:
        url = locked.url if case == "wrong password" else f"mqtt://127.0.0.1:{free_port()}"
        write_config(home, {**model_config(fake_model.url), "security": OPEN,
                            "channels": {"mqtt": {"url": url, "username": "gateway",
                                                  "password": "${MQTT_PASSWORD}"}}})
        gw = GatewayProcess(home, free_port()).start()
        try:
            wanted = "refused the login" if case == "wrong password" else "cannot reach"
            row = wait_for_state(gw, "retrying", wanted)
            assert "username and password" in row["detail"] or case != "wrong password"
            assert "not-the-password" not in json.dumps(row)
            assert row["since"] and "since" in row["status"]
            listed = run_cli(home, "channels", "list")
            assert re.search(r"mqtt\s+on\s+retrying: since .*" + wanted, listed.stdout)
            assert gw.post("the gateway still serves").json()["reply"] == \
                "echo: the gateway still serves"
        finally:
            gw.stop()


def _connections_to(gw: GatewayProcess, broker: Broker) -> int:
    assert gw.proc is not None
    return sum(1 for c in psutil.Process(gw.proc.pid).net_connections("tcp")
               if c.raddr and c.raddr.port == broker.port
               and c.status == psutil.CONN_ESTABLISHED)


def test_hot_reload_leaves_exactly_one_client(mqtt_gateway: Start, broker: Broker,
                                              fake_model: FakeModelServer, home: Path) -> None:
    gw = mqtt_gateway()
    assert _connections_to(gw, broker) == 1

    def reload(**mqtt: Any) -> None:
        write_config(home, gateway_config(fake_model, broker, **mqtt))

    reload(topic_prefix="house")
    wait_for_state(gw, "connected", "house/in/+")  # the reload took
    assert _connections_to(gw, broker) == 1
    with Device(broker, "den", prefix="house") as device:
        device.send("new prefix", id="d-1")
        assert device.reply()["text"] == "echo: new prefix"
    reload(topic_prefix="house", enabled=False)
    assert wait_for_state(gw, "stopped") and _connections_to(gw, broker) == 0
    reload(topic_prefix="house")
    assert wait_for_state(gw, "connected") and _connections_to(gw, broker) == 1
    assert "took the session over" not in gw.log()


def test_a_subscription_that_silently_died_is_found_stale(home: Path, tmp_path: Path,
                                                          fake_model: FakeModelServer) -> None:
    with Broker(tmp_path / "acl", acl="topic readwrite #\n") as broker:
        config = gateway_config(fake_model, broker)
        config["alerts"] = {"rules": {"channel_stale": {"window": "1s"}}}
        write_config(home, config)
        gw = GatewayProcess(home, free_port()).start()
        try:
            wait_for_state(gw, "connected")
            # the broker stops delivering to the gateway; its connection stays up
            broker.set_acl("topic write #\ntopic read moltbot/out/#\n")
            row = wait_for_state(gw, "stale", "restarted once, still silent")
            assert "channels.mqtt.stale_after" in row["detail"]
            assert gw.log().count("mqtt: restarting the connection") == 1
            fake_model.wait_for(lambda: "alert channel_stale firing" in gw.log(), timeout=30)
            assert "alert channel_stale firing" in gw.log()
            assert "stale" in run_cli(home, "channels", "list").stdout
            broker.set_acl("topic readwrite #\n")  # deliveries resume: the probe comes back
            wait_for_state(gw, "connected")
            assert gw.log().count("mqtt: restarting the connection") == 1
        finally:
            gw.stop()


def test_the_readme_example_with_mosquitto_clients(mqtt_gateway: Start, broker: Broker) -> None:
    """README's mosquitto_sub and mosquitto_pub lines, run as written (on the test's port)."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    sub, pub = (re.search(rf"^{tool} .*$", readme, re.MULTILINE).group(0)  # type: ignore[union-attr]
                .replace("-p 1883", f"-p {broker.port}")
                for tool in ("mosquitto_sub", "mosquitto_pub"))
    allowlist = re.search(r'allowlist: \["(mqtt:\w+)"\]', readme)
    assert allowlist
    mqtt_gateway(security={"allowlist": [allowlist.group(1)]})
    listener = subprocess.Popen(f"{sub} -C 1 -W 60", shell=True, stdout=subprocess.PIPE,
                                text=True)
    try:
        deadline = time.monotonic() + 30
        while "lamp-listener 1 moltbot/out/lamp" not in broker.log():  # it has subscribed
            assert time.monotonic() < deadline, broker.log()
            time.sleep(0.05)
        subprocess.run(pub, shell=True, check=True, timeout=30)
        out, _ = listener.communicate(timeout=60)
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.communicate()
    reply = json.loads(out)
    assert reply["id"] == "1" and reply["text"] == "echo: hello" and reply["msg_id"]
