"""access.log and error.log are JSON lines with ECS field names (Filebeat takes them as they
are): every message in and out, every HTTP request, every error with its stack trace."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import GatewayProcess


def lines(path: Path, deadline_s: float = 10) -> list[dict[str, Any]]:
    ends = time.monotonic() + deadline_s
    while time.monotonic() < ends:
        if path.exists() and path.read_text(encoding="utf-8").strip():
            break
        time.sleep(0.05)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_every_message_and_request_is_an_ecs_json_line(gateway: GatewayProcess) -> None:
    answered = gateway.post("log me").json()
    refused = gateway.post("no entry", headers={"Authorization": "Bearer wrong"}).json()
    access = gateway.home / "data" / "logs" / "access.log"
    ends = time.monotonic() + 10
    while time.monotonic() < ends:  # both messages written
        messages = [e for e in lines(access) if e.get("event.action") == "message"]
        if len(messages) >= 2:
            break
        time.sleep(0.05)
    by_id = {e["moltbot.msg_id"]: e for e in messages}
    ok = by_id[answered["id"]]
    assert (ok["event.outcome"], ok["moltbot.route"], ok["moltbot.channel"]) == (
        "success", "chat", "http")
    assert ok["source.address"] == "127.0.0.1" and ok["event.duration"] > 0
    assert "@timestamp" in ok and ok["log.level"] == "info"
    bad = by_id[refused["id"]]
    assert (bad["event.outcome"], bad["moltbot.error"], bad["moltbot.route"]) == (
        "failure", "unauthorized", "guard")
    # one line per message: the request that carried it writes none of its own; a request
    # that is not a message has its request line (and, asked after, is written after)
    httpx.get(f"{gateway.url}/healthz", timeout=5)
    ends = time.monotonic() + 10
    while not any("GET /healthz" in e["message"] for e in lines(access)):
        assert time.monotonic() < ends, "no request line for GET /healthz"
        time.sleep(0.05)
    assert not any("POST /api/v1/messages" in e["message"] for e in lines(access))
    assert "log me" not in access.read_text(encoding="utf-8")  # texts stay in the store
