"""Every tray menu action, with pystray's dummy backend and the real gateway process.

The menu items are found by their text and called as pystray calls them; what they do is seen
from outside: /healthz, pid files, the autostart entry, what the desktop was asked to open.
"""

from __future__ import annotations

import configparser
import os
import plistlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from keyring.backends import fail

from gateway.common.workspace import Workspace, ensure_workspace
from gateway.ops.control import find_gateway, start_detached, stop_gateway
from tests.conftest import assert_dead, free_port, model_config, new_token, write_config
from tests.fakes.fake_model import FakeModelServer
from tests.tray_support import FakeDesktop, make_fake_desktop


def wait_until(check: Callable[[], Any], what: str, deadline_s: float = 30.0) -> Any:
    deadline = time.monotonic() + deadline_s
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return result


def parse_exec(value: str) -> list[str]:
    """An Exec= line as the desktop splits it: the spec's quoting is POSIX shell's double-quote
    rules (with `%%` for `%`), so /bin/sh itself does the parsing."""
    script = f'for a in {value.replace("%%", "%")}; do printf "%s\\0" "$a"; done'
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    return out.stdout.split("\0")[:-1]


def item(tray: Any, text: str) -> Any:
    return next(i for i in tray.icon.menu.items if i.text == text)


def click(tray: Any, text: str) -> None:
    item(tray, text)(tray.icon)


@pytest.fixture
def desktop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDesktop:
    fake = make_fake_desktop(tmp_path / "desktop")
    for key, value in fake.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PYSTRAY_BACKEND", "dummy")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return fake


