"""`installers/install.sh` as a user runs it, into a temporary HOME and prefix.

What is real: finding Python 3.11+, the virtual environment, pip building and installing Moltbot
from this checkout, the link, the PATH advice, the model-server probe (against the fake Ollama),
the installed `moltbot` starting, reporting and stopping a gateway, the systemd unit and desktop
entries (checked by `systemd-analyze verify` and `desktop-file-validate` where installed), and
`--uninstall`. What is not: pip downloading the dependencies, since no test touches the
internet. The new venv finds them in this test run's own venv through PYTHONPATH, and pip runs
with `--no-index --no-build-isolation` (install.sh's `MOLTBOT_PIP_ARGS`, the option a user
needs for a mirror or an offline wheel folder). Moltbot itself is imported from the prefix,
which the first test checks. Offline, the lock's versions can only come from this venv: they do
when test.sh installed it from installers/lock/test.txt; under `test.sh --latest` they do not,
and install.sh is run with MOLTBOT_LOCK=none (the versions this venv has, within the ranges).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import ROOT, free_port, model_config, write_config
from tests.fakes.fake_model import FakeModelServer
from tests.locks import LOCKS, lock_differences

INSTALL = ROOT / "installers" / "install.sh"
IS_LOCKED = not lock_differences(LOCKS / "runtime.txt")   # this venv holds the runtime lock


def install_env(home: Path, **extra: str) -> dict[str, str]:
    """A user whose HOME is `home`, with no systemd user manager and no model server."""
    runtime = home / "run"
    runtime.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MOLTBOT_", "XDG_", "DBUS_"))}
    env.update(HOME=str(home), SHELL="/bin/bash", XDG_RUNTIME_DIR=str(runtime),
               PYTHONPATH=sysconfig.get_paths()["purelib"],
               MOLTBOT_PIP_ARGS="--no-index --no-build-isolation",
               MOLTBOT_HOME=str(home / "ai-gateway"))
    if not IS_LOCKED:
        env["MOLTBOT_LOCK"] = "none"
    env.update(extra)
    return env


def run(argv: list[str | Path], env: dict[str, str], cwd: Path,
        timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run from a directory outside the checkout, so nothing imports it by accident."""
    return subprocess.run([str(a) for a in argv], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def files_under(*roots: Path) -> set[str]:
    return {str(p) for root in roots if root.exists() for p in root.rglob("*") if not p.is_dir()}


def test_default_install_starts_the_gateway_and_uninstall_removes_it(
        tmp_path: Path, fake_model: FakeModelServer) -> None:
    home = tmp_path / "home"
    workspace = home / "ai-gateway"
    port = free_port()
    config = model_config(fake_model.url)
    config["gateway"] = {"port": port}   # the user's own port: never the default 18789
    write_config(workspace, config)
    fake_model.known_models = {"llama2"}
    env = install_env(home)
    moltbot = home / ".local" / "bin" / "moltbot"
    url = f"http://127.0.0.1:{port}"
    try:
        first = run(["bash", INSTALL], env, tmp_path)
        assert first.returncode == 0, first.stdout + first.stderr
        out = first.stdout
        if IS_LOCKED:
            assert f"the versions {LOCKS}/runtime.txt pins (hash-checked)" in out
        assert f"Installed moltbot, version 0.1.0: {moltbot} -> {home}/.moltbot/venv/bin/moltbot" \
            in out
        assert f"""echo 'export PATH="{home}/.local/bin:$PATH"' >> ~/.bashrc""" in out
        assert f"run Moltbot by its full path: {moltbot} --help" in out
        # the endpoint config.yaml names, not Ollama's default port
        assert f"Model llama2 at {fake_model.url}: ollama, serves llama2" in out
        assert f"Moltbot is running at {url}" in out
        assert httpx.get(f"{url}/healthz").json()["status"] == "ok"

        where = run([home / ".moltbot" / "venv" / "bin" / "python", "-c",
                     "import gateway; print(gateway.__file__)"], env, tmp_path)
        assert where.stdout.startswith(f"{home}/.moltbot/venv/lib/"), where.stdout
        assert run([moltbot, "gateway", "status"], env, tmp_path).returncode == 0

        before = files_under(home / ".local", home / ".moltbot")
        again = run(["bash", INSTALL], env, tmp_path)
        assert again.returncode == 0, again.stderr
        assert "already running" in again.stdout
        assert files_under(home / ".local", home / ".moltbot") == before
    finally:
        stopped = run([moltbot, "gateway", "stop"], env, tmp_path)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stderr
    assert run([moltbot, "gateway", "status"], env, tmp_path).returncode == 3

    gone = run(["bash", INSTALL, "--uninstall"], env, tmp_path)
    assert gone.returncode == 0, gone.stderr
    assert f"Kept your workspace {workspace}" in gone.stdout
    assert not moltbot.exists() and not moltbot.is_symlink()
    assert not (home / ".moltbot").exists()
    assert (workspace / "config.yaml").exists() and (workspace / "data" / "moltbot.db").exists()
    left = files_under(home) - files_under(workspace)
    assert not [p for p in left if "moltbot" in p], left

    purged = run(["bash", INSTALL, "--uninstall", "--purge"], env, tmp_path)
    assert purged.returncode == 0 and f"Removed the workspace {workspace}" in purged.stdout
    assert not workspace.exists()


def test_service_and_desktop_entries_in_a_chosen_prefix(tmp_path: Path) -> None:
    home = tmp_path / "home"
    prefix = tmp_path / "opt" / "ai-gateway"
    bindir = tmp_path / "bin"
    env = install_env(home, SHELL="/usr/bin/fish")
    nobody = f"http://127.0.0.1:{free_port()}"  # config.yaml's model server is not running
    write_config(home / "ai-gateway", model_config(nobody))
    result = run(["bash", INSTALL, "--prefix", prefix, "--bin", bindir, "--service", "--desktop",
                  "--no-start"], env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"fish_add_path {bindir}" in out
    assert f"Model llama2 at {nobody}: connection refused" in out
    assert "fix: start the model server (`ollama serve`), or fix models.llama2.endpoint" in out
    assert "systemctl --user is not available here" in out
    assert "systemctl --user daemon-reload && systemctl --user enable --now moltbot" in out
    assert f"Start the gateway with: {bindir}/moltbot gateway start" in out

    moltbot = prefix / "venv" / "bin" / "moltbot"
    assert (bindir / "moltbot").resolve() == moltbot.resolve()
    unit = home / ".config" / "systemd" / "user" / "moltbot.service"
    lines = unit.read_text(encoding="utf-8").splitlines()
    assert f"ExecStart={moltbot} gateway start --foreground" in lines
    assert f"Environment=MOLTBOT_HOME={home / 'ai-gateway'}" in lines
    assert "WantedBy=default.target" in lines and "KillMode=mixed" in lines
    # liveness: the gateway's loop pings systemd's watchdog (test_liveness plays systemd)
    assert {"Type=notify", "NotifyAccess=main", "WatchdogSec=30", "Restart=on-failure"} <= set(
        lines)
    if shutil.which("systemd-analyze"):
        verify = run(["systemd-analyze", "verify", unit], env, tmp_path)
        assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr

    icon = home / ".local" / "share" / "icons" / "hicolor" / "256x256" / "apps" / "moltbot.png"
    assert icon.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    menu = home / ".local" / "share" / "applications" / "moltbot.desktop"
    autostart = home / ".config" / "autostart" / "moltbot.desktop"
    menu_text = menu.read_text(encoding="utf-8")
    assert f"Exec={moltbot} tray\n" in menu_text and f"Icon={icon}\n" in menu_text
    # the tray's own entry (its "Start at login" item shows it checked): the same tray and
    # workspace, starting the gateway with it
    auto_text = autostart.read_text(encoding="utf-8")
    assert f"Exec={prefix / 'venv' / 'bin' / 'python'} -m desktop --home {home / 'ai-gateway'}"\
        " --start\n" in auto_text.replace('"', "")
    assert "X-GNOME-Autostart-enabled=true" in auto_text
    from desktop.autostart import XdgAutostart
    assert XdgAutostart(home / ".config").is_enabled()
    for entry in (menu, autostart):
        if shutil.which("desktop-file-validate"):
            check = run(["desktop-file-validate", entry], env, tmp_path)
            assert check.returncode == 0 and not check.stdout.strip(), check.stdout

    gone = run(["bash", INSTALL, "--prefix", prefix, "--uninstall"], env, tmp_path)
    assert gone.returncode == 0, gone.stderr
    for path in (bindir / "moltbot", unit, icon, menu, autostart, prefix):
        assert not path.exists(), path
    assert not files_under(bindir)
    assert not [p for p in files_under(home) if "moltbot" in p]


def old_pythons(tmp_path: Path, names: list[str]) -> Path:
    """A directory of `python3*` commands that are too old (Python 3.9 stand-ins), first on PATH."""
    fake = tmp_path / "old-python"
    fake.mkdir()
    for name in names:
        exe = fake / name
        exe.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo 'Python 3.9.2'\nexit 1\n",
                       encoding="utf-8")
        exe.chmod(0o755)
    return fake


def test_a_newer_python_is_found_when_python3_is_old(tmp_path: Path) -> None:
    home = tmp_path / "home"
    fake = old_pythons(tmp_path, ["python3"])
    env = install_env(home, PATH=f"{fake}:{os.environ['PATH']}")
    result = run(["bash", INSTALL, "--no-start"], env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    cfg = (home / ".moltbot" / "venv" / "pyvenv.cfg").read_text(encoding="utf-8")
    version = yaml.safe_load(cfg.replace(" = ", ": "))["version"]
    assert tuple(int(n) for n in str(version).split(".")[:2]) >= (3, 11)
    assert run(["bash", INSTALL, "--uninstall"], env, tmp_path).returncode == 0


def test_no_python_311_is_refused_with_what_to_install(tmp_path: Path) -> None:
    home = tmp_path / "home"
    fake = old_pythons(tmp_path, ["python3", "python3.11", "python3.12", "python3.13"])
    env = install_env(home, PATH=f"{fake}:{os.environ['PATH']}")
    result = run(["bash", INSTALL], env, tmp_path)
    assert result.returncode == 1
    assert "Moltbot needs Python 3.11 or newer; found Python 3.9.2" in result.stderr
    assert "apt install python3.11" in result.stderr
    assert not (home / ".moltbot").exists()


def test_bad_options_and_a_foreign_moltbot_are_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = install_env(home)
    unknown = run(["bash", INSTALL, "--prefx", "/opt"], env, tmp_path)
    assert unknown.returncode == 1 and "unknown option '--prefx'" in unknown.stderr
    purge = run(["bash", INSTALL, "--purge"], env, tmp_path)
    assert purge.returncode == 1 and "--purge goes with --uninstall" in purge.stderr
    theirs = tmp_path / "bin" / "moltbot"
    theirs.parent.mkdir()
    theirs.write_text("#!/bin/sh\necho mine\n", encoding="utf-8")
    clash = run(["bash", INSTALL, "--bin", theirs.parent], env, tmp_path)
    assert clash.returncode == 1
    assert f"{theirs} exists and is not a link made by this script" in clash.stderr
    assert theirs.read_text(encoding="utf-8") == "#!/bin/sh\necho mine\n"
    assert not (home / ".moltbot").exists()


@pytest.mark.parametrize("shell, line", [
    ("/bin/zsh", """>> ~/.zshrc"""),
    ("/bin/dash", """>> ~/.profile"""),
])
def test_path_advice_names_the_users_shell(tmp_path: Path, shell: str, line: str) -> None:
    home = tmp_path / "home"
    env = install_env(home, SHELL=shell)
    result = run(["bash", INSTALL, "--no-start"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"""echo 'export PATH="{home}/.local/bin:$PATH"' {line}""" in result.stdout
    on_path = run(["bash", INSTALL, "--no-start"],
                  {**env, "PATH": f"{home}/.local/bin:{env['PATH']}"}, tmp_path)
    assert "Run: moltbot --help" in on_path.stdout and "export PATH" not in on_path.stdout
    assert run(["bash", INSTALL, "--uninstall"], env, tmp_path).returncode == 0


def test_the_installers_shell_scripts_pass_shellcheck() -> None:
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck is needed (installers/test.sh installs it as root)")
    scripts = sorted(str(p) for p in (ROOT / "installers").rglob("*.sh"))
    assert len(scripts) >= 4, scripts
    result = subprocess.run(["shellcheck", *scripts], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def test_piped_as_the_guide_shows_it_installs_the_named_source(tmp_path: Path) -> None:
    """`curl -fsSL .../install.sh | bash -s -- --prefix /opt/ai-gateway`: no checkout beside it."""
    home = tmp_path / "home"
    prefix = tmp_path / "opt" / "ai-gateway"
    script = INSTALL.read_text(encoding="utf-8")
    env = install_env(home)
    alone = subprocess.run(["bash", "-s", "--", "--prefix", str(prefix)], input=script,
                           env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert alone.returncode == 1 and "set MOLTBOT_SOURCE to a" in alone.stderr
    assert not prefix.exists()
    # a bare name would be resolved on the package index, where "moltbot" is someone else's
    named = subprocess.run(["bash", "-s", "--", "--prefix", str(prefix)], input=script,
                           env={**env, "MOLTBOT_SOURCE": "moltbot"}, cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert named.returncode == 1 and "looks like a package name" in named.stderr
    assert not prefix.exists()
    piped = subprocess.run(["bash", "-s", "--", "--prefix", str(prefix), "--no-start",
                            "--desktop"], input=script, env={**env, "MOLTBOT_SOURCE": str(ROOT)},
                           cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert piped.returncode == 0, piped.stdout + piped.stderr
    assert f"-> {prefix}/venv/bin/moltbot" in piped.stdout
    menu = (home / ".local" / "share" / "applications" / "moltbot.desktop").read_text("utf-8")
    assert "Icon=" in menu   # drawn by the named checkout's installers/icon.py
    assert run(["bash", INSTALL, "--prefix", prefix, "--uninstall"], env, tmp_path).returncode == 0
    assert not prefix.exists()


def probe_wheel(folder: Path, env: dict[str, str]) -> Path:
    """A tiny package this venv does not have, built offline: pip must fetch it, so its hash
    is checked (pins of packages already installed are taken as they are)."""
    project = folder / "lockprobe"
    (project / "lockprobe").mkdir(parents=True)
    (project / "lockprobe" / "__init__.py").write_text("", encoding="utf-8")
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
        '[project]\nname = "lockprobe"\nversion = "1.0"\n', encoding="utf-8")
    built = run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index",
                 "--no-build-isolation", "-w", folder / "wheels", project], env, folder)
    assert built.returncode == 0, built.stderr
    [wheel] = (folder / "wheels").glob("lockprobe-1.0-*.whl")
    return wheel


def test_a_lock_file_is_hash_checked_and_a_missing_one_named(tmp_path: Path) -> None:
    home = tmp_path / "home"
    wheel = probe_wheel(tmp_path, install_env(home))
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    lock = tmp_path / "runtime.txt"
    pip_args = f"--no-index --no-build-isolation --find-links {wheel.parent}"
    for pin, says in [("lockprobe==1.0\n", "Hashes are required in --require-hashes mode"),
                      (f"lockprobe==1.0 --hash=sha256:{'0' * 64}\n", "DO NOT MATCH THE HASHES")]:
        lock.write_text(pin, encoding="utf-8")
        env = install_env(home, MOLTBOT_LOCK=str(lock), MOLTBOT_PIP_ARGS=pip_args)
        refused = run(["bash", INSTALL, "--no-start"], env, tmp_path)
        assert refused.returncode == 1
        assert says in refused.stderr, refused.stderr
        assert f"pip could not install the versions {lock} names" in refused.stderr
        assert not (home / ".local" / "bin" / "moltbot").exists()

    lock.write_text(f"lockprobe==1.0 --hash=sha256:{digest}\n", encoding="utf-8")
    env = install_env(home, MOLTBOT_LOCK=str(lock), MOLTBOT_PIP_ARGS=pip_args)
    installed = run(["bash", INSTALL, "--no-start"], env, tmp_path)
    assert installed.returncode == 0, installed.stderr
    assert f"the versions {lock} pins (hash-checked), then Moltbot" in installed.stdout
    assert list((home / ".moltbot" / "venv").glob("lib/python*/site-packages/lockprobe"))
    assert run(["bash", INSTALL, "--uninstall"], env, tmp_path).returncode == 0

    missing = run(["bash", INSTALL], install_env(home, MOLTBOT_LOCK="no/such.txt"), tmp_path)
    assert missing.returncode == 1
    assert "MOLTBOT_LOCK=no/such.txt: no such file. Name a lock file" in missing.stderr


def test_a_piped_wheel_without_a_lock_is_installed_from_its_ranges(tmp_path: Path) -> None:
    """No checkout beside the script and none in the source: nothing to pin, and it says so."""
    home = tmp_path / "home"
    env = install_env(home, MOLTBOT_LOCK="")
    wheel = run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index",
                 "--no-build-isolation", "-w", tmp_path / "wheels", ROOT], env, tmp_path)
    assert wheel.returncode == 0, wheel.stderr
    [source] = (tmp_path / "wheels").glob("moltbot_gateway-*.whl")
    piped = subprocess.run(["bash", "-s", "--", "--no-start"],
                           input=INSTALL.read_text(encoding="utf-8"),
                           env={**env, "MOLTBOT_SOURCE": str(source)}, cwd=tmp_path,
                           capture_output=True, text=True, timeout=240)
    assert piped.returncode == 0, piped.stdout + piped.stderr
    assert f"No lock file comes with {source}: pip chooses the libraries' versions" in piped.stdout
    assert f"-> {home}/.moltbot/venv/bin/moltbot" in piped.stdout
    assert run(["bash", INSTALL, "--uninstall"], env, tmp_path).returncode == 0
