"""The `moltbot` command as a user runs it: exit codes and messages."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from gateway import __version__
from tests.conftest import ROOT, free_port, model_config, run_cli, write_config
from tests.fakes.fake_model import FakeModelServer

pytestmark = pytest.mark.usefixtures("default_port_held")  # the suite never needs 18789


def own_port_config(model_url: str, port: int | None = None) -> dict:
    """A config on a port of the test's own: doctor checks gateway.port, and the default,
    18789, may be held by the user's own gateway or anything else."""
    return {**model_config(model_url), "gateway": {"port": port or free_port()}}


def test_version_and_help(home: Path) -> None:
    assert run_cli(home, "--version").stdout.startswith("moltbot, version ")
    assert "gateway" in run_cli(home, "--help").stdout


def test_start_status_stop_detached(home: Path, fake_model: FakeModelServer) -> None:
    port = str(free_port())
    write_config(home, own_port_config(fake_model.url, int(port)))
    fake_model.known_models = {"llama2"}
    assert run_cli(home, "gateway", "status", "--port", port).returncode == 3
    stopped_doctor = run_cli(home, "doctor")
    assert stopped_doctor.returncode == 0, stopped_doctor.stdout
    assert f"port {port} on 127.0.0.1 is free: the gateway is stopped (start it with " \
           "`moltbot gateway start`)" in stopped_doctor.stdout
    started = run_cli(home, "gateway", "start", "--port", port)
    try:
        assert started.returncode == 0, started.stderr
        assert f"http://127.0.0.1:{port}" in started.stdout
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json()["status"] == "ok"
        assert run_cli(home, "gateway", "status", "--port", port).returncode == 0
        again = run_cli(home, "gateway", "start", "--port", port)
        assert again.returncode == 0 and "already running" in again.stdout
        pid = (home / "data" / f"gateway-{port}.pid").read_text(encoding="utf-8").strip()
        doctor = run_cli(home, "doctor")
        assert doctor.returncode == 0, doctor.stdout
        assert f"port {port}: this workspace's Moltbot gateway is running (pid {pid}, " \
               f"version {__version__})" in doctor.stdout
        assert f"model llama2 at {fake_model.url}: ollama, serves llama2" in doctor.stdout
    finally:
        stopped = run_cli(home, "gateway", "stop", "--port", port)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert run_cli(home, "gateway", "status", "--port", port).returncode == 3


def test_first_start_creates_the_workspace(home: Path) -> None:
    result = run_cli(home, "dashboard")
    assert result.returncode == 0
    assert (home / "config.yaml").read_text(encoding="utf-8").startswith("# Moltbot")
    assert (home / "knowledge" / "faq.md").exists() and (home / "skills").is_dir()
    assert (home / "data" / "logs").is_dir()


def test_partial_config_is_kept(home: Path) -> None:
    write_config(home, {"models": {"llama2": {"endpoint": "http://127.0.0.1:11434"}}})
    before = (home / "config.yaml").read_text(encoding="utf-8")
    run_cli(home, "dashboard")
    assert (home / "config.yaml").read_text(encoding="utf-8") == before


def test_bad_config_exits_2_naming_each_key(home: Path) -> None:
    write_config(home, {"gateway": {"port": "high", "colour": "blue"}})
    result = run_cli(home, "gateway", "start", "--port", str(free_port()))
    assert result.returncode == 2
    assert "gateway.port" in result.stderr and "gateway.colour: unknown key" in result.stderr


def test_non_loopback_host_refused_without_auth(home: Path) -> None:
    result = run_cli(home, "gateway", "start", "--host", "0.0.0.0", "--port", str(free_port()))
    assert result.returncode == 2 and "auth.jwt_secret" in result.stderr


def test_port_taken_by_another_program(home: Path) -> None:
    import socket

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = str(other.getsockname()[1])
        result = run_cli(home, "gateway", "start", "--port", port)
    assert result.returncode == 1 and "in use by another program" in result.stderr


def test_token_gen_json(home: Path) -> None:
    result = run_cli(home, "dashboard", "--token-gen", "--expire", "8h", "--json")
    data = json.loads(result.stdout)
    assert data["token"].startswith("mb_") and data["url"] == "http://127.0.0.1:18789/"
    assert data["expires_at"].endswith("Z")
    bad = run_cli(home, "dashboard", "--token-gen", "--expire", "soon")
    assert bad.returncode == 2 and "--expire" in bad.stderr


