"""Does a question find its passage? Recall of the knowledge search, English and Chinese.

Run: python bench/bench_recall.py [--misses]. Prints numbers, asserts nothing.

The corpus is `bench/recall/knowledge/faq_en.md` and `faq_zh.md` (30 sections each), loaded
together as the gateway loads a knowledge folder. Each section's heading is asked as written,
and `bench/recall/paraphrases.txt` asks each again in other words. For every question:
recall@1 and recall@3 of `KnowledgeBase.find` (is the expected section first / in the top 3),
and "grounded": is it among the passages chat actually sends to the model
(`gateway.core.grounding.find_passages`, which also drops weak matches), since that is what a user
sees as "Sources: ...".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.core.grounding import find_passages
from gateway.knowledge import KnowledgeBase

RECALL = Path(__file__).resolve().parent / "recall"
LANGUAGES = {"en": "faq_en.md", "zh": "faq_zh.md"}
CONTEXT_TOKENS = 2048  # gateway.context_tokens' default: grounding gets half, passages 500


def heading_of(title: str) -> str:
    return title.rsplit(" > ", 1)[-1]


def read_paraphrases(path: Path) -> dict[str, list[tuple[str, str]]]:
    """`[en]` / `[zh]` sections of "question -> expected heading" lines."""
    found: dict[str, list[tuple[str, str]]] = {}
    language = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            language = line[1:-1]
            continue
        question, _, heading = line.partition(" -> ")
        found.setdefault(language, []).append((question.strip(), heading.strip()))
    return found


def evaluate(kb: KnowledgeBase, cases: list[tuple[str, str]]) -> tuple[dict[str, float], list]:
    """Recall@1, recall@3 and grounded share over `cases`; the misses at 3 with what came."""
    at1 = at3 = grounded = 0
    misses = []
    for question, heading in cases:
        ranked = [heading_of(hit.passage.title) for hit in kb.find(question, k=3)]
        sent = [heading_of(hit.passage.title)
                for hit in find_passages(kb, question, CONTEXT_TOKENS // 2)]
        at1 += ranked[:1] == [heading]
        at3 += heading in ranked
        grounded += heading in sent
        if heading not in ranked or heading not in sent:
            misses.append((question, heading, ranked, heading in sent))
    n = len(cases) or 1
    return {"n": len(cases), "recall@1": at1 / n, "recall@3": at3 / n,
            "grounded": grounded / n}, misses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--misses", action="store_true", help="list every question that missed")
    args = parser.parse_args()
    kb = KnowledgeBase(RECALL / "knowledge", max_tokens=min(500, CONTEXT_TOKENS // 4))
    paraphrases = read_paraphrases(RECALL / "paraphrases.txt")
    print(f"{len(kb.index)} passages from {len(kb.sources)} files\n")
    print(f"| {'questions':<16} | {'n':>3} | recall@1 | recall@3 | grounded |")
    print(f"|{'-' * 18}|{'-' * 5}|{'-' * 10}|{'-' * 10}|{'-' * 10}|")
    all_misses = []
    totals = {"n": 0, "recall@1": 0.0, "recall@3": 0.0, "grounded": 0.0}
    for language, filename in LANGUAGES.items():
        titles = [p.title for p in kb.index.passages if p.source.endswith(filename) and p.title]
        headings = list(dict.fromkeys(heading_of(t) for t in titles if " > " in t))
        for kind, cases in (("heading", [(h, h) for h in headings]),
                            ("paraphrase", paraphrases.get(language, []))):
            scores, misses = evaluate(kb, cases)
            all_misses += misses
            for key in ("recall@1", "recall@3", "grounded"):
                totals[key] += scores[key] * scores["n"]
            totals["n"] += scores["n"]
            print(f"| {language + ' ' + kind:<16} | {scores['n']:>3} | {scores['recall@1']:>8.2f} "
                  f"| {scores['recall@3']:>8.2f} | {scores['grounded']:>8.2f} |")
    n = totals["n"] or 1
    print(f"| {'all':<16} | {totals['n']:>3} | {totals['recall@1'] / n:>8.2f} "
          f"| {totals['recall@3'] / n:>8.2f} | {totals['grounded'] / n:>8.2f} |")
    if args.misses:
        print("\nmissed (not in the top 3, or not sent to the model):")
        for question, heading, ranked, sent in all_misses:
            print(f"- {question!r}: wanted {heading!r}, top 3 {ranked}, sent: {sent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
