"""knowledge: no network, no model calls of its own; loading and ranking.

Files in a user's `knowledge/` folder become `Passage`s (loaders), a `KnowledgeIndex` ranks
them for a question with BM25 over jieba-segmented Chinese and folded English (search), and
`KnowledgeBase` keeps a folder's index and swaps it whole on reload (base). Search by meaning
(`meaning`: the passages' embeddings, built in the background; `vectors`: cosine ranking,
reciprocal rank fusion, the vector cache) is handed the function that calls the model server;
it never imports a model client.
"""

from __future__ import annotations

from gateway.knowledge.base import KnowledgeBase
from gateway.knowledge.loaders import (
    KnowledgeError,
    chunk,
    estimate_tokens,
    load_csv,
    load_document,
    load_markdown,
    load_text,
)
from gateway.knowledge.passages import Passage, ScoredPassage
from gateway.knowledge.search import KnowledgeIndex, tokenize

__all__ = [
    "KnowledgeBase",
    "KnowledgeError",
    "KnowledgeIndex",
    "Passage",
    "ScoredPassage",
    "chunk",
    "estimate_tokens",
    "load_csv",
    "load_document",
    "load_markdown",
    "load_text",
    "tokenize",
]
