"""Which libraries keep the gateway's gevent loop turning while they work (issue 13).

Run: python bench/bench_loop_libraries.py [name ...]. Prints a table, asserts nothing; about
20 s. Each row is one probe of `tests/loopprobe.py`: a fresh child process that runs
`monkey.patch_all(queue=False)` first, as the gateway does, then uses one library as the
gateway code uses it while a ticker greenlet records the largest interval between its 10 ms
ticks. The services are real and slow where the point is a wait (see that module). paho-mqtt
is measured only when it is installed (MQTT lands later; it is no dependency yet).

`python bench/bench_loop_libraries.py --store-cost` instead prints what the store's way of
waiting for SQLite's write lock costs a message when nobody else holds it (`store_cost_child`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import free_port  # noqa: E402
from tests.loopprobe import (  # noqa: E402
    Outcome,
    has_secret_service,
    keyring_session,
    mosquitto,
    run_probe,
    slow_services,
)


def measure(names: list[str]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory() as folder, slow_services(Path(folder)) as (svc, _):
        tmp = Path(folder)

        def want(name: str) -> bool:
            return not names or name in names

        if want("keyring"):
            if has_secret_service():
                (tmp / "user").mkdir()
                prefix, env = keyring_session(tmp / "user")
                outcomes.append(run_probe("keyring", prefix=prefix, env=env))
            else:
                print("keyring: skipped (needs gnome-keyring and dbus-run-session)")
        if want("smtp"):
            outcomes.append(run_probe("smtp", svc["smtp"]))
        if want("sqlite"):
            for locked in (False, True):
                (tmp / f"db{locked}").mkdir()
                outcomes.append(run_probe("sqlite", {"dir": str(tmp / f"db{locked}"),
                                                     "locked": locked}))
        if want("ollama"):
            outcomes.append(run_probe("ollama", svc["ollama"]))
        for name in ("prometheus_update", "prometheus_collect"):
            if want(name):
                (tmp / name).mkdir()
                outcomes.append(run_probe(name, env={
                    "PROMETHEUS_MULTIPROC_DIR": str(tmp / name)}))
        if want("limits"):
            outcomes.append(run_probe("limits"))
        if want("jieba"):
            for pool in (False, True):
                outcomes.append(run_probe("jieba", {"pool": pool}))
        if want("psutil"):
            outcomes.append(run_probe("psutil"))
        if want("deadlock"):  # a reference row: what the failure of issue 13 looks like
            outcomes.append(run_probe("deadlock", timeout=5))
        if want("paho"):
            try:
                import paho.mqtt  # noqa: F401
            except ImportError:
                print("paho: skipped (pip install paho-mqtt to measure it)")
            else:
                with mosquitto(free_port()) as port:
                    outcomes.append(run_probe("paho", {"port": port}))
    return outcomes


STORE_BOOT = ("from gevent import monkey; monkey.patch_all(queue=False); import sys; "
              "sys.path.insert(0, 'bench'); from bench_loop_libraries import store_cost_child; "
              "store_cost_child(sys.argv[1], sys.argv[2])")


def store_cost_child(variant: str, folder: str, messages: int = 2000) -> None:
    """Inside a patched child: microseconds per message for the store's two transactions
    (`add_message`, then `finish_message` with a trace), best of 3. `variant`: "loop" is the
    store as it is; "pool" takes the write lock on gevent's thread pool instead, with SQLite's
    own busy wait (what the other fix would be)."""
    from gateway.core.message import Span
    from gateway.core.store import Store
    from tests.loopprobe import _message

    if variant == "pool":
        _use_thread_pool_lock()
    store = Store(f"sqlite:///{folder}/{variant}.db")
    trace = [Span(step, time.time(), 0.1, "ok") for step in ("guards", "store", "route")]
    best = float("inf")
    for run in range(3):
        sent = [_message(run * messages + i) for i in range(messages)]
        began = time.perf_counter()
        for m in sent:
            store.add_message(m, None)
            store.finish_message(m.id, session_id=None, reply="ok", error=None, route="chat",
                                 trace=trace)
        best = min(best, (time.perf_counter() - began) / messages * 1e6)
    store.close()
    print(json.dumps({"variant": variant, "us_per_message": round(best, 1)}))


def _use_thread_pool_lock() -> None:
    """Option B, for the measurement only: BEGIN IMMEDIATE on gevent's thread pool, where
    SQLite's C busy wait (5 s) blocks a native thread instead of the loop."""
    from gevent import get_hub

    from gateway import store

    def pooled(dbapi_conn: object, wait: float = store.BUSY_WAIT) -> None:
        get_hub().threadpool.apply(_begin_waiting_in_c, (dbapi_conn, wait))

    store.lock_for_write = pooled


def _begin_waiting_in_c(dbapi_conn: object, wait: float) -> None:
    dbapi_conn.execute(f"PRAGMA busy_timeout={int(wait * 1000)}")  # type: ignore[attr-defined]
    dbapi_conn.execute("BEGIN IMMEDIATE")  # type: ignore[attr-defined]


def store_cost() -> None:
    print("| write-lock wait | us per message (add_message + finish_message) |")
    print("|---|--:|")
    with tempfile.TemporaryDirectory() as folder:
        for variant in ("loop", "pool"):
            out = subprocess.run([sys.executable, "-c", STORE_BOOT, variant, folder], cwd=ROOT,
                                 capture_output=True, text=True, timeout=300,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)})
            if out.returncode:
                print(f"| {variant} | failed: {out.stderr[-500:]} |")
                continue
            print(f"| {variant} | {json.loads(out.stdout.splitlines()[-1])['us_per_message']} |")


def main() -> None:
    if sys.argv[1:] == ["--store-cost"]:
        store_cost()
        return
    outcomes = measure(sys.argv[1:])
    print("| library | version | operation | calls | results arrived | largest loop gap (ms) "
          "| took (s) | verdict | note |")
    print("|---|---|---|--:|---|--:|--:|---|---|")
    for o in outcomes:
        gap = "-" if o.largest_gap_ms is None else f"{o.largest_gap_ms:.1f}"
        print(f"| {o.library or o.name} | {o.version} | {o.operation} | {o.calls} | "
              f"{'yes' if o.arrived else 'no'} | {gap} | {o.seconds:.2f} | {o.verdict} | "
              f"{o.error or o.note} |")
    for o in outcomes:
        if o.error:
            print(f"\n{o.name}: {o.error}\n{o.output}")


if __name__ == "__main__":
    main()
