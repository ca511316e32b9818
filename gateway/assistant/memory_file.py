"""One owner's facts as a Markdown file the owner can read and edit: `memory/<owner>.md`.

Each fact is a bullet line, `- ` (or `* `, `+ `) then an optional `[YYYY-MM-DD]` date (the day it
was told) then the fact, one line each. Every other line (headings, notes, blank lines) is the
owner's and is kept exactly as written; so is a fact line the gateway did not change: parsing
and rendering a file gives back the same text. Writes are atomic (a hidden temporary file in the
same folder, then a rename), so a reader, the file watcher or a crash never sees half a file,
and the file is private (0600) like everything else of the owner's.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

MAX_FACT_CHARS = 500
_BULLET = re.compile(r"^\s*[-*+]\s+(?:\[(\d{4}-\d{2}-\d{2})\]\s+)?(\S.*?)\s*$")
HEADER = ("# Memory\n\n"
          "Facts Moltbot keeps for this owner: one per line, `- ` first, then an optional\n"
          "`[YYYY-MM-DD]` date. Edit or delete lines freely; the gateway reads this file again\n"
          "when it changes. Other lines are yours and are left as they are.\n\n")


@dataclass(frozen=True)
class Fact:
    text: str
    day: str = ""  # YYYY-MM-DD it was told, "" when unknown (written by hand without one)

    def line(self) -> str:
        return f"- [{self.day}] {self.text}" if self.day else f"- {self.text}"


def clean_fact(text: str) -> str:
    """A fact as one line: whitespace (newlines too) folded, bullet marks and a leading date
    left to the file format. Raises ValueError with what to fix."""
    one = " ".join(text.split())
    if not one:
        raise ValueError("The fact is empty: say what to remember.")
    if len(one) > MAX_FACT_CHARS:
        raise ValueError(f"That fact is {len(one)} characters; keep it under "
                         f"{MAX_FACT_CHARS} (one fact per line).")
    return one


class FactsFile:
    """The lines of a facts file: a `Fact` where a line is one, the line's text otherwise.
    A fact the gateway did not touch keeps its own raw line."""

    def __init__(self, lines: list[str | tuple[Fact, str]]) -> None:
        self.lines = lines

    @classmethod
    def parse(cls, text: str) -> FactsFile:
        lines: list[str | tuple[Fact, str]] = []
        for raw in text.splitlines():
            m = _BULLET.match(raw)
            lines.append((Fact(m.group(2), m.group(1) or ""), raw) if m else raw)
        return cls(lines)

    @classmethod
    def read(cls, path: Path) -> FactsFile:
        try:
            return cls.parse(path.read_text(encoding="utf-8", errors="replace"))
        except FileNotFoundError:
            return cls([])

    @property
    def facts(self) -> list[Fact]:
        return [item[0] for item in self.lines if isinstance(item, tuple)]

    def add(self, fact: Fact) -> None:
        if not self.lines:
            self.lines = list(HEADER.splitlines())
        self.lines.append((fact, fact.line()))

    def remove(self, keep: list[bool]) -> None:
        """Drop the facts whose entry in `keep` (one per fact, in order) is False."""
        flags = iter(keep)
        self.lines = [item for item in self.lines
                      if not isinstance(item, tuple) or next(flags)]

    def replace(self, position: int, fact: Fact) -> None:
        at = [i for i, item in enumerate(self.lines) if isinstance(item, tuple)][position]
        self.lines[at] = (fact, fact.line())

    def render(self) -> str:
        text = "\n".join(item[1] if isinstance(item, tuple) else item for item in self.lines)
        return text + "\n" if text else ""

    def write(self, path: Path) -> None:
        """Atomically: a hidden temporary file (the watcher ignores dot files), then rename."""
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(self.render())
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temporary, 0o600)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            raise
