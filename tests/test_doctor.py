"""`moltbot doctor`'s checks against real processes and the fake model server: each state it
can find is named, and each failure gets the fix that matches it."""

from __future__ import annotations

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib import metadata
from pathlib import Path

import gevent
import pydantic
import pytest

from gateway import DISTRIBUTION, __version__
from gateway.common.workspace import Workspace
from gateway.config import Config, parse_config
from gateway.models.options import ModelConfig
from gateway.ops.doctor import check_libraries, check_model, check_port, run_checks
from gateway.ops.known_bad import KNOWN_BAD
from tests.conftest import GatewayProcess, free_port, model_config, run_cli, write_config
from tests.fakes.fake_model import FakeModelServer
from tests.locks import watchdog_matrix

pytestmark = pytest.mark.usefixtures("default_port_held")  # the suite never needs 18789


def on_port(port: int) -> Config:
    return parse_config({"gateway": {"port": port}}, "config.yaml")


def test_a_gateway_of_another_workspace_is_named_with_its_workspace(
        tmp_path: Path, gateway: GatewayProcess) -> None:
    ok, what, fix = check_port(Workspace(tmp_path / "other"), on_port(gateway.port))
    assert not ok
    assert what == (f"port {gateway.port} on 127.0.0.1 is used by a Moltbot gateway of another "
                    f"workspace (pid {gateway.proc.pid}, version {__version__}, "
                    f"workspace {gateway.home})")
    assert fix.startswith(f"stop it (`MOLTBOT_HOME={gateway.home} moltbot gateway stop --port "
                          f"{gateway.port}`), or set gateway.port")


def test_a_free_port_says_where_this_workspace_gateway_runs(gateway: GatewayProcess) -> None:
    port = free_port()
    ok, what, _ = check_port(Workspace(gateway.home), on_port(port))
    assert ok
    assert what == (f"port {port} on 127.0.0.1 is free: this workspace's gateway runs on "
                    f"port {gateway.port} (pid {gateway.proc.pid}) instead")


def model(url: str, **extra: str) -> ModelConfig:
    return ModelConfig(endpoint=url, **extra)


def test_an_ollama_without_models_needs_a_pull(fake_model: FakeModelServer) -> None:
    fake_model.known_models = set()
    ok, what, fix = check_model("llama2", model(fake_model.url), fake_model.url)
    assert not ok and what.endswith("model 'llama2' is not pulled there (it lists no model)")
    assert fix == "`ollama pull llama2`"


def test_a_configured_model_name_is_what_is_checked(fake_model: FakeModelServer) -> None:
    fake_model.known_models = {"llama3.2:1b"}
    ok, what, _ = check_model("chat", model(fake_model.url, model="llama3.2:1b"), fake_model.url)
    assert ok and what.endswith("ollama, serves llama3.2:1b (1 models)")


def test_an_openai_server_gets_its_own_names_not_ollama_pull(
        fake_model: FakeModelServer) -> None:
    fake_model.known_models = {"qwen2.5-7b-instruct"}
    url = f"{fake_model.url}/v1"
    ok, what, fix = check_model("llama2", model(url), url)
    assert not ok and "model 'llama2' is not served there" in what
    assert fix == "set models.llama2.model to one it lists (qwen2.5-7b-instruct)"
    ok, what, _ = check_model("qwen", model(url, model="qwen2.5-7b-instruct"), url)
    assert ok and "openai-compatible, serves qwen2.5-7b-instruct" in what


def test_a_refused_key_points_at_api_key(fake_model: FakeModelServer) -> None:
    fake_model.api_key = "right"
    ok, what, fix = check_model("llama2", model(fake_model.url, api_key="wrong"), fake_model.url)
    assert not ok and "HTTP 401, the server refused the key" in what
    assert "set models.llama2.api_key" in fix and "moltbot secret set NAME" in fix


def test_a_failing_server_is_not_told_to_start(fake_model: FakeModelServer) -> None:
    fake_model.fail_status = 500
    ok, what, fix = check_model("llama2", model(fake_model.url), fake_model.url)
    assert not ok and what.endswith("HTTP 500 from " + fake_model.url + "/api/tags")
    assert "restart it" in fix and "ollama serve" not in fix


