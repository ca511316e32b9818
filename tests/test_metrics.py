"""Metrics: the window's arithmetic, the Prometheus exposition, and the two HTTP routes."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
import threading

import pytest
from flask import Flask, Request
from prometheus_client.parser import text_string_to_metric_families

from gateway.api.metrics import build_metrics_api
from gateway.observe.metrics import Metrics
from gateway.observe.resources import ProcessMeter
from gateway.observe.window import Window, quantile
from tests.fakes.clock import FakeClock


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by (name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


# -- window -----------------------------------------------------------------------------
def test_window_percentiles_are_within_the_bin_width_of_the_exact_ones() -> None:
    rng = random.Random(7)
    latencies = [rng.lognormvariate(math.log(0.2), 1.0) for _ in range(5000)]
    window = Window(60, clock=FakeClock())
    for seconds in latencies:
        window.record_message("ws", "llama2", seconds, error=False)
    ordered = sorted(latencies)
    for q in (0.5, 0.95, 0.99):
        exact = ordered[math.ceil(q * len(ordered)) - 1]
        found, count = window.latency(q, 60)
        assert count == 5000
        assert exact <= found <= exact * 1.05


def test_window_forgets_seconds_older_than_asked_and_reuses_its_ring() -> None:
    clock = FakeClock()
    window = Window(10, clock=clock)
    window.record_message("http", "m", 0.5, error=True)
    clock.now += 5
    window.record_message("http", "m", 0.1, error=False)
    assert window.latency(0.99, 10) == (pytest.approx(0.5, rel=0.05), 2)
    assert window.latency(0.99, 3) == (pytest.approx(0.1, rel=0.05), 1)
    clock.now += 10  # the ring has gone round: both slots are stale
    assert window.latency(0.5, 10) == (None, 0)
    window.record_message("http", "m", 2.0, error=False)
    assert window.snapshot(10)["messages"]["count"] == 1


def test_window_snapshot_breaks_figures_down_by_channel_model_endpoint_and_session() -> None:
    window = Window(60, clock=FakeClock())
    for i in range(6):
        window.record_message("ws", "llama2", 0.010, error=i == 0, session="ws:ada")
    window.record_message("http", "", 0.002, error=False, session="http:bob")
    window.record_model_call("llama2", "http://a", "ws", 0.008, ok=True, prompt_tokens=30,
                             completion_tokens=12)
    window.record_model_call("llama2", "http://b", "ws", 0.5, ok=False)
    snap = window.snapshot(30)

    assert snap["window_s"] == 30
    assert snap["messages"]["count"] == 7
    assert snap["messages"]["per_min"] == 14.0
    assert snap["messages"]["errors"] == 1
    assert snap["channels"]["ws"]["count"] == 6
    assert snap["channels"]["ws"]["tokens"] == {"prompt": 30, "completion": 12}
    assert snap["channels"]["http"]["latency_ms"]["p50"] == pytest.approx(2.0, rel=0.05)
    assert list(snap["models"]) == ["llama2"]  # the skill-answered message has no model
    assert snap["models"]["llama2"]["calls"]["failure_rate"] == 0.5
    assert snap["model_calls"]["tokens"] == {"prompt": 30, "completion": 12}
    assert [(e["endpoint"], e["failures"]) for e in snap["endpoints"]] == [
        ("http://a", 0), ("http://b", 1)]
    assert snap["sessions"] == [{"session": "ws:ada", "messages": 6},
                                {"session": "http:bob", "messages": 1}]
    assert window.model_failures(30) == (1, 2)


def test_reading_while_other_threads_record_sees_consistent_counts() -> None:
    window = Window(60, clock=FakeClock())  # time stands still: nothing leaves the window
    writers, each, stops = 2, 1_000, 10
    pause = threading.Barrier(writers + 1)  # the writers stop here (twice) every `each // stops`

    def record(n: int) -> None:  # new keys keep appearing, as new channels and sessions do
        for i in range(each):
            if i and i % (each // stops) == 0:
                pause.wait(timeout=10)  # stopped: the reader checks the exact count
                pause.wait(timeout=10)
            window.record_message(f"ch{i % 50}", f"m{n}", 0.001 * (i % 997), error=False,
                                  session=f"s{n}-{i % 500}")
            window.record_model_call(f"m{n}", f"e{i % 7}", "ws", 0.01, ok=True)

    def is_writing() -> bool:
        return pause.n_waiting < writers and any(t.is_alive() for t in threads)

    threads = [threading.Thread(target=record, args=(n,)) for n in range(writers)]
    counts = []
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads every few bytecodes: reads land mid-record
    try:
        for t in threads:
            t.start()
        for stop in range(1, stops + 1):
            while is_writing():  # reads while both threads record
                counts.append(window.snapshot(60)["messages"]["count"])
                window.latency(0.95, 60)
            if stop < stops:
                pause.wait(timeout=10)
                counts.append(window.snapshot(60)["messages"]["count"])
                assert counts[-1] == writers * stop * (each // stops)
                pause.wait(timeout=10)
    finally:
        sys.setswitchinterval(interval)
        pause.abort()  # a failed read must not leave the writers waiting
        for t in threads:
            t.join()
    assert counts == sorted(counts)  # a read never lost what an earlier one counted
    snap = window.snapshot(60)
    assert snap["messages"]["count"] == snap["model_calls"]["count"] == writers * each
    assert window.latency(0.95, 60)[1] == writers * each


def test_quantile_of_nothing_is_none() -> None:
    from collections import Counter
    assert quantile(Counter(), 0.95) is None


# -- Prometheus ---------------------------------------------------------------------------
def record_some(metrics: Metrics) -> None:
    metrics.connection_opened("ws")
    metrics.connection_opened("ws")
    metrics.connection_closed("ws")
    for _ in range(3):
        metrics.message_started()
    metrics.message_finished("ws", "chat", 0.030, model="llama2", session="ws:ada")
    metrics.message_finished("ws", "skill", 0.004, error="skill_error")
    metrics.model_call("llama2", "http://127.0.0.1:11434", 0.025, ok=True, channel="ws",
                       prompt_tokens=40, completion_tokens=9)
    metrics.model_call("llama2", "http://127.0.0.1:11435", 3.0, ok=False, channel="ws")


def test_exposition_has_each_family_with_its_labels() -> None:
    metrics = Metrics()
    record_some(metrics)
    got = samples(metrics.exposition()[0])

    assert got[("moltbot_messages_total", (("channel", "ws"), ("route", "chat")))] == 1
    assert got[("moltbot_message_errors_total",
                (("channel", "ws"), ("code", "skill_error"), ("route", "skill")))] == 1
    assert got[("moltbot_message_duration_seconds_count",
                (("channel", "ws"), ("model", "llama2")))] == 1
    assert got[("moltbot_message_duration_seconds_bucket",
                (("channel", "ws"), ("le", "0.05"), ("model", "llama2")))] == 1
    assert got[("moltbot_message_duration_seconds_bucket",
                (("channel", "ws"), ("le", "0.025"), ("model", "llama2")))] == 0
    assert got[("moltbot_message_duration_seconds_count",
                (("channel", "ws"), ("model", "none")))] == 1
    down = (("endpoint", "http://127.0.0.1:11435"), ("model", "llama2"))
    assert got[("moltbot_model_calls_total", down)] == 1
    assert got[("moltbot_model_failures_total", down)] == 1
    assert got[("moltbot_model_call_duration_seconds_sum", down)] == 3.0
    assert got[("moltbot_prompt_tokens_total", (("channel", "ws"), ("model", "llama2")))] == 40
    assert got[("moltbot_completion_tokens_total",
                (("channel", "ws"), ("model", "llama2")))] == 9
    assert got[("moltbot_messages_in_flight", ())] == 1
    assert got[("moltbot_connections", (("channel", "ws"),))] == 1
    assert got[("moltbot_process_resident_memory_bytes", ())] > 10_000_000
    assert got[("moltbot_process_cpu_seconds_total", ())] > 0
    assert 0 < got[("moltbot_system_memory_percent", ())] <= 100


def test_two_metrics_objects_in_one_process_keep_their_own_counts() -> None:
    first, second = Metrics(), Metrics()
    first.message_started()
    first.message_finished("http", "chat", 0.1, model="m")
    key = ("moltbot_messages_total", (("channel", "http"), ("route", "chat")))
    assert samples(first.exposition()[0])[key] == 1
    assert key not in samples(second.exposition()[0])


def test_exposition_speaks_openmetrics_when_asked() -> None:
    body, content_type = Metrics().exposition("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")


def test_snapshot_adds_what_is_true_now() -> None:
    metrics = Metrics()
    record_some(metrics)
    snap = metrics.snapshot(60)
    assert snap["in_flight"] == 1
    assert snap["connections"] == {"ws": 1}
    assert snap["messages"]["count"] == 2
    assert snap["process"]["pid"] == os.getpid()
    assert snap["process"]["rss_bytes"] > 10_000_000
    assert 0 <= snap["system"]["cpu_percent"] <= 100


def test_process_figures_include_the_gateways_children() -> None:
    alone = ProcessMeter(rescan=0).read()
    code = "import sys; print('ready', flush=True); sys.stdin.read()"
    with subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE) as child:
        try:
            assert child.stdout.readline() == b"ready\n"  # type: ignore[union-attr]
            both = ProcessMeter(rescan=0).read()
        finally:
            child.stdin.close()  # type: ignore[union-attr]
    assert both.processes == alone.processes + 1
    assert both.rss_bytes > alone.rss_bytes + 1_000_000  # a Python interpreter's worth


# -- HTTP ---------------------------------------------------------------------------------
def app_with(metrics: Metrics, token: str = "good") -> Flask:
    def authorize(req: Request) -> bool:
        return req.headers.get("Authorization") == f"Bearer {token}"

    app = Flask(__name__)
    app.register_blueprint(build_metrics_api(metrics, authorize))
    return app


REMOTE = {"REMOTE_ADDR": "192.0.2.10"}


def test_metrics_route_answers_loopback_and_tokens_only() -> None:
    metrics = Metrics()
    record_some(metrics)
    client = app_with(metrics).test_client()

    local = client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert local.status_code == 200
    assert local.content_type.startswith("text/plain")
    assert b"moltbot_messages_total" in local.data

    refused = client.get("/metrics", environ_base=REMOTE)
    assert refused.status_code == 401
    assert "dashboard --token-gen" in refused.get_json()["error"]["message"]
    assert client.get("/metrics", environ_base=REMOTE,
                      headers={"Authorization": "Bearer bad"}).status_code == 401
    assert client.get("/metrics", environ_base=REMOTE,
                      headers={"Authorization": "Bearer good"}).status_code == 200


def test_a_proxied_request_is_not_loopback() -> None:
    client = app_with(Metrics()).test_client()
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
        response = client.get("/api/v1/stats", environ_base={"REMOTE_ADDR": "127.0.0.1"},
                              headers={header: "203.0.113.9"})
        assert response.status_code == 401, header


def test_stats_route_returns_the_snapshot_and_checks_its_window() -> None:
    metrics = Metrics()
    record_some(metrics)
    client = app_with(metrics).test_client()
    stats = client.get("/api/v1/stats?window=30", environ_base=REMOTE,
                       headers={"Authorization": "Bearer good"}).get_json()
    assert stats["window_s"] == 30
    assert stats["messages"]["count"] == 2
    assert stats["channels"]["ws"]["errors"] == 1

    bad = client.get("/api/v1/stats?window=abc")
    assert bad.status_code == 400
    assert "from 1 to 600" in bad.get_json()["error"]["message"]
    assert client.get("/api/v1/stats?window=9999").status_code == 400


def test_track_pairs_start_and_finish_even_when_the_block_raises() -> None:
    metrics = Metrics()
    with metrics.track("ws", session="ws:ada") as m:
        assert metrics.in_flight == 1
        m.route, m.model = "chat", "llama2"
    with pytest.raises(RuntimeError), metrics.track("http") as m:
        m.route = "skill"
        raise RuntimeError("a bug")
    assert metrics.in_flight == 0
    got = samples(metrics.exposition()[0])
    assert got[("moltbot_messages_total", (("channel", "ws"), ("route", "chat")))] == 1
    assert got[("moltbot_message_errors_total",
                (("channel", "http"), ("code", "internal_error"), ("route", "skill")))] == 1
    assert metrics.snapshot(60)["sessions"] == [{"session": "ws:ada", "messages": 1}]
