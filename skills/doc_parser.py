#!/usr/bin/env python3
# moltbot: intent=doc_parse
# moltbot: command=/parse
# moltbot: description=Parse a Markdown, CSV or text file in the workspace and summarise it
# moltbot: timeout=20
"""Parse a Markdown, CSV or text document into JSON; also a script skill (`/parse <file>`).

Two ways to run it:
- As the guide's tool (section 4.2), from the workspace:
      python skills/doc_parser.py --input knowledge/faq.md --output output.json
  writes {"source", "title", "sections": [{"heading", "text"}], "rows"?: [...]} ("rows" for
  CSV: one object per row, keyed by the header). Without --output the JSON goes to stdout.
- As a skill: with no arguments it reads the gateway's message JSON on stdin, takes the
  message text as a file path inside the workspace (its working folder) and prints a summary.

Only the standard library is used, on purpose: the script runs under whatever `python3` is on
PATH (often not the gateway's own environment), and a copy in a workspace must keep working
when the gateway is upgraded. Nothing runs on import, so a loader may import it safely.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
from pathlib import Path
from typing import Any

SUPPORTED = (".md", ".markdown", ".csv", ".txt")
_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_BLANK_LINES = re.compile(r"\n[ \t]*\n\s*")


class DocumentError(Exception):
    """A document that cannot be parsed; the message says why and what to do."""


def parse_document(path: Path) -> dict[str, Any]:
    """The document as a JSON-ready dict; raises DocumentError for unreadable or unknown files."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise DocumentError(f"{path}: unsupported file type {suffix or '(none)'!r}; "
                            f"use one of {', '.join(SUPPORTED)}")
    try:
        text = path.read_bytes().decode("utf-8-sig").replace("\r\n", "\n")
    except OSError as e:
        raise DocumentError(f"{path}: cannot read it ({e.strerror or type(e).__name__})") from e
    except UnicodeDecodeError as e:
        raise DocumentError(f"{path}: not UTF-8 text; re-save it as UTF-8") from e
    doc: dict[str, Any] = {"source": str(path), "title": path.stem, "sections": []}
    if suffix == ".csv":
        doc["rows"] = _csv_rows(path, text)
    elif suffix == ".txt":
        doc["sections"] = [{"heading": "", "text": p.strip()}
                           for p in _BLANK_LINES.split(text) if p.strip()]
    else:
        doc["title"], doc["sections"] = _markdown(text, path.stem)
    return doc


def _front_matter_end(lines: list[str]) -> int:
    """Index of the first line after a leading `---` YAML block, which is metadata, not text."""
    if lines and lines[0].strip() == "---":
        for i in range(1, len(lines)):
            if lines[i].strip() in ("---", "..."):
                return i + 1
    return 0


def _heading_lines(lines: list[str], start: int) -> list[tuple[int, str, int]]:
    """(line index, heading, level) of each ATX heading from `start`, outside fenced code."""
    found: list[tuple[int, str, int]] = []
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
        heading = None if fence else _HEADING.match(lines[i])
        if heading:
            found.append((i, (heading.group(2) or "").strip(), len(heading.group(1))))
    return found


def _markdown(text: str, fallback_title: str) -> tuple[str, list[dict[str, str]]]:
    """The title (first `#` heading, else the first heading) and one section per heading.

    A section's text excludes its heading line; text before the first heading is a section
    with an empty heading.
    """
    lines = text.split("\n")
    start = _front_matter_end(lines)
    marks = _heading_lines(lines, start)
    sections: list[dict[str, str]] = []
    lead = "\n".join(lines[start:marks[0][0] if marks else len(lines)]).strip()
    if lead:
        sections.append({"heading": "", "text": lead})
    for n, (index, heading, _) in enumerate(marks):
        end = marks[n + 1][0] if n + 1 < len(marks) else len(lines)
        sections.append({"heading": heading, "text": "\n".join(lines[index + 1:end]).strip()})
    title = next((h for _, h, level in marks if level == 1 and h), None)
    return title or next((h for _, h, _ in marks if h), fallback_title), sections


def _csv_rows(path: Path, text: str) -> list[dict[str, str]]:
    """One dict per non-empty row, keyed by the first row (the header)."""
    try:
        rows = [[v.strip() for v in row] for row in csv.reader(io.StringIO(text, newline=""))]
    except csv.Error as e:
        raise DocumentError(f"{path}: not valid CSV ({e}); check its quotes") from e
    rows = [row for row in rows if any(row)]
    if not rows:
        return []
    header = [name or f"column {n}" for n, name in enumerate(rows[0], 1)]
    return [dict(zip(header, row, strict=False)) for row in rows[1:]]


def summarize(doc: dict[str, Any]) -> str:
    """A few lines a person can read in a chat window."""
    name = Path(doc["source"]).name
    if "rows" in doc:
        columns = list(doc["rows"][0]) if doc["rows"] else []
        return f"{name}: {len(doc['rows'])} rows; columns: {', '.join(columns) or '(none)'}"
    sections = doc["sections"]
    headings = [s["heading"] for s in sections if s["heading"]]
    if not headings:
        words = sum(len(s["text"].split()) for s in sections)
        return f"{name}: {len(sections)} paragraphs, {words} words"
    shown = ", ".join(headings[:8]) + (f" (+{len(headings) - 8} more)" if len(headings) > 8 else "")
    return f"{name}: \"{doc['title']}\", {len(sections)} sections: {shown}"


def workspace_file(text: str, workspace: Path) -> Path:
    """The message text as a file inside the workspace; DocumentError if it points elsewhere."""
    text = text.strip()
    if text.lower().startswith("/parse"):  # the router strips it, but a direct call may not
        text = text[len("/parse"):].strip()
    text = text.splitlines()[0].strip() if text else ""
    if not text:
        raise DocumentError("usage: /parse <file in the workspace>, e.g. /parse knowledge/faq.md")
    candidate = Path(text)
    if candidate.is_absolute() or ".." in candidate.parts:
        raise DocumentError(f"refused: give a path inside the workspace, e.g. knowledge/faq.md, "
                            f"not {text}")
    root = workspace.resolve()
    resolved = (root / candidate).resolve()
    if not resolved.is_relative_to(root):  # a symlink leading out of the workspace
        raise DocumentError(f"refused: {text} leads outside the workspace")
    if not resolved.is_file():
        raise DocumentError(f"no such file in the workspace: {text}")
    return candidate


def run_skill() -> int:
    """Skill mode: message JSON on stdin, summary (or what went wrong) on stdout."""
    msg = json.loads(sys.stdin.buffer.read().decode("utf-8") or "{}")
    try:
        path = workspace_file(str(msg.get("text") or ""), Path.cwd())
        print(summarize(parse_document(path)))
    except DocumentError as e:  # the person's mistake, not the skill's: answer it
        print(e)
    return 0


def main(argv: list[str]) -> int:
    """Command-line entry: tool mode with --input, skill mode with no arguments."""
    if not argv:
        return run_skill()
    parser = argparse.ArgumentParser(description="Parse a document into JSON.")
    parser.add_argument("--input", required=True, help="a .md, .markdown, .csv or .txt file")
    parser.add_argument("--output", help="where to write the JSON (default: stdout)")
    args = parser.parse_args(argv)
    try:
        doc = parse_document(Path(args.input))
    except DocumentError as e:
        print(f"doc_parser: {e}", file=sys.stderr)
        return 1
    data = json.dumps(doc, ensure_ascii=False, indent=2)
    if args.output is None:
        print(data)
    else:
        Path(args.output).write_text(data + "\n", encoding="utf-8")
        print(f"wrote {args.output}: {summarize(doc)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
