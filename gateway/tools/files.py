"""Read, write and list text files, only inside the user's workspace.

Two checks guard every path, because either alone has a hole:
1. Before acting: the path must be relative, without `..` or NUL, and `Path.resolve()` of it
   must stay inside the root (symlinks inside the workspace are fine, ones leading out are not).
2. While acting: the resolved path is opened one component at a time from a descriptor of the
   root with `O_NOFOLLOW`, so a directory swapped for a symlink after check 1 (TOCTOU) makes
   the open fail instead of following it out of the workspace.
Writes go to a temporary file in the same directory and are renamed over the target, so a
reader never sees half a file.

A `FileScope` narrows the tool further, for callers that are not trusted (the model): reads
and writes only below the listed workspace folders, checked on the resolved path (a symlink in
`knowledge/` that points at `skills/` is refused), and a file with more than one hard link is
not read (`ln config.yaml files/x` gives the secret a second name inside the scope; a path
check cannot tell the names apart). Skills, which are the owner's own code, get the tool
without a scope.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import logging
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from gateway.tools.base import Tool, ToolError, ToolRefused, check_arguments, get_str

log = logging.getLogger(__name__)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_SIZE_FIX = "raise tools.max_bytes in config.yaml to allow bigger files"


_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "action": {"type": "string", "enum": ["read", "write", "list"]},
        "path": {"type": "string", "description": "Path relative to the workspace."},
        "text": {"type": "string", "description": "Content to write (action=write)."},
    },
    "required": ["action"],
}


@dataclass(frozen=True)
class FileScope:
    """Workspace folders a caller may read and may write (writable ones are readable too)."""

    read: tuple[str, ...]
    write: tuple[str, ...]
    keep: tuple[str, ...] = ()  # readable, never written, even inside a writable folder

    def allows(self, parts: tuple[str, ...], verb: str) -> bool:
        if verb == "write" and _under(parts, self.keep):
            return False
        return _under(parts, self.write if verb == "write" else self.read + self.write)

    def describe(self, verb: str) -> str:
        roots = self.write if verb == "write" else tuple(dict.fromkeys(self.read + self.write))
        return ", ".join(f"{r}/" for r in roots) or "nothing"


def _under(parts: tuple[str, ...], roots: tuple[str, ...]) -> bool:
    return any(parts[:len(root.parts)] == root.parts
               for root in (PurePosixPath(r) for r in roots))


class FilesTool(Tool):
    """Text files under `root`; every refusal names the path and what would be allowed."""

    name = "files"
    description = (
        "Read, write or list UTF-8 text files in the user's workspace. "
        "Paths are relative to the workspace; '..' and absolute paths are refused."
    )
    parameters = _PARAMETERS

    def __init__(self, root: Path, max_bytes: int = 1024 * 1024,
                 scope: FileScope | None = None) -> None:
        if max_bytes <= 0:
            raise ValueError(f"tools.max_bytes must be positive, got {max_bytes}")
        if not Path(root).is_dir():
            raise ValueError(f"files tool: workspace {root} is not a directory; create it first")
        self.root = Path(root).resolve(strict=True)
        self.max_bytes = max_bytes
        self.scope = scope

    def read(self, path: str) -> str:
        """Return the file's text; refuses non-regular files and files over max_bytes."""
        parts = self._resolve(path, "read")
        if not parts:
            raise ToolError(f"files: {path!r} is the workspace folder; use action 'list'")
        dir_fd = self._open_dir(path, parts[:-1], create=False)
        try:
            fd = self._open_final(path, parts[-1], dir_fd, os.O_RDONLY | os.O_NONBLOCK)
        finally:
            os.close(dir_fd)
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):
                raise ToolError(f"files: {path!r} is a folder; use action 'list'")
            if not stat.S_ISREG(info.st_mode):
                raise ToolRefused(f"files: refused {path!r}: only regular files can be read")
            if self.scope is not None and info.st_nlink > 1:
                raise ToolRefused(
                    f"files: refused {path!r}: it is a hard link (one of {info.st_nlink} names "
                    "of the same file), and the other names may be files the model may not "
                    "read, such as config.yaml; copy the file instead of linking it")
            if info.st_size > self.max_bytes:
                raise self._too_big("read", path, info.st_size)
        except BaseException:
            os.close(fd)
            raise
        with os.fdopen(fd, "rb") as f:
            data = f.read(self.max_bytes + 1)  # the file may have grown since fstat
        if len(data) > self.max_bytes:
            raise self._too_big("read", path, len(data))
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ToolError(f"files: {path!r} is not UTF-8 text; only text can be read") from e

    def write(self, path: str, text: str) -> str:
        """Replace the file atomically, creating parent folders inside the workspace."""
        if not isinstance(text, str):
            raise ToolError(f"files: text to write must be a string, got {type(text).__name__}")
        data = text.encode("utf-8")
        if len(data) > self.max_bytes:
            raise self._too_big("write", path, len(data))
        parts = self._resolve(path, "write")
        if not parts:
            raise ToolError(f"files: {path!r} is the workspace folder; name a file to write")
        name = parts[-1]
        dir_fd = self._open_dir(path, parts[:-1], create=True)
        try:
            mode = self._existing_mode(path, name, dir_fd)
            tmp = f".moltbot-{secrets.token_hex(8)}.tmp"
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(tmp, flags, 0o666, dir_fd=dir_fd)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    if mode is not None:
                        os.fchmod(f.fileno(), mode)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp, dir_fd=dir_fd)
                raise
        finally:
            os.close(dir_fd)
        log.info("files: wrote %d bytes to %s", len(data), "/".join(parts))
        return f"wrote {len(data)} bytes to {path}"

    def list(self, path: str = ".") -> builtins.list[str]:
        """Sorted entry names of a folder; sub-folders end with "/", symlinks are not followed.

        With a scope, the workspace folder itself lists only the folders the scope opens."""
        if self.scope is not None and PurePosixPath(path).parts in ((), (".",)):
            return sorted(f"{r}/" for r in dict.fromkeys(self.scope.read + self.scope.write)
                          if (self.root / r).is_dir())
        parts = self._resolve(path, "list")
        dir_fd = self._open_dir(path, parts, create=False)
        try:
            with os.scandir(dir_fd) as entries:
                names = [e.name + ("/" if e.is_dir(follow_symlinks=False) else "") for e in entries]
        finally:
            os.close(dir_fd)
        return sorted(names)

    def call(self, arguments: dict[str, Any]) -> str:
        args = check_arguments(self.name, arguments)
        action = get_str(self.name, args, "action")
        if action == "read":
            return self.read(get_str(self.name, args, "path"))
        if action == "write":
            return self.write(get_str(self.name, args, "path"), get_str(self.name, args, "text"))
        if action == "list":
            names = self.list(get_str(self.name, args, "path", "."))
            return "\n".join(names) if names else "(empty folder)"
        raise ToolError(f"files: unknown action {action!r}; use 'read', 'write' or 'list'")

    def _resolve(self, path: str, verb: str) -> tuple[str, ...]:
        """Check 1: the resolved path's components below the root (and inside the scope, if
        there is one), or a ToolRefused."""
        if not isinstance(path, str):
            raise ToolError(f"files: path must be a string, got {type(path).__name__}")
        if "\x00" in path:
            raise ToolRefused(f"files: refused {path!r}: paths may not contain NUL bytes")
        if os.path.isabs(path):
            raise ToolRefused(
                f"files: refused {path!r}: absolute paths are not allowed; "
                f"use a path relative to the workspace {self.root}"
            )
        parts = PurePosixPath(path).parts
        if ".." in parts:
            raise ToolRefused(
                f"files: refused {path!r}: '..' is not allowed; "
                f"use a path inside the workspace {self.root} without '..'"
            )
        try:
            resolved = self.root.joinpath(*parts).resolve()
        except (OSError, RuntimeError) as e:
            raise ToolError(f"files: cannot resolve {path!r}: {e}") from e
        if resolved != self.root and self.root not in resolved.parents:
            raise ToolRefused(
                f"files: refused {path!r}: it leads outside the workspace through a symlink; "
                f"copy what you need into the workspace {self.root} instead"
            )
        parts = resolved.relative_to(self.root).parts
        if self.scope is not None and not self.scope.allows(parts, verb):
            raise ToolRefused(
                f"files: refused to {verb} {path!r}: the model may {verb} only in "
                f"{self.scope.describe(verb)} (tools.model_read / tools.model_write)"
            )
        return parts

    def _open_dir(self, path: str, parts: tuple[str, ...], *, create: bool) -> int:
        """Check 2: open each folder below the root without following symlinks."""
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            for part in parts:
                try:
                    next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise ToolError(f"files: {path!r} does not exist") from None
                    with contextlib.suppress(FileExistsError):  # made meanwhile: fine
                        os.mkdir(part, 0o777, dir_fd=fd)
                    next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as e:
                    raise self._open_failed(path, part, fd, e) from e
                os.close(fd)
                fd = next_fd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_final(self, path: str, name: str, dir_fd: int, flags: int) -> int:
        try:
            return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except FileNotFoundError:
            raise ToolError(f"files: {path!r} does not exist") from None
        except OSError as e:
            raise self._open_failed(path, name, dir_fd, e) from e

    def _open_failed(self, path: str, part: str, dir_fd: int, error: OSError) -> ToolError:
        """Tell a symlink that appeared after the check (refused) from other failures."""
        try:
            is_link = stat.S_ISLNK(os.stat(part, dir_fd=dir_fd, follow_symlinks=False).st_mode)
        except OSError:
            is_link = False
        if is_link or error.errno == errno.ELOOP:
            return ToolRefused(
                f"files: refused {path!r}: {part!r} became a symlink while in use; "
                "symlinks are not followed once a path has been checked"
            )
        if error.errno == errno.ENOTDIR:
            return ToolError(f"files: {path!r}: {part!r} is not a folder")
        return ToolError(f"files: cannot open {path!r}: {error.strerror}")

    def _existing_mode(self, path: str, name: str, dir_fd: int) -> int | None:
        """Permission bits of the file being replaced, so a write keeps them; None if new."""
        try:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if stat.S_ISDIR(info.st_mode):
            raise ToolError(f"files: {path!r} is a folder; name a file to write")
        if not stat.S_ISREG(info.st_mode):
            raise ToolRefused(f"files: refused {path!r}: only regular files can be replaced")
        return stat.S_IMODE(info.st_mode)

    def _too_big(self, verb: str, path: str, size: int) -> ToolRefused:
        return ToolRefused(
            f"files: refused to {verb} {path!r}: {size} bytes is over the limit of "
            f"{self.max_bytes} bytes; {_SIZE_FIX}"
        )
