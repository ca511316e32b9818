"""Ranked search over zh and en passages, and the folder-backed knowledge base."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import yaml

from gateway.knowledge import KnowledgeBase, KnowledgeIndex, Passage, tokenize

DATA = Path(__file__).parent / "data" / "knowledge"


@pytest.fixture(scope="module")
def sample_base() -> KnowledgeBase:
    """The sample folder: a Chinese FAQ, an English FAQ and a bilingual product CSV."""
    return KnowledgeBase(DATA)


def load_questions() -> dict[str, list[dict[str, str]]]:
    with (DATA / "questions.yaml").open(encoding="utf-8") as f:
        questions: dict[str, list[dict[str, str]]] = yaml.safe_load(f)
    return questions


def recall_at_3(base: KnowledgeBase, items: list[dict[str, str]]) -> tuple[float, list[str]]:
    """Share of questions whose labelled passage is in the top 3, and the ones that missed."""
    missed = []
    for item in items:
        top = base.find(item["q"], k=3)
        if not any(Path(hit.passage.source).name == item["source"]
                   and hit.passage.title == item["title"] for hit in top):
            missed.append(item["q"])
    return 1 - len(missed) / len(items), missed


def test_tokenize_segments_chinese_and_drops_noise() -> None:
    tokens = tokenize("如何安装 Moltbot 网关？默认端口是１８７８９吗?")

    assert {"安装", "moltbot", "网关", "默认", "端口", "18789"} <= set(tokens)
    assert not {"如何", "是", "吗", "？", "?", " "} & set(tokens)


def test_tokenize_folds_english_word_forms() -> None:
    assert tokenize("The Tokens were CONFIGURED") == tokenize("token configure")
    assert tokenize("installing, installed; install!") == ["install"] * 3
    assert tokenize("What is it?") == []


def test_questions_are_labelled_in_both_languages() -> None:
    questions = load_questions()

    assert len(questions["zh"]) >= 20
    assert len(questions["en"]) >= 20


@pytest.mark.parametrize("language", ["zh", "en"])
def test_recall_at_3(sample_base: KnowledgeBase, language: str,
                     capsys: pytest.CaptureFixture[str]) -> None:
    items = load_questions()[language]

    recall, missed = recall_at_3(sample_base, items)

    with capsys.disabled():
        print(f"\nknowledge recall@3 [{language}]: {recall:.3f} over {len(items)} questions;"
              f" missed: {missed}")
    assert sample_base.errors == {}
    assert recall >= 0.9, missed


def test_search_answers_with_the_section_body(sample_base: KnowledgeBase) -> None:
    answer = sample_base.search("令牌过期了怎么重新生成")

    assert answer is not None
    assert answer.startswith("重新执行 `moltbot dashboard --token-gen`")
    assert sample_base.search("How much is the Edge Box?") == (
        "name: Moltbot Edge Box\ncategory: hardware\nprice: $349\ndescription: A fanless mini PC"
        " with the gateway preinstalled: 8 GB RAM, 256 GB SSD, two Ethernet ports. Runs small"
        " local models offline.")


@pytest.mark.parametrize("question", ["今天天气怎么样？", "What is the capital of France?", "",
                                      "？！。", "the of and"])
def test_search_returns_none_when_nothing_matches(sample_base: KnowledgeBase,
                                                  question: str) -> None:
    assert sample_base.search(question) is None
    assert sample_base.find(question) == []


def test_find_ranks_best_first_and_respects_k(sample_base: KnowledgeBase) -> None:
    hits = sample_base.find("日志 log", k=4)

    assert len(hits) == 4
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(h.score > 0 for h in hits)
    assert sample_base.find("日志", k=0) == []


def test_ties_keep_the_given_order() -> None:
    index = KnowledgeIndex([Passage(f"same words {n}", f"{n}.txt") for n in range(5)])

    assert [h.passage.source for h in index.find("same words", k=3)] == ["0.txt", "1.txt",
                                                                         "2.txt"]


def test_empty_index_answers_nothing() -> None:
    for index in (KnowledgeIndex([]), KnowledgeIndex([Passage("？！", "punct.txt")])):
        assert index.find("安装") == []
        assert index.search("安装") is None


def test_broken_file_is_reported_while_the_rest_load(tmp_path: Path) -> None:
    (tmp_path / "good.md").write_text("# 端口\n默认端口是 18789。\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "more.txt").write_text("Restart with moltbot gateway stop.\n")
    (tmp_path / "bad.csv").write_bytes("名称,价格\n团队版,199\n".encode("gbk"))
    (tmp_path / ".hidden.md").write_text("# 端口\nhidden\n", encoding="utf-8")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")

    base = KnowledgeBase(tmp_path)

    assert list(base.errors) == [str(tmp_path / "bad.csv")]
    assert "UTF-8" in base.errors[str(tmp_path / "bad.csv")]
    assert base.sources == [str(tmp_path / "good.md"), str(tmp_path / "sub" / "more.txt")]
    assert base.search("端口多少") == "默认端口是 18789。"
    assert base.search("how to restart") == "Restart with moltbot gateway stop."


def test_missing_folder_is_an_error_not_a_crash(tmp_path: Path) -> None:
    base = KnowledgeBase(tmp_path / "nope")

    assert "knowledge folder not found" in base.errors[str(tmp_path / "nope")]
    assert base.search("端口") is None


def test_reload_swaps_content(tmp_path: Path) -> None:
    faq = tmp_path / "faq.md"
    faq.write_text("# 端口\n默认端口是 18789。\n", encoding="utf-8")
    base = KnowledgeBase(tmp_path)
    old_index = base.index

    faq.write_text("# 日志\n日志在 data/logs 下。\n", encoding="utf-8")
    base.reload()

    assert base.search("日志在哪") == "日志在 data/logs 下。"
    assert base.search("端口") is None
    assert old_index.search("端口") == "默认端口是 18789。"  # a held index never changes


def test_reload_keeps_the_last_good_version_of_a_broken_file(tmp_path: Path) -> None:
    specs = tmp_path / "specs.csv"
    specs.write_text("name,price\nPro,$9\n", encoding="utf-8")
    base = KnowledgeBase(tmp_path)

    specs.write_text("name,price\nPro,$9,extra\n", encoding="utf-8")
    base.reload()

    assert "still serving its last good version" in base.errors[str(specs)]
    assert base.search("pro price") == "name: Pro\nprice: $9"


def test_long_sections_are_chunked(tmp_path: Path) -> None:
    body = "\n\n".join(f"第{n}段：网关的日志会按大小自动轮转。" for n in range(40))
    (tmp_path / "long.md").write_text(f"# 日志\n{body}\n", encoding="utf-8")

    base = KnowledgeBase(tmp_path, max_tokens=50)

    assert len(base.index) > 10
    assert {p.title for p in base.index.passages} == {"日志"}


def test_searches_during_reloads_see_whole_versions(tmp_path: Path) -> None:
    faq = tmp_path / "faq.md"
    versions = [f"# 端口\n默认端口是 {port}。\n\n# 令牌\n令牌有效期 {port} 秒。\n"
                for port in (18789, 28789)]
    faq.write_text(versions[0], encoding="utf-8")
    base = KnowledgeBase(tmp_path)
    seen: list[tuple[str | None, ...]] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            index = base.index
            seen.append((index.search("端口"), index.search("令牌")))

    readers = [threading.Thread(target=read) for _ in range(4)]
    for reader in readers:
        reader.start()
    try:
        for n in range(20):
            faq.write_text(versions[n % 2], encoding="utf-8")
            base.reload()
    finally:
        done.set()
        for reader in readers:
            reader.join()

    expected = {(f"默认端口是 {port}。", f"令牌有效期 {port} 秒。") for port in (18789, 28789)}
    assert seen and set(seen) <= expected


def test_a_symlink_that_leads_out_of_the_folder_is_not_indexed(tmp_path: Path) -> None:
    """Issue 14: knowledge/settings.md -> ../config.yaml put the JWT secret in the index."""
    folder = tmp_path / "knowledge"
    (folder / "inner").mkdir(parents=True)
    (tmp_path / "config.yaml").write_text("# auth\njwt_secret: s3cret-value\n")
    (folder / "settings.md").symlink_to(tmp_path / "config.yaml")
    (folder / "faq.md").write_text("# Where are logs\nIn data/logs.\n")
    (folder / "inner" / "again.md").symlink_to(folder / "faq.md")  # inside: fine
    base = KnowledgeBase(folder)
    assert base.search("jwt_secret auth") is None
    assert sorted(Path(s).name for s in base.sources) == ["again.md", "faq.md"]
    assert "leads outside the knowledge folder" in base.errors[str(folder / "settings.md")]
