"""A long conversation keeps its thread: the turns that no longer fit the context budget are
summarised into the session instead of being dropped.

When chat leaves turns out (`ChatResponder`, context step), `summarise` starts one model call
(the first time, then again once the turns it misses hold 1/`RESUMMARISE_SHARE` of the
context budget) in the background (a greenlet: its wait is socket I/O, the pool's own
time-outs bound it) over the turns the session's summary does not cover yet, together with
that summary, and stores the new summary in the session's row here. The message that
overflowed is answered at once, as before, without it; each later message gets the summary as
a system message before the turns that fit. So no message ever waits for a summary, and a
failed one costs nothing but the old behaviour (older turns dropped), said in the next
message's trace.

Which turns a summary covers is kept as the digest of the last one (the session's turn list in
memory slides: positions are not stable, contents are).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass

from gateway.core.settings import Settings
from gateway.core.store import Store
from gateway.core.turn import Turn
from gateway.knowledge import estimate_tokens
from gateway.models.pool import ModelPool
from gateway.observe.redact import redact

log = logging.getLogger(__name__)

SUMMARY_PROMPT = "Summary of the earlier part of this conversation (older turns):"
INSTRUCTION = ("Summarise the conversation below for your own later use, in the language it "
               "is written in: keep names, facts the user stated, decisions, open questions "
               "and anything promised. Plain sentences, at most {words} words, no preamble.")
RECENT = 1000  # sessions whose summary is kept in memory
# A summary is written again once the turns it misses hold this share of the context budget:
# rewriting it for every message that leaves one more turn out doubled the model's calls in a
# long chat (each summary call sends up to 3/4 of the budget).
RESUMMARISE_SHARE = 8
_SCHEMA = ("CREATE TABLE IF NOT EXISTS session_summaries (session_id TEXT PRIMARY KEY, "
           "text TEXT NOT NULL, last_turn TEXT NOT NULL, turns INTEGER NOT NULL, "
           "updated_at REAL NOT NULL)")


@dataclass(frozen=True)
class Summary:
    text: str
    last_turn: str  # digest of the last turn it covers
    turns: int  # how many turns it covers


def turn_digest(turn: tuple[str, str]) -> str:
    return hashlib.sha256("\x00".join(turn).encode("utf-8")).hexdigest()[:32]


def uncovered(left_out: list[tuple[str, str]], last: str | None) -> list[tuple[str, str]]:
    """The turns of `left_out` (oldest first) after the last one a summary covers."""
    if last is None:
        return left_out
    for i in range(len(left_out) - 1, -1, -1):
        if turn_digest(left_out[i]) == last:
            return left_out[i + 1:]
    return left_out  # the covered turn slid out of the kept turns: all of these are newer


class Summaries:
    def __init__(self, store: Store) -> None:
        self.engine = store.engine
        self.writes = store.writes
        with self.writes.begin() as conn:
            conn.exec_driver_sql(_SCHEMA)
        self._running: set[str] = set()
        self._failed: dict[str, str] = {}
        # the sessions that have a summary: most never grow past the budget, and reading the
        # table for each of their messages cost ~50 us (this process is the only writer)
        with self.engine.connect() as conn:
            self._summarised = {r[0] for r in conn.exec_driver_sql(
                "SELECT session_id FROM session_summaries").all()}
        # and the summaries of the sessions in use: a long chat reads its summary twice per
        # message (~7 % of its CPU when read from the table each time)
        self._recent: dict[str, Summary] = {}

    def read(self, session_id: str) -> Summary | None:
        if session_id not in self._summarised:
            return None
        if (kept := self._recent.get(session_id)) is not None:
            return kept
        with self.engine.connect() as conn:
            row = conn.exec_driver_sql("SELECT text, last_turn, turns FROM session_summaries "
                                       "WHERE session_id = ?", (session_id,)).first()
        if row is None:
            return None
        self._remember(session_id, Summary(row[0], row[1], int(row[2])))
        return self._recent[session_id]

    def _remember(self, session_id: str, summary: Summary) -> None:
        self._recent.pop(session_id, None)
        self._recent[session_id] = summary  # the newest last: the oldest goes first
        if len(self._recent) > RECENT:
            del self._recent[next(iter(self._recent))]

    def summary(self, settings: Settings, session_id: str) -> tuple[str, str]:
        """The session's summary for the model, and the trace's words for it."""
        if not settings.config.memory.summaries:
            return "", ""
        kept = self.read(session_id)
        if kept is None:
            return "", ""
        return f"{SUMMARY_PROMPT}\n{kept.text}", f"summary of {kept.turns} older turns"

    def summarise(self, turn: Turn, pool: ModelPool, session_id: str,
                  left_out: list[tuple[str, str]]) -> str:
        """Start summarising what `left_out` adds to the session's summary, unless that is
        nothing or one is being written; returns the context step's words for it."""
        if not turn.settings.config.memory.summaries:
            return f"{len(left_out)} older turns left out (memory.summaries is off)"
        failed = self._failed.pop(session_id, "")
        before = f"the last summary failed ({failed}), older turns dropped; " if failed else ""
        kept = self.read(session_id)
        new = uncovered(left_out, kept.last_turn if kept else None)
        if not new:
            return f"{before}{len(left_out)} older turns are in the summary"
        if session_id in self._running:
            return f"{before}a summary of older turns is being written"
        if kept is not None and sum(estimate_tokens(u) + estimate_tokens(a) for u, a in new) \
                < turn.settings.context_tokens // RESUMMARISE_SHARE:
            return (f"{before}{kept.turns} older turns are in the summary, {len(new)} more "
                    "wait for the next one")
        self._running.add(session_id)
        threading.Thread(target=self._write, name=f"summary {session_id}", daemon=True,
                         args=(pool, session_id, kept, new, turn.settings.context_tokens,
                               turn.msg.channel)).start()
        return f"{before}summarising {len(new)} older turns in the background"

    def _write(self, pool: ModelPool, session_id: str, kept: Summary | None,
               new: list[tuple[str, str]], context_tokens: int, channel: str) -> None:
        try:
            words = max(60, context_tokens // 8)
            parts = [f"(summary so far) {kept.text}"] if kept else []
            used, covered = estimate_tokens("".join(parts)), 0
            for user, assistant in new:  # the oldest first; what does not fit goes next time
                cost = estimate_tokens(user) + estimate_tokens(assistant)
                if covered and used + cost > context_tokens * 3 // 4:
                    break
                parts.append(f"User: {user}\nAssistant: {assistant}")
                used += cost
                covered += 1
            result = pool.chat([{"role": "system", "content": INSTRUCTION.format(words=words)},
                                {"role": "user", "content": "\n\n".join(parts)}],
                               channel=channel)
            text = " ".join(result.text.split())[:words * 8]
            if not text:
                raise ValueError("the model answered with nothing")
            summary = Summary(text, turn_digest(new[covered - 1]),
                              (kept.turns if kept else 0) + covered)
            with self.writes.begin() as conn:
                conn.exec_driver_sql(
                    "INSERT OR REPLACE INTO session_summaries (session_id, text, last_turn, "
                    "turns, updated_at) VALUES (?, ?, ?, ?, ?)",
                    (session_id, summary.text, summary.last_turn, summary.turns, time.time()))
            self._summarised.add(session_id)
            self._remember(session_id, summary)
            log.info("session %s: summary of %d older turns written", session_id,
                     summary.turns)
        except Exception as e:
            self._failed[session_id] = redact(f"{type(e).__name__}: {e}")[:200]
            log.warning("session %s: summarising older turns failed; they are dropped "
                        "instead: %s", session_id, redact(str(e)))
        finally:
            self._running.discard(session_id)
