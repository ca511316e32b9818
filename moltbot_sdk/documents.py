"""A document as data for skills: `parse_document(path)` -> sections, or rows for a CSV.

It is the parser the knowledge base indexes with (`gateway.knowledge.loaders`), so a skill
sees a document split exactly where a knowledge search splits it: the same headings (fenced
code and front matter left out), the same paragraphs, the same CSV header and rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.knowledge.loaders import (
    document_suffix,
    read_csv_rows,
    read_text,
    split_markdown,
    split_paragraphs,
)
from moltbot_sdk.knowledge import resolve


def parse_document(path: str | Path, text: str | None = None) -> dict[str, Any]:
    """A Markdown, CSV or text document as JSON-ready data.

    Returns `{"source": path as given, "title": ..., "sections": [{"heading", "text"}]}`, and
    for a CSV also `"rows"`: one dict per data row keyed by the header (a short row's missing
    values are ""). Markdown: one section per heading, its text without the heading line;
    text before the first heading is a section with heading ""; the title is the first `#`
    heading, else the first heading, else the file's name without suffix. Text files: one
    section per paragraph, heading "".

    The suffix of `path` picks the format (.md, .markdown, .csv, .txt). With `text`, that text
    is parsed as the document and nothing is read; otherwise the file is read as UTF-8 (a
    relative path is relative to the workspace, as in `load_markdown`). Raises
    `KnowledgeError`, whose message names the file and the fix, for an unsupported type, a
    file that cannot be read or is not UTF-8, or a CSV that does not parse.
    """
    suffix = document_suffix(path)
    if text is None:
        text = read_text(resolve(path))
    doc: dict[str, Any] = {"source": str(path), "title": Path(path).stem, "sections": []}
    if suffix == ".csv":
        header, rows = read_csv_rows(text, path)
        doc["rows"] = [dict(zip(header, values + [""] * (len(header) - len(values)),
                                strict=True)) for _, values in rows]
    elif suffix == ".txt":
        doc["sections"] = [{"heading": "", "text": paragraph}
                           for _, paragraph in split_paragraphs(text)]
    else:
        sections = [s for s in split_markdown(text) if s.level or s.body]
        doc["sections"] = [{"heading": s.heading, "text": s.body} for s in sections]
        headings = [s for s in sections if s.heading]
        title = next((s.heading for s in headings if s.level == 1), None)
        doc["title"] = title or (headings[0].heading if headings else doc["title"])
    return doc
