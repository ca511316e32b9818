"""Search by meaning over embedding vectors, fused with BM25 by reciprocal rank.

Pure numpy: the vectors come from elsewhere (`meaning.Embeddings` asks the model server).
Vectors are kept unit-length in one float32 matrix, so a query's cosine similarity to every
passage is one matrix-vector product (5,000 passages x 768 dimensions: about 3 ms).
`VectorCache` keeps each passage's vector under a hash of its text in a file, so a restart or
an edited file embeds only the passages that changed.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

RRF_K = 60  # the constant of Cormack et al. (2009): a hit's weight is 1 / (RRF_K + rank)


def unit_rows(vectors: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """The vectors as float32 rows of length 1 (an all-zero row stays zero: it matches nothing)."""
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"expected a list of vectors, got an array of shape {matrix.shape}")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1, norms)


class VectorIndex:
    """Unit vectors for a fixed list of passages, by position; immutable, so readers share it."""

    def __init__(self, matrix: np.ndarray) -> None:
        self.matrix = matrix
        self.matrix.setflags(write=False)

    def __len__(self) -> int:
        return len(self.matrix)

    @property
    def dimensions(self) -> int:
        return int(self.matrix.shape[1]) if self.matrix.ndim == 2 else 0

    def find(self, query: np.ndarray, k: int, min_similarity: float) -> list[tuple[int, float]]:
        """Up to `k` (position, cosine similarity) pairs at or over `min_similarity`, best
        first (equal ones in passage order). `query` is a unit vector of the same length; a
        vector of another length (an index built by another model) finds nothing."""
        if not len(self.matrix) or k < 1 or query.shape != (self.dimensions,):
            return []
        # einsum, not `@`: `@` is OpenBLAS, whose own threads spin for the CPU; measured on
        # 2 busy cores, 5,000 x 768: 11-18 ms with them, 2.4-3 ms with einsum's one loop
        scores = np.einsum("ij,j->i", self.matrix, query)
        top = np.argpartition(-scores, k - 1)[:k] if len(scores) > k else np.arange(len(scores))
        top = top[scores[top] >= min_similarity]
        ranked = sorted(top.tolist(), key=lambda i: (-float(scores[i]), i))
        return [(i, float(scores[i])) for i in ranked]


def fuse(rankings: Iterable[Sequence[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: each item scores the sum of 1 / (k + rank) over the rankings
    it is in (rank from 1), best first; ties keep the order items were first seen in.

    Ranks, not scores, are fused: a BM25 score and a cosine similarity are on scales that
    cannot be added, and RRF needs no tuning to combine them.
    """
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    order = {item: n for n, item in enumerate(scores)}
    return sorted(scores.items(), key=lambda pair: (-pair[1], order[pair[0]]))


def text_key(text: str) -> str:
    """The cache key of a passage's text: 32 hex characters of its BLAKE2b hash."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


class VectorCache:
    """Text key -> vector, for one embedding model, kept in one `.npz` file.

    Loaded once, then saved whole (to a temporary file, then renamed, so a crash never leaves
    half a file) with only the keys still in use, so it never grows past the knowledge folder.
    A file that cannot be read is logged and ignored: the vectors are embedded again.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.vectors: dict[str, np.ndarray] = {}

    def load(self) -> None:
        if not self.path.exists():
            return
        try:
            with np.load(self.path, allow_pickle=False) as data:
                keys, matrix = data["keys"], data["vectors"]
                self.vectors = {str(key): row for key, row in zip(keys, matrix, strict=True)}
        except (OSError, ValueError, KeyError) as e:
            log.warning("embedding cache %s cannot be read (%s); embedding again", self.path, e)
            self.vectors = {}

    def save(self, keep: Iterable[str]) -> None:
        """Write the vectors of the `keep` keys (those not cached are left out)."""
        keys = [key for key in dict.fromkeys(keep) if key in self.vectors]
        self.vectors = {key: self.vectors[key] for key in keys}
        matrix = np.stack([self.vectors[k] for k in keys]) if keys else np.zeros((0, 0), np.float32)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp.npz")
        np.savez(temporary, keys=np.array(keys, dtype="U32"), vectors=matrix)
        os.replace(temporary, self.path)

    def dimensions(self) -> int:
        """The length of the cached vectors (0 when empty)."""
        return len(next(iter(self.vectors.values()))) if self.vectors else 0