def test_trace_of_unknown_message(home: Path) -> None:
    run_cli(home, "dashboard", "--token-gen")
    result = run_cli(home, "trace", "m-nope")
    assert result.returncode == 1 and "No message m-nope" in result.stderr


def test_doctor_reports_an_unreachable_model(home: Path) -> None:
    write_config(home, own_port_config(f"http://127.0.0.1:{free_port()}"))
    result = run_cli(home, "doctor")
    assert result.returncode == 1
    assert "FAIL" in result.stdout and "connection refused" in result.stdout
    assert "fix: start the model server (`ollama serve`), or fix models.llama2.endpoint" \
        in result.stdout


def test_doctor_says_pull_the_model_when_the_server_runs(home: Path,
                                                        fake_model: FakeModelServer) -> None:
    fake_model.known_models = {"mistral:7b", "qwen2:latest"}
    write_config(home, own_port_config(fake_model.url))
    result = run_cli(home, "doctor")
    assert result.returncode == 1
    assert "model 'llama2' is not pulled there (it lists mistral:7b, qwen2:latest)" \
        in result.stdout
    assert "fix: `ollama pull llama2`, or set models.llama2.model to one it lists " \
           "(mistral:7b, qwen2:latest)" in result.stdout
    assert "start the model server" not in result.stdout


def test_doctor_names_another_program_on_the_port(home: Path,
                                                  fake_model: FakeModelServer) -> None:
    import os
    import socket

    fake_model.known_models = {"llama2"}
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        write_config(home, own_port_config(fake_model.url, port))
        result = run_cli(home, "doctor")
    assert result.returncode == 1
    assert f"FAIL  port {port} on 127.0.0.1 is used by another program (pid {os.getpid()}: " \
        in result.stdout
    assert f"fix: stop it, or set gateway.port in config.yaml (or start with --port " \
           f"{port + 1})" in result.stdout


def test_doctor_hint_for_a_missing_keyring_secret(home: Path, tmp_path: Path,
                                                  fake_model: FakeModelServer) -> None:
    config = own_port_config(fake_model.url)
    config["auth"] = {"jwt_secret": "${keyring:jwt}"}
    write_config(home, config)
    env = {"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring", "HOME": str(tmp_path)}
    result = run_cli(home, "doctor", env=env)
    assert result.returncode == 1
    assert "auth.jwt_secret: no secret 'jwt' in the OS keyring; store it with " \
           "`moltbot secret set jwt`" in result.stdout
    assert "fix: no secure keyring on this machine (keyring found fail.Keyring)" in result.stdout
    assert "write it as ${VAR} in config.yaml" in result.stdout
    assert "keyring set moltbot" not in result.stdout


def test_logs_filter_by_keyword(home: Path) -> None:
    assert run_cli(home, "logs").returncode == 1
    logs = home / "data" / "logs"
    logs.mkdir(parents=True)
    (logs / "gateway.log").write_text("a msg_id=m1 answered\nb msg_id=m2 answered\n",
                                      encoding="utf-8")
    shown = run_cli(home, "logs", "--grep", "m2")
    assert shown.returncode == 0 and shown.stdout == "b msg_id=m2 answered\n"
    assert run_cli(home, "logs", "-n", "1").stdout == "b msg_id=m2 answered\n"


def test_token_gen_links_to_the_running_gateways_port(home: Path) -> None:
    port = str(free_port())
    assert run_cli(home, "gateway", "start", "--port", port).returncode == 0
    try:
        shown = run_cli(home, "dashboard", "--token-gen")
        assert shown.returncode == 0, shown.stderr
        assert f"http://127.0.0.1:{port}/#token=mb_" in shown.stdout
        data = json.loads(run_cli(home, "dashboard", "--token-gen", "--json").stdout)
        assert data["url"] == f"http://127.0.0.1:{port}/" and data["running"] is True
        other = str(free_port())
        elsewhere = run_cli(home, "dashboard", "--token-gen", "--port", other)
        assert "No gateway is running" in elsewhere.stdout and f":{other}/" in elsewhere.stdout
    finally:
        assert run_cli(home, "gateway", "stop", "--port", port).returncode == 0
    after = run_cli(home, "dashboard")
    assert "No gateway is running" in after.stdout and "gateway start" in after.stdout


