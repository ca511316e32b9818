"""The `moltbot` command as a user runs it: exit codes and messages."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.conftest import free_port, model_config, run_cli, write_config
from tests.fakes.fake_model import FakeModelServer


def test_version_and_help(home: Path) -> None:
    assert run_cli(home, "--version").stdout.startswith("moltbot, version ")
    assert "gateway" in run_cli(home, "--help").stdout


def test_start_status_stop_detached(home: Path, fake_model: FakeModelServer) -> None:
    write_config(home, model_config(fake_model.url))
    fake_model.known_models = {"llama2"}
    port = str(free_port())
    assert run_cli(home, "gateway", "status", "--port", port).returncode == 3
    started = run_cli(home, "gateway", "start", "--port", port)
    try:
        assert started.returncode == 0, started.stderr
        assert f"http://127.0.0.1:{port}" in started.stdout
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json()["status"] == "ok"
        assert run_cli(home, "gateway", "status", "--port", port).returncode == 0
        again = run_cli(home, "gateway", "start", "--port", port)
        assert again.returncode == 0 and "already running" in again.stdout
        doctor = run_cli(home, "doctor")
        assert doctor.returncode == 0, doctor.stdout
        assert f"model llama2 at {fake_model.url}" in doctor.stdout
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
    write_config(home, model_config(f"http://127.0.0.1:{free_port()}"))
    result = run_cli(home, "doctor")
    assert result.returncode == 1
    assert "FAIL" in result.stdout and "connection refused" in result.stdout
    assert "fix:" in result.stdout


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
        assert f"http://127.0.0.1:{port}/chat#token=mb_" in shown.stdout
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
        assert f"127.0.0.1:{port}/chat#token=" in dashboard.stdout
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
