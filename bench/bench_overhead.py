"""What the per-message layers cost, in microseconds: the guard chain, the trace, the metrics
timer and the access-log line (each on vs off is its row: the message path without it saves
exactly that).

Builds the chain exactly as the gateway does (gateway.core.settings.build_guards, with a real
SQLite store under a temporary workspace) and times `admit` for the common cases: a loopback
client with a static token, an issued token (cache hit after the first), a remote client
(rate limit counted), a chat-platform sender (stranger policy read from the store); then the
pipeline's access-log line written through the real ECS formatter to a file; a message's
trace (the nine spans of a chat answer, serialised as the store keeps them) and the metrics
timer around it. Prints a table; asserts nothing. Run: python bench/bench_overhead.py
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path

from gateway.common.workspace import Workspace
from gateway.config import parse_config
from gateway.core.message import Message, Reply, Trace
from gateway.core.pipeline import _access
from gateway.core.settings import Process
from gateway.core.store import Store
from gateway.guards.chain import Allow, Caller
from gateway.guards.stranger import SenderRow
from gateway.guards.tokens import issue_token
from gateway.observe.logs import ACCESS_LOGGER, EcsFormatter
from gateway.observe.metrics import Metrics
from gateway.server.app import settings_for

N = 20_000
TOKEN = "bench-static-token-long-enough-0123456789"


def per_call_us(work, n: int = N) -> float:  # type: ignore[no-untyped-def]
    work()  # warm caches
    began = time.perf_counter()
    for _ in range(n):
        work()
    return (time.perf_counter() - began) / n * 1e6


STEPS = ("guard", "store", "queue", "session", "route", "knowledge", "context", "model", "x")


def _one_trace() -> None:
    trace = Trace("m1")
    for step in STEPS:
        with trace.step(step) as span:
            span.detail = "detail of the step, as long as they usually are"
    json.dumps([vars(s) for s in trace.spans], ensure_ascii=False)  # as the store does


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp) / "ws")
        store = Store(ws.db_url)
        config = parse_config({
            "auth": {"tokens": [TOKEN], "rate_limit": {"per_ip": "100000000/min",
                                                      "global": "100000000/min"}},
            "channels": {"enterprise_im": {"bot_token": "platform-token"}},
            "security": {"stranger_mode": "verification_code"}})
        settings = settings_for(config, Process(ws, store))
        chain = settings.guards
        issued, _ = issue_token(store, 3600, label="bench")
        store.put_sender(SenderRow("enterprise_im", "alice", "approved", updated_at=time.time()))
        cases = {
            "loopback, static token": Caller("http", "127.0.0.1", TOKEN, text="hi"),
            "loopback, issued token (cached)": Caller("http", "127.0.0.1", issued, text="hi"),
            "remote, static token (rate counted)": Caller("http", "203.0.113.9", TOKEN,
                                                          text="hi"),
            "chat platform, known sender": Caller("enterprise_im", "203.0.113.9",
                                                  "platform-token", "alice", "hi"),
        }
        rows = []
        for name, caller in cases.items():
            assert isinstance(chain.admit(caller), Allow), name
            rows.append((f"guard chain: {name}", per_call_us(lambda c=caller: chain.admit(c))))

        access = logging.getLogger(ACCESS_LOGGER)
        access.propagate = False
        handler = logging.FileHandler(Path(tmp) / "access.log", encoding="utf-8")
        handler.setFormatter(EcsFormatter())
        access.addHandler(handler)
        access.setLevel(logging.INFO)
        msg = Message("http", "ada", "c", "hello", peer="127.0.0.1")
        reply = Reply(msg.id, "http", "c", "echo: hello", "s1")
        timer = Metrics().track("http")
        rows.append(("access-log line (ECS JSON to a file)",
                     per_call_us(lambda: _access(msg, reply, timer), N // 4)))
        rows.append(("trace: 9 spans of a chat answer + JSON for the store",
                     per_call_us(_one_trace, N // 4)))
        metrics = Metrics()

        def tracked() -> None:
            with metrics.track("http", "http:c") as t:
                t.route, t.model = "chat", "llama2"

        rows.append(("metrics: message timer (histograms, counters, window)",
                     per_call_us(tracked, N // 4)))
        handler.close()
        for pool in settings.models.values():
            pool.close()
        store.close()

    print(f"| what (n={N}) | us per message |\n|---|--:|")
    for name, us in rows:
        print(f"| {name} | {us:.1f} |")
    print("\nFor scale: the gateway's sequential overhead per message is ~2,500-2,900 us "
          "(bench/README.md).")


if __name__ == "__main__":
    main()
