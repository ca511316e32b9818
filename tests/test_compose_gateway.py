"""The compose tool through the real gateway, up to the engine's command line: the example
`/convert` skill (skills/office_convert.py) starts the example converter stack, calls it and
reads what it wrote; the stack is taken down when idle; an undeclared stack is refused; and
`moltbot doctor` names the engine. The engine is the stand-in `docker` of
tests/fakes/fake_compose.py (it records command lines) and the converter service a local
stand-in on the port the stack publishes; tests/test_compose_engine.py runs a real engine."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    GatewayProcess,
    assert_only_gateway_left,
    free_port,
    model_config,
    run_cli,
    write_config,
)
from tests.fakes import fake_compose
from tests.fakes.fake_model import FakeModelServer
from tests.fakes.json_service import JsonHandler, serve
from tests.test_skills_gateway import wait_until

STACK_SKILL = '''\
import json
from moltbot_sdk import Skill, context

class Stack(Skill):
    @context.handle(intent="stack", command="/stack")
    def run(self, msg):
        try:
            return context.tool("compose", **json.loads(msg["text"]))
        except Exception as e:
            return f"failed: {type(e).__name__}: {e}"
'''


def converter(files: Path) -> ThreadingHTTPServer:
    """The converter service as the stack would run it: /health, and /convert writing the
    text of the document into files/converted/."""

    class Handler(JsonHandler):
        def do_GET(self) -> None:
            self.reply({"ok": True})

        def do_POST(self) -> None:
            out = files / "converted" / (Path(self.body()["file"]).stem + ".txt")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("Quarterly report, first paragraph.\n\nSecond paragraph here.\n",
                           encoding="utf-8")
            self.reply({"output": f"converted/{out.name}"})

    return serve(Handler)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory,
          model: FakeModelServer) -> Iterator[tuple[GatewayProcess, Path, str]]:
    base = tmp_path_factory.mktemp("compose-gw")
    home = base / "ai-gateway"
    log = fake_compose.install(base / "bin")
    write_config(home, {**model_config(model.url), "tools": {
        "compose": {"converter": "skills/stacks/converter/compose.yaml"},
        "compose_idle": "2s"}})
    service = converter(home / "files")
    path = f"{base / 'bin'}{os.pathsep}{os.environ['PATH']}"
    saved = os.environ["PATH"]
    os.environ["PATH"] = path  # the gateway's, as a shell would give it
    try:
        gateway = GatewayProcess(home, free_port()).start()
    finally:
        os.environ["PATH"] = saved
    # the example stack, as copied into the new workspace, on a port free here
    stack = home / "skills" / "stacks" / "converter" / "compose.yaml"
    stack.write_text(stack.read_text(encoding="utf-8").replace(
        "127.0.0.1:8089:8080", f"127.0.0.1:{service.server_address[1]}:8080"), encoding="utf-8")
    (home / "skills" / "stack.py").write_text(STACK_SKILL, encoding="utf-8")
    wait_until(lambda: "stack" in httpx.get(f"{gateway.url}/api/v1/skills",
                                            headers=gateway.headers, timeout=10).text)
    yield gateway, log, path
    gateway.stop()
    service.shutdown()
    service.server_close()


@pytest.fixture(autouse=True)
def no_leftover_processes(setup: tuple[GatewayProcess, Path, str]) -> Iterator[None]:
    yield
    assert_only_gateway_left(setup[0])


def test_the_example_skill_starts_calls_and_the_idle_stack_stops(
        setup: tuple[GatewayProcess, Path, str]) -> None:
    gw, log, _ = setup
    (gw.home / "files" / "inbox").mkdir(parents=True, exist_ok=True)
    (gw.home / "files" / "inbox" / "report.docx").write_bytes(b"PK\x03\x04 not really")
    answered = gw.post("/convert inbox/report.docx").json()
    assert answered["reply"] == (
        "report.docx: 2 paragraphs, 7 words (text in files/converted/report.txt)\n"
        "Quarterly report, first paragraph.")
    stack = gw.home / "skills" / "stacks" / "converter" / "compose.yaml"
    first = fake_compose.calls(log)[0]
    assert first["argv"][1:] == ["compose", "-p", "moltbot-converter", "-f", str(stack),
                                 "up", "-d"]
    assert first["cwd"] == str(stack.parent)
    trace = httpx.get(f"{gw.url}/api/v1/messages/{answered['id']}/trace", headers=gw.headers,
                      timeout=10).json()
    composed = [s for s in trace["spans"] if s["step"] == "tool:compose"]
    assert [s["outcome"] for s in composed] == ["ok", "ok", "ok"]  # up, health, convert
    # nobody uses it for tools.compose_idle (2 s): the gateway takes it down
    wait_until(lambda: [c["argv"][-1] for c in fake_compose.calls(log)] == ["-d", "down"],
               20)


def test_a_skill_reaches_only_declared_stacks(setup: tuple[GatewayProcess, Path, str]) -> None:
    gw, _, _ = setup
    said = gw.post('/stack {"stack": "ocr", "action": "up"}').json()["reply"]
    assert said == ("failed: ToolRefused: compose: refused stack 'ocr': it is not declared in "
                    "tools.compose in config.yaml (declared: converter); add `ocr: "
                    "path/to/compose.yaml` there to allow it")
    said = gw.post('/stack {"stack": "converter", "action": "ps"}').json()["reply"]
    assert said == "NAME  STATUS\nweb  Up"


def test_doctor_names_the_engine(setup: tuple[GatewayProcess, Path, str]) -> None:
    gw, _, path = setup
    out = run_cli(gw.home, "doctor", env={"PATH": path}).stdout
    assert re.search(r"compose: \S+/bin/docker compose \(Docker Compose version "
                     r"v2\.99\.0-fake\) runs tools\.compose stacks", out), out
