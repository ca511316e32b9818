"""Search by meaning through the real gateway: chat on one fake model server, embeddings on
another (so one can hang or die while the other answers), a paraphrase found that BM25 misses,
an edit served by BM25 until its embeddings are ready, a dead embedding server that costs the
sender nothing, no embedding call at all when it is off (the default), and a config edit that
switches it on."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import GatewayProcess, free_port, model_config, write_config
from tests.fakes.fake_model import FakeModelServer

FAQ = """# Help

## How do I start the gateway?
Run `moltbot gateway start`; it returns once the gateway answers its health check.

## Where are the logs?
In data/logs under the workspace, rotated by size.
"""
UNINSTALL = "\n## How do I uninstall Moltbot?\nDelete ~/.moltbot and its link in ~/.local/bin.\n"


def wait_for(check: Callable[[], Any], what: str, deadline_s: float = 15.0) -> Any:
    deadline = time.monotonic() + deadline_s
    while not (found := check()):
        assert time.monotonic() < deadline, f"not within {deadline_s} s: {what}"
        time.sleep(0.05)
    return found


def search(gw: GatewayProcess, question: str) -> dict[str, Any]:
    response = httpx.get(f"{gw.url}/api/v1/knowledge/search", params={"q": question},
                         headers=gw.headers, timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def knowledge_span(gw: GatewayProcess, msg_id: str) -> str:
    trace = httpx.get(f"{gw.url}/api/v1/messages/{msg_id}/trace", headers=gw.headers,
                      timeout=10).json()
    return str(next(s["detail"] for s in trace["spans"] if s["step"] == "knowledge"))


@pytest.fixture
def hybrid(tmp_path: Path) -> Iterator[tuple[GatewayProcess, FakeModelServer, FakeModelServer]]:
    """A gateway whose chat model and embedding model (`emb`) are two fake servers."""
    with FakeModelServer() as chat, FakeModelServer() as embedder:
        home = tmp_path / "ai-gateway"
        (home / "knowledge").mkdir(parents=True)
        (home / "knowledge" / "faq.md").write_text(FAQ, encoding="utf-8")
        config = model_config(chat.url)
        config["models"]["emb"] = {"endpoint": embedder.url, "model": "nomic-embed-text",
                                   "timeout": "30s"}
        write_config(home, {**config, "knowledge": {"embedding_model": "emb"}})
        gw = GatewayProcess(home, free_port()).start()
        try:
            yield gw, chat, embedder
        finally:
            gw.stop()


def test_hybrid_search_through_the_gateway(
        hybrid: tuple[GatewayProcess, FakeModelServer, FakeModelServer]) -> None:
    """One gateway for the whole story (each start costs seconds): a paraphrase, an edit,
    then the embedding server gone."""
    gw, chat, embedder = hybrid
    wait_for(lambda: search(gw, "x")["meaning"].startswith("ready"), "embeddings ready")
    found = search(gw, "x")
    assert found["meaning"] == "ready: 2 passages embedded by emb (297 dimensions)"
    assert found["ranking"] == "hybrid: bm25 + meaning (emb)"

    # a paraphrase that shares no word with its passage is found by meaning
    reply = gw.post("launch the service").json()
    assert reply["reply"].endswith("Sources: knowledge/faq.md (Help > How do I start the "
                                   "gateway?)"), reply
    detail = knowledge_span(gw, reply["id"])
    assert detail.startswith("hybrid: bm25 + meaning (emb): Help > How do I start the gateway? "
                             "(meaning #1 (0."), detail
    assert "How do I start the gateway?" in chat.requests[-1]["body"]["messages"][1]["content"]
    asked = [r["body"] for r in embedder.requests if r["path"] == "/api/embed"]
    assert asked[-1] == {"model": "nomic-embed-text", "input": ["launch the service"]}

    # an edit: BM25 serves the new section at once, meaning once its embedding is ready
    embedder.hang = True  # the new passage's embedding waits until the test lets it go
    try:
        with (gw.home / "knowledge" / "faq.md").open("a", encoding="utf-8") as faq:
            faq.write(UNINSTALL)
        # "x" was embedded before: its vector is cached, so polling sends no embedding call
        wait_for(lambda: search(gw, "x")["ranking"].startswith("bm25 only"), "BM25 reloaded")
        assert search(gw, "x")["meaning"] == "building (2/3); BM25 answers meanwhile"
        assert search(gw, "uninstall moltbot")["hits"][0]["origin"] == ""
        reply = gw.post("how do I uninstall moltbot").json()
        assert reply["reply"].endswith("(Help > How do I uninstall Moltbot?)"), reply
        assert knowledge_span(gw, reply["id"]).startswith(
            "bm25 only: embeddings building (2/3): Help > How do I uninstall Moltbot?")
    finally:
        embedder.hang = False
    wait_for(lambda: search(gw, "x")["meaning"].startswith("ready: 3 passages"),
             "the new section embedded")
    reply = gw.post("remove it completely").json()
    assert reply["reply"].endswith("(Help > How do I uninstall Moltbot?)"), reply
    assert "meaning #1" in knowledge_span(gw, reply["id"])

    # the embedding server dies: BM25 answers, the sender sees nothing of it
    embedder.stop()
    response = gw.post("where are the logs kept")
    assert response.status_code == 200, response.text
    assert response.json()["reply"].endswith("(Help > Where are the logs?)")
    detail = knowledge_span(gw, response.json()["id"])
    assert detail.startswith("bm25 only: embedding model emb unavailable (The model 'emb' "
                             "could not be reached."), detail
    paraphrase = gw.post("turn the bot off")  # nothing BM25 finds: a plain answer
    assert paraphrase.status_code == 200
    assert paraphrase.json()["reply"] == "echo: turn the bot off"
    assert "trying again in" in knowledge_span(gw, paraphrase.json()["id"])


def test_off_by_default_then_switched_on_by_a_config_edit(tmp_path: Path,
                                                          fake_model: FakeModelServer) -> None:
    home = tmp_path / "ai-gateway"
    (home / "knowledge").mkdir(parents=True)
    (home / "knowledge" / "faq.md").write_text(FAQ, encoding="utf-8")
    config = model_config(fake_model.url)
    write_config(home, config)
    gw = GatewayProcess(home, free_port()).start()
    try:
        assert search(gw, "x")["meaning"] == "off (knowledge.embedding_model is not set)"
        reply = gw.post("where are the logs").json()
        assert knowledge_span(gw, reply["id"]).startswith("bm25: Help > Where are the logs?")
        assert gw.post("launch the service").json()["reply"] == "echo: launch the service"
        assert [r["path"] for r in fake_model.requests if "embed" in r["path"]] == []
        # naming an embedding model in config.yaml switches it on, without a restart
        config["models"]["emb"] = {"endpoint": fake_model.url, "model": "nomic-embed-text"}
        write_config(home, {**config, "knowledge": {"embedding_model": "emb"}})
        wait_for(lambda: search(gw, "x")["meaning"].startswith("ready: 2 passages"),
                 "embeddings built after the config edit")
        reply = gw.post("launch the service").json()
        assert reply["reply"].endswith("(Help > How do I start the gateway?)"), reply
    finally:
        gw.stop()
