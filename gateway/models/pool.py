"""Spread a model's calls over its endpoints and step around the ones that fail.

Each call goes to the endpoint with the fewest calls in flight (ties rotate, so sequential calls
alternate). An endpoint that is down is skipped for a cooldown that doubles with each failure in
a row (1 s, 2 s, 4 s ... 60 s) and resets on its next success. A call fails over only while
nothing has been streamed to the sender yet: a half-sent reply cannot be taken back.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.models.base import (
    EndpointDown,
    ModelError,
    ModelResult,
    NoModelAvailable,
    OnDelta,
    Provider,
)
from gateway.observe.redact import redact

if TYPE_CHECKING:
    from gateway.observe.metrics import Metrics


@dataclass
class EndpointState:
    provider: Provider
    label: str = ""  # the URL as metrics and logs may show it: without credentials
    in_flight: int = 0
    failures: int = 0
    down_until: float = 0.0
    last_error: str = ""


class ModelPool:
    def __init__(self, name: str, providers: list[Provider], *, config_hint: str = "config.yaml",
                 base_cooldown: float = 1.0, max_cooldown: float = 60.0,
                 clock: Callable[[], float] = time.monotonic,
                 metrics: Metrics | None = None) -> None:
        self.name = name
        self.endpoints = [EndpointState(p, redact(p.url)) for p in providers]
        self.config_hint = config_hint
        self.base_cooldown = base_cooldown
        self.max_cooldown = max_cooldown
        self.clock = clock
        self.metrics = metrics
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._calls = 0
        self._retired = False
        self.closed = False

    def chat(self, messages: list[dict[str, Any]], *, on_delta: OnDelta | None = None,
             cancel: threading.Event | None = None,
             tools: list[dict[str, Any]] | None = None, channel: str = "") -> ModelResult:
        streamed = False

        def forward(piece: str) -> None:
            nonlocal streamed
            streamed = True
            if on_delta:
                on_delta(piece)

        with self._lock:
            self._calls += 1
        try:
            return self._chat(messages, forward if on_delta else None, cancel, tools,
                              lambda: streamed, channel)
        finally:
            with self._lock:
                self._calls -= 1
                idle_and_retired = self._retired and self._calls == 0
            if idle_and_retired:
                self.close()

    def _chat(self, messages: list[dict[str, Any]], forward: OnDelta | None,
              cancel: threading.Event | None, tools: list[dict[str, Any]] | None,
              streamed: Callable[[], bool], channel: str) -> ModelResult:
        failures: list[tuple[str, str]] = []
        for state in self._candidates():
            with self._lock:
                state.in_flight += 1
            began = time.perf_counter()
            try:
                result = state.provider.chat(messages, on_delta=forward, cancel=cancel,
                                             tools=tools)
            except ModelError as e:
                self._measure(state, began, False, channel)
                if not isinstance(e, EndpointDown):
                    raise
                self._mark_down(state, str(e))
                failures.append((state.provider.url, str(e)))
                if streamed():
                    raise NoModelAvailable(self.name, failures, self.config_hint) from e
                continue
            finally:
                with self._lock:
                    state.in_flight -= 1
            with self._lock:
                state.failures, state.down_until, state.last_error = 0, 0.0, ""
            self._measure(state, began, True, channel, result)
            return result
        raise NoModelAvailable(self.name, failures, self.config_hint)

    def embed(self, texts: list[str], *, timeout: float | None = None) -> list[list[float]]:
        """Vectors for `texts` from this model's endpoints, stepping around the ones that are
        down exactly as `chat` does (search by meaning in the knowledge base)."""
        failures: list[tuple[str, str]] = []
        for state in self._candidates():
            try:
                vectors = state.provider.embed(texts, timeout=timeout)
            except EndpointDown as e:
                self._mark_down(state, str(e))
                failures.append((state.provider.url, str(e)))
                continue
            with self._lock:
                state.failures, state.down_until, state.last_error = 0, 0.0, ""
            return vectors
        raise NoModelAvailable(self.name, failures, self.config_hint)

    def _measure(self, state: EndpointState, began: float, ok: bool, channel: str,
                 result: ModelResult | None = None) -> None:
        if self.metrics is not None:
            self.metrics.model_call(
                self.name, state.label, time.perf_counter() - began, ok=ok,
                channel=channel, prompt_tokens=result.prompt_tokens if result else 0,
                completion_tokens=result.completion_tokens if result else 0)

    def _candidates(self) -> list[EndpointState]:
        """Healthy endpoints by load; if none is healthy, the ones cooling down, soonest first."""
        now = self.clock()
        with self._lock:
            shift = next(self._turn) % max(1, len(self.endpoints))
            ring = self.endpoints[shift:] + self.endpoints[:shift]
            healthy = sorted((s for s in ring if s.down_until <= now), key=lambda s: s.in_flight)
            cooling = sorted((s for s in ring if s.down_until > now), key=lambda s: s.down_until)
        return healthy or cooling

    def _mark_down(self, state: EndpointState, why: str) -> None:
        with self._lock:
            state.failures += 1
            cooldown = min(self.max_cooldown, self.base_cooldown * 2 ** (state.failures - 1))
            state.down_until = self.clock() + cooldown
            state.last_error = why

    def retire(self) -> None:
        """A config reload replaced this pool: close it as soon as its last call finishes."""
        with self._lock:
            self._retired = True
            idle = self._calls == 0
        if idle:
            self.close()

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        for state in self.endpoints:
            state.provider.close()

    def status(self) -> list[dict[str, Any]]:
        now = self.clock()
        with self._lock:
            return [{"endpoint": s.provider.url, "in_flight": s.in_flight,
                     "failures": s.failures, "cooling_down_s": max(0.0, s.down_until - now),
                     "last_error": s.last_error} for s in self.endpoints]
