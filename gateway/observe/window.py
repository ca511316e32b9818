"""The last few minutes of traffic in memory: a ring of per-second buckets.

Prometheus keeps history for dashboards; the alert rules, `GET /api/v1/stats`, `moltbot top`
and the console need "p95 over the last N seconds" *now*, from this process, without a
Prometheus server. Each second gets one bucket; a bucket holds counts and a latency histogram
per (channel, model) and per (model, endpoint, channel), and a message count per session.
Latencies go into log-spaced bins 5 % apart, so a percentile is within 2.5 % of the exact one
and recording costs a dict update however many messages a second brings. Reading merges the
buckets of the last N seconds; old buckets are reused, so memory is bounded by the ring.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

_RATIO = 1.05
_LOG_RATIO = math.log(_RATIO)
QUANTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


def _bin(seconds: float) -> int:
    """Bin 0 holds everything up to 1 ms; bin i > 0 holds (1.05^(i-1), 1.05^i] ms."""
    ms = seconds * 1000.0
    return 0 if ms <= 1.0 else math.ceil(math.log(ms) / _LOG_RATIO)


def _bin_value(index: int) -> float:
    """A bin's representative latency in seconds: its upper edge, so a p95 is never flattered."""
    return _RATIO ** index / 1000.0


def quantile(histogram: Counter[int], q: float) -> float | None:
    """The nearest-rank q-quantile (0 < q <= 1) of a binned histogram, in seconds."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return _bin_value(index)
    return None  # unreachable: the loop reaches `total`


class _Cell:
    """Counts for one key in one second (or merged over several)."""

    __slots__ = ("completion_tokens", "count", "errors", "histogram", "prompt_tokens")

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.histogram: Counter[int] = Counter()

    def add(self, other: _Cell) -> None:
        self.count += other.count
        self.errors += other.errors
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.histogram.update(other.histogram)

    def summary(self, seconds: float) -> dict[str, Any]:
        return {"count": self.count, "per_min": round(self.count * 60.0 / seconds, 2),
                "errors": self.errors,
                "error_rate": round(self.errors / self.count, 4) if self.count else 0.0,
                "latency_ms": latency_ms(self.histogram)}


def latency_ms(histogram: Counter[int]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name, q in QUANTILES:
        value = quantile(histogram, q)
        out[name] = None if value is None else round(value * 1000.0, 2)
    return out


class _Second:
    __slots__ = ("calls", "messages", "second", "sessions")

    def __init__(self, second: int) -> None:
        self.second = second
        self.messages: dict[tuple[str, str], _Cell] = {}
        self.calls: dict[tuple[str, str, str], _Cell] = {}
        self.sessions: Counter[str] = Counter()


def _merge(cells: Iterable[tuple[Any, _Cell]], key: Callable[[Any], Any]) -> dict[Any, _Cell]:
    merged: dict[Any, _Cell] = {}
    for k, cell in cells:
        merged.setdefault(key(k), _Cell()).add(cell)
    return merged


class Window:
    """Messages and model calls of the last `size` seconds; thread- and greenlet-safe.

    `clock` is a monotonic clock in seconds; tests pass their own to step time by hand.
    """

    def __init__(self, size: int = 600, clock: Callable[[], float] = time.monotonic) -> None:
        if size < 1:
            raise ValueError("a window needs at least one second")
        self.size = size
        self.clock = clock
        self._ring: list[_Second | None] = [None] * size
        self._lock = threading.Lock()

    def _bucket(self) -> _Second:
        """The current second's bucket (caller holds the lock); a stale slot is reused."""
        second = int(self.clock())
        slot = second % self.size
        bucket = self._ring[slot]
        if bucket is None or bucket.second != second:
            bucket = self._ring[slot] = _Second(second)
        return bucket

    # -- recording (the message path) ----------------------------------------------------
    def record_message(self, channel: str, model: str, seconds: float, *, error: bool,
                       session: str | None = None) -> None:
        with self._lock:
            bucket = self._bucket()
            cell = bucket.messages.get((channel, model))
            if cell is None:
                cell = bucket.messages[(channel, model)] = _Cell()
            cell.count += 1
            cell.errors += error
            cell.histogram[_bin(seconds)] += 1
            if session:
                bucket.sessions[session] += 1

    def record_model_call(self, model: str, endpoint: str, channel: str, seconds: float, *,
                          ok: bool, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        with self._lock:
            bucket = self._bucket()
            key = (model, endpoint, channel)
            cell = bucket.calls.get(key)
            if cell is None:
                cell = bucket.calls[key] = _Cell()
            cell.count += 1
            cell.errors += not ok
            cell.prompt_tokens += prompt_tokens
            cell.completion_tokens += completion_tokens
            cell.histogram[_bin(seconds)] += 1

    # -- reading -------------------------------------------------------------------------
    def _recent(self, seconds: float) -> list[_Second]:
        """Buckets of the last `seconds` seconds, the current (partial) one included. The
        caller holds the lock while it reads them: the message path adds keys to the current
        bucket, and a dict must not grow while another thread iterates it."""
        now = int(self.clock())
        oldest = now - min(self.size, max(1, math.ceil(seconds))) + 1
        return [b for b in self._ring if b is not None and oldest <= b.second <= now]

    def latency(self, q: float, seconds: float) -> tuple[float | None, int]:
        """(q-quantile of message latency in seconds, how many messages) over the last
        `seconds`."""
        histogram: Counter[int] = Counter()
        with self._lock:
            for bucket in self._recent(seconds):
                for cell in bucket.messages.values():
                    histogram.update(cell.histogram)
        return quantile(histogram, q), sum(histogram.values())

    def model_failures(self, seconds: float) -> tuple[int, int]:
        """(failed model calls, all model calls) over the last `seconds`."""
        failed = calls = 0
        with self._lock:
            for bucket in self._recent(seconds):
                for cell in bucket.calls.values():
                    failed += cell.errors
                    calls += cell.count
        return failed, calls

    def snapshot(self, seconds: float = 60, top_sessions: int = 5) -> dict[str, Any]:
        """Everything the console and `moltbot top` show, as plain JSON-ready values.

        Rates are per minute over `seconds` (capped at the ring's size); latencies in ms.
        """
        seconds = min(float(self.size), max(1.0, seconds))
        sessions: Counter[str] = Counter()
        with self._lock:  # merged copies only leave the lock
            buckets = self._recent(seconds)
            messages = [(k, c) for b in buckets for k, c in b.messages.items()]
            calls = [(k, c) for b in buckets for k, c in b.calls.items()]
            for bucket in buckets:
                sessions.update(bucket.sessions)
            total = _merge(messages, lambda k: None).get(None, _Cell())
            model_total = _merge(calls, lambda k: None).get(None, _Cell())
            by_channel = _merge(messages, lambda k: k[0])
            by_model = _merge(messages, lambda k: k[1])
            calls_by_model = _merge(calls, lambda k: k[0])
            calls_by_endpoint = _merge(calls, lambda k: (k[0], k[1]))
            tokens_by_channel = _merge(calls, lambda k: k[2])

        channels = {name: cell.summary(seconds) for name, cell in sorted(by_channel.items())}
        for name, cell in tokens_by_channel.items():
            if name in channels:
                channels[name]["tokens"] = _tokens(cell)
        models: dict[str, Any] = {}
        for name in sorted((set(by_model) | set(calls_by_model)) - {""}):  # "": no model
            row = by_model.get(name, _Cell()).summary(seconds)
            if name in calls_by_model:
                row["calls"] = _calls(calls_by_model[name], seconds)
                row["tokens"] = _tokens(calls_by_model[name])
            models[name] = row
        return {
            "window_s": seconds,
            "messages": total.summary(seconds),
            "model_calls": _calls(model_total, seconds) | {"tokens": _tokens(model_total)},
            "channels": channels,
            "models": models,
            "endpoints": [{"model": m, "endpoint": e, **_calls(cell, seconds)}
                          for (m, e), cell in sorted(calls_by_endpoint.items())],
            "sessions": [{"session": s, "messages": n}
                         for s, n in sessions.most_common(top_sessions)],
        }


def _calls(cell: _Cell, seconds: float) -> dict[str, Any]:
    return {"count": cell.count, "per_min": round(cell.count * 60.0 / seconds, 2),
            "failures": cell.errors,
            "failure_rate": round(cell.errors / cell.count, 4) if cell.count else 0.0,
            "latency_ms": latency_ms(cell.histogram)}


def _tokens(cell: _Cell) -> dict[str, int]:
    return {"prompt": cell.prompt_tokens, "completion": cell.completion_tokens}
