"""The gateway speaks systemd's notify protocol; this test plays systemd's side of the socket.

Under `install.sh --service` the unit is `Type=notify` with `WatchdogSec=30`: systemd waits for
READY=1, expects WATCHDOG=1 pings and restarts the service when they stop. No systemd user
manager runs here, so the test binds the datagram socket systemd would and sets the variables
systemd sets (`NOTIFY_SOCKET`, `WATCHDOG_USEC`, `WATCHDOG_PID`) for the real gateway process.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import GatewayProcess, free_port, model_config, write_config


def receive(sock: socket.socket, want: str | None, deadline_s: float = 20.0
            ) -> list[tuple[float, str]]:
    """Datagrams with their arrival times, until one equals `want` (included); with `want`
    None, all that come within `deadline_s`."""
    got: list[tuple[float, str]] = []
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            text = sock.recv(4096).decode()
        except TimeoutError:
            break
        got.append((time.monotonic(), text))
        if text == want:
            return got
    if want is None:
        return got
    raise AssertionError(f"no {want!r} from the gateway; got {[t for _, t in got]}")


@pytest.mark.blocks_loop
def test_ready_then_watchdog_pings_that_stop_while_the_loop_is_stuck(
        home: Path, fake_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    watchdog_usec = 400_000  # a ping every 0.2 s
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", str(watchdog_usec))
    monkeypatch.setenv("MOLTBOT_TEST_FAULTS", "block-loop=2")
    write_config(home, model_config(fake_model.url))
    gw = GatewayProcess(home, free_port())
    try:
        gw.start(wait=False)
        assert gw.proc is not None
        # WATCHDOG_PID names the process the watchdog is for; the gateway is the unit's main
        # process (`gateway start --foreground` execs it), as here.
        receive(sock, "READY=1")
        gw.wait_healthy()
        receive(sock, None, deadline_s=0.1)  # what queued up while the gateway started
        receive(sock, "WATCHDOG=1")
        os.kill(gw.proc.pid, signal.SIGUSR2)  # right after a ping: the next is 0.2 s away
        blocked_at = time.monotonic()
        pings = [t for t, text in receive(sock, None, deadline_s=3.5) if text == "WATCHDOG=1"]
        # systemd restarts a unit whose pings stop for WatchdogSec (here 0.4 s): they stopped
        # while the loop was stuck (2 s), and came back after
        assert pings and pings[0] - blocked_at > 1.0, (blocked_at, pings)
        assert len(pings) >= 2
        gw.proc.send_signal(signal.SIGTERM)
        receive(sock, "STOPPING=1")
    finally:
        gw.stop()
        sock.close()


def test_outside_systemd_nothing_is_sent(tmp_path: Path) -> None:
    from gateway.observe.sdnotify import SystemdNotifier

    assert not SystemdNotifier({}).enabled
    other = SystemdNotifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000",
                             "WATCHDOG_PID": str(os.getpid() + 1)})
    assert other.address == "\0x" and other.watchdog_interval == 0.0  # another process's
