"""Embeddings of the knowledge passages, built in the background, for search by meaning.

`Embeddings` is given an `embed(model, texts, timeout)` function (the composition root's, which
calls the configured model server) and the current passages. A worker embeds the passages
whose text it has no vector for, in batches, and swaps in a complete `VectorIndex` when done;
until then, and whenever the model server cannot answer, `find` returns nothing and says why,
so the caller answers with BM25 alone. Nothing here waits on a message: the build runs in a
worker of its own (a greenlet in the gateway; its HTTP calls are cooperative), a question is
embedded once (then cached) with a short time limit, and after a failure questions are not
embedded again until `QUERY_RETRY` has passed.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.knowledge.passages import Passage
from gateway.knowledge.search import indexed_text

if TYPE_CHECKING:  # numpy (~100 ms) only once an embedding model is named: `_import_vectors`
    import numpy as np

    from gateway.knowledge.vectors import VectorCache, VectorIndex

log = logging.getLogger(__name__)

T = TypeVar("T")
Embed = Callable[[str, list[str], "float | None"], Sequence[Sequence[float]]]
BATCH = 32  # passages per embedding call: one call stays short, few calls for a folder
QUERY_TIMEOUT = 5.0  # seconds a question's embedding may take before BM25 answers alone
QUERY_RETRY = 30.0  # seconds without embedding questions after one failed
BUILD_RETRY = (5.0, 300.0)  # a failed build is tried again after 5 s, doubling to 5 min
QUERY_CACHE = 256  # questions whose vectors are kept (a retried or repeated question)


@dataclass(frozen=True)
class _Ready:
    """Vectors for exactly these passages (by identity: the index they came from), by model."""

    model: str
    passages: tuple[Passage, ...]
    index: VectorIndex


def _run_here(func: Callable[[], T]) -> T:
    return func()


def _import_vectors() -> None:
    """Import numpy and the vector code: at the first build, on the thread pool (`_off_loop`),
    not at the gateway's start, where it cost ~100 ms before the port answered."""
    import gateway.knowledge.vectors  # noqa: F401


