"""The audit log: JSON lines with ECS names for config changes, tokens, pairing decisions,
logins and lockouts; secrets never in it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.conftest import GatewayProcess, free_port, model_config, run_cli, write_config
from tests.fakes.fake_model import FakeModelServer

SECRET_TOKEN = "an-audited-static-token-never-shown-123456"


def events(home: Path) -> list[dict[str, Any]]:
    path = home / "data" / "logs" / "audit.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def wait_for(home: Path, action: str, deadline_s: float = 15) -> dict[str, Any]:
    ends = time.monotonic() + deadline_s
    while time.monotonic() < ends:
        found = [e for e in events(home) if e["event.action"] == action]
        if found:
            return found[-1]
        time.sleep(0.1)
    raise AssertionError(f"no {action} in {[e['event.action'] for e in events(home)]}")


def test_who_changed_what_from_where(home: Path, fake_model: FakeModelServer) -> None:
    write_config(home, model_config(fake_model.url))
    gw = GatewayProcess(home, free_port()).start()
    try:
        made = json.loads(run_cli(home, "token", "create", "--name", "phone",
                                  "--json").stdout)
        created = wait_for(home, "token.created")
        assert created["user.name"].startswith("cli:") and created["moltbot"]["name"] == "phone"
        run_cli(home, "token", "revoke", "phone")
        assert wait_for(home, "token.revoked")["moltbot"]["match"] == "phone"
        run_cli(home, "pairing", "approve", "enterprise_im:alice")
        assert wait_for(home, "pairing.approved")["moltbot"]["sender"] == "enterprise_im:alice"

        httpx.post(f"{gw.url}/api/v1/login", json={"token": "nope"})
        refused = wait_for(home, "console.login_refused")
        assert refused["source.address"] == "127.0.0.1"
        httpx.post(f"{gw.url}/api/v1/login", json={"token": gw.token})
        assert wait_for(home, "console.login")["user.name"].startswith("token:")

        config = yaml.safe_load((home / "config.yaml").read_text(encoding="utf-8"))
        config["gateway"] = {"session_timeout": "2h"}
        config["auth"] = {"tokens": [SECRET_TOKEN]}
        (home / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        applied = wait_for(home, "config.applied")
        assert applied["moltbot"]["changes"]["gateway.session_timeout"] == [1800.0, 7200.0]
        assert applied["moltbot"]["changes"]["auth.tokens"] == ["***", "***"]
        assert all("@timestamp" in e for e in events(home))
        audit_text = (home / "data" / "logs" / "audit.log").read_text(encoding="utf-8")
        assert SECRET_TOKEN not in audit_text and made["token"] not in audit_text
    finally:
        gw.stop()
