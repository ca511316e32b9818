"""Benchmark the real gateway process against an instant fake model; prints numbers, asserts none.

    python bench/bench_gateway.py           # full run, a few minutes
    python bench/bench_gateway.py --quick   # under a minute

Why this shape: the gateway is one gevent process, so it must be measured as a separate process
(started exactly as `moltbot gateway start` starts it) with the load coming from other processes
(bench/loadgen.py, gevent clients on keep-alive connections). The model is the `--fast` fake
model, which answers instantly, so whatever time is left is the gateway's own: "overhead" is a
gateway call's latency minus a direct call to the same fake model through the same `ollama`
client (p50 minus p50, p99 minus p99). CPU columns are each process's share of one core during
the timed window: a process at ~100% is the bottleneck of that row.

This process never patches anything with gevent; it only starts, samples and stops the others,
and it stops all of them on exit, on an exception and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import queue
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import psutil

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
LOADGEN = BENCH_DIR / "loadgen.py"
MODEL_NAME = "fake-model"
START_WAIT = 30.0
MESSAGE_MODES = ("http", "http-rate", "ws", "ws-rate")
"""Rows that carry a message through the gateway to the model: only these get an overhead."""


@dataclass(frozen=True)
class Plan:
    """How much of everything to run: full aims at the issue's figures, quick at a smoke test."""

    seq: int
    conc_total: int
    concurrencies: tuple[int, ...]
    rate: float
    rate_seconds: float
    held: int


FULL = Plan(seq=500, conc_total=5000, concurrencies=(16, 64), rate=500, rate_seconds=10,
            held=10_000)
QUICK = Plan(seq=200, conc_total=1000, concurrencies=(16, 64), rate=500, rate_seconds=3,
             held=1_000)


@dataclass
class Row:
    """One line of the summary table."""

    name: str
    n: int = 0
    rate: float = 0.0
    p50: float | None = None
    p99: float | None = None
    ovh50: float | None = None
    ovh99: float | None = None
    gw_cpu: float | None = None
    model_cpu: float | None = None
    client_cpu: float | None = None
    other_cpu: float | None = None
    errors: dict[str, int] = field(default_factory=dict)
    note: str = ""