class _Healthy(BaseHTTPRequestHandler):
    """Another program with a /healthz of its own, as many have."""

    def do_GET(self) -> None:
        body = json.dumps({"status": "ok", "version": "9.9"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_another_program_with_a_healthz_is_not_taken_for_a_gateway(tmp_path: Path) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Healthy)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        port = server.server_address[1]
        ok, what, _ = check_port(Workspace(tmp_path), on_port(port))
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert not ok
    assert what.startswith(f"port {port} on 127.0.0.1 is used by another program "
                           f"(pid {os.getpid()}: ")


def test_doctor_never_prints_an_endpoint_password(tmp_path: Path) -> None:
    url = f"http://ada:hunter2-secret@127.0.0.1:{free_port()}"
    ws = Workspace(tmp_path)
    tmp_path.joinpath("config.yaml").write_text(
        f"models:\n  llama2:\n    endpoint: \"{url}\"\ngateway:\n  port: {free_port()}\n",
        encoding="utf-8")
    results = run_checks(ws)
    shown = "\n".join(f"{what} {fix}" for _, what, fix in results)
    assert "model llama2 at http://***@127.0.0.1:" in shown
    assert "hunter2-secret" not in shown


def test_doctor_lists_the_versions_the_gateway_runs_on() -> None:
    (ok, what, _), *problems = check_libraries()
    assert ok and not problems, problems
    assert what.startswith("libraries the gateway runs on: ")
    # The versions the modules themselves report, and one per runtime requirement of moltbot.
    assert f"gevent {gevent.__version__}," in what and f"pydantic {pydantic.VERSION}," in what
    runtime = [r for r in metadata.requires(DISTRIBUTION) or [] if "extra ==" not in r]
    assert len(what.split(": ", 1)[1].split(", ")) == len(runtime) >= 20
    assert f"watchdog {metadata.version('watchdog')}" in what


def test_a_known_bad_release_fails_with_its_fix() -> None:
    """watchdog 7.1.1 as test.sh installs it, alone in its folder, found before this venv's."""
    path = [str(watchdog_matrix()["7.1.1"]), *sys.path]
    (ok, what, _), *problems = check_libraries(path)
    assert ok and "watchdog 7.1.1" in what
    assert problems == [(False, f"watchdog 7.1.1 is a known-bad release: "
                                f"{KNOWN_BAD['watchdog']['7.1.1']}",
                         "pip install 'watchdog!=7.1.1' in Moltbot's environment, or reinstall "
                         "with the locked versions: ./installers/install.sh (or pip install "
                         "--require-hashes -r installers/lock/runtime.txt)")]
    (ok, what, _), *problems = check_libraries(path, known_bad={})
    assert ok and not problems


def test_moltbot_doctor_fails_on_a_known_bad_release(home: Path,
                                                    fake_model: FakeModelServer) -> None:
    write_config(home, {**model_config(fake_model.url), "gateway": {"port": free_port()}})
    fake_model.known_models = {"llama2"}
    good = run_cli(home, "doctor")
    assert good.returncode == 0, good.stdout
    assert f"ok    libraries the gateway runs on: bm25s {metadata.version('bm25s')}, " \
        in good.stdout
    bad = run_cli(home, "doctor", env={"PYTHONPATH": str(watchdog_matrix()["7.1.1"])})
    assert bad.returncode == 1
    assert "FAIL  watchdog 7.1.1 is a known-bad release: deadlocks gevent's loop" in bad.stdout
    assert "      fix: pip install 'watchdog!=7.1.1' in Moltbot's environment" in bad.stdout


def test_without_moltbot_metadata_the_versions_are_unknown(tmp_path: Path) -> None:
    """Files copied without pip (no dist-info anywhere on the path) cannot be listed."""
    [(ok, what, fix)] = check_libraries([str(tmp_path)])
    assert not ok and "no `moltbot` package metadata is installed" in what
    assert "./installers/install.sh" in fix


def test_model_checks_before_the_first_start_use_the_seeded_config(tmp_path: Path) -> None:
    """What install.sh reports: with no config.yaml yet, the endpoint the first start writes."""
    from gateway.common.workspace import Workspace
    from gateway.ops.doctor import model_checks

    (check,) = model_checks(Workspace(tmp_path / "none-yet"))
    assert check[1].startswith("model llama2 at http://127.0.0.1:11434")
