"""The MQTT channel end to end: a real Mosquitto, real paho-mqtt devices and the real gateway
process, as devices, brokers and owners use them (and as they fail)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import GatewayProcess, free_port, model_config, run_cli, write_config
from tests.fakes.fake_model import FakeModelServer
from tests.mqtt_broker import Broker, Device

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


def wait_for_state(gw: GatewayProcess, state: str, deadline_s: float = 30) -> dict[str, Any]:
    """Poll the channel's state (never a bare sleep) until it is `state`."""
    import time

    row: dict[str, Any] = {}
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        row = channel(gw)
        if row["state"] == state:
            return row
        time.sleep(0.05)
    raise AssertionError(f"channel mqtt is {row.get('status')!r}, not {state}:\n"
                         f"{gw.log()[-3000:]}")


def test_a_device_is_answered_on_its_out_topic(mqtt_gateway: Start, broker: Broker) -> None:
    mqtt_gateway()
    with Device(broker, "kitchen") as device:
        device.send("hello there", id="k-1")
        reply = device.reply()
        assert reply["id"] == "k-1" and reply["text"] == "echo: hello there"
        assert re.fullmatch(r"m[0-9a-f]+", reply["msg_id"])
        assert "error" not in reply
        device.send(raw="plain words".encode())
        reply = device.reply()
        assert reply["text"] == "echo: plain words" and reply["id"] is None
