"""A planted secret is searched for in every output a sender or a log reader sees: replies,
traces, logs, the skills API. Tool calls keep their shape in the trace, never their keys."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from gateway.observe.redact import redact_arguments
from tests.conftest import GatewayProcess, free_port, model_config, run_cli, write_config
from tests.fakes.fake_model import FakeModelServer

PLANTED = "planted-secret-7f3a9c"


def test_tool_arguments_lose_query_values_headers_and_userinfo() -> None:
    shown = redact_arguments({"method": "GET",
                              "url": f"https://me:{PLANTED}@api.example.com/v1?key={PLANTED}",
                              "headers": {"Authorization": f"Bearer {PLANTED}"}})
    assert PLANTED not in shown
    assert "api.example.com/v1?key=***" in shown and '"Authorization": "***"' in shown


def test_a_planted_secret_appears_in_no_output(home: Path, fake_model: FakeModelServer) -> None:
    config = {**model_config(f"http://owner:{PLANTED}@127.0.0.1:{fake_model.port}"),
              "tools": {"offer_to_model": ["http"], "allowed_hosts": ["127.0.0.1"]}}
    write_config(home, config)
    fake_model.tool_call_when(contains="fetch", name="http", arguments={
        "method": "GET", "url": f"{fake_model.url}/api/tags?token={PLANTED}",
        "headers": {"X-Api-Key": PLANTED}})
    gw = GatewayProcess(home, free_port()).start()
    try:
        reply = gw.post("fetch the model list")
        failing = gw.post(f"/nope {PLANTED}")  # the sender's own text is theirs; see below
        trace = run_cli(home, "trace", reply.json()["id"], "--json").stdout
        skills = httpx.get(f"{gw.url}/api/v1/skills", headers=gw.headers).text
        assert any(s["step"] == "tool:http" for s in json.loads(trace)["spans"])
        for name, text in (("reply", reply.text), ("trace", trace), ("skills api", skills)):
            assert PLANTED not in text, name
        assert failing.status_code == 200
    finally:
        gw.stop()
    for log in (home / "data" / "logs").glob("*.log"):
        assert PLANTED not in log.read_text(encoding="utf-8"), log.name
