"""The sandbox itself, with real bubblewrap: what a program inside can see, write and reach.

These run a shell inside the sandbox on purpose: the model is never allowed one (see
test_tools_escapes.py), so this is the wall tested without the table in front of it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import psutil
import pytest

from gateway.tools.base import ToolRefused
from gateway.tools.command import CommandTool, Confinement
from gateway.tools.sandbox import Limits, Sandbox, find_sandbox

STATUS = find_sandbox()
pytestmark = pytest.mark.usefixtures("sandbox_required")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    for folder in ("knowledge", "files", "skills", "data"):
        (root / folder).mkdir(parents=True)
    (root / "config.yaml").write_text("auth: {jwt_secret: s3cret}\n")
    (root / "knowledge" / "faq.md").write_text("# FAQ\n")
    (root / "data" / "moltbot.db").write_text("store")
    return root


@pytest.fixture
def sandbox() -> Sandbox:
    assert STATUS.sandbox is not None
    return STATUS.sandbox


def run_in(sandbox: Sandbox, root: Path, script: str,
           **kwargs: object) -> subprocess.CompletedProcess[str]:
    argv = sandbox.wrap(["/bin/sh", "-c", script], root=root, read=("knowledge", "files"),
                        write=("files",), **kwargs)  # type: ignore[arg-type]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=root,
                          stdin=subprocess.DEVNULL)


def test_a_kept_folder_stays_read_only_inside_a_writable_one(sandbox: Sandbox,
                                                              workspace: Path) -> None:
    inbox = workspace / "files" / "inbox"
    inbox.mkdir(parents=True)
    (inbox / "sent.md").write_text("as sent")
    done = run_in(sandbox, workspace, "cat files/inbox/sent.md; echo forged > "
                  "files/inbox/sent.md; echo notes > files/notes.md && echo wrote",
                  keep=("files/inbox",))
    assert done.stdout == "as sentwrote\n"  # sent.md has no newline of its own
    assert "Read-only file system" in done.stderr
    assert (inbox / "sent.md").read_text() == "as sent"
    assert (workspace / "files" / "notes.md").read_text() == "notes\n"


def test_only_the_granted_folders_are_there(sandbox: Sandbox, workspace: Path) -> None:
    home = Path.home()
    done = run_in(sandbox, workspace, f"ls -A .; ls {home} /root /home /etc; cat config.yaml "
                                      "data/moltbot.db; pwd")
    lines = done.stdout.splitlines()
    assert lines[:2] == ["files", "knowledge"]
    assert "alternatives" in lines and "passwd" in lines and "shadow" not in lines
    assert "hostname" not in lines and "ssh" not in lines  # not the rest of /etc
    assert lines[-1] == str(workspace)
    assert "s3cret" not in done.stdout and "store" not in done.stdout
    assert "config.yaml: No such file" in done.stderr
    assert "/root" in done.stderr and "/home" in done.stderr


def test_read_folders_are_read_only_and_write_folders_writable(
        sandbox: Sandbox, workspace: Path) -> None:
    done = run_in(sandbox, workspace, "cat knowledge/faq.md; echo x > knowledge/new.md; "
                                      "echo y > files/note.txt; echo z > at-the-root.txt")
    assert done.stdout == "# FAQ\n"
    assert done.stderr.count("Read-only file system") == 2
    assert (workspace / "files" / "note.txt").read_text() == "y\n"
    assert not (workspace / "knowledge" / "new.md").exists()
    assert not (workspace / "at-the-root.txt").exists()


def test_tmp_is_private(sandbox: Sandbox, workspace: Path, tmp_path: Path) -> None:
    (tmp_path / "beside.txt").write_text("outside")
    done = run_in(sandbox, workspace,
                  f"echo inside > /tmp/mine; cat /tmp/mine {tmp_path}/beside.txt")
    assert done.stdout == "inside\n" and "beside.txt: No such file" in done.stderr
    assert not Path("/tmp/mine").exists()


def test_shown_code_under_tmp_is_there_despite_the_private_tmp(
        sandbox: Sandbox, workspace: Path, tmp_path: Path) -> None:
    """A checkout or virtual environment under /tmp (a test run's, a newcomer's) is what the
    browser child runs from: `show` binds it over the private /tmp, the rest stays hidden."""
    code = tmp_path / "venv"
    code.mkdir()
    (code / "tool.sh").write_text("echo from the code\n")
    (tmp_path / "beside.txt").write_text("outside")
    done = run_in(sandbox, workspace, f"sh {code}/tool.sh; cat {tmp_path}/beside.txt",
                  show=(str(code),))
    assert done.stdout == "from the code\n" and "beside.txt: No such file" in done.stderr


def test_no_network(sandbox: Sandbox, workspace: Path) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash (for /dev/tcp) is not installed")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        connect = [bash, "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected"]
        outside = subprocess.run(connect, capture_output=True, text=True, timeout=30)
        assert outside.stdout == "connected\n"  # the probe itself works
        inside = subprocess.run(sandbox.wrap(connect, root=workspace), capture_output=True,
                                text=True, timeout=30)
    assert inside.returncode != 0 and "connected" not in inside.stdout
    assert "Connection refused" in inside.stderr


def test_a_fresh_pid_namespace_and_no_capabilities(sandbox: Sandbox, workspace: Path) -> None:
    done = run_in(sandbox, workspace, "ls /proc | grep -c '^[0-9]'; echo $$; "
                                      "grep CapEff /proc/self/status")
    count, pid, caps = done.stdout.splitlines()
    assert int(count) <= 4 and int(pid) <= 4  # bwrap's init, the shell, ls, grep
    assert caps.split() == ["CapEff:", "0000000000000000"]


def test_resource_limits(sandbox: Sandbox, workspace: Path) -> None:
    limits = Limits(cpu_seconds=7, file_bytes=1 << 20, memory_bytes=1 << 29, processes=32)
    done = run_in(sandbox, workspace, "cat /proc/self/limits; head -c 2000000 /dev/zero > "
                                      "files/big; wc -c < files/big", limits=limits)
    rows = {line[:26].strip(): line[26:].split()[:2] for line in done.stdout.splitlines()}
    assert rows["Max cpu time"] == ["7", "7"]
    assert rows["Max file size"] == [str(1 << 20)] * 2
    assert rows["Max address space"] == [str(1 << 29)] * 2
    assert rows["Max processes"] == ["32", "32"]
    assert done.stdout.splitlines()[-1] == str(1 << 20)  # the write stopped at the limit


def test_the_time_limit_kills_everything_inside(workspace: Path) -> None:
    assert STATUS.sandbox is not None
    tool = CommandTool(["sleep"], timeout=0.5, cwd=workspace,
                       confinement=Confinement(STATUS.sandbox, ("knowledge",), ("files",)))
    result = tool.run(["sleep", "31.5"])
    assert result.timed_out
    left = [p for p in psutil.process_iter(["cmdline"])
            if (p.info["cmdline"] or [])[-1:] == ["31.5"]]
    for process in left:  # a SIGKILL lands asynchronously: wait for it, never sleep blind
        process.wait(timeout=10)


def test_a_program_outside_the_system_folders_is_refused(workspace: Path,
                                                         tmp_path: Path) -> None:
    script = tmp_path / "tool.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    assert STATUS.sandbox is not None
    tool = CommandTool([str(script)], cwd=workspace,
                       confinement=Confinement(STATUS.sandbox, ("knowledge",), ("files",)))
    with pytest.raises(ToolRefused, match="outside the system folders its sandbox shows"):
        tool.run([str(script)])


def test_without_bwrap_there_is_no_sandbox_and_the_reason_says_how_to_get_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("true", "prlimit"):
        found = shutil.which(program)
        assert found is not None
        (bin_dir / program).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))
    find_sandbox.cache_clear()
    try:
        status = find_sandbox()
    finally:
        monkeypatch.setenv("PATH", os.environ["PATH"])
        find_sandbox.cache_clear()
    assert not status.available
    assert "bwrap is not installed" in status.describe()
    assert "apt-get install bubblewrap" in status.fix


def test_a_repository_written_by_the_model_runs_no_program_through_git(workspace: Path) -> None:
    """The model can write files/.git/config: its fsmonitor and diff.external name programs,
    which `git status` and `git diff` would run. The table's overrides keep them from it."""
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    repo = workspace / "files"
    env = {**os.environ, "GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@b",
           "GIT_COMMITTER_NAME": "a", "GIT_COMMITTER_EMAIL": "a@b"}
    for step in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "x", "--allow-empty"]):
        subprocess.run([git, *step], cwd=repo, check=True, env=env, timeout=30)
    (repo / "notes.txt").write_text("new\n")
    subprocess.run([git, "add", "notes.txt"], cwd=repo, check=True, timeout=30)
    (repo / "notes.txt").write_text("changed\n")
    for key, value in (("core.fsmonitor", "echo FSMONITOR-RAN >&2; false"),
                       ("diff.external", "sh -c 'echo EXTDIFF-RAN >&2'")):
        subprocess.run([git, "config", key, value], cwd=repo, check=True, timeout=30)
    assert STATUS.sandbox is not None
    tool = CommandTool(["git"], cwd=workspace,
                       confinement=Confinement(STATUS.sandbox, ("knowledge",), ("files",)))
    status = tool.run(["git", "-C", "files", "status", "--short"])
    diff = tool.run(["git", "-C", "files", "diff"])
    assert status.stdout == "AM notes.txt\n" and "changed" in diff.stdout
    assert "RAN" not in status.stderr + diff.stderr + status.stdout + diff.stdout
