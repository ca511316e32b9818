"""gateway/ops/control.py: start, find and stop the real gateway process from outside it."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import httpx
import pytest

from gateway.common.workspace import Workspace, ensure_workspace
from gateway.ops.control import (
    ControlError,
    PortBusy,
    find_gateway,
    find_gateways,
    gateway_argv,
    start_detached,
    stop_gateway,
)
from tests.conftest import assert_dead, free_port, write_config


@pytest.fixture
def ws(home: Path) -> Workspace:
    workspace = Workspace(home)
    ensure_workspace(workspace)
    return workspace


def test_the_gateway_is_started_as_python_m_gateway_server() -> None:
    assert gateway_argv("127.0.0.1", 19999, "--dev") == [
        sys.executable, "-m", "gateway.server", "--host", "127.0.0.1", "--port", "19999", "--dev"]


def test_start_find_and_stop(ws: Workspace) -> None:
    ports = [free_port(), free_port()]
    procs = [start_detached(ws, "127.0.0.1", port) for port in ports]
    try:
        for proc, port in zip(procs, ports, strict=True):
            found = find_gateway(ws, port)
            assert found and found.pid == proc.pid and found.host == "127.0.0.1"
            assert httpx.get(f"{found.url}/healthz").status_code == 200
        assert sorted(g.port for g in find_gateways(ws)) == sorted(ports)
    finally:
        results = [stop_gateway(ws, port) for port in ports]
        for proc in procs:
            proc.wait()
    assert all(r and not r.killed for r in results)
    for proc, port in zip(procs, ports, strict=True):
        assert_dead(proc.pid)
        assert find_gateway(ws, port) is None and not ws.pid_path(port).exists()
    assert stop_gateway(ws, ports[0]) is None and find_gateways(ws) == []


def test_a_stale_pid_file_is_not_a_gateway(ws: Workspace) -> None:
    port = free_port()
    ws.pid_path(port).write_text("999999999", encoding="utf-8")
    assert find_gateways(ws) == [] and not ws.pid_path(port).exists()


def test_a_busy_port_and_a_failed_start_are_errors_with_the_reason(ws: Workspace) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        with pytest.raises(PortBusy, match="in use by another program"):
            start_detached(ws, "127.0.0.1", other.getsockname()[1])
    write_config(ws.root, {"gateway": {"colour": "blue"}})
    with pytest.raises(ControlError, match=r"gateway\.colour: unknown key") as failed:
        start_detached(ws, "127.0.0.1", free_port())
    assert failed.value.exit_code == 2
