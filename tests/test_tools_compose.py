"""The compose tool up to the engine's command line, with a stand-in `docker` that records what
it was asked (tests/fakes/fake_compose.py): only declared stacks, the argv and folder each
action runs with, engine failures, `call` through the http tool's checks to the published
port, idle stacks taken down, the engine found and named."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.tools.base import ToolError, ToolRefused
from gateway.tools.compose import Engine, Stacks, doctor_check, find_engine, published
from gateway.tools.options import ToolsConfig
from tests.fakes import fake_compose
from tests.fakes.json_service import JsonHandler, serve


class Service(JsonHandler):
    """What a stack's service answers: its path and body back, or a redirect off the stack."""

    def do_GET(self) -> None:
        if self.path == "/away":
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{self.server.server_port}/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.reply({"path": self.path})

    def do_POST(self) -> None:
        self.reply({"path": self.path, "got": self.body()})


@pytest.fixture
def service() -> Iterator[int]:
    server = serve(Service)
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ai-gateway"
    (root / "tools" / "web").mkdir(parents=True)
    return root


def stack_file(workspace: Path, port: int, extra: str = "") -> Path:
    path = workspace / "tools" / "web" / "compose.yaml"
    path.write_text(f"services:\n  web:\n    image: moltbot/web{extra}\n"
                    f"    ports: [\"127.0.0.1:{port}:8080\", \"9000:9000\"]\n", encoding="utf-8")
    return path


def stacks(workspace: Path, engine: Engine, **options: Any) -> Stacks:
    settings = {"idle": 600.0, "timeout": 30.0, "max_bytes": 65536, "http_timeout": 5.0,
                **options}
    return Stacks(workspace, {"web": "tools/web/compose.yaml"}, engine=engine, **settings)


@pytest.fixture
def fake(tmp_path: Path) -> tuple[Engine, Path]:
    log = fake_compose.install(tmp_path / "bin")
    return Engine((str(tmp_path / "bin" / "docker"), "compose"), "fake"), log


def test_each_action_runs_the_engine_with_the_declared_file(
        workspace: Path, fake: tuple[Engine, Path]) -> None:
    engine, log = fake
    path = stack_file(workspace, 8089)
    web = stacks(workspace, engine)
    assert web.act({"stack": "web", "action": "up"}).startswith("web is up\nContainer started")
    assert web.act({"stack": "web", "action": "ps"}) == "NAME  STATUS\nweb  Up"
    assert web.act({"stack": "web", "action": "logs", "tail": 50}) == "web  | listening on 8080"
    assert web.act({"stack": "web", "action": "down"}).startswith("web is down")
    prefix = [*engine.argv, "-p", "moltbot-web", "-f", str(path.resolve())]
    assert [c["argv"] for c in fake_compose.calls(log)] == [
        [*prefix, "up", "-d"], [*prefix, "ps"], [*prefix, "logs", "--tail", "50"],
        [*prefix, "down"]]
    assert {c["cwd"] for c in fake_compose.calls(log)} == {str(path.parent.resolve())}


def test_only_declared_stacks_and_clear_errors(workspace: Path,
                                               fake: tuple[Engine, Path]) -> None:
    engine, log = fake
    web = stacks(workspace, engine)
    with pytest.raises(ToolError, match=r"stack 'web': tools/web/compose\.yaml does not exist"):
        web.act({"stack": "web", "action": "up"})
    with pytest.raises(ToolRefused, match=r"refused stack 'ocr': it is not declared in "
                                          r"tools\.compose in config\.yaml \(declared: web\)"):
        web.act({"stack": "ocr", "action": "up"})
    stack_file(workspace, 8089, extra="-broken")
    with pytest.raises(ToolError, match=r"web up failed \(exit code 1\): Error: image "
                                        r"moltbot/broken: not found"):
        web.act({"stack": "web", "action": "up"})
    assert web.used == {}  # a failed start is not a stack to take down later
    for wrong, why in (({"stack": "web", "action": "rm"}, "action must be one of"),
                       ({"stack": "web", "action": "logs", "tail": 0}, "tail must be"),
                       ({"stack": "web", "action": "call", "service": "web"}, "needs port")):
        with pytest.raises(ToolError, match=why):
            web.act(wrong)
    assert [c["argv"][-2:] for c in fake_compose.calls(log)] == [["up", "-d"]]
    without = Stacks(workspace, {"web": "tools/web/compose.yaml"}, idle=1, timeout=1,
                     max_bytes=1024, http_timeout=1, engine="no compose engine found (...)")
    with pytest.raises(ToolError, match=r"no compose engine found .* install Docker"):
        without.act({"stack": "web", "action": "ps"})


