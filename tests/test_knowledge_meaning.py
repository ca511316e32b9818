"""Search by meaning: reciprocal rank fusion, the vector index and its cache, the background
build with its failures, hybrid ranking and grounding, the config key, and the model
backends' embedding calls against the fake model server (tests/fakes/fake_model.py)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from gateway.common.options import ConfigError
from gateway.config import parse_config
from gateway.core.grounding import TOP_K, choose_passages, find_passages
from gateway.knowledge import KnowledgeBase
from gateway.knowledge.meaning import QUERY_RETRY, Embeddings
from gateway.knowledge.vectors import VectorCache, VectorIndex, fuse, text_key, unit_rows
from gateway.models.base import NoModelAvailable
from gateway.models.ollama_provider import OllamaProvider
from gateway.models.openai_provider import OpenAIProvider
from gateway.models.pool import ModelPool
from gateway.ops.doctor import check_embedding
from tests.fakes.fake_model import FakeModelServer, fake_embedding

FAQ = """# Help

## How do I start the gateway?
Run `moltbot gateway start`; it returns once the gateway answers its health check.

## How do I stop the gateway?
Run `moltbot gateway stop`; replies being written finish first.

## Where are the logs?
In data/logs under the workspace, rotated by size.
"""
PARAPHRASE = "launch the service"  # shares no word with "How do I start the gateway?"


class Recorder:
    """An embed function over the fake's vectors that counts calls and can be made to fail."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], float | None]] = []
        self.failure: Exception | None = None
        self.scale = 1  # 2: vectors twice as long, as a different model would give

    def __call__(self, model: str, texts: list[str],
                 timeout: float | None) -> Sequence[Sequence[float]]:
        self.calls.append((model, texts, timeout))
        if self.failure is not None:
            raise self.failure
        return [fake_embedding(t) * self.scale for t in texts]

    def texts(self) -> list[str]:
        return [t for _, texts, _ in self.calls for t in texts]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def kb(tmp_path: Path) -> KnowledgeBase:
    folder = tmp_path / "knowledge"
    folder.mkdir()
    (folder / "faq.md").write_text(FAQ, encoding="utf-8")
    return KnowledgeBase(folder)


def meaning_for(kb: KnowledgeBase, embed: Recorder, tmp_path: Path,
                clock: Clock | None = None) -> Embeddings:
    meaning = Embeddings(embed, tmp_path / "data" / "embeddings", lambda: kb.index.passages,
                         clock=clock or Clock())
    meaning.configure("emb", "nomic-embed-text", 0.5)
    kb.meaning = meaning
    return meaning


# -- fusion, vectors, cache


def test_rrf_adds_one_over_k_plus_rank_and_keeps_first_seen_order_on_ties() -> None:
    fused = fuse([[7, 3, 5], [3, 9]], k=60)
    assert [item for item, _ in fused] == [3, 7, 9, 5]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)
    assert [score for _, score in fused[1:]] == pytest.approx([1 / 61, 1 / 62, 1 / 63])
    assert [item for item, _ in fuse([[7, 5], [9, 4]])] == [7, 9, 5, 4]  # ties: first seen
    assert fuse([]) == [] and fuse([[], []]) == []


def test_vector_index_ranks_by_cosine_over_the_threshold() -> None:
    index = VectorIndex(unit_rows([[1, 0], [1, 1], [0, 1], [0, 0]]))
    query = unit_rows([[1, 0.1]])[0]
    found = index.find(query, 3, 0.5)
    assert [i for i, _ in found] == [0, 1]  # [0, 1] is at 0.1, the zero row at 0
    assert found[0][1] == pytest.approx(0.995, abs=1e-3)
    assert index.find(query, 1, 0.0) == found[:1]
    assert index.find(unit_rows([[1, 0, 0]])[0], 3, 0.0) == []  # another model's length
    assert VectorIndex(np.zeros((0, 0), np.float32)).find(query, 3, 0.0) == []


def test_vector_cache_round_trips_prunes_and_survives_a_broken_file(tmp_path: Path) -> None:
    cache = VectorCache(tmp_path / "emb" / "m.npz")
    cache.vectors = {text_key("a"): np.ones(4, np.float32), text_key("b"): np.zeros(4, np.float32)}
    cache.save([text_key("a")])
    again = VectorCache(cache.path)
    again.load()
    assert list(again.vectors) == [text_key("a")] and again.dimensions() == 4
    assert np.array_equal(again.vectors[text_key("a")], np.ones(4, np.float32))
    cache.path.write_bytes(b"not a numpy file")
    broken = VectorCache(cache.path)
    broken.load()
    assert broken.vectors == {}


# -- the background build


