"""The values the knowledge base passes around: a passage of a document and a ranked hit.

Frozen so an index can hand the same objects to many concurrent readers without copying.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEADING_LINE = re.compile(r"^ {0,3}#{1,6}(?:[ \t]+|$)")


@dataclass(frozen=True)
class Passage:
    """One retrievable piece of a document.

    `source` is the file it came from (as given to the loader), `title` its heading path
    ("FAQ > Install") or another short label, and `line` the 1-based line where the passage
    starts (0 when unknown), so a person can open the file at the right place.
    """

    text: str
    source: str
    title: str = ""
    line: int = 0

    @property
    def body(self) -> str:
        """The text without its leading Markdown heading line: the answer of a Q&A section.

        A passage that does not start with a heading (a CSV row, a paragraph, the second
        chunk of a long section) is returned whole, so callers can always reply with `body`.
        """
        first, sep, rest = self.text.partition("\n")
        if not _HEADING_LINE.match(first):
            return self.text
        return rest.strip() if sep else ""


@dataclass(frozen=True)
class ScoredPassage:
    """A passage with its relevance score for one question; higher is more relevant."""

    passage: Passage
    score: float
