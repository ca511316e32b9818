"""The values the knowledge base passes around: a passage of a document and a ranked hit.

Frozen so an index can hand the same objects to many concurrent readers without copying.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# An ATX heading line: level marks, then its text without any closing "#"s.
HEADING_LINE = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")


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
    def heading(self) -> str:
        """The passage's own heading (the last part of its title), or its label for a CSV row.

        The best one-line summary of the passage: a question that contains every word of it
        is asking for this passage, however short the question is ("Where are the logs?").
        """
        return self.title.rsplit(" > ", 1)[-1]

    @property
    def body(self) -> str:
        """The text without its leading heading line: the answer of a Markdown Q&A section.

        Only a heading that is the passage's own (the last part of its title) is dropped, so
        a CSV row or paragraph that happens to start with "# " keeps it. Anything else (a CSV
        row, a paragraph, the second chunk of a long section) is returned whole.
        """
        first, _, rest = self.text.partition("\n")
        heading = HEADING_LINE.match(first)
        own = (heading.group(2) or "") if heading else None
        if own is None or not (self.title == own or self.title.endswith(f" > {own}")):
            return self.text
        return rest.strip()


@dataclass(frozen=True)
class ScoredPassage:
    """A passage with its relevance score for one question; higher is more relevant.

    `similarity` is the passage's cosine similarity to the question when search by meaning
    found it (at least `knowledge.min_similarity`), else None; `origin` says which rankings
    placed it where, for the trace ("bm25 #2 (7.1), meaning #1 (0.83)"; "" for BM25 alone).
    """

    passage: Passage
    score: float
    similarity: float | None = None
    origin: str = ""