def test_build_embeds_in_batches_once_then_only_what_changed(kb: KnowledgeBase,
                                                            tmp_path: Path) -> None:
    embed = Recorder()
    meaning = meaning_for(kb, embed, tmp_path)
    assert meaning.find(kb.index.passages, PARAPHRASE, 3) == (
        [], "bm25 only: embeddings building (0/3)")
    meaning.build()
    assert len(embed.texts()) == 3 and all(timeout is None for *_, timeout in embed.calls)
    assert meaning.status() == f"ready: 3 passages embedded by emb ({len(fake_embedding(''))} "\
                               "dimensions)"
    # a restart: a new Embeddings reads the cache file and embeds nothing
    restarted = Recorder()
    meaning_for(kb, restarted, tmp_path).build()
    assert restarted.calls == []
    # an edited file: only the changed passage is embedded again
    (kb.folder / "faq.md").write_text(FAQ.replace("rotated by size", "kept for 30 days"),
                                      encoding="utf-8")
    kb.reload()
    edited = Recorder()
    meaning = meaning_for(kb, edited, tmp_path)
    meaning.build()
    assert [t.splitlines()[0] for t in edited.texts()] == ["Help > Where are the logs?"]
    assert kb.find_explained(PARAPHRASE, 3)[1] == "hybrid: bm25 + meaning (emb)"


def test_hybrid_finds_the_paraphrase_bm25_misses_and_grounding_sends_it(
        kb: KnowledgeBase, tmp_path: Path) -> None:
    assert find_passages(kb, PARAPHRASE, 1000) == []  # BM25 alone: not a shared word
    meaning_for(kb, Recorder(), tmp_path).build()
    hits = kb.find(PARAPHRASE, TOP_K)
    assert hits[0].passage.heading == "How do I start the gateway?"
    assert hits[0].similarity is not None and hits[0].similarity >= 0.5
    assert hits[0].origin.startswith("meaning #1 (")
    sent = choose_passages(hits, PARAPHRASE, 1000)
    assert [h.passage.heading for h in sent] == ["How do I start the gateway?"]
    # a question both rankings agree on: its passage is first in each, so first fused
    both = kb.find("how do I stop the gateway", 3)[0]
    assert both.passage.heading == "How do I stop the gateway?"
    assert both.origin.startswith("bm25 #1 (") and ", meaning #1 (" in both.origin
    assert both.score == pytest.approx(2 / 61)
    # small talk is near nothing: no passage is sent
    assert find_passages(kb, "hello there", 1000) == []


def test_a_failing_server_leaves_bm25_answering_and_says_why(kb: KnowledgeBase,
                                                            tmp_path: Path) -> None:
    embed, clock = Recorder(), Clock()
    meaning = meaning_for(kb, embed, tmp_path, clock)
    embed.failure = NoModelAvailable("emb", [("http://127.0.0.1:9", "connection refused")],
                                     "config.yaml")
    assert meaning.build() is False
    hits, how = kb.find_explained("where are the logs", 3)
    assert how.startswith("bm25 only: embedding model emb unavailable (The model 'emb' could "
                          "not be reached.")
    assert how.endswith("Tried: http://127.0.0.1:9 (connection refused) (config.yaml).)")
    assert meaning.status().startswith("not ready: The model 'emb' could not be reached.")
    assert hits[0].passage.heading == "Where are the logs?" and hits[0].origin == ""
    embed.failure = None
    meaning.build()
    assert kb.find_explained(PARAPHRASE, 3)[1].startswith("hybrid")
    # the server goes away after the build: one question fails, then none is tried
    embed.failure = ConnectionError("connection refused")
    before = len(embed.calls)
    assert kb.find_explained("turn the bot off", 3)[1] == \
        "bm25 only: embedding model emb unavailable (connection refused)"
    assert kb.find_explained("shut it down", 3)[1].endswith("trying again in 30 s")
    assert len(embed.calls) == before + 1
    embed.failure = None
    clock.now += QUERY_RETRY
    assert kb.find_explained("shut it down", 3)[1].startswith("hybrid")


def test_a_question_is_embedded_once_with_a_short_time_limit(kb: KnowledgeBase,
                                                             tmp_path: Path) -> None:
    embed = Recorder()
    meaning_for(kb, embed, tmp_path).build()
    for _ in range(3):
        kb.find(PARAPHRASE, 3)
    queries = [c for c in embed.calls if c[1] == [PARAPHRASE]]
    assert len(queries) == 1 and queries[0][2] is not None and queries[0][2] <= 10


