"""FilesTool: everything stays inside the workspace, and every refusal says why."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.tools.base import ToolError, ToolRefused
from gateway.tools.files import FilesTool

pytestmark = pytest.mark.usefixtures("no_fd_leak")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the workspace holding a secret the tool must never reach."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("top secret")
    return folder


@pytest.fixture
def files(workspace: Path) -> FilesTool:
    return FilesTool(workspace, max_bytes=100)


def test_write_read_list_round_trip(files: FilesTool, workspace: Path) -> None:
    assert files.write("notes/today.txt", "héllo") == "wrote 6 bytes to notes/today.txt"
    assert files.read("notes/today.txt") == "héllo"
    assert (workspace / "notes" / "today.txt").read_text() == "héllo"
    (workspace / "b.txt").write_text("b")
    assert files.list() == ["b.txt", "notes/"]
    assert files.list("notes") == ["today.txt"]


def test_write_replaces_atomically_and_keeps_mode(files: FilesTool, workspace: Path) -> None:
    target = workspace / "a.txt"
    target.write_text("old")
    target.chmod(0o640)
    files.write("a.txt", "new")
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o640
    assert sorted(os.listdir(workspace)) == ["a.txt"]  # no temp file left behind


@pytest.mark.parametrize("path", ["../x", "a/../../x", "a/../b", ".."])
def test_dot_dot_refused(files: FilesTool, path: str) -> None:
    with pytest.raises(ToolRefused, match=r"'\.\.' is not allowed; use a path inside"):
        files.read(path)
    with pytest.raises(ToolRefused, match=r"'\.\.' is not allowed"):
        files.write(path, "x")
    with pytest.raises(ToolRefused, match=r"'\.\.' is not allowed"):
        files.list(path)


def test_absolute_path_refused(files: FilesTool, outside: Path) -> None:
    with pytest.raises(ToolRefused, match="absolute paths are not allowed; use a path relative"):
        files.read(str(outside / "secret.txt"))
    with pytest.raises(ToolRefused, match="absolute paths are not allowed"):
        files.write(str(outside / "new.txt"), "x")
    assert not (outside / "new.txt").exists()


def test_nul_byte_refused(files: FilesTool) -> None:
    with pytest.raises(ToolRefused, match="may not contain NUL bytes"):
        files.read("a\x00b")
    with pytest.raises(ToolRefused, match="may not contain NUL bytes"):
        files.write("a\x00b", "x")


def test_file_symlink_out_refused(files: FilesTool, workspace: Path, outside: Path) -> None:
    (workspace / "link").symlink_to(outside / "secret.txt")
    with pytest.raises(ToolRefused, match="leads outside the workspace through a symlink"):
        files.read("link")
    with pytest.raises(ToolRefused, match="leads outside the workspace through a symlink"):
        files.write("link", "overwritten")
    assert (outside / "secret.txt").read_text() == "top secret"


def test_dir_symlink_out_refused(files: FilesTool, workspace: Path, outside: Path) -> None:
    (workspace / "d").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ToolRefused, match="through a symlink"):
        files.read("d/secret.txt")
    with pytest.raises(ToolRefused, match="through a symlink"):
        files.write("d/new.txt", "x")
    with pytest.raises(ToolRefused, match="through a symlink"):
        files.write("d/sub/new.txt", "x")
    with pytest.raises(ToolRefused, match="through a symlink"):
        files.list("d")
    assert sorted(os.listdir(outside)) == ["secret.txt"]


def test_symlink_inside_workspace_allowed(files: FilesTool, workspace: Path) -> None:
    (workspace / "real.txt").write_text("inside")
    (workspace / "alias.txt").symlink_to("real.txt")
    assert files.read("alias.txt") == "inside"
    assert files.list() == ["alias.txt", "real.txt"]  # the link itself is listed, not followed


def test_directory_swapped_for_symlink_after_check_refused(
    files: FilesTool, workspace: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The TOCTOU case: the check passed on a real folder, then it became a symlink."""
    (workspace / "d").mkdir()
    checked = files._resolve("d/secret.txt", "read")
    (workspace / "d").rmdir()
    (workspace / "d").symlink_to(outside, target_is_directory=True)
    monkeypatch.setattr(files, "_resolve", lambda path, verb: checked)
    with pytest.raises(ToolRefused, match="became a symlink while in use"):
        files.read("d/secret.txt")
    with pytest.raises(ToolRefused, match="became a symlink while in use"):
        files.write("d/secret.txt", "overwritten")
    assert (outside / "secret.txt").read_text() == "top secret"


def test_final_component_swapped_for_symlink_refused(
    files: FilesTool, workspace: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (workspace / "f.txt").write_text("mine")
    checked = files._resolve("f.txt", "read")
    (workspace / "f.txt").unlink()
    (workspace / "f.txt").symlink_to(outside / "secret.txt")
    monkeypatch.setattr(files, "_resolve", lambda path, verb: checked)
    with pytest.raises(ToolRefused, match="became a symlink while in use"):
        files.read("f.txt")
    with pytest.raises(ToolRefused, match="only regular files can be replaced"):
        files.write("f.txt", "overwritten")
    assert (outside / "secret.txt").read_text() == "top secret"


def test_size_limits(files: FilesTool, workspace: Path) -> None:
    (workspace / "big.txt").write_text("x" * 101)
    with pytest.raises(ToolRefused, match="101 bytes is over the limit of 100 bytes; raise"):
        files.read("big.txt")
    with pytest.raises(ToolRefused, match=r"raise tools\.max_bytes in config\.yaml"):
        files.write("new.txt", "x" * 101)
    assert not (workspace / "new.txt").exists()
    files.write("exact.txt", "x" * 100)
    assert files.read("exact.txt") == "x" * 100


def test_non_text_and_special_files(files: FilesTool, workspace: Path) -> None:
    (workspace / "bin").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ToolError, match="is not UTF-8 text"):
        files.read("bin")
    os.mkfifo(workspace / "pipe")
    with pytest.raises(ToolRefused, match="only regular files can be read"):
        files.read("pipe")
    (workspace / "sub").mkdir()
    with pytest.raises(ToolError, match="is a folder; use action 'list'"):
        files.read("sub")
    with pytest.raises(ToolError, match="is a folder; name a file"):
        files.write("sub", "x")


def test_missing_paths(files: FilesTool) -> None:
    with pytest.raises(ToolError, match=r"'nope\.txt' does not exist"):
        files.read("nope.txt")
    with pytest.raises(ToolError, match="does not exist"):
        files.list("nope")


def test_call_dispatch(files: FilesTool) -> None:
    assert files.call({"action": "write", "path": "a.txt", "text": "hi"}).startswith("wrote 2")
    assert files.call({"action": "read", "path": "a.txt"}) == "hi"
    assert files.call({"action": "list"}) == "a.txt"
    with pytest.raises(ToolError, match="unknown action 'delete'"):
        files.call({"action": "delete", "path": "a.txt"})
    with pytest.raises(ToolError, match="missing required argument 'path'"):
        files.call({"action": "read"})
    with pytest.raises(ToolError, match="arguments must be a JSON object"):
        files.call("read a.txt")  # type: ignore[arg-type]


def test_spec_is_openai_function(files: FilesTool) -> None:
    spec = files.spec()
    assert spec["type"] == "function"
    assert spec["function"]["name"] == "files"
    assert spec["function"]["parameters"]["required"] == ["action"]
