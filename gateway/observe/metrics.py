"""What the gateway counts: Prometheus metrics for scrapers, and a live window for people.

One `Metrics` object per gateway, built by the composition root and handed to the pipeline,
the channels and the API. It owns its own `CollectorRegistry` (never prometheus-client's
global one), so tests and several gateways in one process do not collide.

The calls on the message path (`message_started`, `message_finished`, `model_call`) cost a
few microseconds together (`bench/run.py metrics` prints the figure): label children are
looked up once and cached, and the window is a dict update per call.

Several worker processes: start every worker with `PROMETHEUS_MULTIPROC_DIR` set to one
empty directory (prometheus-client reads it when it is first imported, so it must be in the
environment before the worker starts, not set later). Each worker then writes its values to
memory-mapped files there, and whichever worker answers `GET /metrics` sums all of them
(gauges with "livesum": only live workers count). Call `close()` when a worker stops so its
gauges leave the sum. The window behind `/api/v1/stats` and the alerts stays per process.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, values
from prometheus_client.exposition import choose_encoder

from gateway.observe.resources import (
    MachineMeter,
    ProcessCollector,
    ProcessMeter,
    multiprocess_pids,
    own_pid,
)
from gateway.observe.window import Window

# 1 ms .. 120 s; 2 s is the default latency alert threshold, so it is a bucket edge.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0,
                   10.0, 30.0, 60.0, 120.0)
NO_MODEL = "none"  # the model label of a message a skill or command answered


class Metrics:
    def __init__(self, window: Window | None = None,
                 multiprocess_dir: str | None = None) -> None:
        """`multiprocess_dir` defaults to PROMETHEUS_MULTIPROC_DIR; see the module docstring."""
        self.window = window or Window()
        self.multiprocess_dir = multiprocess_dir or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if self.multiprocess_dir:
            _check_multiprocess(self.multiprocess_dir)
        self.registry = CollectorRegistry()
        r = self.registry
        self._latency = Histogram("moltbot_message_duration_seconds",
                                  "Time from a message's arrival to its reply",
                                  ["channel", "model"], buckets=LATENCY_BUCKETS, registry=r)
        self._messages = Counter("moltbot_messages", "Messages answered",
                                 ["channel", "route"], registry=r)
        self._errors = Counter("moltbot_message_errors", "Messages answered with an error",
                               ["channel", "route", "code"], registry=r)
        self._model_calls = Counter("moltbot_model_calls", "Calls to a model endpoint",
                                    ["model", "endpoint"], registry=r)
        self._model_failures = Counter("moltbot_model_failures",
                                       "Calls to a model endpoint that failed",
                                       ["model", "endpoint"], registry=r)
        self._model_latency = Histogram("moltbot_model_call_duration_seconds",
                                        "Time one model endpoint took to answer",
                                        ["model", "endpoint"], buckets=LATENCY_BUCKETS,
                                        registry=r)
        self._prompt_tokens = Counter("moltbot_prompt_tokens",
                                      "Prompt tokens, as the model counted them",
                                      ["model", "channel"], registry=r)
        self._completion_tokens = Counter("moltbot_completion_tokens",
                                          "Completion tokens, as the model counted them",
                                          ["model", "channel"], registry=r)
        self._in_flight_gauge = Gauge("moltbot_messages_in_flight", "Messages being answered",
                                      registry=r, multiprocess_mode="livesum")
        self._connections_gauge = Gauge("moltbot_connections", "Open client connections",
                                        ["channel"], registry=r, multiprocess_mode="livesum")
        self._loop_blocks = Counter("moltbot_event_loop_blocked",
                                    "Times the event loop stopped longer than its limit",
                                    registry=r)
        self._loop_blocked_seconds = Counter("moltbot_event_loop_blocked_seconds",
                                             "Time the event loop spent stopped in those blocks",
                                             registry=r)
        self._outbound = Counter("moltbot_outbound", "Outbound deliveries by outcome: sent, "
                                 "retried (an attempt that will be tried again), failed",
                                 ["channel", "outcome"], registry=r)
        self._children: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()  # the plain counts below; channels may use OS threads
        self.in_flight = 0
        self.connections: dict[str, int] = {}
        pids = multiprocess_pids(self.multiprocess_dir) if self.multiprocess_dir else own_pid
        self._scrape_collector = ProcessCollector(ProcessMeter(pids))
        if not self.multiprocess_dir:
            r.register(self._scrape_collector)
        self._stats_processes, self._stats_machine = ProcessMeter(own_pid), MachineMeter()

    def _child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, looked up once: the lookup costs more than the update."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # -- the message path ----------------------------------------------------------------
    def track(self, channel: str, session: str | None = None) -> MessageTimer:
        """`with metrics.track(msg.channel, f"{msg.channel}:{msg.chat}") as m:` around one
        message; set `m.route`, `m.model`, `m.error` as they become known. Started and
        finished always pair up (an exception counts as error "internal_error")."""
        self.message_started()
        return MessageTimer(self, channel, session)

    def loop_blocked(self, seconds: float) -> None:
        """The event loop stopped for `seconds` (`observe.loopwatch` calls it, on the loop)."""
        self._loop_blocks.inc()
        self._loop_blocked_seconds.inc(seconds)

    def message_started(self) -> None:
        with self._lock:
            self.in_flight += 1
        self._in_flight_gauge.inc()

    def message_finished(self, channel: str, route: str, seconds: float, *,
                         model: str | None = None, error: str | None = None,
                         session: str | None = None) -> None:
        """One answered message (after `message_started`): `route` is the route kind
        (command, skill, chat, or the step that refused it), `error` the reply's error code."""
        with self._lock:
            self.in_flight -= 1
        self._in_flight_gauge.dec()
        self._child(self._latency, channel, model or NO_MODEL).observe(seconds)
        self._child(self._messages, channel, route).inc()
        if error:
            self._child(self._errors, channel, route, error).inc()
        self.window.record_message(channel, model or "", seconds, error=bool(error),
                                   session=session)

    def model_call(self, model: str, endpoint: str, seconds: float, *, ok: bool,
                   channel: str = "", prompt_tokens: int = 0,
                   completion_tokens: int = 0) -> None:
        """One call to one endpoint (each fail-over attempt is its own call); token counts
        are the model's own (Ollama's prompt_eval_count/eval_count, OpenAI's usage)."""
        self._child(self._model_calls, model, endpoint).inc()
        if not ok:
            self._child(self._model_failures, model, endpoint).inc()
        self._child(self._model_latency, model, endpoint).observe(seconds)
        if prompt_tokens:
            self._child(self._prompt_tokens, model, channel).inc(prompt_tokens)
        if completion_tokens:
            self._child(self._completion_tokens, model, channel).inc(completion_tokens)
        self.window.record_model_call(model, endpoint, channel, seconds, ok=ok,
                                      prompt_tokens=prompt_tokens,
                                      completion_tokens=completion_tokens)

    def outbound(self, channel: str, outcome: str) -> None:
        """One delivery attempt of the outbox ended: `sent`, `retried` or `failed`."""
        self._child(self._outbound, channel, outcome).inc()

    def connection_opened(self, channel: str) -> None:
        with self._lock:
            self.connections[channel] = self.connections.get(channel, 0) + 1
        self._child(self._connections_gauge, channel).inc()

    def connection_closed(self, channel: str) -> None:
        with self._lock:
            self.connections[channel] = self.connections.get(channel, 0) - 1
        self._child(self._connections_gauge, channel).dec()

    # -- reading -------------------------------------------------------------------------
    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """(body, content type) for `GET /metrics`, in the format the scraper asked for."""
        encoder, content_type = choose_encoder(accept or "")
        if not self.multiprocess_dir:
            return encoder(self.registry), content_type
        registry = CollectorRegistry()  # per scrape, as prometheus-client's docs advise
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        registry.register(self._scrape_collector)
        return encoder(registry), content_type

    def snapshot(self, seconds: float = 60) -> dict[str, Any]:
        """The window's figures plus what is true right now (in flight, connections, CPU)."""
        p = self._stats_processes.read()
        cpu, memory = self._stats_machine.read()
        return {"at": time.time(), **self.window.snapshot(seconds),
                "in_flight": self.in_flight,
                "connections": {k: v for k, v in sorted(self.connections.items()) if v},
                "process": {"pid": os.getpid(), "cpu_percent": p.cpu_percent,
                            "rss_bytes": p.rss_bytes, "memory_percent": p.memory_percent,
                            "processes": p.processes},
                "system": {"cpu_percent": cpu, "memory_percent": memory}}

    def close(self) -> None:
        """A stopping worker's live gauges leave the multiprocess sum."""
        if self.multiprocess_dir:
            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)


class MessageTimer:
    """What `Metrics.track` returns; a context manager that reports when the block ends."""

    __slots__ = ("began", "channel", "error", "metrics", "model", "route", "session")

    def __init__(self, metrics: Metrics, channel: str, session: str | None) -> None:
        self.metrics = metrics
        self.channel = channel
        self.session = session
        self.route = "unknown"
        self.model: str | None = None
        self.error: str | None = None
        self.began = time.perf_counter()

    def __enter__(self) -> MessageTimer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        error = "internal_error" if exc is not None and not self.error else self.error
        self.metrics.message_finished(self.channel, self.route,
                                      time.perf_counter() - self.began, model=self.model,
                                      error=error, session=self.session)


def _check_multiprocess(directory: str) -> None:
    if not os.path.isdir(directory):
        raise RuntimeError(f"PROMETHEUS_MULTIPROC_DIR={directory} is not a directory; create "
                           f"it (empty) before starting the gateway's workers.")
    if values.ValueClass is values.MutexValue:
        raise RuntimeError("PROMETHEUS_MULTIPROC_DIR was set after prometheus_client was "
                           "imported, so this process keeps its metrics to itself; set it in "
                           "the environment before the gateway starts.")
