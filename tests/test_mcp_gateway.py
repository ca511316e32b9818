"""MCP tool servers in the real gateway, against a real MCP server written with the same SDK
(tests/fakes/mcp_clock.py), over stdio and streamable HTTP: the model and a skill call its
tools, each call is traced, servers are supervised (restarted, shown), hot reloaded, and a
server that cannot start or a tool that hangs fails with a clear reason."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, GatewayProcess, free_port, model_config, run_cli, write_config
from tests.fakes.fake_model import FakeModelServer
from tests.fakes.mcp_clock import FIXED_NOW
from tests.test_skills_gateway import skills_api, wait_until

CLOCK = str(ROOT / "tests" / "fakes" / "mcp_clock.py")

SKILL = '''\
import json
from moltbot_sdk import Skill, context

class Clock(Skill):
    @context.handle(intent="clock", command="/clock")
    def run(self, msg):
        name, _, args = msg["text"].strip().partition(" ")
        try:
            return "mcp: " + context.tool(name, **json.loads(args or "{}"))
        except Exception as e:
            return f"failed: {type(e).__name__}: {e}"
'''


def clock_server(pidfile: Path | None = None, *extra: str, **options: Any) -> dict[str, Any]:
    command = [sys.executable, CLOCK, *extra]
    if pidfile is not None:
        command += ["--pidfile", str(pidfile)]
    return {"command": command, **options}


def mcp_api(gw: GatewayProcess) -> dict[str, dict[str, Any]]:
    servers = httpx.get(f"{gw.url}/api/v1/mcp", headers=gw.headers, timeout=10).json()
    return {s["name"]: s for s in servers["servers"]}


def wait_state(gw: GatewayProcess, name: str, state: str, deadline_s: float = 20) -> dict:
    return wait_until(lambda: (s := mcp_api(gw).get(name)) and s["state"] == state and s,
                      deadline_s)


def spans(gw: GatewayProcess, msg_id: str) -> list[dict[str, Any]]:
    trace = httpx.get(f"{gw.url}/api/v1/messages/{msg_id}/trace", headers=gw.headers,
                      timeout=10).json()
    return list(trace["spans"])


def start_gateway(home: Path, fake_model: FakeModelServer,
                  servers: dict[str, Any]) -> GatewayProcess:
    (home / "skills").mkdir(parents=True)
    (home / "skills" / "clock.py").write_text(SKILL, encoding="utf-8")
    write_config(home, {**model_config(fake_model.url), "mcp_servers": servers})
    return GatewayProcess(home, free_port()).start()


@pytest.fixture
def clock_gateway(home: Path, fake_model: FakeModelServer,
                  tmp_path: Path) -> Iterator[GatewayProcess]:
    gw = start_gateway(home, fake_model, {
        "clock": clock_server(tmp_path / "clock.pid", offer_to_model=["now", "slow"],
                              timeout="1s")})
    yield gw
    gw.stop()


def test_the_model_and_a_skill_call_a_stdio_server(clock_gateway: GatewayProcess,
                                                  fake_model: FakeModelServer) -> None:
    gw = clock_gateway
    clock = wait_state(gw, "clock", "running")
    assert clock["tools"] == ["now", "echo", "slow", "boom"]
    assert clock["offered"] == ["clock__now", "clock__slow"] and clock["restarts"] == 0

    # the model is offered clock__now, calls it, and its answer uses what the tool said
    fake_model.tool_call_when(contains="what time", name="clock__now",
                              arguments={"zone": "Europe/Paris"})
    answered = gw.post("What time is it?").json()
    assert answered["reply"] == f"tool said: {FIXED_NOW} (Europe/Paris)"
    offered = {t["function"]["name"]: t["function"]
               for t in fake_model.requests[-1]["body"]["tools"]}
    assert set(offered) >= {"clock__now", "clock__slow"} and "clock__echo" not in offered
    assert offered["clock__now"]["description"] == "The current time, ISO 8601."
    assert offered["clock__now"]["parameters"]["properties"]["zone"]["type"] == "string"
    span = next(s for s in spans(gw, answered["id"]) if s["step"] == "tool:clock__now")
    assert span["outcome"] == "ok" and "Europe/Paris" in span["detail"]

    # a skill calls any tool of the server by <server>.<tool>, traced in the message
    echoed = gw.post('/clock clock.echo {"text": "hello mcp"}').json()
    assert echoed["reply"] == "mcp: hello mcp"
    span = next(s for s in spans(gw, echoed["id"]) if s["step"] == "tool:clock.echo")
    assert span["outcome"] == "ok" and "hello mcp" in span["detail"]
    assert gw.post("/clock clock.boom").json()["reply"] == \
        "failed: ToolError: clock.boom failed: Error executing tool boom: the clock broke"
    assert gw.post("/clock clock.nope").json()["reply"].startswith(
        "failed: ToolError: clock.nope: the MCP server clock has no tool 'nope'; its tools: ")
    assert gw.post("/clock nowhere.now").json()["reply"] == (
        "failed: ToolError: no tool 'nowhere.now': MCP tools are named <server>.<tool>; "
        "servers: clock")

    # a tool slower than the server's timeout: a clear error, and the server keeps serving
    slow = gw.post('/clock clock.slow {"seconds": 30}').json()
    assert slow["reply"] == "failed: ToolError: clock.slow: the tool did not answer within 1s"
    span = next(s for s in spans(gw, slow["id"]) if s["step"] == "tool:clock.slow")
    assert span["outcome"] == "error" and "did not answer within 1s" in span["detail"]
    fake_model.tool_call_when(contains="take your time", name="clock__slow",
                              arguments={"seconds": 30})
    waited = gw.post("Take your time").json()
    assert waited["reply"] == "tool said: error: clock.slow: the tool did not answer within 1s"
    assert gw.post("/clock clock.now").json()["reply"] == f"mcp: {FIXED_NOW} (UTC)"

    listed = run_cli(gw.home, "mcp", "list")
    assert listed.returncode == 0, listed.stderr
    assert "clock" in listed.stdout and "running" in listed.stdout
    assert "tools: now, echo, slow, boom" in listed.stdout
    assert "model: clock__now, clock__slow; restarts: 0" in listed.stdout


def test_supervised_restarted_and_hot_reloaded(clock_gateway: GatewayProcess,
                                              tmp_path: Path,
                                              fake_model: FakeModelServer) -> None:
    gw = clock_gateway
    first = wait_state(gw, "clock", "running")

    # killed mid-run: shown failed with the reason, started again, shown with its restart
    os.kill(int((tmp_path / "clock.pid").read_text()), signal.SIGKILL)
    back = wait_until(lambda: (s := mcp_api(gw)["clock"])["restarts"] == 1
                      and s["state"] == "running" and s)
    assert back["started"] != first["started"]
    assert "MCP server clock failed (it exited)" in gw.log()
    assert gw.post("/clock clock.now").json()["reply"] == f"mcp: {FIXED_NOW} (UTC)"

    # a config edit adds a server (one that exits at once) and changes nothing else
    config = {**model_config(fake_model.url), "mcp_servers": {
        "clock": clock_server(tmp_path / "clock.pid", offer_to_model=["now", "slow"],
                              timeout="1s"),
        "broken": clock_server(None, "--fail", "no licence key for the clock")}}
    write_config(gw.home, config)
    broken = wait_state(gw, "broken", "failed")
    assert broken["reason"] == "no licence key for the clock"
    assert mcp_api(gw)["clock"]["started"] == back["started"]  # untouched
    listed = run_cli(gw.home, "mcp", "list").stdout
    assert "broken         stdio failed (no licence key for the clock)" in listed or \
        "broken         stdio starting (last failure: no licence key for the clock)" in listed

    # a bad entry is refused naming the key; the last good config keeps running
    write_config(gw.home, {**config, "mcp_servers": {**config["mcp_servers"],
                                                      "bad": {"url": "ftp://x"}}})
    problem = wait_until(lambda: skills_api(gw)["config_error"])
    assert "mcp_servers.bad" in problem and "url must be http:// or https://" in problem
    assert set(mcp_api(gw)) == {"clock", "broken"}

    # removing a server stops it; changing one restarts exactly that one
    write_config(gw.home, {**model_config(fake_model.url), "mcp_servers": {
        "clock": clock_server(tmp_path / "clock.pid", offer_to_model=["now"], timeout="1s")}})
    wait_until(lambda: set(mcp_api(gw)) == {"clock"})
    assert mcp_api(gw)["clock"]["started"] == back["started"]  # offer_to_model alone: no restart
    assert mcp_api(gw)["clock"]["offered"] == ["clock__now"]
    write_config(gw.home, {**model_config(fake_model.url), "mcp_servers": {
        "clock": clock_server(tmp_path / "clock.pid", "--token", "changed")}})
    wait_until(lambda: (s := mcp_api(gw)["clock"])["started"] != back["started"]
               and s["state"] == "running")


@pytest.fixture
def http_clock(tmp_path: Path) -> Iterator[str]:
    """The clock over streamable HTTP on 127.0.0.1, wanting a bearer token."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, CLOCK, "--http", str(port), "--token",
                             "s3cret-clock-token", "--pidfile", str(tmp_path / "http.pid")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/mcp"

    def up() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code == 401
        except httpx.HTTPError:
            return False

    try:
        wait_until(up)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_streamable_http_server_with_a_secret_header(
        home: Path, fake_model: FakeModelServer, http_clock: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCP_CLOCK_TOKEN", "s3cret-clock-token")
    gw = start_gateway(home, fake_model, {
        "web": {"url": http_clock, "headers": {"Authorization": "Bearer ${MCP_CLOCK_TOKEN}"},
                "offer_to_model": ["now"]},
        "nokey": {"url": http_clock}})
    try:
        web = wait_state(gw, "web", "running")
        assert web["transport"] == "http" and web["target"] == http_clock
        nokey = wait_state(gw, "nokey", "failed")
        assert nokey["reason"]
        fake_model.tool_call_when(contains="time please", name="web__now", arguments={})
        answered = gw.post("Time please").json()
        assert answered["reply"] == f"tool said: {FIXED_NOW} (UTC)"
        assert "nokey__now" not in {t["function"]["name"]
                                    for t in fake_model.requests[-1]["body"]["tools"]}
        assert gw.post('/clock web.echo {"text": "over http"}').json()["reply"] == \
            "mcp: over http"
        shown = json.dumps(mcp_api(gw)) + json.dumps(spans(gw, answered["id"]))
        shown += run_cli(gw.home, "mcp", "list").stdout
    finally:
        gw.stop()
    assert "s3cret-clock-token" not in shown + gw.log() + gw.output()
