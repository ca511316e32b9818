"""Settings as one snapshot: a reload swaps it whole, retires the old model pools once idle,
switches channels on and off, and a refused reload keeps the last good snapshot running."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.common.options import ConfigError
from gateway.common.workspace import Workspace
from gateway.config import parse_config
from gateway.models.pool import ModelPool
from gateway.models.registry import build_providers
from gateway.server.app import Gateway, build_gateway
from tests.conftest import model_config
from tests.fakes.fake_model import FakeModelServer

TOKEN = "static-token-for-the-settings-tests"


def config_of(fake: FakeModelServer, **sections: Any) -> Any:
    return parse_config({**model_config(fake.url), "auth": {"tokens": [TOKEN]}, **sections})


@pytest.fixture
def gateway(tmp_path: Path, fake_model: FakeModelServer) -> Iterator[Gateway]:
    built = build_gateway(Workspace(tmp_path / "ws"), config_of(fake_model))
    built.channels.start()
    yield built
    built.stop(5)


def post(gateway: Gateway, text: str) -> Any:
    return gateway.app.test_client().post(
        "/api/v1/messages", json={"text": text}, headers={"Authorization": f"Bearer {TOKEN}"})


def test_a_reload_swaps_the_snapshot_and_retires_the_old_pools(
        gateway: Gateway, fake_model: FakeModelServer) -> None:
    before = gateway.pipeline.settings
    assert post(gateway, "one").json["reply"] == "echo: one"
    gateway.apply_config(config_of(fake_model, gateway={"context_tokens": 4096}))
    after = gateway.pipeline.settings
    assert after is not before and after.context_tokens == 4096
    assert all(pool.closed for pool in before.models.values())  # idle: closed at once
    assert not any(pool.closed for pool in after.models.values())
    assert post(gateway, "two").json["reply"] == "echo: two"


def test_a_refused_reload_keeps_the_last_good_snapshot(
        gateway: Gateway, fake_model: FakeModelServer) -> None:
    before = gateway.pipeline.settings
    with pytest.raises(ConfigError, match=r"channels\.websocket\.enbled: unknown key"):
        gateway.apply_config(config_of(fake_model, channels={"websocket": {"enbled": False}}))
    assert gateway.pipeline.settings is before
    assert post(gateway, "still here").json["reply"] == "echo: still here"


def test_channels_switch_off_and_on_without_a_restart(
        gateway: Gateway, fake_model: FakeModelServer) -> None:
    gateway.apply_config(config_of(fake_model, channels={"http": {"enabled": False}}))
    off = post(gateway, "hello")
    assert off.status_code == 503 and off.json["error"]["code"] == "unavailable"
    assert "channels.http.enabled" in off.json["error"]["message"]
    listed = gateway.app.test_client().get("/api/v1/channels",
                                           headers={"Authorization": f"Bearer {TOKEN}"})
    http = next(c for c in listed.json["channels"] if c["name"] == "http")
    assert (http["enabled"], http["status"]) == (False, "stopped: channels.http.enabled is "
                                                 "false")
    gateway.apply_config(config_of(fake_model, channels={"http": {"enabled": True}}))
    assert post(gateway, "back").json["reply"] == "echo: back"


def test_a_retired_pool_closes_only_after_its_last_call(fake_model: FakeModelServer) -> None:
    config = parse_config(model_config(fake_model.url))
    pool = ModelPool("llama2", build_providers("llama2", config.models["llama2"]))
    fake_model.delay_first = 0.5
    done = threading.Event()
    threading.Thread(target=lambda: (pool.chat([{"role": "user", "content": "slow"}]),
                                     done.set()), daemon=True).start()
    pause = threading.Event()
    for _ in range(500):  # poll until the call is in flight
        if fake_model.calls:
            break
        pause.wait(0.01)
    pool.retire()
    assert not pool.closed  # the call still runs on it
    assert done.wait(10)
    assert pool.closed
