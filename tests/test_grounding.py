"""Which knowledge passages go with a question, and how the reply names them."""

from __future__ import annotations

from pathlib import Path

from gateway.core.grounding import find_passages, grounding_prompt, sources_line
from gateway.knowledge import KnowledgeBase

FAQ = """# FAQ

## How do I reset my password?
Open Settings, choose Security and press "Reset password".

## Where are the logs kept?
In data/logs under the workspace, rotated at 10 MB.

## 如何安装网关?
运行 install.sh 脚本即可完成安装。
"""


def knowledge(tmp_path: Path) -> KnowledgeBase:
    folder = tmp_path / "knowledge"
    folder.mkdir()
    (folder / "faq.md").write_text(FAQ, encoding="utf-8")
    return KnowledgeBase(folder)


def test_a_matching_question_brings_its_passage_and_source(tmp_path: Path) -> None:
    kb = knowledge(tmp_path)
    hits = find_passages(kb, "how can I reset the password", budget=1000)
    assert [h.passage.title for h in hits] == ["FAQ > How do I reset my password?"]
    assert "Reset password" in grounding_prompt(hits, tmp_path)
    assert sources_line(hits, tmp_path) == \
        "\n\nSources: knowledge/faq.md (FAQ > How do I reset my password?)"
    zh = find_passages(kb, "怎么安装这个网关", budget=1000)
    assert zh and zh[0].passage.title == "FAQ > 如何安装网关?"


def test_small_talk_and_single_words_bring_nothing(tmp_path: Path) -> None:
    kb = knowledge(tmp_path)
    assert find_passages(kb, "hello there", budget=1000) == []
    assert find_passages(kb, "password", budget=1000) == []
    assert find_passages(kb, "try 10", budget=1000) == []
    assert find_passages(None, "how do I reset my password", budget=1000) == []


def test_the_budget_bounds_what_is_sent(tmp_path: Path) -> None:
    assert find_passages(knowledge(tmp_path), "reset password settings", budget=5) == []
