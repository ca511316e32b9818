"""Several worker processes, one scrape: prometheus-client's multiprocess mode end to end.

Each worker is a real process started with PROMETHEUS_MULTIPROC_DIR in its environment (as
the gateway's workers will be); whichever of them answers the scrape sums all of them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT

WORKER = """
import sys
from gateway.observe.metrics import Metrics

messages, connections, scrape = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "scrape"
metrics = Metrics()
for _ in range(connections):
    metrics.connection_opened("ws")
for _ in range(messages):
    metrics.message_started()
    metrics.message_finished("ws", "chat", 0.02, model="llama2")
    metrics.model_call("llama2", "http://m", 0.015, ok=True, channel="ws", prompt_tokens=10)
metrics.message_started()  # one still in flight in each worker
print("ready", flush=True)
if scrape:
    sys.stdout.buffer.write(metrics.exposition()[0])
else:
    sys.stdin.readline()  # stay alive (and counted) until the test says stop
metrics.close()
"""


def worker(tmp: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp)}
    return subprocess.Popen([sys.executable, "-c", WORKER, *args], env=env, cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def scrape(tmp: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    proc = worker(tmp, "5", "1", "scrape")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    body = out.split(b"ready\n", 1)[1].decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(body) for s in f.samples}


def test_one_scrape_sums_every_worker(tmp_path: Path) -> None:
    with worker(tmp_path, "3", "2", "stay") as first:
        assert first.stdin is not None and first.stdout is not None
        try:
            assert first.stdout.readline() == b"ready\n"
            got = scrape(tmp_path)
            chat = (("channel", "ws"), ("route", "chat"))
            ws = (("channel", "ws"),)
            assert got[("moltbot_messages_total", chat)] == 8
            assert got[("moltbot_message_duration_seconds_count",
                        (("channel", "ws"), ("model", "llama2")))] == 8
            assert got[("moltbot_prompt_tokens_total",
                        (("channel", "ws"), ("model", "llama2")))] == 80
            assert got[("moltbot_messages_in_flight", ())] == 2  # one per live worker
            assert got[("moltbot_connections", ws)] == 3
            assert got[("moltbot_processes", ())] >= 2  # the scraping worker and the other

            first.stdin.close()  # the first worker stops and calls close()
            assert first.wait(30) == 0
            after = scrape(tmp_path)
            # counters keep what the stopped worker counted; its live gauges are gone
            assert after[("moltbot_messages_total", chat)] == 13
            assert after[("moltbot_messages_in_flight", ())] == 1  # the scraping worker's
            assert after[("moltbot_connections", ws)] == 1
        finally:
            if first.poll() is None:
                first.kill()


def test_a_variable_set_too_late_is_refused_with_the_fix(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.observe.metrics import Metrics  # prometheus_client already imported

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with pytest.raises(RuntimeError, match="before the gateway starts"):
        Metrics()
    with pytest.raises(RuntimeError, match="not a directory"):
        Metrics(multiprocess_dir=str(tmp_path / "missing"))