def test_status_stop_and_dashboard_carry_on_past_an_invalid_config(home: Path) -> None:
    port = str(free_port())
    assert run_cli(home, "gateway", "start", "--port", port).returncode == 0
    write_config(home, {"gateway": {"port": "high"}})
    try:
        status = run_cli(home, "gateway", "status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"running: http://127.0.0.1:{port}" in status.stdout
        assert "Warning:" in status.stderr and "gateway.port" in status.stderr
        dashboard = run_cli(home, "dashboard", "--token-gen")
        assert dashboard.returncode == 0 and "gateway.port" in dashboard.stderr
        assert f"127.0.0.1:{port}/#token=" in dashboard.stdout
        stopped = run_cli(home, "gateway", "stop")
        assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stderr
    finally:
        run_cli(home, "gateway", "stop", "--port", port)
    assert run_cli(home, "gateway", "status").returncode == 3
    again = run_cli(home, "gateway", "stop", "--port", port)
    assert again.returncode == 0 and f"not running on port {port}" in again.stdout
    assert "gateway.port" in again.stderr


def test_a_busy_port_is_refused_before_the_workspace_is_made(home: Path) -> None:
    import socket

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        result = run_cli(home, "gateway", "start", "--port", str(other.getsockname()[1]))
    assert result.returncode == 1 and "in use by another program" in result.stderr
    assert not home.exists()


def test_dashboard_names_the_page_it_links_to(home: Path) -> None:
    port = free_port()
    write_config(home, own_port_config("http://127.0.0.1:11434", port))
    plain = run_cli(home, "dashboard")
    assert plain.returncode == 0
    assert plain.stdout.splitlines()[0] == f"Console: http://127.0.0.1:{port}/"
    signed = run_cli(home, "dashboard", "--token-gen", "--expire", "1h")
    assert signed.returncode == 0
    assert f"Console: http://127.0.0.1:{port}/\n" in signed.stdout
    assert f"http://127.0.0.1:{port}/#token=mb_" in signed.stdout
    assert "/chat" not in plain.stdout + signed.stdout  # the console is at /, not the chat page


def test_readme_and_config_template_name_the_secret_command(home: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "`moltbot secret set NAME`" in readme and "keyring set moltbot" not in readme
    assert "without `intent=` the intent is the command word" in readme
    run_cli(home, "dashboard")
    seeded = (home / "config.yaml").read_text(encoding="utf-8")
    assert "`moltbot secret set model_key`" in seeded
    assert "telegram" not in seeded.lower()  # no example of a channel that is not here yet
    shown = run_cli(home, "secret", "--help")
    assert shown.returncode == 0 and "set" in shown.stdout and "delete" in shown.stdout


def test_every_command_finds_the_gateway_on_any_port(gateway) -> None:  # type: ignore[no-untyped-def]
    """The gateway runs on a port config.yaml does not name (as the bundle's did on 19104):
    each command that talks to it finds it by its pid file, and takes --port too."""
    home, port = gateway.home, str(gateway.port)
    status = run_cli(home, "gateway", "status")
    assert status.returncode == 0 and f":{port}" in status.stdout, status.stdout
    top = run_cli(home, "top", "--once")
    assert top.returncode == 0, top.stderr
    for args in (("channels", "list", "--json"), ("channels", "list", "--json", "--port", port)):
        listed = run_cli(home, *args)
        assert listed.returncode == 0, listed.stderr
        http = next(c for c in json.loads(listed.stdout)["channels"] if c["name"] == "http")
        assert "not running" not in http["status"], http
    for args in (("doctor",), ("doctor", "--port", port)):
        doctor = run_cli(home, *args)
        assert f"port {port}: this workspace's Moltbot gateway is running" in doctor.stdout, (
            doctor.stdout)
    skills = run_cli(home, "skills", "list", "--port", port)
    assert skills.returncode == 0 and "faq" in skills.stdout.lower(), skills.stdout
    dashboard = run_cli(home, "dashboard")
    assert f":{port}/" in dashboard.stdout
