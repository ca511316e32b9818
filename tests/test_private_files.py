"""The store, its WAL, the logs, the pid file and config.yaml are the owner's alone (0600, in
0700 folders), whatever the umask the gateway was started with."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tests.conftest import GatewayProcess, free_port, model_config, run_cli, write_config
from tests.fakes.fake_model import FakeModelServer


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_everything_the_gateway_keeps_is_private(home: Path, fake_model: FakeModelServer) -> None:
    old = os.umask(0o022)  # a typical, permissive umask: the gateway must not rely on it
    try:
        write_config(home, model_config(fake_model.url))
        os.chmod(home / "config.yaml", 0o644)  # as an editor might leave it
        port = free_port()
        gw = GatewayProcess(home, port).start()
        try:
            assert gw.post("hello").status_code == 200
            data = home / "data"
            kept = [data / "moltbot.db", data / "moltbot.db-wal", data / "logs" / "gateway.log",
                    data / "logs" / "access.log", data / "logs" / "error.log",
                    home / "config.yaml", gw.home / "data" / f"gateway-{port}.pid"]
            present = [p for p in kept if p.exists()]
            assert data / "moltbot.db" in present and data / "logs" / "gateway.log" in present
            assert {str(p): oct(mode(p)) for p in present} == {str(p): "0o600" for p in present}
            for folder in (data, data / "logs"):
                assert mode(folder) == 0o700, folder
        finally:
            gw.stop()
    finally:
        os.umask(old)


def test_the_cli_creates_the_store_privately(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    old = os.umask(0o022)
    try:
        assert run_cli(home, "dashboard", "--token-gen", "--json").returncode == 0
    finally:
        os.umask(old)
    assert mode(home / "data" / "moltbot.db") == 0o600
    assert mode(home / "config.yaml") == 0o600
    assert mode(home / "data") == 0o700
