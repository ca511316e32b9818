"""Turn the files of a knowledge folder into passages, and cut long passages to a token budget.

Each loader reads one file and either returns every passage or raises `KnowledgeError` naming
the file and the fix, so the caller can report one broken file and keep the rest. The parsers
under them (`split_markdown`, `read_csv_rows`, `split_paragraphs`) are also what the SDK's
`parse_document` gives skills, so a document is split the same way wherever it is read.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from gateway.knowledge.passages import HEADING_LINE, Passage

log = logging.getLogger(__name__)

StrPath = str | PathLike[str]

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_BLANK_LINES = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE_END = re.compile(r"(?<=[。！？!?；;…])\s*|(?<=\.)\s+|\n\s*")
# Scripts a model tokenizer spends about one token per character on.
_CJK_CHAR = re.compile(r"[\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
                       r"\uf900-\ufaff\uff00-\uffef]")
_CJK_RUN = re.compile(_CJK_CHAR.pattern + "+")


class KnowledgeError(Exception):
    """A knowledge file that cannot be read or parsed; the message says which file and the fix."""

    def __init__(self, path: StrPath, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def read_text(path: StrPath) -> str:
    """Read a file as UTF-8, with or without a byte-order mark (Excel writes one)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise KnowledgeError(path, f"cannot read the file ({reason}); check that it exists "
                                   "and that the gateway's user may read it") from e
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise KnowledgeError(path, f"not UTF-8 text (bad byte at offset {e.start}); re-save it "
                                   "as UTF-8, e.g. Excel's 'CSV UTF-8' or "
                                   "`iconv -f GBK -t UTF-8`") from e


def _front_matter_end(lines: list[str]) -> int:
    """Index of the first line after a leading `---` YAML block, which is metadata, not text."""
    if lines and lines[0].strip() == "---":
        for i in range(1, len(lines)):
            if lines[i].strip() in ("---", "..."):
                return i + 1
    return 0


@dataclass(frozen=True)
class MarkdownSection:
    """A heading and the lines under it, up to the next heading of any level.

    `lines` starts with the heading line itself; `start` is that line's 0-based index in the
    document. Lines before the first heading (front matter left out) are a section of
    `level` 0 with no heading.
    """

    level: int
    heading: str
    start: int
    lines: tuple[str, ...]

    @property
    def body(self) -> str:
        """The text under the heading, without the heading line."""
        return "\n".join(self.lines[1:] if self.level else self.lines).strip()


def split_markdown(text: str) -> list[MarkdownSection]:
    """The sections of a Markdown document, in order (ATX `#` headings; fenced code is not
    scanned, and a leading `---` YAML block is metadata, not text)."""
    lines = text.splitlines()
    start = _front_matter_end(lines)
    marks: list[tuple[int, int, str]] = []  # (line index, level, heading)
    fence = ""
    for i in range(start, len(lines)):
        fence_match = _FENCE.match(lines[i])
        if fence_match:
            marker = fence_match.group(1)
            if not fence:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence):
                fence = ""
            continue
        match = None if fence else HEADING_LINE.match(lines[i])
        if match:
            marks.append((i, len(match.group(1)), (match.group(2) or "").strip()))
    sections = []
    first = marks[0][0] if marks else len(lines)
    if first > start:
        sections.append(MarkdownSection(0, "", start, tuple(lines[start:first])))
    for n, (index, level, heading) in enumerate(marks):
        end = marks[n + 1][0] if n + 1 < len(marks) else len(lines)
        sections.append(MarkdownSection(level, heading, index, tuple(lines[index:end])))
    return sections


def load_markdown(path: StrPath) -> list[Passage]:
    """One passage per heading section (see `split_markdown`).

    A passage's text keeps its heading line so the question stays searchable; its title is
    the heading path ("FAQ > Install"). Sections with only a heading are dropped: there is
    no answer in them. Text before the first heading becomes an untitled passage.
    """
    source = str(path)
    passages: list[Passage] = []
    trail: list[tuple[int, str]] = []  # (level, heading) from the top to the current section
    for section in split_markdown(read_text(path)):
        if section.level:
            while trail and trail[-1][0] >= section.level:
                trail.pop()
            trail.append((section.level, section.heading))
        if not section.body:
            continue
        skip = 0 if section.level else next(i for i, s in enumerate(section.lines) if s.strip())
        title = " > ".join(heading for _, heading in trail) if section.level else ""
        passages.append(Passage(text="\n".join(section.lines[skip:]).strip(), source=source,
                                title=title, line=section.start + skip + 1))
    return passages


def read_csv_rows(text: str, path: StrPath) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header (the first non-empty row) and each data row as (line, values), values
    stripped and empty rows left out; `path` names the file in a `KnowledgeError`. A row may
    be shorter than the header (its last values are empty), never longer."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] = []
    rows: list[tuple[int, list[str]]] = []
    row_line = 1
    try:
        for row in reader:
            line, row_line = row_line, reader.line_num + 1
            values = [value.strip() for value in row]
            if not any(values):
                continue
            if not header:
                header = [name or f"column {n}" for n, name in enumerate(values, 1)]
                continue
            if len(values) > len(header) and any(values[len(header):]):
                raise KnowledgeError(path, f"line {line} has {len(values)} values but the "
                                           f"header has {len(header)} columns; put values "
                                           'that contain commas in double quotes')
            rows.append((line, values[:len(header)]))
    except csv.Error as e:
        raise KnowledgeError(path, f"not valid CSV near line {reader.line_num} ({e}); check "
                                   "its quotes, or export it again as CSV") from e
    return header, rows


