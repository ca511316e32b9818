"""Parse a Markdown, CSV or text document into JSON; also a skill (`/parse <file>` in chat).

Two ways to use it:
- As the guide's tool (section 4.2), from the workspace, with the Python Moltbot is installed
  in (it has `moltbot_sdk`; install.sh's is ~/.moltbot/venv/bin/python):
      python skills/doc_parser.py --input knowledge/faq.md --output output.json
  writes {"source", "title", "sections": [{"heading", "text"}], "rows"?: [...]} ("rows" for
  CSV: one object per row, keyed by the header). Without --output the JSON goes to stdout.
- As a skill: `/parse knowledge/faq.md` takes the message text as a file path inside the
  workspace and answers with a summary; `/parse` with a document attached (HTTP multipart,
  a WebSocket frame's files) answers with the document's JSON, as the tool writes it.

The parsing is `moltbot_sdk.parse_document`, the parser the knowledge base splits documents
with: a skill that needs a document's structure calls it rather than parsing Markdown itself,
and `parse_document(name, text=...)` parses text already in hand. Importing this file only
defines things, so the skill loader can load it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

try:
    from moltbot_sdk import KnowledgeError, Skill, context, parse_document
except ImportError:  # run as a tool by a Python without Moltbot: say which one to use
    if __name__ != "__main__":
        raise
    sys.exit(f"doc_parser: moltbot_sdk is not installed for {sys.executable}; run this with "
             "the Python Moltbot is installed in, e.g. ~/.moltbot/venv/bin/python "
             "skills/doc_parser.py --input ...")


class DocumentError(Exception):
    """A request this skill refuses; the message says why and what to do."""


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


class DocParser(Skill):
    @context.handle(intent="doc_parse", command="/parse", timeout=20,
                    description="Parse a Markdown, CSV or text file in the workspace and "
                                "summarise it")
    def parse(self, msg: dict[str, Any]) -> dict[str, str]:
        workspace = Path.cwd()  # a skill runs in the workspace
        sent = msg.get("files") or []
        if sent:  # a document sent with the message, kept by the gateway in the workspace
            try:
                doc = parse_document(Path(sent[0]["path"]))
            except KnowledgeError as e:
                return {"reply": f"{sent[0]['name']}: {e.problem}"}
            return {"reply": json.dumps({**doc, "source": sent[0]["name"]}, ensure_ascii=False,
                                        indent=2)}
        try:
            path = workspace_file(str(msg.get("text") or ""), workspace)
            doc = parse_document(workspace / path)
        except DocumentError as e:  # the person's mistake, not the skill's: answer it
            return {"reply": str(e)}
        except KnowledgeError as e:  # named as they gave it, not by where the workspace is
            return {"reply": f"{path}: {e.problem}"}
        return {"reply": summarize(doc)}


def main(argv: list[str]) -> int:
    """The guide's tool: --input a document, --output where its JSON goes."""
    parser = argparse.ArgumentParser(description="Parse a document into JSON.")
    parser.add_argument("--input", required=True, help="a .md, .markdown, .csv or .txt file")
    parser.add_argument("--output", help="where to write the JSON (default: stdout)")
    args = parser.parse_args(argv)
    path = Path(args.input)
    try:
        doc = parse_document(path.absolute())  # relative to where it runs, as usual for a tool
    except KnowledgeError as e:
        print(f"doc_parser: {path}: {e.problem}", file=sys.stderr)
        return 1
    doc["source"] = str(path)
    data = json.dumps(doc, ensure_ascii=False, indent=2)
    if args.output is None:
        print(data)
    else:
        Path(args.output).write_text(data + "\n", encoding="utf-8")
        print(f"wrote {args.output}: {summarize(doc)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
