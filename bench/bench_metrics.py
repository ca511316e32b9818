"""What metrics cost a message: the calls the pipeline makes per message, in microseconds.

Run: python bench/bench_metrics.py [messages]. Prints numbers, asserts nothing.

Per message the pipeline runs `with metrics.track(...)` (message_started, then
message_finished when the block ends) around one `model_call` with token counts. Each mode
runs in its own process because the choices are made at import: plain (as tests run), under
gevent's `patch_all(queue=False)` (as the gateway runs: its locks are gevent's) and in
prometheus-client's multiprocess mode (values in memory-mapped files). Labels rotate over
3 channels x 2 models x 2 endpoints and 200 sessions, as a busy gateway's would. The figure
is compared with the gateway's ~2.5 ms overhead per message (bench/README.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GATEWAY_OVERHEAD_US = 2500.0
RUNS = 3  # best of: the machine is shared, and a busy neighbour only ever adds time
CHANNELS = ("http", "ws", "mqtt")
MODELS = ("llama2", "qwen")
ENDPOINTS = ("http://127.0.0.1:11434", "http://127.0.0.1:11435")


def run_mode(messages: int) -> None:
    """Inside the child: time the per-message calls, a scrape and a snapshot."""
    if os.environ.get("BENCH_GEVENT"):
        from gevent import monkey

        monkey.patch_all(queue=False)
    sys.path.insert(0, str(ROOT))
    from gateway.observe.metrics import Metrics

    metrics = Metrics()
    labels = [(CHANNELS[i % 3], MODELS[i % 2], ENDPOINTS[(i // 2) % 2], f"s{i % 200}")
              for i in range(600)]
    for channel, model, endpoint, session in labels:  # warm the label caches
        metrics.message_started()
        metrics.model_call(model, endpoint, 0.01, ok=True, channel=channel)
        metrics.message_finished(channel, "chat", 0.02, model=model, session=session)

    begin = time.perf_counter()
    for i in range(messages):
        channel, model, endpoint, session = labels[i % 600]
        with metrics.track(channel, session) as m:
            metrics.model_call(model, endpoint, 0.012, ok=i % 50 != 0, channel=channel,
                               prompt_tokens=120, completion_tokens=40)
            m.route, m.model = "chat", model
            m.error = None if i % 50 else "model_error"
    per_message = (time.perf_counter() - begin) / messages * 1e6

    begin = time.perf_counter()
    for _ in range(20):
        body, _ = metrics.exposition()
    scrape_ms = (time.perf_counter() - begin) / 20 * 1000
    begin = time.perf_counter()
    for _ in range(20):
        metrics.snapshot(60)
    snapshot_ms = (time.perf_counter() - begin) / 20 * 1000
    print(f"{per_message:.2f} {scrape_ms:.2f} {snapshot_ms:.2f} {len(body)}")


def main() -> None:
    messages = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    print(f"{messages:,} messages per mode, best of {RUNS} runs; gateway overhead per message "
          f"~{GATEWAY_OVERHEAD_US:.0f} us\n")
    print(f"{'mode':<14} {'us/message':>10} {'of overhead':>12} {'scrape ms':>10} "
          f"{'snapshot ms':>12} {'scrape bytes':>13}")
    with tempfile.TemporaryDirectory() as multiproc:
        modes = {"plain": {}, "gevent": {"BENCH_GEVENT": "1"},
                 "multiprocess": {"PROMETHEUS_MULTIPROC_DIR": multiproc}}
        for name, extra in modes.items():
            env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
            runs = []
            for _ in range(RUNS):
                out = subprocess.run([sys.executable, __file__, "--child", str(messages)],
                                     env={**env, **extra}, cwd=ROOT, capture_output=True,
                                     text=True, check=True).stdout.split()
                runs.append((float(out[0]), float(out[1]), float(out[2]), int(out[3])))
            per, scrape, snap = (min(r[i] for r in runs) for i in range(3))
            size = runs[-1][3]
            print(f"{name:<14} {per:>10.2f} {per / GATEWAY_OVERHEAD_US:>11.2%} {scrape:>10.2f} "
                  f"{snap:>12.2f} {size:>13,}")
    print("\nus/message: metrics.track(...) around one model_call, one message's calls.\n"
          "scrape: one GET /metrics body; snapshot: one /api/v1/stats body (60 s window); "
          "both off the message path.")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        run_mode(int(sys.argv[2]))
    else:
        main()
