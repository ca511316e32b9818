"""`moltbot secret set|delete` against a real Secret Service, and refusal where there is none.

The real store is gnome-keyring in its own `dbus-run-session`, unlocked with a throw-away
password, under a temporary HOME: nothing touches the user's own keyring or session bus.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, model_config, run_cli, write_config
from tests.fakes.fake_model import FakeModelServer

NO_BACKEND = {"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
SECRET = "tr0ub4dor&3 with spaces, long enough for a JWT key"


def files_containing(folder: Path, text: str) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()
            and text.encode() in p.read_bytes()]


def test_no_secure_backend_stores_nothing_and_points_to_env_vars(home: Path,
                                                                 tmp_path: Path) -> None:
    env = {**NO_BACKEND, "HOME": str(tmp_path / "user")}
    result = run_cli(home, "secret", "set", "jwt", env=env, stdin=SECRET + "\n")
    assert result.returncode == 1
    assert "Not stored: no secure keyring on this machine (keyring found fail.Keyring)" \
        in result.stderr
    assert "never stores secrets in a plain file" in result.stderr
    assert "write it as ${VAR} in config.yaml" in result.stderr
    assert files_containing(tmp_path, SECRET) == []
    deleted = run_cli(home, "secret", "delete", "jwt", env=env)
    assert deleted.returncode == 1 and "no secure keyring" in deleted.stderr


def test_bad_names_and_empty_values_are_refused(home: Path, tmp_path: Path) -> None:
    env = {**NO_BACKEND, "HOME": str(tmp_path / "user")}
    bad = run_cli(home, "secret", "set", "two words", env=env, stdin="x")
    assert bad.returncode == 1 and "secret names are letters, digits" in bad.stderr


def read_until(fd: int, marker: str, deadline_s: float = 30.0) -> str:
    """What the terminal shows up to and including `marker` (or up to the child's exit)."""
    seen = ""
    deadline = time.monotonic() + deadline_s
    while marker not in seen:
        if time.monotonic() > deadline:
            raise AssertionError(f"no {marker!r} on the terminal; it showed {seen!r}")
        if select.select([fd], [], [], 0.1)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk.decode(errors="replace")
    return seen


def test_on_a_terminal_the_value_is_asked_twice_and_never_echoed(home: Path,
                                                                 tmp_path: Path) -> None:
    master, terminal = os.openpty()
    env = {**os.environ, **NO_BACKEND, "HOME": str(tmp_path / "user"), "MOLTBOT_HOME": str(home)}
    child = subprocess.Popen([sys.executable, "-m", "gateway", "secret", "set", "jwt"],
                             stdin=terminal, stdout=terminal, stderr=terminal, env=env, cwd=ROOT)
    os.close(terminal)
    try:
        shown = read_until(master, "Value of jwt: ")
        os.write(master, SECRET.encode() + b"\n")
        shown += read_until(master, "Repeat for confirmation: ")
        os.write(master, SECRET.encode() + b"\n")
        shown += read_until(master, "never stores secrets in a plain file")
        assert child.wait(30) == 1
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        os.close(master)
    assert SECRET not in shown  # typed with echo off
    assert "Not stored: no secure keyring on this machine" in shown


@pytest.mark.skipif(not (shutil.which("gnome-keyring-daemon") and shutil.which("dbus-run-session")),
                    reason="needs a real Secret Service: apt-get install gnome-keyring dbus "
                           "(installers/test.sh installs them)")
def test_set_read_by_config_and_delete_with_gnome_keyring(home: Path, tmp_path: Path,
                                                          fake_model: FakeModelServer) -> None:
    fake_model.known_models = {"llama2"}
    config = {**model_config(fake_model.url), "gateway": {"port": free_port()},
              "auth": {"jwt_secret": "${keyring:jwt}"}}
    write_config(home, config)
    out = tmp_path / "out"
    out.mkdir()
    moltbot = f"{sys.executable} -m gateway"
    read_back = (f"{sys.executable} -c 'import secretstorage as s; b = s.dbus_init(); "
                 f"items = s.get_default_collection(b).search_items("
                 f"{{\"service\": \"moltbot\", \"username\": \"jwt\"}}); "
                 f"print([i.get_secret().decode() for i in items])'")
    script = f"""
        set -u
        echo -n throwaway | gnome-keyring-daemon --unlock --components=secrets >/dev/null
        {moltbot} doctor >{out}/before.out 2>&1
        printf '%s\\n' '{SECRET}' | {moltbot} secret set jwt >{out}/set.out 2>&1
        echo $? >{out}/set.rc
        {read_back} >{out}/stored.out 2>&1
        {moltbot} doctor >{out}/doctor.out 2>&1
        {moltbot} secret delete jwt >{out}/delete.out 2>&1
        echo $? >{out}/delete.rc
        {read_back} >{out}/after.out 2>&1
        {moltbot} secret delete jwt >{out}/again.out 2>&1
        echo $? >{out}/again.rc
    """
    user = tmp_path / "user"
    user.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DBUS_", "XDG_", "GNOME_KEYRING", "PYTHON_KEYRING"))}
    env.update(HOME=str(user), MOLTBOT_HOME=str(home))
    subprocess.run(["dbus-run-session", "--", "bash", "-c", script], env=env, cwd=ROOT,
                   capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)

    def read(name: str) -> str:
        return (out / name).read_text(encoding="utf-8").strip()

    before = read("before.out")
    assert "auth.jwt_secret: no secret 'jwt' in the OS keyring; store it with `moltbot secret " \
           "set jwt`" in before
    assert "fix: store each missing secret with the `moltbot secret set NAME`" in before
    assert read("set.rc") == "0", read("set.out")
    assert read("set.out") == ("Stored jwt in the OS keyring (SecretService.Keyring, service "
                               "moltbot). Use it in config.yaml as ${keyring:jwt}.")
    assert read("stored.out") == repr([SECRET])  # read back over D-Bus, not through keyring
    assert f"ok    config {home / 'config.yaml'} is valid" in read("doctor.out")
    assert read("delete.rc") == "0" and read("delete.out") == "Deleted jwt from the OS keyring."
    assert read("after.out") == "[]"
    assert read("again.rc") == "1" and "no secret jwt in the keyring" in read("again.out")
    assert files_containing(home, SECRET) == files_containing(user, SECRET) == []
