"""Answers grounded in the user's knowledge/ folder: the best passages go with the question,
and the reply names where they came from.

A passage is used only when it shares at least two words with the question, covering at least
half of the question's words (stopwords and bare numbers left out), and scores at least half of
the best hit: a greeting should not drag the FAQ along. The two-word minimum is waived when the
question holds every word of the passage's own heading, the best summary of the passage: "Where
are the logs?" is one word ("log") once the stopwords are gone, and it is asking that heading.
Word coverage, unlike a BM25 score threshold, means the same for a 3-passage and a
30,000-passage knowledge base. With search by meaning on (`knowledge.embedding_model`), a
passage whose embedding is close enough to the question's is used without shared words.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from gateway.knowledge import KnowledgeBase, ScoredPassage, estimate_tokens, tokenize

MIN_COVERAGE = 0.5
MIN_SHARED = 2
TOP_K = 3


def find_passages(knowledge: KnowledgeBase | None, question: str,
                  budget: int) -> list[ScoredPassage]:
    """The passages worth sending, best first, within `budget` estimated tokens."""
    if knowledge is None:
        return []
    return choose_passages(knowledge.find(question, TOP_K), question, budget)


def choose_passages(hits: list[ScoredPassage], question: str,
                    budget: int) -> list[ScoredPassage]:
    """Of the ranked `hits`, those worth sending (see the module docstring), within `budget`.

    A passage search by meaning found (it has a `similarity`, at least
    `knowledge.min_similarity`) needs no shared word: finding paraphrases that share none is
    what it is for.
    """
    if not hits:
        return []  # most messages: no passage matched, nothing to tokenize
    words = {w for w in tokenize(question) if not w.isdigit()}
    chosen: list[ScoredPassage] = []
    used = 0
    for hit in hits:
        cost = estimate_tokens(hit.passage.text)
        if hit.score < hits[0].score / 2 or used + cost > budget:
            break
        shared = len(words & _words(hit.passage.text))
        heading = _words(hit.passage.heading)
        asks_heading = bool(heading) and heading <= words
        weak = (shared < MIN_SHARED and not asks_heading) or shared < MIN_COVERAGE * len(words)
        if weak and hit.similarity is None:
            continue
        chosen.append(hit)
        used += cost
    return chosen


@lru_cache(maxsize=1024)
def _words(text: str) -> frozenset[str]:
    """A passage's words: the same few passages are weighed against message after message
    (tokenizing each one again was 5 % of a message's CPU)."""
    return frozenset(tokenize(text))


def grounding_prompt(passages: list[ScoredPassage], root: Path) -> str:
    """A system message that hands the passages to the model, numbered for citation."""
    blocks = [f"[{i}] {_label(p, root)}\n{p.passage.text}" for i, p in enumerate(passages, 1)]
    return ("Passages from the user's own knowledge base. Use them when they answer the "
            "question; say so if they do not.\n\n" + "\n\n".join(blocks))


def sources_line(passages: list[ScoredPassage], root: Path) -> str:
    names = list(dict.fromkeys(_label(p, root) for p in passages))
    return "\n\nSources: " + "; ".join(names)


def _label(hit: ScoredPassage, root: Path) -> str:
    source = Path(hit.passage.source)
    shown = source.relative_to(root) if source.is_relative_to(root) else source
    return f"{shown} ({hit.passage.title})" if hit.passage.title else str(shown)