def percentile(sorted_values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile (no interpolation: p99 of 500 samples is the 495th value)."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * pct // 100))
    return sorted_values[int(min(rank, len(sorted_values))) - 1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """Linux: a child started with this gets SIGTERM if the bench is killed outright (-9)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _rss(p: psutil.Process) -> int:
    try:
        return int(p.memory_info().rss)
    except psutil.Error:
        return 0


def _short_cmd(p: psutil.Process) -> str:
    try:
        args = p.cmdline()
    except psutil.Error:
        return "?"
    return next((a for a in args[1:] if not a.startswith("-")), args[0] if args else "?")


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


class Bench:
    """Owns every process it starts; `close()` stops them all, whatever happened before."""

    def __init__(self, plan: Plan, keep: bool) -> None:
        self.plan = plan
        self.keep = keep
        self.tmp = Path(tempfile.mkdtemp(prefix="moltbot-bench-"))
        self.home = self.tmp / "home"
        self.procs: list[tuple[str, subprocess.Popen[Any]]] = []
        self.files: list[IO[Any]] = []
        self.rows: list[Row] = []
        self.facts: dict[str, str] = {}
        self.direct: Row | None = None
        self.model_url = ""
        self.port = 0
        self.token = ""
        self.gw: psutil.Process | None = None
        self.model: psutil.Process | None = None
        self.gw_children: dict[int, psutil.Process] = {}  # skill hosts etc., stopped in close()

    # -- processes -----------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None,
               **kwargs: Any) -> subprocess.Popen[Any]:
        out = open(self.tmp / f"{name}.out", "wb")  # noqa: SIM115 (closed in close())
        self.files.append(out)
        proc = subprocess.Popen(argv, cwd=REPO, env=env or os.environ.copy(),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True, preexec_fn=_die_with_parent, **kwargs)
        self.procs.append((name, proc))
        return proc

    def _tail(self, name: str, chars: int = 1500) -> str:
        path = self.tmp / f"{name}.out"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def start_model(self) -> None:
        """The fast fake model on a free port; READY on its output means it listens."""
        port = free_port()
        proc = self._spawn("fake_model", [sys.executable, "-m", "tests.fakes.fake_model",
                                          "--port", str(port), "--fast"])
        deadline = time.monotonic() + START_WAIT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"fake model exited ({proc.returncode}):\n"
                                   f"{self._tail('fake_model')}")
            for line in self._tail("fake_model").splitlines():
                if line.startswith("READY "):
                    self.model_url = line.split()[1]
                    self.model = psutil.Process(proc.pid)
                    return
            time.sleep(0.05)
        raise RuntimeError(f"fake model did not print READY in {START_WAIT:.0f}s")

    def start_gateway(self) -> None:
        """Write config.yaml, start `python -m gateway.server`, wait for /healthz, get a token."""
        self.home.mkdir(parents=True)
        (self.home / "config.yaml").write_text(
            f"models:\n  {MODEL_NAME}:\n    endpoint: \"{self.model_url}\"\n"
            f"gateway:\n  max_connections: 19000\n  max_connections_per_ip: 19000\n"
            f"  session_timeout: 1h\n", encoding="utf-8")
        env = {**os.environ, "MOLTBOT_HOME": str(self.home)}
        self.port = free_port()
        proc = self._spawn("gateway", [sys.executable, "-m", "gateway.server",
                                       "--port", str(self.port)], env=env)
        url = f"http://127.0.0.1:{self.port}/healthz"
        deadline = time.monotonic() + START_WAIT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gateway exited ({proc.returncode}):\n{self._tail('gateway')}")
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        break
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway did not answer {url} in {START_WAIT:.0f}s")
            time.sleep(0.1)
        self.gw = psutil.Process(proc.pid)
        self._children()
        moltbot = Path(sys.executable).with_name("moltbot")
        argv = ([str(moltbot)] if moltbot.exists()
                else [sys.executable, "-m", "gateway"])
        done = subprocess.run([*argv, "dashboard", "--token-gen", "--json"], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=60, check=True)
        self.token = json.loads(done.stdout)["token"]
        self.facts["gateway idle RSS"] = f"{self.gw.memory_info().rss / 2**20:.0f} MB"
        self.facts["gateway idle fds"] = str(self.gw.num_fds())
        kids = self._children()
        if kids:
            rss = sum(_rss(k) for k in kids)
            self.facts["gateway child processes"] = (
                f"{len(kids)} ({', '.join(sorted({_short_cmd(k) for k in kids}))}), "
                f"{rss / 2**20:.0f} MB RSS together; their CPU is counted in gw CPU")

    def _children(self) -> list[psutil.Process]:
        """The gateway's child processes now (skill hosts); remembered for cleanup."""
        try:
            kids = self.gw.children(recursive=True) if self.gw else []
        except psutil.Error:
            return []
        for k in kids:
            self.gw_children.setdefault(k.pid, k)
        return [self.gw_children[k.pid] for k in kids]

    def close(self) -> None:
        """SIGTERM every child (the gateway drains gracefully), then SIGKILL stragglers."""
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _name, proc in reversed(self.procs):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    proc.kill()
                proc.wait(5)
        for child in self.gw_children.values():  # the gateway should have stopped them
            with contextlib.suppress(psutil.Error):
                if child.is_running():
                    child.terminate()
                    try:
                        child.wait(3)
                    except psutil.TimeoutExpired:
                        child.kill()
        for f in self.files:
            f.close()
        if self.keep:
            print(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- sampling ------------------------------------------------------------------------
    def _cpu(self) -> tuple[float, float, float, float]:
        """(wall, gateway cpu s, model cpu s, whole machine busy cpu s) right now.

        The machine's total lets the report show CPU used by *other* processes during a row:
        on a shared 2-core box that is the first thing to rule out when numbers look low.
        """
        def secs(p: psutil.Process | None) -> float:
            if p is None:
                return 0.0
            try:
                t = p.cpu_times()
                return t.user + t.system
            except psutil.Error:
                return 0.0
        t = psutil.cpu_times()
        busy = sum(t) - t.idle - getattr(t, "iowait", 0.0)
        gateway = secs(self.gw) + sum(secs(k) for k in self._children())
        return time.perf_counter(), gateway, secs(self.model), busy

    # -- load phases ---------------------------------------------------------------------
    def _loadgen(self, mode: str, params: dict[str, Any]) -> subprocess.Popen[str]:
        err = open(self.tmp / f"loadgen-{mode}.err", "ab")  # noqa: SIM115 (closed in close())
        self.files.append(err)
        proc = subprocess.Popen([sys.executable, str(LOADGEN), mode, json.dumps(params)],
                                cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=err, text=True, bufsize=1, start_new_session=True)
        self.procs.append((f"loadgen-{mode}", proc))
        return proc

    @staticmethod
    def _lines(proc: subprocess.Popen[str]) -> queue.Queue[dict[str, Any] | None]:
        """A thread turns the child's JSON lines into a queue (None: the child closed stdout)."""
        q: queue.Queue[dict[str, Any] | None] = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                with contextlib.suppress(ValueError):
                    q.put(json.loads(line))
            q.put(None)

        threading.Thread(target=pump, daemon=True).start()
        return q

    def _common(self) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.port, "token": self.token,
                "model_url": self.model_url, "model": MODEL_NAME}

    def phase(self, name: str, mode: str, timeout: float, **params: Any) -> Row:
        """Run one loadgen measurement; a failure becomes a row with the error, not a crash."""
        print(f"  {name} ...", end="", flush=True)
        row = Row(name)
        proc = self._loadgen(mode, {**self._common(), "tag": name.replace(" ", ""), **params})
        lines = self._lines(proc)
        deadline = time.monotonic() + timeout
        start = end = None
        result: dict[str, Any] | None = None
        try:
            while result is None:
                event = lines.get(timeout=max(0.1, deadline - time.monotonic()))
                if event is None:
                    break
                if event["event"] == "start":
                    start = self._cpu()
                elif event["event"] == "result":
                    end = self._cpu()
                    result = event
        except queue.Empty:
            row.errors["loadgen timed out"] = 1
        finally:
            if proc.poll() is None:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if result is None:
            row.errors.setdefault(f"loadgen failed (exit {proc.returncode}); see "
                                  f"{self.tmp / f'loadgen-{mode}.err'}", 1)
            print(" failed")
            self.rows.append(row)
            return row
        lat = sorted(result["latencies_ms"])
        row.n, row.errors = len(lat), result["errors"]
        row.rate = len(lat) / result["elapsed"] if result["elapsed"] else 0.0
        row.p50, row.p99 = percentile(lat, 50), percentile(lat, 99)
        row.client_cpu = result["client_cpu"] * 100
        if start and end and end[0] > start[0]:
            wall = end[0] - start[0]
            row.gw_cpu = (end[1] - start[1]) / wall * 100
            row.model_cpu = (end[2] - start[2]) / wall * 100
            busy = (end[3] - start[3]) / wall * 100
            row.other_cpu = max(0.0, busy - row.gw_cpu - row.model_cpu - (row.client_cpu or 0))
        direct = self.direct
        if mode in MESSAGE_MODES and direct and None not in (direct.p50, direct.p99,
                                                             row.p50, row.p99):
            row.ovh50 = row.p50 - direct.p50  # type: ignore[operator]
            row.ovh99 = row.p99 - direct.p99  # type: ignore[operator]
        if "late_starts" in result:
            row.note = (f"open loop {params.get('rate', 0):.0f}/s, {result['clients']} "
                        f"connections, {result['late_starts']} late starts")
        odd = {k: v for k, v in result.get("reply_kinds", {}).items()
               if k not in ("echo:", "healthz")}
        if odd:  # answered by something other than the model: say so, the row is not pure
            row.note += ("; " if row.note else "") + "replies not from the model: " + \
                ", ".join(f"{k!r} x{v}" for k, v in odd.items())
        print(f" {row.rate:.0f} msg/s, p50 {fmt(row.p50)} ms, p99 {fmt(row.p99)} ms"
              + (f", errors {sum(row.errors.values())}" if row.errors else ""))
        self.rows.append(row)
        return row

    def run_load(self) -> None:
        plan = self.plan
        conc_timeout = 120.0
        print("model direct (the gateway's ollama client, same process type as the load):")
        self.direct = self.phase("model direct seq", "model", 60, concurrency=1,
                                 total=plan.seq)
        self.phase("model direct c64", "model", conc_timeout, concurrency=64,
                   total=plan.conc_total)
        print("HTTP:")
        self.phase("http GET /healthz seq", "healthz", 60, concurrency=1, total=plan.seq)
        self.phase("http seq (one chat)", "http", 60, concurrency=1, total=plan.seq)
        self.phase("http seq (new chat each)", "http", 60, concurrency=1, total=plan.seq,
                   chat_each=True)
        for c in plan.concurrencies:
            self.phase(f"http c{c}", "http", conc_timeout, concurrency=c, total=plan.conc_total)
        self.phase(f"http {plan.rate:.0f}/s", "http-rate", plan.rate_seconds + 60,
                   concurrency=16, rate=plan.rate, seconds=plan.rate_seconds)
        # Past saturation p99 is only queueing; half the measured peak shows the tail the
        # gateway itself adds while it keeps up.
        peak = max((r.rate for r in self.rows if r.name.startswith("http c")), default=0.0)
        half = max(10.0, round(peak / 2, -1))
        if half < plan.rate:
            self.phase(f"http {half:.0f}/s (half peak)", "http-rate", plan.rate_seconds + 60,
                       concurrency=16, rate=half, seconds=plan.rate_seconds)
        print("WebSocket:")
        self.phase("ws seq (one chat)", "ws", 60, concurrency=1, total=plan.seq)
        for c in plan.concurrencies:
            self.phase(f"ws c{c}", "ws", conc_timeout, concurrency=c, total=plan.conc_total)
        self.phase(f"ws {plan.rate:.0f}/s", "ws-rate", plan.rate_seconds + 60,
                   concurrency=16, rate=plan.rate, seconds=plan.rate_seconds)

    # -- held connections ----------------------------------------------------------------
    def run_hold(self) -> None:
        """Open many idle WebSockets from 1-3 client processes, then look at the gateway."""
        target = self.plan.held
        assert self.gw is not None
        # Each client socket is a descriptor in the client process too (plus the gevent
        # client's own overhead), so big holds are split to stay well inside each process's
        # limit and to spread the handshakes over both cores.
        workers = 1 if target <= 4000 else 2 if target <= 12000 else 3
        print(f"held WebSockets: opening {target} from {workers} client process(es) ...",
              flush=True)
        self._settle_fds()
        rss0, fds0 = self.gw.memory_info().rss, self.gw.num_fds()
        procs: list[tuple[subprocess.Popen[str], queue.Queue[dict[str, Any] | None]]] = []
        for w in range(workers):
            share = target // workers + (1 if w < target % workers else 0)
            proc = self._loadgen("hold", {**self._common(), "count": share, "tag": f"h{w}x",
                                          "handshakes": 64})
            procs.append((proc, self._lines(proc)))

        def wait_for(q: queue.Queue[dict[str, Any] | None], kind: str,
                     timeout: float) -> dict[str, Any] | None:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    event = q.get(timeout=max(0.1, deadline - time.monotonic()))
                except queue.Empty:
                    return None
                if event is None or event["event"] == kind:
                    return event

        def command(i: int, cmd: str, kind: str, timeout: float) -> dict[str, Any] | None:
            proc, q = procs[i]
            try:
                assert proc.stdin is not None
                proc.stdin.write(cmd + "\n")
                proc.stdin.flush()
            except OSError:
                return None
            return wait_for(q, kind, timeout)

        t0 = time.perf_counter()
        ok, errors = 0, Counter[str]()
        for i, (_proc, q) in enumerate(procs):
            held = wait_for(q, "held", 180)
            if held is None:
                errors[f"client process {i} gave no report"] += 1
                continue
            ok += held["ok"]
            errors.update(held["errors"])
        opened_s = time.perf_counter() - t0
        time.sleep(1.0)  # let the gateway finish any handshake bookkeeping
        rss, fds = self.gw.memory_info().rss, self.gw.num_fds()
        still_open = 0
        for i in range(len(procs)):
            status = command(i, "status", "status", 30)
            if status:
                still_open += status["open"]
                errors.update({f"closed later: {k}": v for k, v in status["closed"].items()})
        live = [i for i in range(len(procs)) if procs[i][0].poll() is None]
        probe = command(random.choice(live), "probe", "probe", 40) if live else None
        http_probe = self._http_probe()

        row = Row(f"ws held x{target}", n=ok, errors=dict(errors))
        per_conn = (rss - rss0) / ok / 1024 if ok else 0.0
        row.note = (f"established {ok}/{target} in {opened_s:.1f}s, open at check "
                    f"{still_open}; gateway RSS {rss / 2**20:.0f} MB "
                    f"(+{per_conn:.1f} KB/conn), fds {fds} (before {fds0})")
        if probe and probe.get("ok"):
            row.p50 = row.p99 = probe["ms"]
            row.note += f"; probe answered in {probe['ms']:.1f} ms"
        else:
            row.errors["probe: " + str((probe or {}).get("error", "no answer"))] = 1
        row.note += f"; HTTP message meanwhile: {http_probe}"
        self.facts["held established"] = f"{ok} of {target}"
        self.facts["held gateway RSS"] = f"{rss / 2**20:.0f} MB ({rss0 / 2**20:.0f} MB before)"
        self.facts["held gateway fds"] = f"{fds} ({fds0} before)"
        self.facts["held probe"] = (f"answered in {probe['ms']:.1f} ms ({probe['reply']!r})"
                                    if probe and probe.get("ok") else
                                    f"FAILED: {(probe or {}).get('error', 'no answer')}")
        self.facts["held HTTP message meanwhile"] = http_probe
        self.rows.append(row)
        print(f"  {row.note}")
        if row.errors:
            for text, count in row.errors.items():
                print(f"  error x{count}: {text}")

        for i in range(len(procs)):
            with contextlib.suppress(OSError):
                assert procs[i][0].stdin is not None
                procs[i][0].stdin.write("quit\n")
                procs[i][0].stdin.flush()
        for proc, _q in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.gw.num_fds() > fds0 + 20:
            time.sleep(0.2)
        self.facts["gateway fds after clients left"] = str(self.gw.num_fds())

    def _settle_fds(self, timeout: float = 10.0) -> None:
        """Wait until the last phase's connections are gone, so "before" is a clean baseline."""
        assert self.gw is not None
        deadline = time.monotonic() + timeout
        last = self.gw.num_fds()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = self.gw.num_fds()
            if now == last:
                return
            last = now

    def _http_probe(self) -> str:
        """One plain POST from this (unpatched) process: can the gateway still reach the model?"""
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/v1/messages", method="POST",
            data=json.dumps({"text": "still there?", "chat": "held-http-probe"}).encode(),
            headers={"Authorization": f"Bearer {self.token}",
                     "Content-Type": "application/json"})
        t = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                resp.read()
                return f"HTTP {resp.status} in {(time.perf_counter() - t) * 1000:.1f} ms"
        except urllib.error.HTTPError as e:
            return f"HTTP {e.code}: {e.read()[:120]!r}"
        except OSError as e:
            return f"failed: {e}"

    # -- report --------------------------------------------------------------------------
    def gateway_log_problems(self) -> str:
        """Count what the gateway itself complained about (descriptor exhaustion above all)."""
        texts = [self._tail("gateway", 10**9)]
        logs = self.home / "data" / "logs"
        if logs.is_dir():
            texts += [p.read_text(errors="replace") for p in logs.glob("*.log*")
                      if "access" not in p.name]
        joined = "\n".join(texts)
        return (f"'Too many open files': {joined.count('Too many open files')}, "
                f"tracebacks: {joined.count('Traceback (most recent call last)')}")

    def summary(self, started: float) -> None:
        print("\n## Summary (ms; overhead = gateway minus model direct, p50-p50 and p99-p99; "
              "CPU = % of one core; other = the rest of the machine)\n")
        head = ("| benchmark | n | msg/s | p50 | p99 | overhead p50 | overhead p99 | gw CPU | "
                "model CPU | client CPU | other CPU | errors |")
        print(head)
        print("|---|" + "--:|" * 11)
        for r in self.rows:
            print(f"| {r.name} | {r.n} | {r.rate:.0f} | {fmt(r.p50)} | {fmt(r.p99)} | "
                  f"{fmt(r.ovh50)} | {fmt(r.ovh99)} | {fmt(r.gw_cpu, 0)} | "
                  f"{fmt(r.model_cpu, 0)} | {fmt(r.client_cpu, 0)} | {fmt(r.other_cpu, 0)} | "
                  f"{sum(r.errors.values())} |")
        notes = [r for r in self.rows if r.note or r.errors]
        if notes:
            print()
            for r in notes:
                if r.note:
                    print(f"- {r.name}: {r.note}")
                for text, count in r.errors.items():
                    print(f"- {r.name}: error x{count}: {text}")
        print()
        for key, value in self.facts.items():
            print(f"- {key}: {value}")
        print(f"- gateway logs: {self.gateway_log_problems()}")
        print(f"- wall time: {time.perf_counter() - started:.0f} s")
        self.aims()

    def _row(self, name: str) -> Row | None:
        return next((r for r in self.rows if r.name == name), None)

    def aims(self) -> None:
        """The issue's aims next to what was measured (printed, never asserted)."""
        def said(ok: bool | None) -> str:
            return "n/a" if ok is None else "met" if ok else "NOT met"

        seq = self._row("http seq (one chat)")
        rate = self._row(f"http {self.plan.rate:.0f}/s")
        direct = self._row("model direct c64")
        best = max((r.rate for r in self.rows if r.name.startswith(("http c", "ws c"))),
                   default=0.0)
        held = next((r for r in self.rows if r.name.startswith("ws held")), None)
        print("\n## Aims\n")
        if seq and seq.ovh50 is not None:
            print(f"- overhead p50 < 2 ms (sequential HTTP): {seq.ovh50:.2f} ms -> "
                  f"{said(seq.ovh50 < 2)}")
        if rate and rate.ovh99 is not None:
            print(f"- overhead p99 < 20 ms at {self.plan.rate:.0f} msg/s (HTTP, open loop): "
                  f"{rate.ovh99:.2f} ms at {rate.rate:.0f} msg/s answered -> "
                  f"{said(rate.ovh99 < 20 and not rate.errors)}")
        half = next((r for r in self.rows if r.name.endswith("(half peak)")), None)
        if half and half.ovh99 is not None:
            print(f"  (while it keeps up, {half.name}: overhead p50 {half.ovh50:.2f} ms, "
                  f"p99 {half.ovh99:.2f} ms)")
        if direct:
            print(f"- >= 1,000 msg/s through the model client in one process: "
                  f"{direct.rate:.0f} msg/s direct; best through the gateway {best:.0f} msg/s "
                  f"-> {said(direct.rate >= 1000)} (client), {said(best >= 1000)} (gateway)")
        if held and self.gw is not None:
            rss_mb = float(self.facts.get("held gateway RSS", "0").split()[0])
            fds = int(self.facts.get("held gateway fds", "0").split()[0])
            ok = held.n >= self.plan.held and rss_mb < 500 and fds < 20000
            print(f"- {self.plan.held:,} WebSockets held, fds < 20,000, RSS < 500 MB: "
                  f"{held.n:,} held, {fds} fds, {rss_mb:.0f} MB -> {said(ok)}")


def versions() -> str:
    found = []
    for dist in ("gevent", "flask", "flask-sock", "simple-websocket", "httpx", "ollama",
                 "sqlalchemy", "websocket-client"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found.append(f"{dist} {metadata.version(dist)}")
    return ", ".join(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, under a minute")
    parser.add_argument("--held", type=int, help="idle WebSockets to hold (default 10,000; "
                        "--quick 1,000)")
    parser.add_argument("--no-hold", action="store_true", help="skip the held connections")
    parser.add_argument("--keep", action="store_true", help="keep the temp workspace and logs")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.held is not None:
        plan = Plan(**{**plan.__dict__, "held": args.held})

    def stop(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    started = time.perf_counter()
    print(f"Moltbot gateway benchmark ({'quick' if args.quick else 'full'}), "
          f"{datetime.now():%Y-%m-%d %H:%M}, {psutil.cpu_count()} cores, "
          f"Python {platform.python_version()}, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}\n{versions()}")
    bench = Bench(plan, args.keep)
    try:
        bench.start_model()
        bench.start_gateway()
        print(f"fake model {bench.model_url}, gateway http://127.0.0.1:{bench.port} "
              f"(pid {bench.gw.pid if bench.gw else '?'}), workspace {bench.home}")
        bench.run_load()
        if not args.no_hold and plan.held > 0:
            bench.run_hold()
        bench.summary(started)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping everything", file=sys.stderr)
        return 130
    except RuntimeError as e:  # set-up failed: say why, still clean up
        print(f"\nbenchmark stopped: {e}", file=sys.stderr)
        return 1
    finally:
        bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