def test_call_reaches_the_published_port_through_the_http_tool(
        workspace: Path, fake: tuple[Engine, Path], service: int) -> None:
    engine, _ = fake
    stack_file(workspace, service)
    web = stacks(workspace, engine)
    got = web.act({"stack": "web", "action": "call", "service": "web", "port": 8080,
                   "path": "/convert", "method": "POST", "json": {"file": "a.docx"}})
    assert got.startswith("HTTP 200")
    assert json.loads(got.split("\n\n", 1)[1]) == {"path": "/convert",
                                                    "got": {"file": "a.docx"}}
    # the http tool's checks: a redirect off the stack's own address is refused
    with pytest.raises(ToolRefused, match=r"redirect from .*host 'localhost' is not in "
                                          r"tools\.allowed_hosts \(127\.0\.0\.1\)"):
        web.act({"stack": "web", "action": "call", "service": "web", "port": 8080,
                 "path": "/away"})
    with pytest.raises(ToolError, match=r"web does not publish port 80 in compose\.yaml"):
        web.act({"stack": "web", "action": "call", "service": "web", "port": 80})
    with pytest.raises(ToolError, match=r"has no service 'db' \(services: web\)"):
        web.act({"stack": "web", "action": "call", "service": "db", "port": 8080})
    assert published(workspace / "tools/web/compose.yaml", "web", 9000) == ("127.0.0.1", 9000)


def test_idle_stacks_are_taken_down_and_the_rest_at_stop(
        workspace: Path, fake: tuple[Engine, Path]) -> None:
    engine, log = fake
    stack_file(workspace, 8089)
    web = stacks(workspace, engine, idle=600.0)
    web.act({"stack": "web", "action": "up"})
    assert web.take_down_idle() == []  # used just now
    web.used["web"] -= 601  # ten minutes and a second ago
    assert web.take_down_idle() == ["web"]
    assert [c["argv"][-1] for c in fake_compose.calls(log)] == ["-d", "down"]
    web.act({"stack": "web", "action": "up"})
    web.stop()
    assert [c["argv"][-1] for c in fake_compose.calls(log)] == ["-d", "down", "-d", "down"]
    assert web.used == {}
    # a reload keeps a running stack while its declaration stays, takes it down when it goes
    web.act({"stack": "web", "action": "up"})
    settings: dict[str, Any] = {"idle": 60.0, "timeout": 30.0, "max_bytes": 65536,
                                "http_timeout": 5.0}
    web.reconfigure({"web": "tools/web/compose.yaml"}, **settings)
    assert list(web.used) == ["web"] and web.idle == 60
    web.reconfigure({}, **settings)
    assert web.used == {} and fake_compose.calls(log)[-1]["argv"][-1] == "down"


def test_config_declares_stacks_inside_the_workspace() -> None:
    ok = ToolsConfig.model_validate({"compose": {"ocr": "tools/ocr/compose.yaml"},
                                     "compose_idle": "5m"})
    assert ok.compose == {"ocr": "tools/ocr/compose.yaml"} and ok.compose_idle == 300
    for stacks_given, why in (
            ({"ocr": "/etc/compose.yaml"}, "give the compose file's path inside the workspace"),
            ({"ocr": "../compose.yaml"}, "give the compose file's path inside the workspace"),
            ({"ocr": "files/compose.yaml"}, "outside files/, data/, knowledge/ and memory/"),
            ({"ocr": "tools/ocr/Dockerfile"}, r"a compose file \(\.yaml\)"),
            ({"o cr": "tools/compose.yaml"}, "a stack's name is letters")):
        with pytest.raises(ValidationError, match=why):
            ToolsConfig.model_validate({"compose": stacks_given})
    with pytest.raises(ValidationError, match="offer_to_model"):
        ToolsConfig.model_validate({"offer_to_model": ["compose"]})


def test_the_engine_is_found_and_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_compose.install(tmp_path / "bin")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    find_engine.cache_clear()
    try:
        engine = find_engine()
        assert isinstance(engine, Engine)
        assert engine.argv == (str(tmp_path / "bin" / "docker"), "compose")
        assert doctor_check({}) == (True, f"compose: {engine.name} (Docker Compose version "
                                          "v2.99.0-fake) runs tools.compose stacks", "")
        monkeypatch.setenv("PATH", str(tmp_path / "empty"))
        find_engine.cache_clear()
        assert find_engine() == (
            "no compose engine found (docker compose: not installed; podman compose: not "
            "installed; docker-compose: not installed; podman-compose: not installed)")
        ok, line, fix = doctor_check({"ocr": "tools/ocr/compose.yaml"})
        assert not ok and line.endswith("but tools.compose declares ocr")
        assert fix == "install Docker with its compose plugin, or podman with podman-compose"
        assert doctor_check({})[0]
    finally:
        find_engine.cache_clear()
