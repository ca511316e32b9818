"""Searchable knowledge for skills: `load_markdown(path)` / `load_csv(path)` -> `Knowledge`."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.common.workspace import DEFAULT_HOME
from gateway.knowledge import KnowledgeIndex, ScoredPassage
from gateway.knowledge import load_csv as _load_csv_passages
from gateway.knowledge import load_markdown as _load_md_passages


class Knowledge:
    """A loaded document: `.search(question)` gives the best answer text or None;
    `.find(question, k)` gives scored passages with their source and title."""

    def __init__(self, index: KnowledgeIndex, source: Path) -> None:
        self.index = index
        self.source = source

    def search(self, question: str) -> str | None:
        return self.index.search(question)

    def find(self, question: str, k: int = 3) -> list[ScoredPassage]:
        return self.index.find(question, k)


def resolve(path: str | Path) -> Path:
    """Relative paths are relative to the workspace, whatever the current directory is."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute():
        return candidate
    return Path(os.environ.get("MOLTBOT_HOME", DEFAULT_HOME)).expanduser() / candidate


def load_markdown(path: str | Path) -> Knowledge:
    source = resolve(path)
    return Knowledge(KnowledgeIndex(_load_md_passages(source)), source)


def load_csv(path: str | Path) -> Knowledge:
    source = resolve(path)
    return Knowledge(KnowledgeIndex(_load_csv_passages(source)), source)
