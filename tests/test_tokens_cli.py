"""`moltbot token`: create, list, revoke (effective within a second, caches included), rotate
with a grace period; static tokens must be long before the gateway leaves loopback."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from tests.conftest import GatewayProcess, free_port, model_config, run_cli, write_config
from tests.fakes.fake_model import FakeModelServer


def status_with(gw: GatewayProcess, token: str) -> int:
    return httpx.post(f"{gw.url}/api/v1/messages", json={"text": "hi"},
                      headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code


def until(check, deadline_s: float = 5.0) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while time.monotonic() - started < deadline_s:
        if check():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"not true within {deadline_s}s")


def test_create_list_revoke_and_rotate(home: Path, fake_model: FakeModelServer) -> None:
    write_config(home, model_config(fake_model.url))
    gw = GatewayProcess(home, free_port()).start()
    try:
        made = json.loads(run_cli(home, "token", "create", "--name", "phone", "--expire", "7d",
                                  "--json").stdout)
        assert set(made) == {"token", "name", "expires_at"} and made["name"] == "phone"
        assert status_with(gw, made["token"]) == 200
        listed = json.loads(run_cli(home, "token", "list", "--json").stdout)["tokens"]
        phone = next(t for t in listed if t["name"] == "phone")
        assert made["token"] not in json.dumps(listed)  # values are never listed
        assert status_with(gw, made["token"]) == 200  # now cached in the gateway

        revoked = run_cli(home, "token", "revoke", phone["id"])
        assert revoked.returncode == 0 and phone["id"] in revoked.stdout
        took = until(lambda: status_with(gw, made["token"]) == 401)
        print(f"revoked token refused {took:.2f}s after `token revoke`")

        first = json.loads(run_cli(home, "token", "create", "--name", "backup",
                                   "--json").stdout)["token"]
        rotated = json.loads(run_cli(home, "token", "rotate", "backup", "--grace", "1h",
                                     "--json").stdout)
        assert status_with(gw, first) == 200 and status_with(gw, rotated["token"]) == 200
        now = json.loads(run_cli(home, "token", "rotate", "backup", "--grace", "0",
                                 "--json").stdout)
        until(lambda: status_with(gw, first) == 401 and status_with(gw, rotated["token"]) == 401)
        assert status_with(gw, now["token"]) == 200
        missing = run_cli(home, "token", "revoke", "nobody")
        assert missing.returncode == 1 and "token list" in missing.stderr
    finally:
        gw.stop()


def test_a_short_static_token_cannot_open_the_gateway_to_the_network(home: Path) -> None:
    write_config(home, {"auth": {"tokens": ["abc"]}})
    result = run_cli(home, "gateway", "start", "--host", "0.0.0.0", "--port", str(free_port()))
    assert result.returncode == 2 and "at least 32 characters" in result.stderr


def test_off_loopback_the_start_message_says_where_it_really_listens(home: Path) -> None:
    port = free_port()
    write_config(home, {"auth": {"tokens": ["x" * 40]}})
    started = run_cli(home, "gateway", "start", "--host", "0.0.0.0", "--port", str(port))
    try:
        assert started.returncode == 0, started.stderr
        assert f"Moltbot listens on 0.0.0.0:{port}: every address of this machine" in (
            started.stdout)
    finally:
        assert run_cli(home, "gateway", "stop", "--port", str(port)).returncode == 0
