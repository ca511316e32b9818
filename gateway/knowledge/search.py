"""Rank passages against a question with BM25, for Chinese and English text alike.

Chinese has no spaces, so Han text is cut into words by jieba; other scripts are split on
non-letters and folded to a rough common form ("tokens" and "token" match). Scoring is
bm25s's Lucene BM25 over our own token ids, so the tokenizer is the only language logic.
"""

from __future__ import annotations

import logging
import re
import unicodedata
import warnings
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from gateway.knowledge.passages import Passage, ScoredPassage

# jieba imports pkg_resources when setuptools provides it; setuptools 67-80 then warns that
# the API is deprecated. Nothing of ours can fix that, and warnings are errors in tests.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated as an API",
                            category=UserWarning)
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated as an API",
                            category=DeprecationWarning)
    import jieba

if TYPE_CHECKING:
    import bm25s

log = logging.getLogger(__name__)
jieba.setLogLevel(logging.WARNING)  # otherwise it prints "Building prefix dict..." to stderr

DICTIONARY_SLICE = 2000  # words between two turns of the event loop: ~3 ms of work

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_RUN = re.compile(rf"([{_HAN}]+)|([^\W_{_HAN}]+)")

# Function words and question words: they appear in every question and most answers, so
# they only add noise to the ranking ("如何安装" should match "安装", not every "如何").
ZH_STOPWORDS = frozenset({
    "的", "地", "得", "了", "着", "过", "吗", "呢", "吧", "啊", "呀", "么",
    "嘛", "啦", "哦", "是", "在", "和", "与", "及", "或", "而", "我", "我们",
    "你", "你们", "您", "他", "她", "它", "这", "那", "这个", "那个", "这样",
    "那样", "这里", "那里", "怎么", "怎么办", "怎么样", "怎样", "如何", "什么",
    "为什么", "为何", "哪", "哪里", "哪个", "哪些", "能", "能否", "能不能", "可以",
    "可否", "请问", "请", "一下", "是否", "把", "被", "给", "就", "都", "也",
    "还", "又", "个", "要", "想", "会", "该", "中", "上", "里", "时", "时候",
    "一个", "之", "其",
})
EN_STOPWORDS = frozenset({
    "a", "an", "the", "and", "or", "but", "if", "then", "so", "of", "to", "in", "on",
    "at", "by", "for", "with", "from", "as", "into", "about", "over", "is", "are",
    "was", "were", "be", "been", "being", "am", "do", "does", "did", "doing", "have",
    "has", "had", "having", "i", "me", "my", "we", "our", "you", "your", "he", "she",
    "it", "its", "they", "them", "their", "this", "that", "these", "those", "what",
    "which", "who", "whom", "whose", "when", "where", "why", "how", "can", "could",
    "should", "would", "will", "shall", "may", "might", "must", "there", "here", "not",
    "no", "any", "some", "just", "also", "very", "too", "please", "ll", "re", "ve",
})


