"""`knowledge:` in config.yaml: how the knowledge folder is searched.

BM25 always runs; naming an embedding model adds search by meaning (its passages embedded by
that model, ranked together with BM25). Empty, the default, makes no embedding call at all.
"""

from __future__ import annotations

from pydantic import Field

from gateway.common.options import Section


class KnowledgeConfig(Section):
    embedding_model: str = Field(
        "", description="a name under models: whose model embeds text (Ollama's "
        "nomic-embed-text or bge-m3, an OpenAI-compatible /v1/embeddings model); empty: BM25 "
        "only, no embedding calls")
    min_similarity: float = Field(
        0.5, ge=0, le=1, description="cosine similarity a passage needs to be found by "
        "meaning; below it only BM25 can bring the passage")
