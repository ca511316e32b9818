"""The two ways a skill fails: it cannot be loaded, or it failed while answering a message.

Kept in a module of their own, importing nothing of ours, so the loaders, the runner and the
pipeline can all catch them without importing each other.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path


class SkillError(Exception):
    """A skill failed while answering a message.

    `str(e)` is a short sentence meant for the sender (the pipeline adds the msg_id). `detail`
    (a script's stderr, an exception's text) is for the log and the trace only: a sender may be
    a stranger, and stderr can name files, hosts or secrets.
    """

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class SkillLoadError(Exception):
    """A skill file that cannot be loaded; `problem` says what is wrong and how to fix it.

    `path` is the file as the loader named it (usually workspace-relative, `skills/x.sh`), so
    `str(e)` reads "skills/x.sh: <problem>" and points the person at the file to edit.
    """

    def __init__(self, path: str | PathLike[str], problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{shown_path(self.path)}: {problem}")


def shown_path(path: str | PathLike[str]) -> str:
    """How to name a skill file to a person: `skills/<name>` when it sits in a skills folder.

    The person fixes the file from their workspace, where it is `skills/<name>`; an absolute
    temporary or install path would only get in the way of copying the fix.
    """
    path = Path(path)
    return f"skills/{path.name}" if path.parent.name == "skills" else str(path)
