"""A user's knowledge folder behind one index that reloads without disturbing readers."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.knowledge.loaders import LOADERS, KnowledgeError, StrPath, chunk, load_document
from gateway.knowledge.passages import Passage, ScoredPassage
from gateway.knowledge.search import KnowledgeIndex

if TYPE_CHECKING:  # meaning imports numpy once it builds; a plain BM25 gateway never does
    from gateway.knowledge.meaning import Embeddings

CANDIDATES = 10  # the top of each ranking that reciprocal rank fusion combines

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Snapshot:
    """Everything one load produced; replaced whole so readers never mix two loads."""

    index: KnowledgeIndex
    documents: dict[str, list[Passage]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


_LEADS_OUT = ("a symlink that leads outside the knowledge folder, so it is not indexed (the "
              "model would quote whatever it points at, config.yaml's secrets included); copy "
              "the file into the folder instead")


def _is_hidden(name: str) -> bool:
    """Dotfiles, and Office's `~$name` lock files that sit beside an open spreadsheet."""
    return name.startswith((".", "~$"))


def find_documents(folder: Path) -> list[Path]:
    """Supported files under `folder`, recursively, in a stable order; hidden ones skipped."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):  # does not follow symlinked folders: no loops
        dirs[:] = sorted(d for d in dirs if not _is_hidden(d))
        found.extend(Path(root, name) for name in sorted(files)
                     if not _is_hidden(name) and Path(name).suffix.lower() in LOADERS)
    return found


class KnowledgeBase:
    """Every .md, .markdown, .csv and .txt file under a folder, searchable as one.

    A file that cannot be loaded is listed in `errors` (path -> what to fix) and the rest
    still load; if it loaded before, its last good passages stay searchable. A symlink that
    leads out of the folder is never followed, and is listed there too. `reload()` builds a
    complete new index and then swaps a single reference, so a search running at the same
    time sees either the old content or the new, never a mix.
    """

    def __init__(self, folder: StrPath, *, max_tokens: int | None = 500,
                 load: bool = True) -> None:
        """Load `folder` now (`load=False`: empty until the first `reload()`, which the
        gateway runs after its port answers); passages over `max_tokens` are chunked (None:
        never)."""
        self.folder = Path(folder)
        self.max_tokens = max_tokens
        self.meaning: Embeddings | None = None  # search by meaning, when the owner adds it
        self._snapshot = _Snapshot(KnowledgeIndex(()))
        if load:
            self.reload()

    def reload(self) -> None:
        """Read the folder again and swap in the new index once it is completely built."""
        previous = self._snapshot
        documents: dict[str, list[Passage]] = {}
        errors: dict[str, str] = {}
        if not self.folder.is_dir():
            errors[str(self.folder)] = ("knowledge folder not found; create it and put .md, "
                                        ".csv or .txt files in it")
        real_folder = os.path.realpath(self.folder)
        for path in find_documents(self.folder) if self.folder.is_dir() else []:
            source = str(path)
            if not os.path.realpath(path).startswith(real_folder + os.sep):
                errors[source] = _LEADS_OUT
                log.warning("knowledge file skipped: %s: %s", source, _LEADS_OUT)
                continue
            try:
                documents[source] = load_document(path)
            except KnowledgeError as e:
                errors[source] = e.problem
                if source in previous.documents:
                    documents[source] = previous.documents[source]
                    errors[source] += " (still serving its last good version)"
                log.warning("knowledge file skipped: %s", e)
        passages = [p for loaded in documents.values() for p in loaded]
        if self.max_tokens is not None:
            passages = chunk(passages, self.max_tokens)
        self._snapshot = _Snapshot(KnowledgeIndex(passages), documents, errors)
        log.info("knowledge loaded: %d passages from %d files, %d errors",
                 len(passages), len(documents), len(errors))

    @property
    def index(self) -> KnowledgeIndex:
        """The current index; hold on to it to run several searches against one load."""
        return self._snapshot.index

    @property
    def sources(self) -> list[str]:
        """Paths of the files whose passages are searchable now."""
        return list(self._snapshot.documents)

    @property
    def errors(self) -> dict[str, str]:
        """Files that failed the last load, mapped to what went wrong and how to fix it."""
        return dict(self._snapshot.errors)

    def find(self, question: str, k: int = 3) -> list[ScoredPassage]:
        """Up to `k` passages best matching the question; see `find_explained`."""
        return self.find_explained(question, k)[0]

    def find_explained(self, question: str, k: int = 3) -> tuple[list[ScoredPassage], str]:
        """Up to `k` passages best matching the question, and how they were found.

        BM25 alone (`KnowledgeIndex.find`) unless search by meaning is on and its vectors
        are ready for this index: then the top `CANDIDATES` of both rankings are fused by
        reciprocal rank, and the note says "hybrid"; otherwise it says why BM25 answered
        alone ("bm25 only: embeddings building (40/120)").
        """
        index = self._snapshot.index
        if self.meaning is None:
            return index.find(question, k), "bm25"
        near, note = self.meaning.find(index.passages, question, max(k, CANDIDATES))
        if not near:
            return index.find(question, k), note
        from gateway.knowledge.vectors import fuse  # numpy is loaded: vectors found `near`

        lexical = index.rank(question, max(k, CANDIDATES))
        bm25 = {i: (rank, score) for rank, (i, score) in enumerate(lexical, 1)}
        cosine = {i: (rank, similarity) for rank, (i, similarity) in enumerate(near, 1)}
        hits = []
        for i, score in fuse([[i for i, _ in lexical], [i for i, _ in near]])[:k]:
            origin = [f"bm25 #{bm25[i][0]} ({bm25[i][1]:.1f})"] if i in bm25 else []
            origin += [f"meaning #{cosine[i][0]} ({cosine[i][1]:.2f})"] if i in cosine else []
            hits.append(ScoredPassage(index.passages[i], score,
                                      cosine[i][1] if i in cosine else None, ", ".join(origin)))
        return hits, note

    def search(self, question: str) -> str | None:
        """The best answer text, or None when nothing matches; see `KnowledgeIndex.search`."""
        return self._snapshot.index.search(question)
