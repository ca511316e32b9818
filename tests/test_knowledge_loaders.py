"""Loading knowledge files into passages, and cutting long passages to a token budget."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.knowledge import (
    KnowledgeError,
    Passage,
    chunk,
    estimate_tokens,
    load_csv,
    load_document,
    load_markdown,
    load_text,
)

DATA = Path(__file__).parent / "data" / "knowledge"


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_markdown_sections_are_titled_by_heading_path() -> None:
    passages = load_markdown(DATA / "faq_zh.md")
    by_title = {p.title: p for p in passages}

    install = by_title["Moltbot 常见问题 > 安装与启动 > 如何安装 Moltbot？"]
    assert install.text.startswith("### 如何安装 Moltbot？\n")
    assert install.source == str(DATA / "faq_zh.md")
    assert (DATA / "faq_zh.md").read_text("utf-8").splitlines()[install.line - 1] == (
        "### 如何安装 Moltbot？")
    # The "# ..." comment inside the fenced code block is not a heading.
    assert "# 安装到 /opt/ai-gateway" in install.text
    assert len([p for p in passages if p.title.count(" > ") == 2]) >= 15


def test_markdown_skips_front_matter_and_heading_only_sections() -> None:
    passages = load_markdown(DATA / "faq_zh.md")
    titles = [p.title for p in passages]

    assert titles[0] == "Moltbot 常见问题"  # its intro paragraph is a passage
    assert "Moltbot 常见问题 > 安装与启动" not in titles  # a heading with no text of its own
    assert all("updated: 2025-11-20" not in p.text for p in passages)


def test_markdown_text_before_first_heading_is_untitled(tmp_path: Path) -> None:
    path = write(tmp_path / "notes.md", "\nIntro line.\n\n# A\nalpha\n## B ##\nbeta\n# C\n")

    passages = load_markdown(path)

    assert [(p.title, p.line, p.text) for p in passages] == [
        ("", 2, "Intro line."),
        ("A", 4, "# A\nalpha"),
        ("A > B", 6, "## B ##\nbeta"),
    ]


def test_body_drops_the_heading_line_only() -> None:
    assert Passage("## Q?\nThe answer.\n\nMore.", "f.md", "Q?").body == "The answer.\n\nMore."
    assert Passage("name: Pro\nprice: $9", "p.csv").body == "name: Pro\nprice: $9"
    assert Passage("#hashtag is not a heading", "f.md").body == "#hashtag is not a heading"
    assert Passage("# id: 7\nname: Pro", "p.csv", "7").body == "# id: 7\nname: Pro"
    assert Passage("## C > D\nbody", "f.md", "A > C > D").body == "body"


def test_csv_rows_render_as_header_value_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "specs.csv",
                 'name,price,description\n'
                 'Edge Box,$349,"Fanless, 8 GB RAM"\n'
                 '\n'
                 '语音模块,,"麦克风阵列\n加扬声器"\n',
                 encoding="utf-8-sig")  # with the byte-order mark Excel writes

    rows = load_csv(path)

    assert [(p.title, p.line, p.text) for p in rows] == [
        ("Edge Box", 2, "name: Edge Box\nprice: $349\ndescription: Fanless, 8 GB RAM"),
        ("语音模块", 4, "name: 语音模块\ndescription: 麦克风阵列\n加扬声器"),
    ]


def test_csv_sample_has_both_languages() -> None:
    rows = load_csv(DATA / "product_specs.csv")

    assert len(rows) == 8
    assert rows[0].text.startswith("name: Moltbot Community\ncategory: 软件\nprice: 免费\n")
    assert any("Licensed per gateway" in row.text for row in rows)


def test_csv_row_with_extra_values_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.csv", "name,price\nA,1\nB,2,unquoted, comma\n")

    with pytest.raises(KnowledgeError, match=r"line 3 has 4 values .* double quotes") as info:
        load_csv(path)
    assert info.value.path == str(path)


def test_non_utf8_file_says_how_to_fix(tmp_path: Path) -> None:
    path = write(tmp_path / "gbk.csv", "名称,价格\n团队版,199\n", encoding="gbk")

    with pytest.raises(KnowledgeError, match="UTF-8") as info:
        load_csv(path)
    assert str(path) in str(info.value)


def test_text_files_split_into_paragraphs(tmp_path: Path) -> None:
    path = write(tmp_path / "notes.txt", "First para\nstill first.\r\n\r\n\n第二段。\n")

    assert [(p.line, p.text) for p in load_text(path)] == [
        (1, "First para\nstill first."), (5, "第二段。")]


def test_load_document_dispatches_on_suffix(tmp_path: Path) -> None:
    assert load_document(write(tmp_path / "a.MD", "# T\nbody\n"))[0].title == "T"
    assert load_document(write(tmp_path / "a.markdown", "# T\nbody\n"))[0].title == "T"
    assert load_document(write(tmp_path / "a.txt", "plain\n"))[0].text == "plain"
    assert load_document(write(tmp_path / "a.csv", "k\nv\n"))[0].text == "k: v"

    with pytest.raises(KnowledgeError, match=r"unsupported file type '\.pdf'; use one of"):
        load_document(write(tmp_path / "a.pdf", "%PDF"))
    with pytest.raises(KnowledgeError, match="cannot read the file") as info:
        load_document(tmp_path / "missing.md")
    assert info.value.path == str(tmp_path / "missing.md")


def test_estimate_tokens_counts_cjk_per_character() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("网关端口") == 4
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("端口 port") == 2 + 2


LONG_ZH = ("# 长段落\n" + "网关会监视知识库目录，文件保存后几秒内重新建立索引。" * 12 + "\n\n"
           + "期间的查询仍然使用旧索引！" * 8)
LONG_EN = "\n\n".join(" ".join(f"Sentence {p}.{s} is about the gateway." for s in range(9))
                      for p in range(6))


@pytest.mark.parametrize("text", [LONG_ZH, LONG_EN, "无标点" * 200, "x" * 3000])
@pytest.mark.parametrize("budget", [1, 17, 60, 200])
def test_chunks_respect_the_budget_and_keep_everything(text: str, budget: int) -> None:
    passage = Passage(text, "doc.md", "Doc > Long", line=10)

    chunks = chunk([passage], budget)

    assert all(estimate_tokens(c.text) <= budget for c in chunks)
    assert all((c.source, c.title) == ("doc.md", "Doc > Long") for c in chunks)
    assert "".join(c.text for c in chunks).replace(" ", "").replace("\n", "") == (
        text.replace(" ", "").replace("\n", ""))
    assert [c.line for c in chunks] == sorted(c.line for c in chunks)
    assert all(c.text.split("\n")[0] in text.splitlines()[c.line - 10]
               for c in chunks)


def test_chunks_cut_on_paragraphs_then_sentences() -> None:
    paragraphs = [Passage(LONG_EN, "en.txt")]
    chunks = chunk(paragraphs, estimate_tokens(LONG_EN.split("\n\n")[0]))

    assert [c.text for c in chunks] == LONG_EN.split("\n\n")

    sentences = chunk([Passage(LONG_ZH, "zh.md")], 60)
    assert all(re.search(r"[。！]$", c.text) for c in sentences[1:])


def test_chunk_leaves_short_passages_alone_and_checks_the_budget() -> None:
    short = Passage("## Q\nshort answer", "f.md", "Q", 3)

    assert chunk([short], 50) == [short]
    with pytest.raises(ValueError, match="max_tokens must be at least 1"):
        chunk([short], 0)
