"""MCP tool servers in the real gateway, against a real MCP server written with the same SDK
(tests/fakes/mcp_clock.py), over stdio and streamable HTTP: the model and a skill call its
tools, each call is traced, servers are supervised (restarted, shown), hot reloaded, and a
server that cannot start or a tool that hangs fails with a clear reason."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import (
    ROOT,
    GatewayProcess,
    assert_dead,
    assert_only_gateway_left,
    free_port,
    model_config,
    run_cli,
    write_config,
)
from tests.fakes.fake_model import FakeModelServer
from tests.fakes.mcp_clock import FIXED_NOW
from tests.test_chat_page_browser import (  # noqa: F401  (the shared Chromium fixture)
    browser,
    console_page,
)
from tests.test_skills_gateway import skills_api, wait_until

CLOCK = str(ROOT / "tests" / "fakes" / "mcp_clock.py")
TOKEN = "s3cret-clock-token"
OUTPUT = Path(__file__).parent / "output"

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


def servers(workdir: Path, http_url: str) -> dict[str, Any]:
    """The stdio clock (offered to the model, a 1 s timeout), the HTTP clock with its token
    from the environment, and the HTTP clock without it."""
    return {"clock": clock_server(workdir / "clock.pid", offer_to_model=["now", "slow"],
                                  timeout="1s", env={"CLOCK_NOTE": "from config.yaml"}),
            "web": {"url": http_url, "offer_to_model": ["now"],
                    "headers": {"Authorization": "Bearer ${MCP_CLOCK_TOKEN}"}},
            "nokey": {"url": http_url, "offer_to_model": ["now"]}}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcp")


@pytest.fixture(scope="module")
def http_clock(workdir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The clock over streamable HTTP on 127.0.0.1, wanting a bearer token."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, CLOCK, "--http", str(port), "--token", TOKEN],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/mcp"

    def up() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code == 401
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, 30)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def gw(workdir: Path, model: FakeModelServer,
       http_clock: tuple[str, subprocess.Popen[bytes]]) -> Iterator[GatewayProcess]:
    """One gateway for the module (its start is most of a test's time on a loaded machine)."""
    home = workdir / "ai-gateway"
    (home / "skills").mkdir(parents=True)
    (home / "skills" / "clock.py").write_text(SKILL, encoding="utf-8")
    write_config(home, {**model_config(model.url), "mcp_servers": servers(workdir,
                                                                          http_clock[0])})
    os.environ["MCP_CLOCK_TOKEN"] = TOKEN  # the gateway's and the CLI's, as in a shell
    try:
        gateway = GatewayProcess(home, free_port()).start()
        yield gateway
        gateway.stop()
    finally:
        del os.environ["MCP_CLOCK_TOKEN"]


@pytest.fixture(autouse=True)
def no_leftover_processes(gw: GatewayProcess,
                          http_clock: tuple[str, subprocess.Popen[bytes]]) -> Iterator[None]:
    """The suite's check, minus what this module shares: the gateway with its children (the
    MCP host, the servers, skill hosts) and the HTTP clock. What a test starts must end."""
    yield
    assert_only_gateway_left(gw, http_clock[1].pid)


def test_the_model_and_a_skill_call_a_stdio_server(gw: GatewayProcess,
                                                  model: FakeModelServer) -> None:
    fake_model = model
    clock = wait_state(gw, "clock", "running")
    assert clock["tools"] == ["now", "echo", "slow", "getenv", "grow", "boom"]
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
    # a stdio server gets its own env, never the rest of the gateway's environment
    assert gw.post('/clock clock.getenv {"name": "CLOCK_NOTE"}').json()["reply"] == \
        "mcp: from config.yaml"
    assert gw.post('/clock clock.getenv {"name": "MCP_CLOCK_TOKEN"}').json()["reply"] == \
        "mcp: (unset)"
    assert gw.post("/clock clock.boom").json()["reply"] == \
        "failed: ToolError: clock.boom failed: Error executing tool boom: the clock broke"
    assert gw.post("/clock clock.nope").json()["reply"].startswith(
        "failed: ToolError: clock.nope: the MCP server clock has no tool 'nope'; its tools: ")
    assert gw.post("/clock nowhere.now").json()["reply"] == (
        "failed: ToolError: no tool 'nowhere.now': MCP tools are named <server>.<tool>; "
        "servers: clock, nokey, web")

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

    # the server adds a tool and says so: the gateway lists it
    assert gw.post("/clock clock.grow").json()["reply"] == "mcp: grown"
    wait_until(lambda: "later" in mcp_api(gw)["clock"]["tools"])
    assert gw.post("/clock clock.later").json()["reply"] == "mcp: here now"

    listed = run_cli(gw.home, "mcp", "list")
    assert listed.returncode == 0, listed.stderr
    assert "clock" in listed.stdout and "running" in listed.stdout
    assert "tools: now, echo, slow, getenv, grow, boom, later" in listed.stdout
    assert "model: clock__now, clock__slow; restarts: 0" in listed.stdout


def test_a_streamable_http_server_with_a_secret_header(gw: GatewayProcess,
                                                       model: FakeModelServer,
                                                       http_clock: tuple[str, Any]) -> None:
    web = wait_state(gw, "web", "running")
    assert web["transport"] == "http" and web["target"] == http_clock[0]
    assert wait_state(gw, "nokey", "failed")["reason"]
    model.tool_call_when(contains="time please", name="web__now", arguments={})
    answered = gw.post("Time please").json()
    assert answered["reply"] == f"tool said: {FIXED_NOW} (UTC)"
    offered = {t["function"]["name"] for t in model.requests[-1]["body"]["tools"]}
    assert "web__now" in offered and "nokey__now" not in offered  # down: not offered
    assert gw.post('/clock web.echo {"text": "over http"}').json()["reply"] == \
        "mcp: over http"
    down = gw.post("/clock nokey.now").json()["reply"]
    assert down.startswith("failed: ToolError: nokey.now: the MCP server nokey is ")
    assert "Server returned an error response (HTTP 401)" in down
    shown = json.dumps(mcp_api(gw)) + json.dumps(spans(gw, answered["id"]))
    shown += run_cli(gw.home, "mcp", "list").stdout + gw.log() + gw.output()
    assert TOKEN not in shown


def test_the_console_shows_each_server(browser: object, gw: GatewayProcess) -> None:  # noqa: F811
    from playwright.sync_api import expect

    wait_state(gw, "nokey", "failed")
    with console_page(browser, gw, "skills") as page:
        clock = page.locator("#sk-mcp tr[data-server=clock]")
        expect(clock.locator(".badge")).to_have_text("running")
        expect(clock).to_contain_text("now, echo, slow, getenv, grow, boom")
        expect(clock).to_contain_text("clock__now, clock__slow")
        nokey = page.locator("#sk-mcp tr[data-server=nokey]")
        # failed, or already trying again after its backoff: the reason stays shown
        expect(nokey.locator(".badge")).to_have_text(re.compile("failed|starting"))
        expect(nokey.locator(".reason")).to_contain_text("(HTTP 401)")
        OUTPUT.mkdir(exist_ok=True)
        page.locator("#sk-mcp").screenshot(path=str(OUTPUT / "console-mcp-servers.png"))


def test_supervised_restarted_and_hot_reloaded(gw: GatewayProcess, workdir: Path,
                                              model: FakeModelServer,
                                              http_clock: tuple[str, Any]) -> None:
    fake_model, tmp_path = model, workdir
    base = servers(workdir, http_clock[0])
    first = wait_state(gw, "clock", "running")

    # killed mid-run: shown failed with the reason, started again, shown with its restart
    os.kill(int((tmp_path / "clock.pid").read_text()), signal.SIGKILL)
    back = wait_until(lambda: (s := mcp_api(gw)["clock"])["restarts"] == 1
                      and s["state"] == "running" and s)
    assert back["started"] != first["started"]
    assert "MCP server clock failed (it exited)" in gw.log()
    assert gw.post("/clock clock.now").json()["reply"] == f"mcp: {FIXED_NOW} (UTC)"

    # a config edit adds a server (one that exits at once) and changes nothing else
    web = mcp_api(gw)["web"]
    config = {**model_config(fake_model.url), "mcp_servers": {
        **base, "broken": clock_server(None, "--fail", "no licence key for the clock")}}
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
    assert set(mcp_api(gw)) == {"clock", "web", "nokey", "broken"}

    # removing servers stops them; offer_to_model alone applies without a restart
    write_config(gw.home, {**model_config(fake_model.url), "mcp_servers": {
        "clock": {**base["clock"], "offer_to_model": ["now"]}, "web": base["web"]}})
    wait_until(lambda: set(mcp_api(gw)) == {"clock", "web"})
    now = mcp_api(gw)
    assert now["clock"]["started"] == back["started"] and now["clock"]["offered"] == [
        "clock__now"]
    assert now["web"]["started"] == web["started"]

    # a changed command restarts exactly that server
    write_config(gw.home, {**model_config(fake_model.url), "mcp_servers": {
        "clock": clock_server(tmp_path / "clock.pid", "--token", "changed"), "web": base["web"]}})
    wait_until(lambda: (s := mcp_api(gw)["clock"])["started"] != back["started"]
               and s["state"] == "running")
    assert mcp_api(gw)["web"]["started"] == web["started"]


def readme_blocks() -> tuple[dict[str, Any], str]:
    """The README's "Tool servers (MCP)" config snippet and example server, as written."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    part = text[text.index("### Tool servers (MCP)"):]
    snippet = part[part.index("```yaml\n") + 8:]
    server = part[part.index("```python\n") + 10:]
    return yaml.safe_load(snippet[:snippet.index("```")]), server[:server.index("```")]


def test_the_readme_example_runs_as_written(gw: GatewayProcess, model: FakeModelServer) -> None:
    config, server = readme_blocks()
    (gw.home / "tools").mkdir()
    (gw.home / "tools" / "clock_server.py").write_text(server, encoding="utf-8")
    write_config(gw.home, {**model_config(model.url), **config})
    wait_until(lambda: set(mcp_api(gw)) == {"clock"} and mcp_api(gw)["clock"]["target"] ==
               "python3 tools/clock_server.py" and mcp_api(gw)["clock"]["state"] == "running")
    assert mcp_api(gw)["clock"]["offered"] == ["clock__now"]
    reply = gw.post('/clock clock.now {"zone": "Asia/Shanghai"}').json()["reply"]
    assert reply.startswith("mcp: 20") and reply.endswith("+08:00")


def test_a_killed_gateway_leaves_no_mcp_process(gw: GatewayProcess, workdir: Path,
                                                model: FakeModelServer,
                                                http_clock: tuple[str, Any]) -> None:
    """Last in the module: the host ends when its pipe closes, and takes its servers along."""
    (workdir / "clock.pid").unlink()
    write_config(gw.home, {**model_config(model.url), "mcp_servers": servers(
        workdir, http_clock[0])})
    wait_until(lambda: (workdir / "clock.pid").exists() and mcp_api(gw)["clock"]["state"] ==
               "running")
    host = wait_state(gw, "web", "running")["host_pid"]
    server = int((workdir / "clock.pid").read_text())
    assert gw.proc is not None
    gw.proc.kill()
    gw.proc.wait()
    assert_dead(host, 15)
    assert_dead(server, 15)
