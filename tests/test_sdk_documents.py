"""moltbot_sdk.parse_document: the knowledge base's own split of a document, as data."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.knowledge import load_csv, load_markdown, load_text
from moltbot_sdk import KnowledgeError, parse_document

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data" / "knowledge"
TRICKY = """---
title: metadata, not text
---
Before any heading.

# Guide

## Empty

### Install ##
Run it.

~~~
# a comment in fenced code
~~~
#not a heading
  ## Ports
18789.
"""


def markdown_files() -> list[Path]:
    return [DATA / "faq_zh.md", DATA / "faq_en.md",
            *sorted((ROOT / "bench" / "recall" / "knowledge").glob("*.md"))]


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: p.name)
def test_markdown_sections_are_the_knowledge_loaders(path: Path) -> None:
    doc = parse_document(path)
    passages = load_markdown(path)

    with_text = [s for s in doc["sections"] if s["text"]]
    assert [(s["heading"], s["text"]) for s in with_text] == [
        (p.heading, p.body) for p in passages]
    assert len(doc["sections"]) > len(passages)  # the heading-only sections are kept too


def test_a_tricky_document_splits_alike(tmp_path: Path) -> None:
    path = tmp_path / "tricky.md"
    path.write_text(TRICKY, encoding="utf-8")

    doc = parse_document(path)

    assert doc == {"source": str(path), "title": "Guide", "sections": [
        {"heading": "", "text": "Before any heading."},
        {"heading": "Guide", "text": ""},
        {"heading": "Empty", "text": ""},
        {"heading": "Install", "text": "Run it.\n\n~~~\n# a comment in fenced code\n~~~\n"
                                       "#not a heading"},
        {"heading": "Ports", "text": "18789."}]}
    assert [(s["heading"], s["text"]) for s in doc["sections"] if s["text"]] == [
        (p.heading, p.body) for p in load_markdown(path)]


def test_csv_rows_and_text_paragraphs_are_the_knowledge_loaders(tmp_path: Path) -> None:
    csv_path = DATA / "product_specs.csv"
    rows = parse_document(csv_path)["rows"]
    assert ["\n".join(f"{k}: {v}" for k, v in row.items() if v) for row in rows] == [
        p.text for p in load_csv(csv_path)]

    text_path = tmp_path / "notes.txt"
    text_path.write_text("First paragraph,\ntwo lines.\n\n\n  Second.\r\n\r\nThird.\n",
                         encoding="utf-8")
    doc = parse_document(text_path)
    assert doc["sections"] == [{"heading": "", "text": p.text} for p in load_text(text_path)]
    assert [s["text"] for s in doc["sections"]] == [
        "First paragraph,\ntwo lines.", "Second.", "Third."]


def test_a_short_csv_row_has_every_column(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text("name,price\nA,1\n\nB\n", encoding="utf-8")
    assert parse_document(path)["rows"] == [{"name": "A", "price": "1"},
                                            {"name": "B", "price": ""}]


def test_text_in_hand_is_parsed_without_reading(tmp_path: Path) -> None:
    doc = parse_document(tmp_path / "not-there.md", text="# Notes\nsome text\n")
    assert doc == {"source": str(tmp_path / "not-there.md"), "title": "Notes",
                   "sections": [{"heading": "Notes", "text": "some text"}]}
    assert parse_document("upload.txt", text="a\n\nb")["sections"] == [
        {"heading": "", "text": "a"}, {"heading": "", "text": "b"}]


def test_a_relative_path_is_in_the_workspace(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "knowledge").mkdir()
    (tmp_path / "knowledge" / "faq.md").write_text("## Q\nA.\n", encoding="utf-8")
    monkeypatch.setenv("MOLTBOT_HOME", str(tmp_path))
    doc = parse_document("knowledge/faq.md")
    assert doc == {"source": "knowledge/faq.md", "title": "Q",
                   "sections": [{"heading": "Q", "text": "A."}]}


def test_what_cannot_be_parsed_says_the_fix(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeError, match=r"unsupported file type '\.pdf'; use one of \.md"):
        parse_document(tmp_path / "scan.pdf", text="%PDF")
    (tmp_path / "gbk.md").write_bytes("# 标题\n".encode("gbk"))
    with pytest.raises(KnowledgeError, match=r"not UTF-8 text .* re-save it as UTF-8"):
        parse_document(tmp_path / "gbk.md")
    with pytest.raises(KnowledgeError, match="cannot read the file"):
        parse_document(tmp_path / "missing.md")
