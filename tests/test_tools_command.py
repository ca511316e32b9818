"""CommandTool: allowlisted programs only, no shell, bounded in time and output."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from gateway.tools.base import ToolError, ToolRefused
from gateway.tools.command import CommandResult, CommandTool
from tests.conftest import assert_dead

pytestmark = pytest.mark.usefixtures("no_fd_leak")


def test_runs_allowed_command(tmp_path: Path) -> None:
    tool = CommandTool(["echo"], cwd=tmp_path)
    assert tool.run(["echo", "hello", "world"]) == CommandResult(
        exit_code=0, stdout="hello world\n", stderr="", timed_out=False, truncated=False
    )


def test_shell_metacharacters_are_literal(tmp_path: Path) -> None:
    victim = tmp_path / "x"
    victim.write_text("still here")
    tool = CommandTool(["echo"])
    text = f"hi; rm -rf {victim} && echo $(id) | cat `id` > {tmp_path}/y"
    result = tool.run(["echo", text])
    assert result.stdout == text + "\n"
    assert victim.read_text() == "still here"
    assert not (tmp_path / "y").exists()


def test_shell_string_refused() -> None:
    tool = CommandTool(["echo"])
    with pytest.raises(ToolRefused, match="pass an argument list, not a shell string"):
        tool.run("echo hi")  # type: ignore[arg-type]


def test_not_allowed_refused_with_fix() -> None:
    tool = CommandTool(["echo"])
    with pytest.raises(
        ToolRefused,
        match=r"refused 'ls': it is not in tools\.allowed_commands "
        r"\(echo\); add it to tools\.allowed_commands in config\.yaml",
    ):
        tool.run(["ls"])


def test_empty_allowlist_refuses_everything() -> None:
    with pytest.raises(
        ToolRefused, match=r"no commands are allowed; add it to tools\.allowed_commands"
    ):
        CommandTool([]).run(["echo", "hi"])


def test_path_in_argv0_needs_exact_listing(tmp_path: Path) -> None:
    echo = shutil.which("echo")
    assert echo is not None
    tool = CommandTool(["echo"])
    with pytest.raises(ToolRefused, match="runs only if that exact absolute path is in"):
        tool.run([echo, "hi"])
    with pytest.raises(ToolRefused, match="exact absolute path"):
        tool.run(["./echo", "hi"])
    assert CommandTool([echo]).run([echo, "hi"]).stdout == "hi\n"
    # A listed absolute path also allows the bare name when PATH leads exactly there.
    assert CommandTool([echo]).run(["echo", "hi"]).stdout == "hi\n"


def test_workspace_script_cannot_shadow_listed_name(tmp_path: Path) -> None:
    """A relative PATH entry ('.') is ignored, so ./echo in the workspace never runs."""
    fake = tmp_path / "echo"
    fake.write_text("#!/bin/sh\necho pwned\n")
    fake.chmod(0o755)
    tool = CommandTool(["echo"], cwd=tmp_path, env={"PATH": f".:{os.environ['PATH']}"})
    assert tool.run(["echo", "safe"]).stdout == "safe\n"


def test_allowed_but_missing_program() -> None:
    with pytest.raises(ToolError, match="'no-such-program-x' is allowed but not found on PATH"):
        CommandTool(["no-such-program-x"]).run(["no-such-program-x"])


def test_bad_allowlist_entries_refused_at_build() -> None:
    with pytest.raises(ValueError, match=r"'\*' is not supported"):
        CommandTool(["*"])
    with pytest.raises(ValueError, match="is a relative path"):
        CommandTool(["bin/tool"])


def test_timeout_kills_whole_process_group() -> None:
    tool = CommandTool(["sh"], timeout=0.5)
    # The background sleep is a grandchild holding stdout; it must die with the group.
    result = tool.run(["sh", "-c", "sleep 30 & echo $!; wait"])
    assert result.timed_out is True
    assert result.exit_code < 0
    assert_dead(int(result.stdout.split()[0]))


def test_timeout_of_plain_sleep() -> None:
    result = CommandTool(["sleep"], timeout=0.5).run(["sleep", "30"])
    assert result.timed_out is True


def test_output_cap_keeps_stdout_head_and_stderr_tail() -> None:
    tool = CommandTool(["seq", "sh"], max_output=100)
    result = tool.run(["seq", "100000"])
    assert result.truncated is True
    assert len(result.stdout) == 100
    assert result.stdout.startswith("1\n2\n3\n")
    result = tool.run(["sh", "-c", "seq 100000 >&2"])
    assert result.truncated is True
    assert result.stderr.endswith("99999\n100000\n")
    assert len(result.stderr) == 100


def test_stdin_is_fed_without_deadlock() -> None:
    tool = CommandTool(["cat"], max_output=1000)
    assert tool.run(["cat"], stdin="hello").stdout == "hello"
    big = "y" * 2_000_000  # far more than a pipe buffer in both directions
    result = tool.run(["cat"], stdin=big)
    assert result.exit_code == 0
    assert result.truncated is True
    assert result.stdout == "y" * 1000


def test_gateway_environment_not_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOLTBOT_TEST_SECRET", "s3cret")
    tool = CommandTool(["env"], env={"GREETING": "hi"})
    out = tool.run(["env"]).stdout
    assert "s3cret" not in out
    assert "GREETING=hi" in out


def test_nonzero_exit_and_call_summary() -> None:
    tool = CommandTool(["sh"])
    text = tool.call({"argv": ["sh", "-c", "echo out; echo err >&2; exit 3"]})
    assert text == "exit code: 3\nstdout:\nout\n\nstderr (end):\nerr\n"
    slow = CommandTool(["sleep"], timeout=0.5).call({"argv": ["sleep", "30"]})
    assert "raise tools.command_timeout in config.yaml" in slow


def test_bad_arguments() -> None:
    tool = CommandTool(["echo"])
    with pytest.raises(ToolError, match="non-empty list"):
        tool.run([])
    with pytest.raises(ToolError, match="must be a string"):
        tool.run(["echo", 1])  # type: ignore[list-item]
    with pytest.raises(ToolRefused, match="NUL"):
        tool.run(["echo", "a\x00b"])
    with pytest.raises(ToolRefused, match="not a shell string"):
        tool.call({"argv": "echo hi"})
