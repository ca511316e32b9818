"""What the tray tests share: a real Secret Service, and a stand-in desktop that records what the
tray asks it to open.

The Secret Service is gnome-keyring's daemon on a private D-Bus session bus, with a keyring
unlocked by a password on stdin, exactly as a desktop login does. The desktop's openers are the
programs the tray really runs (`xdg-open` on PATH, `$BROWSER` for webbrowser); here they append
their argument to a file instead of opening a window.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

RECORDER = '#!/bin/sh\nprintf "%s\\n" "$1" >> "$MOLTBOT_TEST_OPENED"\n'


@dataclass
class FakeDesktop:
    """Where the recording openers live, and what they recorded."""

    bin_dir: Path
    record: Path

    def opened(self) -> list[str]:
        return self.record.read_text(encoding="utf-8").splitlines() if self.record.exists() else []

    def wait_opened(self, count: int, deadline_s: float = 20.0) -> list[str]:
        deadline = time.monotonic() + deadline_s
        while len(seen := self.opened()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} opened, got {seen}")
            time.sleep(0.05)
        return seen

    @property
    def env(self) -> dict[str, str]:
        return {"PATH": f"{self.bin_dir}{os.pathsep}{os.environ['PATH']}",
                "BROWSER": str(self.bin_dir / "browser"), "MOLTBOT_TEST_OPENED": str(self.record)}


def make_fake_desktop(root: Path) -> FakeDesktop:
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in ("xdg-open", "browser"):
        path = bin_dir / name
        path.write_text(RECORDER, encoding="utf-8")
        path.chmod(0o755)
    return FakeDesktop(bin_dir, root / "opened.txt")


@dataclass
class SecretService:
    env: dict[str, str]  # DBUS_SESSION_BUS_ADDRESS and the HOME/XDG dirs the keyring lives in


def require(*programs: str) -> None:
    missing = [p for p in programs if not shutil.which(p)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install xvfb trayer gnome-keyring "
                    f"dbus-daemon)")


@contextmanager
def running_secret_service(tmp_path: Path) -> Iterator[SecretService]:
    """gnome-keyring on a private session bus, its login keyring unlocked."""
    require("dbus-daemon", "gnome-keyring-daemon")
    home = tmp_path / "home"
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home / ".local" / "share"),
           "XDG_RUNTIME_DIR": str(runtime)}
    bus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address=1"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    assert bus.stdout is not None
    env["DBUS_SESSION_BUS_ADDRESS"] = bus.stdout.readline().strip()
    log = tmp_path / "gnome-keyring.log"
    daemon = start_keyring_daemon(env, log)
    try:
        if not wait_for_login_keyring(env["DBUS_SESSION_BUS_ADDRESS"], daemon):
            raise AssertionError(f"gnome-keyring made no login keyring (exit code "
                                 f"{daemon.poll()}); its log:\n"
                                 + log.read_text(encoding="utf-8", errors="replace"))
        yield SecretService({k: env[k] for k in ("HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR",
                                                 "DBUS_SESSION_BUS_ADDRESS")})
    finally:
        for proc in (daemon, bus):
            proc.terminate()
            proc.wait(10)
        if bus.stdout:
            bus.stdout.close()


def start_keyring_daemon(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """gnome-keyring's secrets part, unlocked with the password it reads on stdin."""
    with log.open("ab") as out:
        daemon = subprocess.Popen(["gnome-keyring-daemon", "--foreground", "--unlock",
                                   "--components=secrets"], stdin=subprocess.PIPE,
                                  stdout=out, stderr=out, env=env)
    assert daemon.stdin is not None
    daemon.stdin.write(b"test keyring password")
    daemon.stdin.close()
    return daemon


def wait_for_login_keyring(address: str, daemon: subprocess.Popen[bytes],
                           deadline_s: float = 30.0) -> bool:
    """Whether the daemon made the unlocked "login" keyring (the `default` alias) that the
    password on stdin asks for, before it exited or `deadline_s` passed.

    Nothing asks the Secret Service anything before the daemon owns its bus name: the bus
    would start another gnome-keyring for the call (Debian's
    `org.freedesktop.secrets.service`), ours would exit with "another secret service is
    running", and the other one has no password, so no login keyring (under a loaded suite
    ours was slow enough to lose that race). `NameHasOwner` starts nothing."""
    from jeepney.bus_messages import message_bus
    from jeepney.io.blocking import open_dbus_connection
    from secretstorage import get_all_collections

    deadline = time.monotonic() + deadline_s
    while True:
        try:
            with open_dbus_connection(bus=address) as connection:
                owned = connection.send_and_get_reply(
                    message_bus.NameHasOwner("org.freedesktop.secrets")).body[0]
                paths = ([c.collection_path for c in get_all_collections(connection)]
                         if owned else [])
            if any(path.endswith("/collection/login") for path in paths):
                return True
        except Exception:  # the bus or the daemon is not ready yet
            pass
        if daemon.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def wait_for_secret_service(backend: object, deadline_s: float = 15.0) -> None:
    """The daemon answers on the bus a moment after it starts: poll until a write works."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            backend.set_password("moltbot-test", "ready", "yes")  # type: ignore[attr-defined]
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
