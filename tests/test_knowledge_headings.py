"""A heading is the best summary of its passage: asking it, however briefly, finds the passage."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.core.grounding import find_passages
from gateway.knowledge import KnowledgeBase, load_csv, load_markdown
from tests.conftest import ROOT, GatewayProcess, run_cli

SHIPPED_FAQ = ROOT / "knowledge" / "faq.md"
ZH_FAQ = """# 常见问题

## 日志在哪里？
在 data/logs 目录下，按大小轮转。

## 怎么升级？
拉取新代码后再运行一次 install.sh。

## 如何安装网关？
运行 install.sh 脚本即可完成安装。
"""


def shipped_headings() -> list[str]:
    return [p.heading for p in load_markdown(SHIPPED_FAQ)]


@pytest.mark.parametrize("question", shipped_headings())
def test_every_heading_of_the_shipped_faq_reaches_the_model(question: str) -> None:
    sent = find_passages(KnowledgeBase(SHIPPED_FAQ.parent), question, budget=1000)
    assert [hit.passage.heading for hit in sent][:1] == [question]


def test_short_chinese_headings_are_found(tmp_path: Path) -> None:
    (tmp_path / "faq.md").write_text(ZH_FAQ, encoding="utf-8")
    kb = KnowledgeBase(tmp_path)
    for question in ("日志在哪里？", "怎么升级？", "日志在哪里"):
        sent = find_passages(kb, question, budget=1000)
        assert sent and sent[0].passage.heading == question.rstrip("？") + "？", question


def test_a_heading_word_in_a_longer_unrelated_question_brings_nothing(tmp_path: Path) -> None:
    (tmp_path / "faq.md").write_text(ZH_FAQ + "\n## Upgrade\nRun install.sh again.\n",
                                     encoding="utf-8")
    kb = KnowledgeBase(tmp_path)
    assert find_passages(kb, "I will not upgrade my phone, tell me a joke about cats",
                         budget=1000) == []
    assert find_passages(kb, "upgrade", budget=1000)[0].passage.heading == "Upgrade"


def test_heading_is_the_section_title_or_the_row_label(tmp_path: Path) -> None:
    md = tmp_path / "a.md"
    md.write_text("# Guide\n\n## Ports\n18789 by default.\n\nIntro-less text.\n",
                  encoding="utf-8")
    assert [p.heading for p in load_markdown(md)] == ["Ports"]
    rows = tmp_path / "b.csv"
    rows.write_text("product,price\nMoltbot Pro,10\n", encoding="utf-8")
    assert [p.heading for p in load_csv(rows)] == ["Moltbot Pro"]


def test_the_gateway_answers_a_heading_with_its_source(gateway: GatewayProcess) -> None:
    reply = gateway.post("Where are the logs?").json()
    assert reply["reply"].endswith(
        "Sources: knowledge/faq.md (Moltbot FAQ > Where are the logs?)"), reply
    trace = run_cli(gateway.home, "trace", reply["id"]).stdout
    assert "Moltbot FAQ > Where are the logs?" in trace
    assert "no passage matched" not in trace