def _normalise_word(word: str) -> str:
    """Fold plurals, -ing/-ed and -ation forms to one spelling, without a stemmer dependency.

    Deliberately crude: both the passage and the question go through the same rules, so it
    only has to map a word's forms to one key, not produce a real English stem.
    """
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith(("ation", "ations")) and len(word.rstrip("s")) >= 9:
        word = word.rstrip("s")[:-5]  # installation -> install, configurations -> configur
    elif word.endswith(("ies", "ied")) and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith(("sses", "ches", "shes", "xes", "zes")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    elif word.endswith("ing") and len(word) >= 6:
        word = word[:-3]
    elif word.endswith("ed") and len(word) >= 5:
        word = word[:-2]
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiouylsz":
        word = word[:-1]  # stopp(ed) -> stop, runn(ing) -> run; install stays
    if len(word) > 4 and word.endswith("e"):
        word = word[:-1]  # configure / configured / configuring -> configur
    return word


def load_dictionary(pause: Callable[[], object] = lambda: None) -> None:
    """Build jieba's prefix dictionary now (~0.5 s of CPU). Otherwise the first Han text loads
    it, which in the gateway could hold a message. The gateway calls this right after its port
    answers, on the loop, with `pause` giving the loop its turn every `DICTIONARY_SLICE` words
    (`gevent.idle`: after pending I/O; `gevent.sleep(0)` lets gevent run up to 50 callbacks,
    this loop's included, before it polls I/O); messages wait for that start.

    Built here from the word list jieba ships, the way `Tokenizer.gen_pfdict` does (each word
    with its count, each of its prefixes with 0), not with `jieba.initialize()`: that reads its
    cache from the temp folder with one `marshal.load`, 0.45-0.6 s in C holding Python's lock,
    and no thread trick helps with that: the event loop could not run at all, every start
    stalled every connection that long. On the thread pool, even Python code stalls the loop
    30-90 ms at a time (it gets the lock back only every switch interval); in slices on the loop,
    a few ms. It also never reads `/tmp/jieba.cache`, a file any local user could have written."""
    tokenizer = jieba.dt
    with tokenizer.lock:
        if tokenizer.initialized:
            return
        freq: dict[str, int] = {}
        total = 0
        with tokenizer.get_dict_file() as words:
            for number, line in enumerate(words, 1):
                word, count = line.decode("utf-8").split(" ", 2)[:2]  # "word count [tag]"
                freq[word] = int(count)
                total += int(count)
                for end in range(1, len(word)):
                    freq.setdefault(word[:end], 0)
                if number % DICTIONARY_SLICE == 0:
                    pause()
        tokenizer.FREQ, tokenizer.total = freq, total
        tokenizer.initialized = True


def tokenize(text: str) -> list[str]:
    """Lowercased search terms of a text, in order: jieba words for Han, folded words else.

    Han runs use jieba's search mode, which also emits the dictionary words inside a
    compound (操作系统 -> 操作, 系统, 操作系统), so a question's short word finds a longer
    one. Its HMM guessing of unknown words is off: it can join the same characters
    differently in a question and in a passage, and then neither finds the other.
    Punctuation, whitespace and stopwords of both languages are dropped; NFKC first turns
    full-width letters and digits (common in Chinese text) into their ASCII forms.
    """
    tokens: list[str] = []
    for match in _RUN.finditer(unicodedata.normalize("NFKC", text).lower()):
        han, word = match.groups()
        if han:
            words = jieba.lcut_for_search(han, HMM=False)
            tokens.extend(w for w in words if w not in ZH_STOPWORDS)
        elif word not in EN_STOPWORDS and not (len(word) == 1 and word.isalpha()):
            tokens.append(_normalise_word(word))
    return tokens


def indexed_text(passage: Passage) -> str:
    """What a passage is found by: its text plus its title, which carries the parent headings."""
    return f"{passage.title}\n{passage.text}" if passage.title else passage.text


class KnowledgeIndex:
    """An immutable BM25 index over a fixed list of passages.

    Nothing changes after construction, so any number of threads may call `find` and
    `search` at once; to change the content, build a new index and swap the reference.
    """

    def __init__(self, passages: Iterable[Passage], *, k1: float = 1.5, b: float = 0.75) -> None:
        self._passages: tuple[Passage, ...] = tuple(passages)
        vocab: dict[str, int] = {}
        corpus_ids = [[vocab.setdefault(token, len(vocab)) for token in tokenize(indexed_text(p))]
                      for p in self._passages]
        self._vocab = vocab
        self._bm25: bm25s.BM25 | None = None
        if vocab:  # bm25s cannot index a corpus without a single term
            import bm25s  # here, not at the top: it imports numpy (~100 ms) before the port opens

            self._bm25 = bm25s.BM25(k1=k1, b=b)
            # Our own ids and vocabulary, so bm25s never re-tokenizes and the ids are stable
            # from run to run (its own vocabulary comes from a set, whose order varies).
            self._bm25.index((corpus_ids, vocab), create_empty_token=False, show_progress=False)
        log.debug("indexed %d passages, %d terms", len(self._passages), len(vocab))

    def __len__(self) -> int:
        return len(self._passages)

    @property
    def passages(self) -> tuple[Passage, ...]:
        """Every indexed passage, in the order given."""
        return self._passages

    def find(self, question: str, k: int = 3) -> list[ScoredPassage]:
        """Up to `k` passages sharing terms with the question, best first.

        Passages scoring 0 (no shared term) are never returned, so the list may be shorter
        than `k` or empty. A term repeated in the question counts once. Ties keep the order
        the passages were given in.
        """
        return [ScoredPassage(self._passages[i], score) for i, score in self.rank(question, k)]

    def rank(self, question: str, k: int) -> list[tuple[int, float]]:
        """`find` as (position in `passages`, BM25 score) pairs, for fusing with other rankings."""
        if k < 1 or self._bm25 is None:
            return []
        term_ids = sorted({self._vocab[t] for t in tokenize(question) if t in self._vocab})
        if not term_ids:
            return []
        import numpy as np  # loaded by bm25s already; not at the top, see __init__

        # get_scores_from_ids rather than retrieve(): retrieve pads the top k with documents
        # scoring 0 and refuses k larger than the corpus.
        scores = self._bm25.get_scores_from_ids(term_ids)
        hits = np.flatnonzero(scores > 0)
        if len(hits) > k:  # keep everything tied with the k-th best, then order exactly
            kth_best = np.partition(scores[hits], len(hits) - k)[len(hits) - k]
            hits = hits[scores[hits] >= kth_best]
        ranked = sorted(hits.tolist(), key=lambda i: (-float(scores[i]), i))[:k]
        return [(i, float(scores[i])) for i in ranked]

    def search(self, question: str) -> str | None:
        """The answer text of the best passage, or None when no passage shares a term.

        For a Markdown Q&A section that is the body under the heading (the heading is the
        question being asked back); for anything else it is the passage text.
        """
        best = self.find(question, k=1)
        if not best:
            return None
        passage = best[0].passage
        return passage.body or passage.text