def test_another_model_or_vector_length_embeds_everything_again(kb: KnowledgeBase,
                                                                tmp_path: Path) -> None:
    embed = Recorder()
    meaning = meaning_for(kb, embed, tmp_path)
    meaning.build()
    meaning.configure("emb2", "bge-m3", 0.5)  # another model: its own cache file
    assert kb.find_explained(PARAPHRASE, 3)[1] == "bm25 only: embeddings building (0/3)"
    meaning.build()
    assert len(embed.texts()) == 6 and (tmp_path / "data/embeddings/bge-m3.npz").exists()
    # the same name now serves a model with longer vectors: the cache is dropped
    (kb.folder / "more.md").write_text("## Uninstall\nDelete the folder.\n", encoding="utf-8")
    kb.reload()
    embed.scale = 2
    meaning.build()  # the first batch shows the new length: the build starts over
    meaning.build()
    assert kb.find_explained(PARAPHRASE, 3)[1].startswith("hybrid")
    assert meaning.status().endswith(f"({2 * len(fake_embedding(''))} dimensions)")


def test_off_makes_no_embedding_call(kb: KnowledgeBase, tmp_path: Path) -> None:
    embed = Recorder()
    meaning = meaning_for(kb, embed, tmp_path)
    meaning.configure("", "", 0.5)
    meaning.build()
    assert kb.find_explained(PARAPHRASE, 3) == ([], "bm25")
    assert embed.calls == [] and meaning.status().startswith("off")


# -- config


def test_an_unknown_embedding_model_is_refused_with_what_to_set() -> None:
    with pytest.raises(ConfigError) as e:
        parse_config({"models": {"llama2": {"endpoint": "http://127.0.0.1:11434"}},
                      "knowledge": {"embedding_model": "nomic"}})
    assert "knowledge.embedding_model 'nomic' is not one of models: ['llama2']" in str(e.value)
    assert "add it under models:" in str(e.value)
    config = parse_config({"models": {
        "nomic": {"endpoint": "http://127.0.0.1:11434", "model": "nomic-embed-text"},
        "llama2": {"endpoint": "http://127.0.0.1:11434"}},
        "knowledge": {"embedding_model": "nomic"}})
    assert config.chat_model() == "llama2"  # the embedding model cannot chat
    assert parse_config({}).knowledge.embedding_model == ""


# -- the backends, over HTTP


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeModelServer, FakeModelServer]]:
    with FakeModelServer() as first, FakeModelServer() as second:
        yield first, second


def test_ollama_and_openai_backends_embed_through_the_pool_with_fail_over(
        fakes: tuple[FakeModelServer, FakeModelServer]) -> None:
    first, second = fakes
    texts = ["launch the service", "启动网关"]
    ollama = OllamaProvider(first.url, "nomic-embed-text", max_tokens=1)
    openai = OpenAIProvider(f"{first.url}/v1", "nomic-embed-text", max_tokens=1, api_key="k")
    try:
        assert ollama.embed(texts) == [fake_embedding(t) for t in texts]
        assert openai.embed(texts, timeout=5) == [fake_embedding(t) for t in texts]
    finally:
        ollama.close()
        openai.close()
    assert [r["path"] for r in first.requests[-2:]] == ["/api/embed", "/v1/embeddings"]
    assert first.requests[-2]["body"] == {"model": "nomic-embed-text", "input": texts}
    first.stop()
    pool = ModelPool("emb", [OllamaProvider(u, "nomic-embed-text", max_tokens=1)
                             for u in (first.url, second.url)])
    try:
        assert pool.embed(texts, timeout=5) == [fake_embedding(t) for t in texts]
        assert pool.status()[0]["last_error"] == "connection refused"
        second.stop()
        with pytest.raises(NoModelAvailable, match="could not be reached"):
            pool.embed(texts)
    finally:
        pool.close()
        first.start()
        second.start()


def test_a_model_that_cannot_embed_is_refused_not_failed_over(
        fakes: tuple[FakeModelServer, FakeModelServer]) -> None:
    first, _ = fakes
    first.known_models = {"llama2"}
    provider = OllamaProvider(first.url, "nomic-embed-text", max_tokens=1)
    try:
        with pytest.raises(Exception, match="ollama pull nomic-embed-text"):
            provider.embed(["x"])
    finally:
        provider.close()
        first.known_models = None


def test_doctor_says_whether_the_embedding_model_embeds(
        fakes: tuple[FakeModelServer, FakeModelServer]) -> None:
    first, _ = fakes
    config = parse_config({"models": {
        "llama2": {"endpoint": first.url},
        "embed": {"endpoint": first.url, "endpoints": ["http://127.0.0.1:9"],
                  "model": "nomic-embed-text"}}, "knowledge": {"embedding_model": "embed"}})
    (ok, what, fix), (down, why, how) = check_embedding(config)
    assert ok and what == (f"search by meaning: nomic-embed-text at {first.url}: embeds "
                           f"({len(fake_embedding('x'))} dimensions)") and fix == ""
    assert not down and why.startswith("search by meaning: nomic-embed-text at "
                                       "http://127.0.0.1:9: connection refused")
    assert how.startswith("start the model server, `ollama pull nomic-embed-text`")
