"""What the Feishu test modules share: the channel's row, its state awaited, its child
processes, and the leftover-process check for a module that shares one gateway."""

from __future__ import annotations

import time
from typing import Any

import httpx
import psutil

from tests.conftest import GatewayProcess, command_line

CHILD = "gateway.channels.feishu_ws_host"


def channel(gw: GatewayProcess) -> dict[str, Any]:
    rows = httpx.get(f"{gw.url}/api/v1/channels", headers=gw.headers, timeout=10).json()
    return next(row for row in rows["channels"] if row["name"] == "feishu")


def wait_state(gw: GatewayProcess, state: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (row := channel(gw))["state"] != state:
        assert time.monotonic() < deadline, f"feishu stayed {row}"
        time.sleep(0.1)
    return row


def children(gw: GatewayProcess) -> list[psutil.Process]:
    """The gateway's running Feishu child processes."""
    assert gw.proc is not None
    return [p for p in psutil.Process(gw.proc.pid).children(recursive=True)
            if CHILD in command_line(p)]


