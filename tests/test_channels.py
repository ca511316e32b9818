"""Channels from the table and the `channels:` section: listed by `moltbot channels list`,
switched off in config.yaml, and answering `unavailable` (with why) while off."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import websocket

from tests.conftest import GatewayProcess, free_port, model_config, run_cli, write_config
from tests.fakes.fake_model import FakeModelServer


def test_channels_list_and_a_switched_off_websocket(home: Path,
                                                    fake_model: FakeModelServer) -> None:
    port = free_port()
    write_config(home, {**model_config(fake_model.url), "gateway": {"port": port},
                        "channels": {"websocket": {"enabled": False}}})
    stopped = json.loads(run_cli(home, "channels", "list", "--json").stdout)["channels"]
    assert {c["name"]: c["enabled"] for c in stopped} == {
        "http": True, "websocket": False, "console": True, "enterprise_im": False,
        "openai": True, "mqtt": False, "telegram": False, "wecom": False, "feishu": False,
        "slack": False, "dingtalk": False}
    assert all("not running" in c["status"] for c in stopped)
    gw = GatewayProcess(home, port).start()
    try:
        listed = run_cli(home, "channels", "list")
        assert listed.returncode == 0
        lines = {line.split()[0]: line for line in listed.stdout.splitlines()}
        assert lines["http"].split()[1:] == ["on", "connected"]
        assert "off  stopped: channels.websocket.enabled is false" in lines["websocket"]
        assert "off  stopped: channels.mqtt is not in config.yaml" in lines["mqtt"]
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(f"ws://127.0.0.1:{port}/ws", timeout=10,
                                        header=[f"Authorization: Bearer {gw.token}"])
        assert refused.value.status_code == 503  # refused before any upgrade
        assert b"channels.websocket.enabled" in refused.value.resp_body
        assert gw.post("http still answers").json()["reply"] == "echo: http still answers"
    finally:
        gw.stop()
