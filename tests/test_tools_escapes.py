"""The table of programs' escapes: what the model's command tool refuses, and what it still
runs, with the real programs where a program's own guard is switched on (sed --sandbox)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.tools.base import ToolRefused
from gateway.tools.escapes import check_argv, path_values, rule_for


def which(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


@pytest.mark.parametrize("argv,why", [
    (["sed", "-n", "1e id"], None),  # refused by sed itself: see the next test
    (["find", ".", "-exec", "id", ";"], "-exec"),
    (["find", ".", "-fprint", "x"], "-fprint"),
    (["find", ".", "-files0-from", "list"], "-files0-from"),
    (["tar", "-cf", "-", "--checkpoint-action=exec=id", "f"], "--checkpoint-action"),
    (["tar", "-cf", "-", "--checkpoint-a=exec=id", "f"], "abbreviation of --checkpoint-action"),
    (["tar", "--to-comm=sh", "-xf", "a.tar"], "abbreviation of --to-command"),
    (["tar", "cIf", "id", "a.tar", "f"], "(-I)"),
    (["tar", "-cvIid", "-f", "a.tar"], "(-I)"),
    (["sort", "-o/tmp/x", "f"], "(-o)"),
    (["sort", "-rno/tmp/x", "f"], "(-o)"),
    (["sort", "--out=/tmp/x", "f"], "abbreviation of --output"),
    (["sort", "--compress-program=sh", "f"], "--compress-program"),
    (["wc", "--files0=-"], "abbreviation of --files0-from"),
    (["wc", "--f=list"], "abbreviation of --files0-from"),
    (["cat", "@args"], "@file"),
    (["git", "-c", "alias.x=!id", "x"], "'-c'"),
    (["git", "--exec-path=/tmp", "log"], "--exec-path"),
    (["git", "x"], "not one of the read-only subcommands"),
    (["git", "config", "core.pager", "id"], "not one of the read-only subcommands"),
    (["git", "grep", "-Oid", "x"], "pagers"),
    (["git", "diff", "--ext-diff"], "--ext-diff"),
    (["git", "log", "--exec=id"], "--exec"),
])
def test_escapes_are_refused(argv: list[str], why: str | None) -> None:
    program = which(argv[0])
    if why is None:
        assert check_argv(program, argv)[1] == "--sandbox"
        return
    with pytest.raises(ToolRefused, match="for the model") as refused:
        check_argv(program, argv)
    assert why in str(refused.value)


@pytest.mark.parametrize("name", ["sh", "bash", "env", "xargs", "python3", "awk", "timeout",
                                  "nice", "less", "vi"])
def test_programs_that_run_anything_are_refused_outright(name: str) -> None:
    program = which(name)
    with pytest.raises(ToolRefused, match="runs other programs or code by design"):
        check_argv(program, [name, "--version"])


def test_the_real_name_decides(tmp_path: Path) -> None:
    """awk is mawk or gawk through /etc/alternatives; a link named sed to a shell is a shell."""
    awk = which("awk")
    assert rule_for(awk) is rule_for(os.path.realpath(awk))
    fake = tmp_path / "sed"
    fake.symlink_to(which("sh"))
    rule = rule_for(str(fake))
    assert rule is not None and rule.runs_anything


@pytest.mark.parametrize("argv,run", [
    (["sed", "-n", "1,2p", "f"], ["sed", "--sandbox", "-n", "1,2p", "f"]),
    (["tar", "-cf", "-", "--checkpoint=10", "f"],
     ["tar", "--force-local", "-cf", "-", "--checkpoint=10", "f"]),
    (["sort", "-t", "o", "-k2", "f"], ["sort", "-t", "o", "-k2", "f"]),
    (["sort", "-to", "f"], ["sort", "-to", "f"]),  # -t takes "o" as its value
    (["wc", "-l", "--", "f"], ["wc", "-l", "--", "f"]),
    (["git", "-C", "files", "log", "--oneline"],
     ["git", "-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null", "-c",
      "core.pager=cat", "--no-pager", "-C", "files", "log", "--no-ext-diff", "--no-textconv",
      "--oneline"]),
    (["find", ".", "-name", "*.md"], ["find", ".", "-name", "*.md"]),
    (["grep", "-rn", "x", "."], ["grep", "-rn", "x", "."]),
])
def test_ordinary_use_runs(argv: list[str], run: list[str]) -> None:
    assert check_argv(which(argv[0]), argv) == run


def test_dd_names_its_files_for_the_path_check() -> None:
    assert path_values(which("dd"), ["dd", "if=/etc/shadow", "of=x", "bs=1"]) == [
        "/etc/shadow", "x"]
    assert path_values(which("cat"), ["cat", "if=/x"]) == []


def test_sed_refuses_its_own_escapes_with_sandbox() -> None:
    """`--sandbox` is GNU sed's own switch: e, r, w and s///e are refused by sed itself."""
    sed = which("sed")
    for script in ("1e id", "1r /etc/hostname", "w out", "s/x/id/e"):
        done = subprocess.run([sed, "--sandbox", "-n", script], input="x\n",
                              capture_output=True, text=True, timeout=30)
        assert done.returncode != 0 and "disabled in sandbox mode" in done.stderr, script