@pytest.fixture
def make_tray(home: Path, desktop: FakeDesktop, fake_model: FakeModelServer,
              tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """A tray for the test's workspace on a free port; every one made is quit at the end."""
    from desktop.autostart import XdgAutostart
    from desktop.credential import ConsoleCredential
    from desktop.tray import TrayApp

    write_config(home, model_config(fake_model.url))
    ws = Workspace(home)
    ensure_workspace(ws)
    made: list[Any] = []

    def make(port: int | None = None, backend: Any = None) -> Any:
        tray = TrayApp(ws, "127.0.0.1", port or free_port(), 10.0,
                       ConsoleCredential(ws, backend or fail.Keyring()),
                       XdgAutostart(tmp_path / "config"))
        made.append(tray)
        tray.begin()
        return tray

    yield make
    for tray in made:
        tray.quit()


def running_gateway(tray: Any) -> Any:
    return wait_until(lambda: tray.supervisor.state == "running" and find_gateway(
        tray.ws, tray.port), "the gateway to run")


def test_start_and_stop_from_the_menu(make_tray: Callable[..., Any]) -> None:
    from desktop.icon import State, draw_icon

    tray = make_tray()
    assert tray.status == f"Stopped (port {tray.port}) - 0 messages today"
    assert tray.icon.icon.tobytes() == draw_icon(State.STOPPED).tobytes()
    assert item(tray, "Start gateway").enabled and not item(tray, "Open console").enabled

    click(tray, "Start gateway")
    gateway = running_gateway(tray)
    assert httpx.get(f"{gateway.url}/healthz").json()["status"] == "ok"
    assert tray.icon.icon.tobytes() == draw_icon(State.RUNNING).tobytes()
    assert not item(tray, "Start gateway").enabled and item(tray, "Stop gateway").enabled
    assert item(tray, "Open console").default  # what a click on a menu-less icon does

    token = new_token(tray.ws.root)
    httpx.post(f"{gateway.url}/api/v1/messages", json={"text": "hi", "chat": "t"},
               headers={"Authorization": f"Bearer {token}"}, timeout=30).raise_for_status()
    wait_until(lambda: "1 message today" in tray.status, "the status line to count it")
    assert tray.status.startswith(f"Running on port {tray.port}")

    click(tray, "Stop gateway")
    wait_until(lambda: tray.supervisor.state == "stopped", "the gateway to stop")
    assert_dead(gateway.pid)
    assert not tray.ws.pid_path(tray.port).exists()
    assert tray.status.startswith("Stopped") and item(tray, "Start gateway").default


def test_quit_stops_a_gateway_the_tray_started(make_tray: Callable[..., Any]) -> None:
    tray = make_tray()
    click(tray, "Start gateway")
    gateway = running_gateway(tray)
    click(tray, "Quit")
    assert_dead(gateway.pid)


def test_quit_leaves_a_gateway_it_found_running(make_tray: Callable[..., Any],
                                                home: Path) -> None:
    port = free_port()
    proc = start_detached(Workspace(home), "127.0.0.1", port)
    try:
        tray = make_tray(port)
        assert tray.supervisor.state == "running" and not tray.supervisor.owns_gateway
        click(tray, "Quit")
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    finally:
        stop_gateway(Workspace(home), port)
        proc.wait()


def test_a_crashed_gateway_is_restarted_and_the_user_told(make_tray: Callable[..., Any]) -> None:
    tray = make_tray()
    click(tray, "Start gateway")
    first = running_gateway(tray)
    os.kill(first.pid, signal.SIGKILL)
    wait_until(lambda: "exited unexpectedly" in tray.last_notice, "the crash notice")
    again = wait_until(lambda: (g := find_gateway(tray.ws, tray.port)) and g.pid != first.pid
                       and tray.supervisor.state == "running" and g, "the restart")
    assert httpx.get(f"{again.url}/healthz").status_code == 200


@pytest.mark.blocks_loop
def test_a_gateway_that_stops_answering_is_restarted_and_the_user_told(
        make_tray: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Alive but silent (its loop stuck, as watchdog 7.1.1 made it): exit codes alone would
    never notice. The fault blocks the real gateway's loop for two minutes."""
    monkeypatch.setenv("MOLTBOT_TEST_FAULTS", "block-loop=120")
    tray = make_tray()
    tray.supervisor.unresponsive_after = 3.0
    click(tray, "Start gateway")
    first = running_gateway(tray)
    os.kill(first.pid, signal.SIGUSR2)
    wait_until(lambda: "not answering /healthz" in tray.supervisor.detail, "the error state")
    wait_until(lambda: "stopped answering" in tray.last_notice, "the notice")
    assert "trying again" in tray.last_notice
    assert_dead(first.pid)
    again = wait_until(lambda: (g := find_gateway(tray.ws, tray.port)) and g.pid != first.pid
                       and tray.supervisor.state == "running" and g, "the restart")
    assert httpx.get(f"{again.url}/healthz").status_code == 200


def test_a_busy_port_shows_an_error_and_a_notice(make_tray: Callable[..., Any]) -> None:
    from desktop.icon import State, draw_icon

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        tray = make_tray(other.getsockname()[1])
        click(tray, "Start gateway")
        wait_until(lambda: tray.supervisor.state == "error", "the error state")
        assert "in use by another program" in tray.status
        assert "trying again in 1 s" in tray.last_notice
        assert tray.icon.icon.tobytes() == draw_icon(State.ERROR).tobytes()
        click(tray, "Stop gateway")  # gives up the retries
        wait_until(lambda: tray.supervisor.state == "stopped", "stopped")


def test_without_a_keyring_the_menu_says_so_and_the_console_opens_unsigned(
        make_tray: Callable[..., Any], desktop: FakeDesktop) -> None:
    from desktop.credential import NO_KEYRING

    tray = make_tray()
    assert tray.keyring_problem is None  # not asked before the user opens the console
    click(tray, "Start gateway")
    gateway = running_gateway(tray)
    click(tray, "Open console")
    assert desktop.wait_opened(1) == [f"{gateway.url}/"]
    assert tray.last_notice == NO_KEYRING
    line = item(tray, tray.keyring_problem)
    assert tray.keyring_problem.startswith(NO_KEYRING) and line.visible and not line.enabled
    click(tray, "Open console")  # known now: straight to the unsigned console
    assert desktop.wait_opened(2)[1] == f"{gateway.url}/"


def test_open_workspace_folder_and_logs(make_tray: Callable[..., Any],
                                        desktop: FakeDesktop) -> None:
    tray = make_tray()
    click(tray, "Open workspace folder")
    assert desktop.wait_opened(1) == [str(tray.ws.root)]
    click(tray, "Open logs")
    assert desktop.wait_opened(2)[1] == str(tray.ws.logs)  # no gateway.log yet: the folder
    (tray.ws.logs / "gateway.log").write_text("x\n", encoding="utf-8")
    click(tray, "Open logs")
    assert desktop.wait_opened(3)[2] == str(tray.ws.logs / "gateway.log")


def test_start_at_login_writes_and_removes_the_xdg_entry(make_tray: Callable[..., Any],
                                                         tmp_path: Path) -> None:
    tray = make_tray()
    entry = tmp_path / "config" / "autostart" / "moltbot.desktop"
    assert not item(tray, "Start at login").checked
    click(tray, "Start at login")
    assert item(tray, "Start at login").checked and entry.exists()
    parsed = configparser.ConfigParser(interpolation=None)
    parsed.read(entry, encoding="utf-8")
    assert parsed["Desktop Entry"]["Type"] == "Application"
    argv = parse_exec(parsed["Desktop Entry"]["Exec"])
    assert argv == [sys.executable, "-m", "desktop", "--home", str(tray.ws.root),
                    "--port", str(tray.port), "--start"]
    click(tray, "Start at login")
    assert not item(tray, "Start at login").checked and not entry.exists()


def test_exec_quoting_survives_spaces_and_shell_characters() -> None:
    from desktop.autostart import desktop_exec

    argv = ["/opt/my apps/python", "--home", '/home/a "b"/$HOME`x`\\y', "100%"]
    assert parse_exec(desktop_exec(argv)) == argv


def test_launch_agent_plist_on_macos_layout(tmp_path: Path) -> None:
    from desktop.autostart import LaunchAgent

    agent = LaunchAgent(tmp_path)
    argv = ["/Applications/Moltbot.app/Contents/MacOS/moltbot", "--home", "/Users/a/ai-gateway"]
    agent.enable(argv)
    with agent.path.open("rb") as f:
        plist = plistlib.load(f)
    assert plist["ProgramArguments"] == argv and plist["RunAtLoad"] is True
    assert agent.is_enabled() and agent.path.parent.name == "LaunchAgents"
    agent.disable()
    assert not agent.is_enabled()


@pytest.mark.skipif(sys.platform != "win32", reason="the Run key exists only on Windows")
def test_windows_run_key() -> None:
    from desktop.autostart import WindowsRunKey

    key = WindowsRunKey()
    key.enable(["C:\\Program Files\\Moltbot\\moltbot.exe", "--start"])
    assert key.is_enabled()
    key.disable()
    assert not key.is_enabled()


def test_restart_backoff_doubles_up_to_a_minute() -> None:
    from desktop.supervisor import backoff

    assert [backoff(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]


def test_each_state_has_its_own_look() -> None:
    from desktop.icon import State, draw_icon

    looks = {draw_icon(s).tobytes() for s in State}
    assert len(looks) == len(State)


def test_without_a_display_the_tray_says_what_to_do(home: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "PYSTRAY_BACKEND")}
    result = subprocess.run([sys.executable, "-m", "gateway", "tray", "--port", str(free_port())],
                            env={**env, "MOLTBOT_HOME": str(home)}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert "No tray can be shown here" in result.stderr and "gateway start" in result.stderr
