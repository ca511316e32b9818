"""Spread a model's calls over its endpoints and step around the ones that fail.

Each call goes to the endpoint with the fewest calls in flight (ties rotate, so sequential calls
alternate). An endpoint that is down is skipped for a cooldown that doubles with each failure in
a row (1 s, 2 s, 4 s ... 60 s) and resets on its next success. A call fails over only while
nothing has been streamed to the sender yet: a half-sent reply cannot be taken back.

Each endpoint's model card (`models.card`: context length, tool support) is read once, in a
greenlet of its own, the first time the pool is asked for its `window`; a message waits for it
at most `wait` seconds and is sized from config meanwhile. A card that could not be read is
read again after `CARD_RETRY` seconds, and an endpoint that failed a call is read again (the
server may have restarted with another build); a config reload builds new pools, so new cards.
"""

from __future__ import annotations

import itertools
import logging
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
from gateway.models.card import CardUnavailable, ModelCard
from gateway.models.options import ModelConfig
from gateway.models.window import Window, size_window, unsized
from gateway.observe.redact import redact

if TYPE_CHECKING:
    from gateway.observe.metrics import Metrics

log = logging.getLogger(__name__)

CARD_RETRY = 60.0  # seconds before a card that could not be read is asked for again


@dataclass
class EndpointState:
    provider: Provider
    label: str = ""  # the URL as metrics and logs may show it: without credentials
    in_flight: int = 0
    failures: int = 0
    down_until: float = 0.0
    last_error: str = ""
    card: ModelCard | None = None
    card_read: threading.Event | None = None  # set when the read in flight ends
    card_asked: float = 0.0  # time.monotonic() when that read began
    card_retry_at: float = 0.0


class ModelPool:
    def __init__(self, name: str, providers: list[Provider], *, config_hint: str = "config.yaml",
                 base_cooldown: float = 1.0, max_cooldown: float = 60.0,
                 clock: Callable[[], float] = time.monotonic,
                 metrics: Metrics | None = None, config: ModelConfig | None = None,
                 context_tokens: int = 2048) -> None:
        self.name = name
        self.config = config
        self.context_tokens = context_tokens
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
             tools: list[dict[str, Any]] | None = None, channel: str = "",
             num_ctx: int | None = None) -> ModelResult:
        """`num_ctx`: the window the messages were sized for; default, this pool's own."""
        streamed = False
        if num_ctx is None:
            num_ctx = self.window().num_ctx

        def forward(piece: str) -> None:
            nonlocal streamed
            streamed = True
            if on_delta:
                on_delta(piece)

        with self._lock:
            self._calls += 1
        try:
            return self._chat(messages, forward if on_delta else None, cancel, tools,
                              lambda: streamed, channel, num_ctx)
        finally:
            with self._lock:
                self._calls -= 1
                idle_and_retired = self._retired and self._calls == 0
            if idle_and_retired:
                self.close()

    def _chat(self, messages: list[dict[str, Any]], forward: OnDelta | None,
              cancel: threading.Event | None, tools: list[dict[str, Any]] | None,
              streamed: Callable[[], bool], channel: str,
              num_ctx: int | None) -> ModelResult:
        failures: list[tuple[str, str]] = []
        for state in self._candidates():
            with self._lock:
                state.in_flight += 1
            began = time.perf_counter()
            try:
                result = state.provider.chat(messages, on_delta=forward, cancel=cancel,
                                             tools=tools, num_ctx=num_ctx)
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
            if state.card_read is None:
                state.card = None  # read it again: the server may come back another build

    def window(self, wait: float = 0.0) -> Window:
        """What to send this model (`models.window`), from its endpoints' cards: the ones not
        read yet are asked for, and waited for up to `wait` seconds."""
        if self.config is None:
            return unsized(self.name, self.context_tokens)
        return size_window(self.name, self.config, self.cards(wait), self.context_tokens)

    def cards(self, wait: float = 0.0) -> list[ModelCard]:
        """Each endpoint's card. A read is waited for until `wait` seconds after it began, so
        the messages that come while a slow server has not answered wait once, together."""
        now, reads = self.clock(), []
        with self._lock:
            for state in self.endpoints:
                stale = state.card is None or (state.card.failed and now >= state.card_retry_at)
                if stale and state.card_read is None and not self.closed:
                    state.card_read, state.card_asked = threading.Event(), time.monotonic()
                    reads.append(state)
            waiting = [(s.card_read, s.card_asked + wait) for s in self.endpoints
                       if s.card_read is not None]
        for state in reads:
            threading.Thread(target=self._read_card, args=(state,), daemon=True,
                             name=f"card-{self.name}").start()
        for done, deadline in waiting:
            done.wait(max(0.0, deadline - time.monotonic()))
        with self._lock:
            return [s.card or ModelCard(failed="/api/show has not answered yet")
                    for s in self.endpoints]

    def _read_card(self, state: EndpointState) -> None:
        try:
            card = state.provider.card()
        except CardUnavailable as e:
            card = ModelCard(failed=str(e))
        except Exception as e:  # a bug here must not leave every message waiting for it
            log.exception("model %s: reading the card of %s failed", self.name, state.label)
            card = ModelCard(failed=f"{type(e).__name__} while reading /api/show")
        with self._lock:
            state.card, done, state.card_read = card, state.card_read, None
            state.card_retry_at = self.clock() + CARD_RETRY
        if card.failed:
            log.warning("model %s at %s: %s; sized from config", self.name, state.label,
                        card.failed)
        if done is not None:
            done.set()

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