def load_csv(path: StrPath) -> list[Passage]:
    """One passage per data row, rendered as "header: value" lines (empty values left out).

    The first non-empty row is the header. A row's title is its first value, usually the
    product name or the question, so a hit can be shown with a short label.
    """
    source = str(path)
    header, rows = read_csv_rows(read_text(path), path)
    passages: list[Passage] = []
    for line, values in rows:
        pairs = zip(header, values, strict=False)  # short rows: missing values are empty
        text = "\n".join(f"{name}: {value}" for name, value in pairs if value)
        title = next(value for value in values if value)
        passages.append(Passage(text=text, source=source, title=title, line=line))
    return passages


def split_paragraphs(text: str) -> list[tuple[int, str]]:
    """Each paragraph (a block between blank lines), stripped, with its 1-based first line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return [(text.count("\n", 0, begin) + 1, piece)
            for begin, piece in _pieces(text, 0, len(text), _BLANK_LINES)]


def load_text(path: StrPath) -> list[Passage]:
    """One passage per paragraph (blocks separated by blank lines)."""
    source = str(path)
    return [Passage(text=piece, source=source, line=line)
            for line, piece in split_paragraphs(read_text(path))]


LOADERS: dict[str, Callable[[StrPath], list[Passage]]] = {
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".csv": load_csv,
    ".txt": load_text,
}


def document_suffix(path: StrPath) -> str:
    """The file's suffix, lower-case, when a loader reads it; else `KnowledgeError`."""
    suffix = Path(path).suffix.lower()
    if suffix not in LOADERS:
        raise KnowledgeError(path, f"unsupported file type {Path(path).suffix or '(none)'!r}; "
                                   f"use one of {', '.join(LOADERS)}")
    return suffix


def load_document(path: StrPath) -> list[Passage]:
    """Load any supported file, choosing the loader by its suffix (case-insensitive)."""
    return LOADERS[document_suffix(path)](path)


def estimate_tokens(text: str) -> int:
    """A model-free token estimate: one per CJK character, one per four other characters."""
    if text.isascii():  # most text: no CJK to look for (60 ns instead of ~25 us a kB)
        return math.ceil(len(text) / 4)
    # counted by runs, not one match per character: a 300-character Chinese turn in 0.7 us,
    # not 32 (each message estimates every turn it sends the model)
    cjk = sum(map(len, _CJK_RUN.findall(text)))
    return cjk + math.ceil((len(text) - cjk) / 4)


def _pieces(text: str, begin: int, end: int, separator: re.Pattern[str]) -> list[tuple[int, str]]:
    """Non-blank pieces of text[begin:end] between separator matches, with their offsets."""
    out: list[tuple[int, str]] = []
    position = begin
    for match in [*separator.finditer(text, begin, end), None]:
        stop = match.start() if match else end
        piece = text[position:stop]
        if piece.strip():
            out.append((position + len(piece) - len(piece.lstrip()), piece.strip()))
        if match:
            position = match.end()
    return out


def _hard_cut(text: str, begin: int, end: int, budget: int) -> list[tuple[int, int]]:
    """Cut a piece with no usable boundary into spans of at most `budget` tokens each."""
    spans: list[tuple[int, int]] = []
    start, cjk, other = begin, 0, 0
    for i in range(begin, end):
        is_cjk = _CJK_CHAR.match(text[i]) is not None
        if cjk + is_cjk + math.ceil((other + (not is_cjk)) / 4) > budget and i > start:
            spans.append((start, i))
            start, cjk, other = i, 0, 0
        cjk, other = cjk + is_cjk, other + (not is_cjk)
    spans.append((start, end))
    return spans


def _spans(text: str, begin: int, end: int, budget: int) -> list[tuple[int, int]]:
    """Spans covering text[begin:end], each within budget: by paragraph, sentence, then size."""
    if estimate_tokens(text[begin:end]) <= budget:
        return [(begin, end)]
    for separator in (_BLANK_LINES, _SENTENCE_END):
        pieces = _pieces(text, begin, end, separator)
        if len(pieces) > 1:
            return [span for at, piece in pieces for span in _spans(text, at, at + len(piece),
                                                                    budget)]
    return _hard_cut(text, begin, end, budget)


def chunk(passages: Iterable[Passage], max_tokens: int) -> list[Passage]:
    """Split passages over `max_tokens` (see `estimate_tokens`) into consecutive chunks.

    Cuts fall on paragraph, then sentence boundaries, and only mid-sentence when one sentence
    alone is over budget. Chunks keep the passage's source and title, and `line` points at
    where each chunk starts. Passages within budget are returned as they are.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    out: list[Passage] = []
    for passage in passages:
        text = passage.text
        if estimate_tokens(text) <= max_tokens:
            out.append(passage)
            continue
        spans = _spans(text, 0, len(text), max_tokens)
        start, stop = spans[0]
        for begin, end in [*spans[1:], (len(text), len(text))]:
            if end > begin and estimate_tokens(text[start:end]) <= max_tokens:
                stop = end
                continue
            line = passage.line + text.count("\n", 0, start) if passage.line else 0
            out.append(Passage(text=text[start:stop].strip(), source=passage.source,
                               title=passage.title, line=line))
            start, stop = begin, end
    return out
