"""Files across the skill boundary: what a skill is handed in `msg["files"]`, and the files a
skill answers with (`{"reply": ..., "files": [path, ...]}`).

Skills are the owner's code, but what they send goes to a sender, and a skill may take a path
from the message ("send me config.yaml"). So an answer's file must be a regular file inside the
workspace (checked on the resolved path: a symlink out is refused), and never the gateway's
own files or secrets (`data/`, `config.yaml`) nor a hidden file. Anything else is refused as a
skill error that names the rule, never the path, to the sender; the log has the path.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path, PurePosixPath
from typing import Any

from gateway.core.inbox import MAX_FILES, media_type_of
from gateway.core.message import Attachment

NEVER_SENT = ("data", "config.yaml")


class ReplyFileRefused(Exception):
    """A file a skill answered with that may not be sent; `str(e)` is for the sender,
    `detail` (with the path) for the log and the trace."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


def for_skill(files: tuple[Attachment, ...], workspace: Path) -> list[dict[str, Any]]:
    """`msg["files"]`: name, media type, size and the absolute path of each sent file."""
    root = Path(workspace).absolute()
    return [{"name": f.name, "media_type": f.media_type, "size": f.size,
             "path": str(root / f.path)} for f in files]


def reply_files(paths: Any, workspace: Path) -> tuple[Attachment, ...]:
    """The files of a skill's answer as attachments; raises ReplyFileRefused."""
    if not paths:
        return ()
    if not isinstance(paths, list | tuple) or not all(isinstance(p, str | os.PathLike)
                                                      for p in paths):
        raise ReplyFileRefused('"files" in a skill\'s answer must be a list of paths',
                               f"files={paths!r:.200}")
    if len(paths) > MAX_FILES:
        raise ReplyFileRefused(f"a skill may answer with at most {MAX_FILES} files",
                               f"{len(paths)} files")
    return tuple(_attachment(Path(p), Path(workspace)) for p in paths)


def _attachment(given: Path, workspace: Path) -> Attachment:
    root = workspace.resolve()
    try:
        resolved = (root / given).resolve(strict=True)  # an absolute `given` replaces root
    except (OSError, RuntimeError) as e:
        raise ReplyFileRefused("the skill answered with a file that does not exist",
                               f"{given}: {type(e).__name__}") from e
    if not resolved.is_relative_to(root):
        raise ReplyFileRefused("the skill answered with a file outside the workspace, which "
                               "is never sent", f"{given} -> {resolved}")
    inside = PurePosixPath(resolved.relative_to(root).as_posix())
    if inside.parts[0] in NEVER_SENT or any(p.startswith(".") for p in inside.parts):
        raise ReplyFileRefused("the skill answered with one of the gateway's own files "
                               "(data/, config.yaml) or a hidden file, which are never sent",
                               str(inside))
    info = resolved.stat()
    if not stat.S_ISREG(info.st_mode):
        raise ReplyFileRefused("the skill answered with something that is not a file",
                               str(inside))
    digest = hashlib.sha256()
    with resolved.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            digest.update(chunk)
    return Attachment(resolved.name, media_type_of(resolved.name, None), info.st_size,
                      inside.as_posix(), digest.hexdigest())
