"""The facts of every owner, indexed in the gateway's database for recall.

The Markdown files are the truth (`memory_file`); this index is rebuilt from them, per owner,
whenever a file's content changes (a write of ours, an edit by hand), so it can always be thrown
away. It is an SQLite FTS5 table ranked by FTS5's BM25. Its terms are the knowledge search's
own tokens (`gateway.knowledge.search.tokenize`: jieba words for Chinese, folded words for
other scripts, stopwords of both dropped), joined by spaces, so a two-character Chinese word
("航班") is found, which FTS5's trigram tokenizer cannot do (it needs three characters).

Deletes run with `secure_delete` on: a forgotten fact's text is overwritten in the database
file, not only unlinked. Same rules as `core.store`: one short transaction per call, writes
through `store.writes` (the write lock is waited for cooperatively).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Connection

from gateway.assistant.memory_file import Fact
from gateway.core.store import Store
from gateway.knowledge.search import tokenize

_SCHEMA = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS memory_facts USING fts5("
    "owner UNINDEXED, position UNINDEXED, day UNINDEXED, text UNINDEXED, terms, "
    "tokenize='unicode61')",
    "CREATE TABLE IF NOT EXISTS memory_files (owner TEXT PRIMARY KEY, digest TEXT NOT NULL)",
)


@dataclass(frozen=True)
class Found:
    position: int  # the fact's place in its file (0 = the first fact)
    fact: Fact
    score: float  # BM25, higher is better; 0 for a fact given without matching


def match_query(text: str) -> str:
    """An FTS5 query matching any of the text's terms ("" when it has none)."""
    terms = dict.fromkeys(tokenize(text))
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


class MemoryIndex:
    def __init__(self, store: Store) -> None:
        self.engine = store.engine
        self.writes = store.writes
        with self.writes.begin() as conn:
            for statement in _SCHEMA:
                conn.exec_driver_sql(statement)
        # the owners that have facts: a message from anyone else needs no query (two queries,
        # ~120 us, for each message); the gateway process is the index's only writer
        with self.engine.connect() as conn:
            self._holding = {r[0] for r in conn.exec_driver_sql(
                "SELECT DISTINCT owner FROM memory_facts").all()}

    def digest(self, owner: str) -> str | None:
        """The content digest of the file this owner's rows came from, None if never indexed."""
        with self.engine.connect() as conn:
            row = conn.exec_driver_sql("SELECT digest FROM memory_files WHERE owner = ?",
                                       (owner,)).first()
        return row[0] if row else None

    def owners(self) -> list[str]:
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT owner FROM memory_files ORDER BY owner").all()
        return [r[0] for r in rows]

    def put(self, owner: str, facts: list[Fact], digest: str) -> None:
        """This owner's facts now, replacing what was indexed (one transaction)."""
        rows = [(owner, i, f.day, f.text, " ".join(tokenize(f.text))) for i, f in
                enumerate(facts)]
        with self.writes.begin() as conn:
            _erase(conn, owner)
            if rows:
                conn.exec_driver_sql("INSERT INTO memory_facts (owner, position, day, text, "
                                     "terms) VALUES (?, ?, ?, ?, ?)", rows)
            conn.exec_driver_sql("INSERT INTO memory_files (owner, digest) VALUES (?, ?)",
                                 (owner, digest))
            _merge(conn)
        (self._holding.add if rows else self._holding.discard)(owner)

    def drop(self, owner: str) -> None:
        with self.writes.begin() as conn:
            _erase(conn, owner)
            _merge(conn)
        self._holding.discard(owner)

    def search(self, owner: str, text: str, limit: int) -> list[Found]:
        """The owner's facts that share a term with `text`, best first (BM25)."""
        if owner not in self._holding:
            return []
        query = match_query(text)
        if not query or limit <= 0:
            return []
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT position, day, text, bm25(memory_facts) FROM memory_facts "
                "WHERE memory_facts MATCH ? AND owner = ? ORDER BY bm25(memory_facts) "
                "LIMIT ?", (f"terms : ({query})", owner, limit)).all()
        return [Found(int(r[0]), Fact(r[2], r[1]), -float(r[3])) for r in rows]

    def newest(self, owner: str, limit: int) -> list[Found]:
        """The owner's last `limit` facts in the file (the newest are appended last)."""
        if owner not in self._holding:
            return []
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT position, day, text FROM memory_facts WHERE owner = ? "
                "ORDER BY CAST(position AS INTEGER) DESC LIMIT ?", (owner, limit)).all()
        return [Found(int(r[0]), Fact(r[2], r[1]), 0.0) for r in rows]


def _erase(conn: Connection, owner: str) -> None:
    conn.exec_driver_sql("PRAGMA secure_delete = ON")
    conn.exec_driver_sql("DELETE FROM memory_facts WHERE owner = ?", (owner,))
    conn.exec_driver_sql("DELETE FROM memory_files WHERE owner = ?", (owner,))


def _merge(conn: Connection) -> None:
    """Merge the FTS5 index's segments: a deleted fact's terms leave the index's pages now,
    not at some later automatic merge (the table is small: this is cheap)."""
    conn.exec_driver_sql("INSERT INTO memory_facts (memory_facts) VALUES ('optimize')")
