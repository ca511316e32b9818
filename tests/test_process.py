"""The one process runner (script skills and the command tool): time limit, group kill,
bounded output, stdin fed without deadlock."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from gateway.common import process
from tests.conftest import assert_dead

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def test_output_is_bounded_head_of_stdout_and_tail_of_stderr() -> None:
    code = ("import sys\n"
            "for i in range(100000): print(i)\n"
            "for i in range(100000): print(i, file=sys.stderr)\n")
    result = process.run([sys.executable, "-c", code], env=ENV, timeout=30,
                         max_stdout=10, max_stderr=12)
    assert result.exit_code == 0 and result.truncated
    assert result.stdout == b"0\n1\n2\n3\n4\n"
    assert result.stderr == b"99998\n99999\n"


def test_stdin_larger_than_a_pipe_is_fed_while_output_is_read() -> None:
    data = b"x" * 1_000_000
    code = "import sys; d = sys.stdin.buffer.read(); print(len(d))"
    result = process.run([sys.executable, "-c", code], stdin=data, env=ENV, timeout=30,
                         max_stdout=100, max_stderr=100)
    assert (result.exit_code, result.stdout) == (0, b"1000000\n")


def test_time_limit_kills_the_whole_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    code = (f"import subprocess, time\n"
            f"child = subprocess.Popen(['sleep', '60'])\n"
            f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
            f"print('started', flush=True)\n"
            f"time.sleep(60)\n")
    result = process.run([sys.executable, "-c", code], env=ENV, timeout=1.5,
                         max_stdout=100, max_stderr=100)
    assert result.timed_out and result.exit_code < 0
    assert result.stdout == b"started\n"
    assert_dead(int(pid_file.read_text()))


def test_a_program_that_closes_its_output_and_keeps_running_is_still_bounded() -> None:
    code = "import os, time\nos.close(1); os.close(2)\ntime.sleep(60)\n"
    result = process.run([sys.executable, "-c", code], env=ENV, timeout=1.0,
                         max_stdout=100, max_stderr=100)
    assert result.timed_out


def test_arguments_are_never_a_shell() -> None:
    result = process.run(["echo", "$(id); rm -rf /"], env=ENV, timeout=10, max_stdout=100,
                         max_stderr=100)
    assert result.stdout == b"$(id); rm -rf /\n"