def _file_name(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("._") or "model"


class Embeddings:
    """The vectors of the current passages for the configured embedding model, or why not.

    `passages()` returns the current index's passages (a new tuple after each reload);
    `wake()` after a reload or a config change starts a build if one is needed. `off_loop`
    runs the CPU-heavy steps (stacking and normalising the matrix, reading and writing the
    cache file) where they do not hold the event loop.
    """

    def __init__(self, embed: Embed, cache_folder: Path,
                 passages: Callable[[], tuple[Passage, ...]], *,
                 off_loop: Callable[[Callable[[], Any]], Any] = _run_here,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._embed = embed
        self._folder = cache_folder
        self._passages = passages
        self._off_loop = off_loop
        self._clock = clock
        self.model = ""  # the models: entry that embeds; "" = off
        self.model_id = ""  # what the server calls it (names the cache file)
        self.min_similarity = 0.5
        self._ready: _Ready | None = None
        self._cache: VectorCache | None = None
        self._progress: tuple[tuple[Passage, ...], int] = ((), 0)  # passages, embedded
        self._problem = ""  # why the last build failed
        self._query_problem = ""  # why the last question could not be embedded
        self._queries: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._queries_down_until = 0.0
        self._wakeup = threading.Event()
        self._stopped = False
        self._worker: threading.Thread | None = None

    # -- configuration and the worker

    def configure(self, model: str, model_id: str, min_similarity: float) -> None:
        """Use `model` (a models: entry, "" for off) from now on; a new one embeds again."""
        if (model, model_id) != (self.model, self.model_id):
            self._ready, self._cache, self._problem, self._query_problem = None, None, "", ""
            self._progress = ((), 0)
            self._queries.clear()
            self._queries_down_until = 0.0
            self.model, self.model_id = model, model_id
        self.min_similarity = min_similarity
        self.wake()

    def start(self) -> None:
        self._worker = threading.Thread(target=self._work, name="embeddings", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        self._stopped = True
        self._wakeup.set()

    def wake(self) -> None:
        """The passages or the config may have changed: build what is missing."""
        self._wakeup.set()

    def _work(self) -> None:
        failures = 0
        while not self._stopped:
            delay = None if not failures else min(BUILD_RETRY[1],
                                                  BUILD_RETRY[0] * 2 ** (failures - 1))
            self._wakeup.wait(delay)
            self._wakeup.clear()
            if self._stopped:
                return
            failures = 0 if self.build() else failures + 1

    def build(self) -> bool:
        """Embed what the current passages need and swap the vectors in (the worker's job;
        tests call it directly). False when embedding failed: the reason is kept for `find`
        and `status`, and the worker tries again later."""
        try:
            self._build()
        except Exception as e:  # the model server's errors are many; each one only waits
            self._problem = _reason(e)
            log.warning("knowledge embeddings with %s not built (%s); BM25 answers alone, "
                        "trying again later", self.model, self._problem)
            return False
        return True

    def _build(self) -> None:
        model, passages = self.model, self._passages()
        if not model:
            self._ready = None
            return
        if self._ready and self._ready.model == model and self._ready.passages is passages:
            return
        self._off_loop(_import_vectors)  # the first time numpy's import, then a no-op
        import numpy as np

        from gateway.knowledge.vectors import VectorCache, VectorIndex, text_key, unit_rows

        if self._cache is None:
            cache = VectorCache(self._folder / f"{_file_name(self.model_id)}.npz")
            self._off_loop(cache.load)
            self._cache = cache
        cache = self._cache
        keys = [text_key(indexed_text(p)) for p in passages]
        missing = list(dict.fromkeys(k for k in keys if k not in cache.vectors))
        texts = {k: indexed_text(p) for k, p in zip(keys, passages, strict=True)}
        self._progress = (passages, sum(1 for k in keys if k in cache.vectors))
        for start in range(0, len(missing), BATCH):
            if self.model != model or self._passages() is not passages:
                self.wake()  # changed meanwhile: what was embedded stays cached; start over
                return
            batch = missing[start:start + BATCH]
            vectors = self._embed(model, [texts[k] for k in batch], None)
            if not self._keep(cache, batch, vectors):
                return
            self._progress = (passages, sum(1 for k in keys if k in cache.vectors))
        if self.model != model:
            return

        def finish() -> VectorIndex:
            matrix = unit_rows(np.stack([cache.vectors[k] for k in keys])) if keys else \
                np.zeros((0, 0), np.float32)
            # the cache keeps rows of the index's matrix, not copies: the vectors are held once
            cache.vectors = {k: matrix[i] for i, k in enumerate(keys)}
            cache.save(keys)
            return VectorIndex(matrix)

        index = self._off_loop(finish)
        self._ready, self._problem = _Ready(model, passages, index), ""
        log.info("knowledge embeddings ready: %d passages, %d dimensions, %s (%d embedded now)",
                 len(passages), index.dimensions, model, len(missing))

    def _keep(self, cache: VectorCache, keys: list[str],
              vectors: Sequence[Sequence[float]]) -> bool:
        """Cache one batch's vectors. False when they are of another length than the cache's:
        the model behind the name changed, so the old vectors are dropped and the build starts
        over."""
        import numpy as np  # imported by `_build` already

        rows = np.asarray(vectors, dtype=np.float32)
        if rows.ndim != 2 or len(rows) != len(keys):
            raise ValueError(f"the model returned {len(rows)} vectors for {len(keys)} texts")
        if cache.dimensions() not in (0, rows.shape[1]):
            log.warning("embedding model %s now gives %d dimensions, the cache holds %d: "
                        "embedding every passage again", self.model, rows.shape[1],
                        cache.dimensions())
            cache.vectors.clear()
            cache.vectors.update(zip(keys, rows, strict=True))
            self.wake()
            return False
        cache.vectors.update(zip(keys, rows, strict=True))
        return True

    # -- questions

    def find(self, passages: tuple[Passage, ...], question: str,
             k: int) -> tuple[list[tuple[int, float]], str]:
        """Up to `k` (position in `passages`, similarity) nearest the question, and a note on
        how the knowledge was searched, for the trace. Empty, with the reason in the note,
        when the vectors are not ready for exactly these passages or the server fails."""
        if not self.model:
            return [], "bm25"
        ready = self._ready
        if ready is None or ready.passages is not passages or ready.model != self.model:
            if self._problem:
                return [], self._unavailable(self._problem)
            return [], f"bm25 only: embeddings building ({self._done(passages)})"
        if self._clock() < self._queries_down_until:
            wait = self._queries_down_until - self._clock()
            return [], f"{self._unavailable(self._query_problem)}; trying again in {wait:.0f} s"
        try:
            query = self._query_vector(question)
        except Exception as e:  # the message is answered with BM25; the trace says why
            self._query_problem = _reason(e)
            self._queries_down_until = self._clock() + QUERY_RETRY
            log.warning("question not embedded by %s (%s); BM25 answers alone for %.0f s",
                        self.model, self._query_problem, QUERY_RETRY)
            return [], self._unavailable(self._query_problem)
        return (ready.index.find(query, k, self.min_similarity),
                f"hybrid: bm25 + meaning ({self.model})")

    def _unavailable(self, why: str) -> str:
        return f"bm25 only: embedding model {self.model} unavailable ({why})"

    def _query_vector(self, question: str) -> np.ndarray:
        key = (self.model, question)
        if key in self._queries:
            self._queries.move_to_end(key)
            return self._queries[key]
        vectors = self._embed(self.model, [question], QUERY_TIMEOUT)
        if len(vectors) != 1:
            raise ValueError(f"the model returned {len(vectors)} vectors for 1 text")
        from gateway.knowledge.vectors import unit_rows  # loaded: a build made `ready`

        vector = unit_rows(vectors)[0]
        self._queries[key] = vector
        if len(self._queries) > QUERY_CACHE:
            self._queries.popitem(last=False)
        return vector

    def status(self) -> str:
        """One line for people: off, ready, building (n/m), or why not."""
        if not self.model:
            return "off (knowledge.embedding_model is not set)"
        ready = self._ready
        if ready is not None and ready.passages is self._passages():
            if self._clock() < self._queries_down_until:
                return (f"questions not embedded ({self._query_problem}); BM25 answers alone "
                        "until the model answers again")
            return (f"ready: {len(ready.index)} passages embedded by {self.model} "
                    f"({ready.index.dimensions} dimensions)")
        if self._problem:
            return f"not ready: {self._problem}; BM25 answers meanwhile"
        return f"building ({self._done(self._passages())}); BM25 answers meanwhile"

    def _done(self, passages: tuple[Passage, ...]) -> str:
        """"n/m": how many of these passages have their vector (0 before their build began)."""
        building, done = self._progress
        return f"{done if building is passages else 0}/{len(passages)}"


def _reason(e: Exception) -> str:
    return " ".join(str(e).split())[:300] or type(e).__name__
