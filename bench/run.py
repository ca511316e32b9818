"""Moltbot's benchmarks, one section each; every one prints numbers and asserts nothing.

bench/README.md says what each row measures. Load comes from bench/loadgen.py processes; every
process this starts is stopped on exit, on an exception and on Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import queue
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
import yaml
from loadgen import HttpClient, describe

BENCH = Path(__file__).resolve().parent
REPO, FIXTURES = BENCH.parent, BENCH / "fixtures"
WORDS = json.loads((FIXTURES / "words.json").read_text("utf-8"))
CONFIGS = yaml.safe_load((FIXTURES / "configs.yaml").read_text("utf-8"))
GATEWAY_OVERHEAD_US = 2500.0  # the gateway's sequential overhead per message (README)
CHILD_BOOT = ("import os, sys\nif os.environ.get('BENCH_GEVENT'):\n"
              "    from gevent import monkey; monkey.patch_all(queue=False)\n"
              "sys.path.insert(0, 'bench'); import run; getattr(run, sys.argv[1])(*sys.argv[2:])")


# ------------------------------------------------------------------------------- shared
def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile (no interpolation: p99 of 500 samples is the 495th value)."""
    ordered = sorted(values)
    return ordered[max(1, int(-(-len(ordered) * pct // 100))) - 1] if ordered else None


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(header: list[str], rows: list[list[Any]]) -> None:
    """A Markdown table; columns of numbers are right-aligned."""
    right = [all(re.fullmatch(r"[-\d.,%]+", str(r[i])) for r in rows) for i in range(len(header))]
    print(f"| {' | '.join(header)} |\n|{'|'.join('--:' if r else '---' for r in right)}|")
    for row in rows:
        print(f"| {' | '.join(str(cell) for cell in row)} |")


def per_call_us(work: Callable[[], object], n: int, runs: int = 1) -> float:
    """Microseconds per call, best of `runs` (a busy neighbour only ever adds time)."""
    work()  # warm caches
    best = float("inf")
    for _ in range(runs):
        began = time.perf_counter()
        for _ in range(n):
            work()
        best = min(best, (time.perf_counter() - began) / n * 1e6)
    return best


def child(func: str, *args: str, env: dict[str, str] | None = None) -> str:
    """The last line `func(*args)` prints in a fresh process (patched when BENCH_GEVENT is set)."""
    out = subprocess.run([sys.executable, "-c", CHILD_BOOT, func, *args], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    if out.returncode:
        raise RuntimeError(f"{func} failed: {out.stderr[-800:]}")
    return out.stdout.splitlines()[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_secs(p: psutil.Process | None) -> float:
    try:
        return sum(p.cpu_times()[:2]) if p else 0.0
    except psutil.Error:
        return 0.0


def _die_with_parent() -> None:
    """Linux: a child gets SIGTERM if the bench is killed outright (-9)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Gateway:
    home: Path
    port: int
    token: str
    proc: subprocess.Popen[bytes]
    ps: psutil.Process
    started_in: float


class Meter:
    """CPU in % of one core: gateway, its children (skills), model, client, rest of the box."""

    def __init__(self, gw: Gateway, model: psutil.Process | None) -> None:
        self.gw, self.model, self.me = gw.ps, model, psutil.Process()
        self.t0 = self._now()

    def gw_seconds(self) -> float:
        """CPU seconds of the gateway process alone (not its skill hosts) since the start."""
        return self._now()[1] - self.t0[1]

    def _now(self) -> list[float]:
        t, gw, kids = psutil.cpu_times(), 0.0, 0.0
        with contextlib.suppress(psutil.Error):  # a reaped child counts in children_* times
            g = self.gw.cpu_times()
            gw, kids = g.user + g.system, g.children_user + g.children_system + sum(
                cpu_secs(k) for k in self.gw.children(recursive=True))
        return [time.perf_counter(), gw, kids, cpu_secs(self.model), cpu_secs(self.me),
                sum(t) - t.idle - getattr(t, "iowait", 0.0)]

    def stop(self, client: float | None = None) -> dict[str, float]:
        now = self._now()
        wall = max(now[0] - self.t0[0], 1e-9)
        d = [(b - a) / wall * 100 for a, b in zip(self.t0, now, strict=True)]
        cpu = {"gw": d[1], "skills": max(d[2], 0.0), "model": d[3],
               "client": d[4] if client is None else client}
        return {**cpu, "other": max(d[5] - sum(cpu.values()), 0.0)}


class Stack:
    """A temp folder and every process started in it; `close()` stops them all."""

    def __init__(self, keep: bool = False) -> None:
        self.keep, self.procs = keep, list[subprocess.Popen[Any]]()
        self.tmp = Path(tempfile.mkdtemp(prefix="moltbot-bench-")).resolve()
        self.model_url, self.model = "", None

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None,
              **kwargs: Any) -> subprocess.Popen[Any]:
        """A child in its own session; its output (or only stderr) goes to `<tmp>/<name>.out`."""
        with open(self.tmp / f"{name}.out", "ab") as out:
            proc = subprocess.Popen(argv, cwd=REPO, env=env, stderr=out, start_new_session=True,
                                    preexec_fn=_die_with_parent,
                                    **{"stdin": subprocess.DEVNULL, "stdout": out, **kwargs})
        self.procs.append(proc)
        return proc

    def tail(self, name: str, chars: int = 1500) -> str:
        path = self.tmp / f"{name}.out"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def wait_until(self, ready: Callable[[], Any], proc: subprocess.Popen[Any], name: str) -> Any:
        deadline = time.monotonic() + 60
        while not (found := ready()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start:\n{self.tail(name)}")
            time.sleep(0.05)
        return found

    def start_model(self) -> None:
        """The fake model with instant answers; READY means it listens."""
        proc = self.spawn("fake_model", [sys.executable, "-m", "tests.fakes.fake_model",
                                         "--port", str(free_port()), "--fast"])
        self.model_url = self.wait_until(lambda: re.findall(r"READY (\S+)", self.tail(
            "fake_model")), proc, "fake_model")[0]
        self.model = psutil.Process(proc.pid)

    def start_gateway(self, name: str, config: dict[str, Any],
                      files: dict[str, str] | None = None) -> Gateway:
        """The gateway as `gateway start` runs it in a new MOLTBOT_HOME (with `files`), a token."""
        home, began = self.tmp / name, time.monotonic()
        for folder in ("skills", "knowledge") if files is not None else ():
            (home / folder).mkdir(parents=True)
        for path, text in (files or {}).items():
            (home / path).write_text(text, encoding="utf-8")
            (home / path).chmod(0o755 if text.startswith("#!") else 0o644)
        home.mkdir(exist_ok=True)
        (home / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), "utf-8")
        env, port = {**os.environ, "MOLTBOT_HOME": str(home)}, free_port()
        proc = self.spawn(name, [sys.executable, "-m", "gateway.server", "--port", str(port)],
                          env)

        def healthy() -> bool:
            with contextlib.suppress(OSError):
                return HttpClient("127.0.0.1", port, "", 1).request("GET", "/healthz")[0] == 200
            return False

        self.wait_until(healthy, proc, name)
        started_in = time.monotonic() - began
        token = json.loads(subprocess.run(
            [sys.executable, "-m", "gateway", "dashboard", "--token-gen", "--json"], cwd=REPO,
            env=env, capture_output=True, text=True, timeout=60, check=True).stdout)["token"]
        return Gateway(home, port, token, proc, psutil.Process(proc.pid), started_in)

    def stop(self, proc: subprocess.Popen[Any], grace: float = 20, term: bool = True) -> None:
        """SIGTERM (a gateway drains and stops its skill hosts), SIGKILL after `grace`."""
        if term:
            with contextlib.suppress(OSError):
                proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                proc.kill()
            proc.wait(5)

    def kill_strays(self, folder: Path) -> None:
        """Kill processes working in `folder`: a gateway that died hard leaves them orphaned."""
        victims = []
        for p in psutil.process_iter():
            with contextlib.suppress(psutil.Error, OSError, ValueError):
                if p.pid != os.getpid() and Path(p.cwd()).is_relative_to(folder):
                    victims.append(p)
                    p.kill()
        psutil.wait_procs(victims, timeout=5)
        if victims:
            print(f"  (killed {len(victims)} leftover process(es) under {folder})")

    def close(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc, 15)
        self.kill_strays(self.tmp)
        if self.keep:
            print(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


class Loadgen:
    """A bench/loadgen.py process; a thread turns its JSON lines into a queue."""

    def __init__(self, st: Stack, gw: Gateway, mode: str, params: dict[str, Any]) -> None:
        params = {"port": gw.port, "token": gw.token, "model_url": st.model_url, "model": MODEL,
                  **params}
        self.log = st.tmp / f"loadgen-{mode}.out"
        self.proc = st.spawn(f"loadgen-{mode}", [sys.executable, str(BENCH / "loadgen.py"),
                                                 mode, json.dumps(params)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout or ():
            with contextlib.suppress(ValueError):
                self.events.put(json.loads(line))
        self.events.put(None)

    def wait(self, kind: str, timeout: float) -> dict[str, Any]:
        """The next `kind` event; {} when the process ended first or `timeout` passed."""
        deadline = time.monotonic() + timeout
        with contextlib.suppress(queue.Empty):
            while event := self.events.get(timeout=max(0.1, deadline - time.monotonic())):
                if event["event"] == kind:
                    return event
        return {}

    def ask(self, command: str, timeout: float) -> dict[str, Any]:
        with contextlib.suppress(OSError, AttributeError):
            self.proc.stdin.write(command + "\n")  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
            return self.wait(command, timeout)
        return {}


@dataclass
class Row:
    """One line of a summary table (times in ms, CPU in % of one core)."""

    name: str
    n: int = 0
    rate: float | None = None
    p50: float | None = None
    p99: float | None = None
    max: float | None = None
    errors: Counter[str] = field(default_factory=Counter)
    note: str = ""
    cpu: dict[str, float] = field(default_factory=dict)
    ovh: tuple[float | None, float | None] = (None, None)
    section: str = ""
    cpu_ms: float | None = None  # the gateway process's CPU ms per message answered

    def timed(self, ms: list[float]) -> Row:
        self.n, self.p50, self.p99 = len(ms), percentile(ms, 50), percentile(ms, 99)
        self.max = max(ms, default=None)
        return self


def measure(st: Stack, gw: Gateway, name: str, mode: str, timeout: float,
            **params: Any) -> tuple[Row, dict[str, Any]]:
    """One loadgen run, CPU sampled over its timed window; a failure is a row's error."""
    print(f"  {name} ...", end="", flush=True)
    row, lg = Row(name), Loadgen(st, gw, mode, {"tag": name.replace(" ", ""), **params})
    meter = Meter(gw, st.model) if lg.wait("start", timeout) else None
    result = lg.wait("result", timeout)
    st.stop(lg.proc, 10, term=False)
    if meter is None or not result:
        row.errors[f"loadgen gave no result (exit {lg.proc.returncode}); see {lg.log}"] = 1
        print(" failed")
        return row, result
    gw_seconds = meter.gw_seconds()
    row.cpu = meter.stop(result["client_cpu"] * 100)
    row.timed(result["latencies_ms"]).errors.update(result["errors"])
    row.rate = row.n / result["elapsed"] if result["elapsed"] else 0.0
    if row.n and mode != "model":  # the direct model rows do not touch the gateway
        row.cpu_ms = gw_seconds * 1000 / row.n
    print(f" {row.rate:.0f} msg/s, p50 {fmt(row.p50)} ms, p99 {fmt(row.p99)} ms, gateway CPU "
          f"{fmt(row.cpu_ms)} ms/msg"
          + (f", errors {row.errors.total()}" if row.errors else ""))
    return row, result


def message_row(st: Stack, gw: Gateway, name: str, mode: str, timeout: float,
                answer: str = "echo:", **params: Any) -> Row:
    """`measure` with the skill hosts' CPU in the gateway's, and a note when the schedule
    slipped or a reply's first word is not `answer` (the model's; the row is then not pure)."""
    row, result = measure(st, gw, name, mode, timeout, **params)
    row.cpu["gw"] = row.cpu.get("gw", 0) + row.cpu.pop("skills", 0)
    if "late_starts" in result:
        row.note = (f"open loop {params['rate']:.0f}/s, {result['clients']} connections, "
                    f"{result['late_starts']} late starts")
    if odd := {k: v for k, v in result.get("reply_kinds", {}).items()
               if k not in (answer, "healthz")}:
        row.note += ("; " if row.note else "") + f"replies not {answer!r}: " + ", ".join(
            f"{k!r} x{v}" for k, v in odd.items())
    return row


def versus(row: Row, base: Row) -> None:
    """The row's overhead over `base`: p50 - p50, p99 - p99."""
    if None not in (row.p50, row.p99, base.p50, base.p99):
        row.ovh = (row.p50 - base.p50, row.p99 - base.p99)  # type: ignore[operator]


def summary(rows: list[Row], overhead: str) -> None:
    """The rows as a table, then each row's notes and errors."""
    print(f"\n## Summary (ms; overhead = {overhead}, p50-p50 and p99-p99; CPU = % of one "
          "core; other = the rest of the machine)\n")
    table(["benchmark", "n", "msg/s", "p50", "p99", "overhead p50", "overhead p99",
           "gw CPU ms/msg", "gw CPU", "model CPU", "client CPU", "other CPU", "errors"],
          [[r.name, r.n, fmt(r.rate, 0), fmt(r.p50), fmt(r.p99), fmt(r.ovh[0]), fmt(r.ovh[1]),
            fmt(r.cpu_ms),
            *(fmt(r.cpu.get(k), 0) for k in ("gw", "model", "client", "other")),
            r.errors.total()] for r in rows])
    print()
    for row in rows:
        for line in [row.note][:bool(row.note)] + [f"error x{v}: {k}"
                                                   for k, v in row.errors.items()]:
            print(f"- {row.name}: {line}")


# ------------------------------------------------------------------------------- gateway
MODEL, RATE, CONCURRENCIES, SKILL_CLIENTS = "fake-model", 500, (16, 64), 32
MESSAGE_MODES = ("http", "http-rate", "ws", "ws-rate")  # rows that get an overhead


def plan(section: str, args: argparse.Namespace) -> dict[str, Any]:
    return dict(CONFIGS["plans"][section]["quick" if args.quick else "full"])


def model_gateway(st: Stack, files: dict[str, str] | None = None, **config: Any) -> Gateway:
    """The instant fake model and a gateway on it: the gateway section's config + `config`."""
    st.start_model()
    return st.start_gateway("home", {"models": {MODEL: {"endpoint": st.model_url}},
                                     **CONFIGS["gateway"], **config}, files)


def bench_gateway(args: argparse.Namespace, st: Stack) -> None:
    """The real gateway process against the instant fake model: overhead, throughput, held."""
    p, started = plan("gateway", args), time.perf_counter()
    seq, total, secs = p["seq"], p["total"], p["rate_seconds"]
    held = p["held"] if args.held is None else args.held
    print(", ".join(f"{d} {metadata.version(d)}" for d in (
        "gevent", "flask", "flask-sock", "simple-websocket", "httpx", "ollama", "sqlalchemy",
        "websocket-client")))
    skill = FIXTURES / "skills" / "bench_base.py"  # /ping: the skill path, no model
    gw = model_gateway(st, {f"skills/{skill.name}": skill.read_text("utf-8")})
    facts = {"gateway idle RSS": f"{gw.ps.memory_info().rss / 2**20:.0f} MB",
             "gateway idle fds": str(gw.ps.num_fds())}
    if kids := gw.ps.children(recursive=True):
        names = {next((a for a in k.cmdline()[1:] if a[0] != "-"), "?") for k in kids}
        facts["gateway child processes"] = (
            f"{len(kids)} ({', '.join(sorted(names))}), "
            f"{sum(k.memory_info().rss for k in kids) / 2**20:.0f} MB RSS together; their CPU "
            "is counted in gw CPU")
    print(f"fake model {st.model_url}, gateway http://127.0.0.1:{gw.port} (pid {gw.proc.pid}), "
          f"workspace {gw.home}")
    rows: list[Row] = []

    def phase(name: str, mode: str, timeout: float, **params: Any) -> None:
        if args.only and rows and not name.startswith(tuple(args.only)):
            return  # the first row (the model direct baseline) always runs
        row = message_row(st, gw, name, mode, timeout, **params)
        if mode in MESSAGE_MODES and rows and "answer" not in params:
            versus(row, rows[0])
        rows.append(row)

    def rate(name: str, mode: str, per_second: float) -> None:
        phase(name, mode, secs + 60, concurrency=16, rate=per_second, seconds=secs)

    print("model direct (the gateway's ollama client, same process type as the load):")
    phase("model direct seq", "model", 60, total=seq)
    phase("model direct c64", "model", 120, concurrency=64, total=total)
    print("HTTP:")
    phase("http GET /healthz seq", "healthz", 60, total=seq)
    phase("http seq (one chat)", "http", 60, total=seq)
    phase("http seq (new chat each)", "http", 60, total=seq, chats=seq)
    for c in CONCURRENCIES:
        phase(f"http c{c}", "http", 120, concurrency=c, total=total)
    # Cost flat in chat length: the same load on fresh chats and on chats 90 turns long, with
    # turns of a real chat's length (the fake model echoes them: ~300 characters each way).
    said = ["{i}: " + " ".join(["a sentence of an ordinary chat message"] * 7)]
    phase("http c16 (new chat each)", "http", 120, concurrency=16, total=total, chats=total,
          texts=said)
    phase("http c16 (90-turn chats)", "http", 300, concurrency=16, total=total, turns=90,
          texts=said)
    rate(f"http {RATE}/s", "http-rate", RATE)
    # Past saturation p99 is only queueing; half the measured peak shows the tail the
    # gateway itself adds while it keeps up.
    half = max(10.0, round(max((r.rate or 0 for r in rows if r.name.startswith("http c")),
                               default=0) / 2, -1))
    if half < RATE:
        rate(f"http {half:.0f}/s (half peak)", "http-rate", half)
    print("Skill (a Python command skill in the skill hosts, no model):")
    phase("skill seq (/ping)", "http", 60, total=seq, texts=["/ping"], answer="pong")
    phase(f"skill c{SKILL_CLIENTS} (/ping)", "http", 120, concurrency=SKILL_CLIENTS,
          total=total, texts=["/ping"], answer="pong")
    print("WebSocket:")
    phase("ws seq (one chat)", "ws", 60, total=seq)
    for c in CONCURRENCIES:
        phase(f"ws c{c}", "ws", 120, concurrency=c, total=total)
    rate(f"ws {RATE}/s", "ws-rate", RATE)
    if not args.no_hold and held > 0:
        rows.append(hold(st, gw, held, facts))

    summary(rows, "gateway minus model direct")
    logs = "".join([st.tail("home", 10**9)] + [p.read_text(errors="replace") for p in (
        gw.home / "data" / "logs").glob("*.log*") if "access" not in p.name])
    facts["gateway logs"] = (f"'Too many open files': {logs.count('Too many open files')}, "
                             f"tracebacks: {logs.count('Traceback (most recent call last)')}")
    facts["wall time"] = f"{time.perf_counter() - started:.0f} s"
    print("\n" + "\n".join(f"- {k}: {v}" for k, v in facts.items()) + "\n\n## Aims\n")
    said, named = {True: "met", False: "NOT met"}, {r.name: r for r in rows}
    if (r := named.get("http seq (one chat)")) and r.ovh[0] is not None:
        print(f"- overhead p50 < 2 ms (sequential HTTP): {r.ovh[0]:.2f} ms -> {said[r.ovh[0] < 2]}")
    if (r := named.get(f"http {RATE}/s")) and r.ovh[1] is not None:
        print(f"- overhead p99 < 20 ms at {RATE} msg/s (HTTP, open loop): {r.ovh[1]:.2f} ms at "
              f"{r.rate:.0f} msg/s answered -> {said[r.ovh[1] < 20 and not r.errors]}")
    if (r := named.get(f"http {half:.0f}/s (half peak)")) and r.ovh[0] is not None:
        print(f"  (while it keeps up, {r.name}: overhead p50 {r.ovh[0]:.2f} ms, "
              f"p99 {r.ovh[1]:.2f} ms)")
    if r := named.get("model direct c64"):
        best = max(x.rate or 0 for x in rows if x.name.startswith(("http c", "ws c")))
        print(f"- >= 1,000 msg/s through the model client in one process: {r.rate:.0f} msg/s "
              f"direct; best through the gateway {best:.0f} msg/s -> "
              f"{said[(r.rate or 0) >= 1000]} (client), {said[best >= 1000]} (gateway)")
    if (r := named.get(f"ws held x{held}")) and "held gateway RSS" in facts:
        rss, fds = (float(facts[f"held gateway {k}"].split()[0]) for k in ("RSS", "fds"))
        print(f"- {held:,} WebSockets held, fds < 20,000, RSS < 500 MB: {r.n:,} held, "
              f"{fds:.0f} fds, {rss:.0f} MB -> {said[r.n >= held and rss < 500 and fds < 20000]}")


def hold(st: Stack, gw: Gateway, target: int, facts: dict[str, str]) -> Row:
    """`target` idle WebSockets from 1-3 client processes (spread fds and handshakes)."""
    workers = 1 if target <= 4000 else 2 if target <= 12000 else 3
    print(f"held WebSockets: opening {target} from {workers} client process(es) ...", flush=True)
    last, deadline = -1, time.monotonic() + 10  # until the last phase's connections are gone
    while (fds0 := gw.ps.num_fds()) != last and time.monotonic() < deadline:
        last = fds0
        time.sleep(0.5)
    rss0, t0, ok, errors = gw.ps.memory_info().rss, time.perf_counter(), 0, Counter[str]()
    gens = [Loadgen(st, gw, "hold", {"count": target // workers + (w < target % workers),
                                     "tag": f"h{w}x"}) for w in range(workers)]
    for i, lg in enumerate(gens):
        if event := lg.wait("held", 180):
            ok += event["ok"]
            errors.update(event["errors"])
        else:
            errors[f"client process {i} gave no report"] += 1
    opened_s = time.perf_counter() - t0
    time.sleep(1.0)  # let the gateway finish any handshake bookkeeping
    rss, fds, still_open = gw.ps.memory_info().rss, gw.ps.num_fds(), 0
    for lg in gens:
        if status := lg.ask("status", 30):
            still_open += status["open"]
            errors.update({f"closed later: {k}": v for k, v in status["closed"].items()})
    live = [lg for lg in gens if lg.proc.poll() is None]
    probe = random.choice(live).ask("probe", 40) if live else {}
    t = time.perf_counter()
    try:  # from this unpatched process: can the gateway still reach the model?
        HttpClient("127.0.0.1", gw.port, gw.token).message("still there?", "held-http-probe")
        http = f"HTTP 200 in {(time.perf_counter() - t) * 1000:.1f} ms"
    except Exception as e:
        http = f"failed: {describe(e)}"
    row = Row(f"ws held x{target}", n=ok, rate=0.0, errors=errors)
    row.note = (f"established {ok}/{target} in {opened_s:.1f}s, open at check {still_open}; "
                f"gateway RSS {rss / 2**20:.0f} MB (+{(rss - rss0) / max(ok, 1) / 1024:.1f} "
                f"KB/conn), fds {fds} (before {fds0})")
    if probe.get("ok"):
        row.p50 = row.p99 = probe["ms"]
        row.note += f"; probe answered in {probe['ms']:.1f} ms"
    else:
        row.errors["probe: " + str(probe.get("error", "no answer"))] = 1
    row.note += f"; HTTP message meanwhile: {http}"
    facts.update({
        "held established": f"{ok} of {target}",
        "held gateway RSS": f"{rss / 2**20:.0f} MB ({rss0 / 2**20:.0f} MB before)",
        "held gateway fds": f"{fds} ({fds0} before)",
        "held probe": (f"answered in {probe['ms']:.1f} ms ({probe['reply']!r})" if probe.get("ok")
                       else f"FAILED: {probe.get('error', 'no answer')}"),
        "held HTTP message meanwhile": http})
    print(f"  {row.note}")
    for lg in gens:
        lg.ask("quit", 0)
    for lg in gens:
        st.stop(lg.proc, 30, term=False)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and gw.ps.num_fds() > fds0 + 20:
        time.sleep(0.2)
    facts["gateway fds after clients left"] = str(gw.ps.num_fds())
    return row


# ------------------------------------------------------------------------------- channels
CLIENTS = (1, 16, 64)  # devices, chats or clients at once in the channel sections


def channel_gateway(st: Stack, name: str, options: dict[str, Any]) -> Gateway:
    """A gateway with channel `name` (strangers open, rate limits out of the way), once the
    channel says it is connected."""
    gw = model_gateway(st, **CONFIGS["channels"], channels={name: options})
    client, deadline = HttpClient("127.0.0.1", gw.port, gw.token, 5), time.monotonic() + 60
    while (row := next(r for r in json.loads(client.request("GET", "/api/v1/channels")[1])[
            "channels"] if r["name"] == name))["state"] != "connected":
        if time.monotonic() > deadline:
            raise RuntimeError(f"channel {name} is {row['status']}:\n{st.tail('home')}")
        time.sleep(0.05)
    client.close()
    print(f"fake model {st.model_url}, gateway http://127.0.0.1:{gw.port} (pid "
          f"{gw.proc.pid}, healthy {gw.started_in:.1f}s after start), channel {name} connected")
    return gw


def against_http(st: Stack, gw: Gateway, p: dict[str, Any],
                 rows_for: Callable[[int, int, float], list[Row]], **params: Any) -> list[Row]:
    """`rows_for(clients, messages, timeout)` after `POST /api/v1/messages` with as many
    clients (1, 16, 64; `params` for loadgen): their overhead columns are minus HTTP's."""
    rows = []
    for c in CLIENTS:
        count, timeout = p["seq"] if c == 1 else p["total"], 60 + p["total"] / 10
        rows.append(base := message_row(st, gw, f"http c{c}", "http", timeout, concurrency=c,
                                        total=count, **params))
        for row in rows_for(c, count, timeout):
            versus(row, base)
            rows.append(row)
    return rows


def bench_mqtt(args: argparse.Namespace, st: Stack) -> None:
    """MQTT devices (paho-mqtt, QoS 1) through a real Mosquitto: round trip and msg/s."""
    from tests.mqtt_broker import Broker

    version = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout
    with Broker(st.tmp / "broker") as broker:
        print(f"{version.splitlines()[0]} on {broker.url}, paho-mqtt "
              f"{metadata.version('paho-mqtt')}")
        gw, p = channel_gateway(st, "mqtt", {"url": broker.url}), plan("mqtt", args)
        rows = against_http(st, gw, p, lambda c, n, t: [message_row(
            st, gw, f"mqtt c{c}", "mqtt", t, concurrency=c, total=n, mqtt_port=broker.port)])
        rows.insert(2, message_row(st, gw, "mqtt c1, Nagle on (paho's default)", "mqtt", 60,
                                   total=p["seq"] // 4, mqtt_port=broker.port, nagle=True))
        versus(rows[2], rows[0])
        summary(rows, "MQTT minus HTTP with as many clients")


def bench_openai(args: argparse.Namespace, st: Stack) -> None:
    """The OpenAI-compatible entry against /api/v1/messages: same text, same model."""
    gw, p = channel_gateway(st, "openai", {"enabled": True}), plan("openai", args)
    new_chats = {"chats": p["total"]}  # both sides: the model is given the one message each
    summary(against_http(st, gw, p, lambda c, n, t: [
        message_row(st, gw, f"{mode} c{c}", mode, t, concurrency=c, total=n, **new_chats)
        for mode in ("openai", "openai-stream")], **new_chats),
        "the OpenAI entry minus /api/v1/messages with as many clients")


def bench_telegram(args: argparse.Namespace, st: Stack) -> None:
    """Telegram through the fake Bot API, long polling: reply latency and msg/s."""
    from tests.fakes.fake_telegram import FakeTelegram

    p = plan("telegram", args)
    with FakeTelegram() as fake:
        gw = channel_gateway(st, "telegram", {"bot_token": fake.token,
                                              "api_base": fake.api_base})
        rows = against_http(st, gw, p, lambda c, n, _: [
            telegram_row(st, gw, fake, f"telegram c{c}", n, c)])
        rows.append(telegram_row(st, gw, fake, f"telegram burst, {CLIENTS[-1]} chats",
                                 p["burst"], CLIENTS[-1], burst=True))
        summary(rows, "Telegram minus HTTP with as many chats")


def telegram_row(st: Stack, gw: Gateway, fake: Any, name: str, n: int, chats: int,
                 burst: bool = False) -> Row:
    """`n` messages from the users of `chats` private chats: each chat's next one after its
    reply, or all queued at once (`burst`); latency: the update queued -> its reply's
    sendMessage at the fake. Runs here: the fake serves from this process's threads ("client
    CPU"), as do the users (one thread per chat)."""
    print(f"  {name} ...", end="", flush=True)
    tag, row, first, calls = f"tg{len(fake.sent)}x", Row(name), len(fake.sent), len(fake.calls)
    queued: dict[str, float] = {}
    arrived: dict[str, float] = {}
    came, stop = threading.Condition(), threading.Event()

    def collect() -> None:
        """Stamp each reply when the fake recorded it (its every change wakes us)."""
        pos = first
        while not stop.is_set():
            if fake.wait_for(lambda at=pos: len(fake.sent) > at, 0.2):
                now, new = time.perf_counter(), fake.sent[pos:]
                pos += len(new)
                with came:
                    arrived.update({(s.text or "").removeprefix("echo: "): now for s in new
                                    if s.method == "sendMessage"})
                    came.notify_all()

    def user(c: int, numbers: range, deadline: float) -> None:
        for i in numbers:
            queued[text := f"{tag} {i}"] = time.perf_counter()
            fake.user_says(7_000_000 + c, text)
            if not burst:
                with came:
                    came.wait_for(lambda t=text: t in arrived, deadline - time.monotonic())

    def run(numbers: Callable[[int], range], wait_for: int, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        users = [threading.Thread(target=user, args=(c, numbers(c), deadline), daemon=True)
                 for c in range(chats)]
        for u in users:
            u.start()
        with came:
            came.wait_for(lambda: len(arrived) >= wait_for, deadline - time.monotonic())

    threading.Thread(target=collect, daemon=True).start()
    try:
        run(lambda c: range(-c - 1, -c), chats, 60)  # one unmeasured message per chat first
        with came:
            queued.clear()
            arrived.clear()
        meter, t0 = Meter(gw, st.model), time.perf_counter()
        run(lambda c: range(c, n, chats), n, 60 + n / 10)
        row.cpu = meter.stop()
    finally:
        stop.set()
    with came:
        row.timed([(arrived[k] - t) * 1000 for k, t in queued.items() if k in arrived])
        last = max((arrived[k] for k in queued if k in arrived), default=t0)
        odd = [k for k in arrived if k not in queued]
    row.rate = row.n / (last - t0 or 1e-9)
    row.errors.update({"no reply within the time limit": n - row.n} if row.n < n else {})
    typing = sum(c.method == "sendChatAction" for c in fake.calls[calls:])
    row.note = f"{typing} sendChatAction calls" + (
        f"; replies not from the model: {len(odd)}, e.g. {odd[0][:60]!r}" if odd else "")
    print(f" {row.rate:.0f} msg/s, p50 {fmt(row.p50)} ms, p99 {fmt(row.p99)} ms"
          + (f", errors {row.errors.total()}" if row.errors else ""))
    return row


# ------------------------------------------------------------------------------- slack
SLACK_PLAN = {"full": {"seq": 300, "burst": 1000}, "quick": {"seq": 100, "burst": 200}}


def bench_slack(args: argparse.Namespace, st: Stack) -> None:
    """Slack through FakeSlack in Socket Mode (the socket process, the SDK on both sides):
    one DM at a time, then a burst of DMs from many people."""
    from tests.fakes.fake_slack import FakeSlack

    p = SLACK_PLAN["quick" if args.quick else "full"]
    with FakeSlack(ack_timeout=30.0) as fake:
        gw = channel_gateway(st, "slack", {"bot_token": fake.bot_token, "app_token":
                                           fake.app_token, "api_base": fake.api_base})
        rows = [slack_row(st, gw, fake, "slack sequential, 1 DM", p["seq"], 1),
                slack_row(st, gw, fake, f"slack burst, {CLIENTS[-1]} DMs", p["burst"],
                          CLIENTS[-1], burst=True)]
        acks = len(fake.state.acks)
        summary(rows, "none")
        print(f"envelopes delivered {len(fake.state.deliveries)}, acknowledged {acks}")


def slack_row(st: Stack, gw: Gateway, fake: Any, name: str, n: int, people: int,
              burst: bool = False) -> Row:
    """`n` DMs from `people`; latency: the envelope sent on the socket -> its reply's
    chat.postMessage at the fake (one at a time, or all sent at once with `burst`)."""
    print(f"  {name} ...", end="", flush=True)
    row, tag, first = Row(name), f"sl{len(fake.posted)}x", len(fake.posted)
    sent: dict[str, float] = {}

    def say(i: int) -> None:
        sent[text := f"{tag} {i}"] = time.perf_counter()
        who = f"U{i % people:05d}"
        fake.send_event(fake.message(text, user=who, channel=f"D{who[1:]}"))

    def replies() -> dict[str, float]:
        return {p.text.removeprefix("echo: "): p.at for p in fake.posted[first:]}

    meter, t0 = Meter(gw, st.model), time.perf_counter()
    for i in range(n):
        say(i)
        if not burst and not fake.wait_for(lambda i=i: len(fake.state.posted) > first + i, 30):
            break
    fake.wait_for(lambda: len(fake.state.posted) >= first + n, 60 + n / 10)
    row.cpu = meter.stop()
    got = replies()
    row.timed([(got[k] - t) * 1000 for k, t in sent.items() if k in got])
    row.rate = row.n / ((max(got.values(), default=t0) - t0) or 1e-9)
    row.errors.update({"no reply within the time limit": n - row.n} if row.n < n else {})
    print(f" {row.rate:.0f} msg/s, p50 {fmt(row.p50)} ms, p99 {fmt(row.p99)} ms")
    return row


# ------------------------------------------------------------------------------- skills
SKILL_TIMEOUT, POLL, RELOAD_DEADLINE = 5, 0.020, 15.0
SWAP_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO gateway\.\S*reload: "
                       r"skills loaded", re.MULTILINE)


def bench_skills(args: argparse.Namespace, st: Stack) -> None:
    """Skills in the real gateway: hot reload, throughput, isolation, FAQ search."""
    p = plan("skills", args)
    st.start_model()
    config = {"models": {"llama2": {"endpoint": st.model_url, "max_tokens": 64}},
              "skills": {"timeout": SKILL_TIMEOUT}}
    gw = st.start_gateway("home", config, {f"skills/{f.name}": f.read_text("utf-8")
                                           for f in (FIXTURES / "skills").glob("*.*")})
    print(f"gateway on port {gw.port} healthy {gw.started_in:.1f}s after start; fake model "
          f"{st.model_url}; workspace {st.tmp}")
    rows: list[Row] = []
    settle = re.findall(r"^SETTLE\s*=\s*([0-9.]+)", next(REPO.glob("gateway/**/reload.py"))
                        .read_text(), re.MULTILINE)  # not imported: that would load jieba too
    print(f"\n1. Hot reload (poll every {POLL * 1000:.0f} ms; the reloader waits "
          f"{fmt(float(settle[0]) * 1000 if settle else None, 0)} ms for writes to settle, "
          "then loads into every skill host)")
    client, nonce = HttpClient("127.0.0.1", gw.port, gw.token, timeout=15), random.random()
    template = (FIXTURES / "reload" / "bench_n.py.txt").read_text("utf-8")

    def answered(command: str, done: Callable[[str], bool], began: float) -> float | None:
        """Post `command` every POLL s until `done(reply)`: ms since `began`."""
        tick, body = time.perf_counter(), {}
        while time.perf_counter() - began < RELOAD_DEADLINE:
            with contextlib.suppress(OSError, ValueError):
                if done(str((body := client.post(command, "reload", "bench")[1]).get("reply"))):
                    return (time.perf_counter() - began) * 1000
            tick += POLL
            time.sleep(max(0.0, tick - time.perf_counter()))
        print(f"   {command}: not within {RELOAD_DEADLINE:.0f}s; last answer {body}")
        return None

    for name, writes in (("new skill file", [(n, 0) for n in range(p["new_skills"])]),
                         ("edit skill reply", [(0, v) for v in range(1, p["edits"] + 1)])):
        took, written_at = [], []
        for n, v in writes:
            time.sleep(0.5)  # let the previous reload finish: each write is timed on its own
            written_at.append(time.time())
            began, expected = time.perf_counter(), f"bench {n} v{v} {nonce}"
            (gw.home / "skills" / f"bench_{n}.py").write_text(
                template.format(n=n, reply=repr(expected)), "utf-8")
            if (ms := answered(f"/bench_{n}", expected.__eq__, began)) is None:
                break  # reloading is broken: say so, and keep the run bounded
            took.append(ms)
        # The log says when the new snapshot was swapped in; an edited reply can come before
        # that: the hosts reload one after the other and the old snapshot reaches the first.
        swaps = [datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f").timestamp() * 1000 for m in
                 SWAP_LINE.finditer((gw.home / "data/logs/gateway.log").read_text("utf-8"))]
        swapped = [min(t for t in swaps if t >= w * 1000 - 1) - w * 1000 for w in written_at
                   if swaps and swaps[-1] >= w * 1000 - 1]
        rows.append(Row(name, errors=Counter({"not answered": len(writes) - len(took)})
                        - Counter(), note=f"swap p50 {fmt(percentile(swapped, 50), 1)} ms "
                        "(gateway.log)", section="1 hot reload").timed(took))
        print(f"   {name}: answered after [{' '.join(f'{t:.0f}' for t in took)}] ms; swapped "
              f"after p50 {fmt(percentile(swapped, 50), 1)}, max "
              f"{fmt(max(swapped, default=None), 1)} ms (gateway.log)")
    for n in range(p["new_skills"]):  # later sections see the same skills on every run
        (gw.home / "skills" / f"bench_{n}.py").unlink(missing_ok=True)
    ms = answered("/bench_0", lambda reply: str(nonce) not in reply, time.perf_counter())
    print(f"   {p['new_skills']} files deleted -> gone after {fmt(ms, 0)} ms")
    rows.append(Row("skill files deleted -> gone", section="1 hot reload").timed(
        [ms] if ms else []))
    client.close()

    def load(section: str, name: str, **params: Any) -> None:
        row, result = measure(st, gw, name, "http", 60 + SKILL_TIMEOUT, sender="bench", **params)
        row.note = (f"right section {result.get('hits', 0)}/{row.n}; " if "expect" in params
                    else "") + "cpu% " + " ".join(f"{k} {row.cpu.get(k, 0):.0f}" for k in (
                        "gw", "skills", "client", "model", "other"))
        row.section = section
        rows.append(row)

    print(f"\n2. Command skills without a model ({p['window']:.1f} s per row, keep-alive, one "
          "chat per client)")
    for text, kind in (("/ping", "python"), ("/shping", "script")):
        for c in (1, 8, 32):
            load("2 command skill", f"{text} ({kind}) x{c}", texts=[text], concurrency=c,
                 total=10**9, seconds=p["window"])
    print(f"\n3. Isolation: plain chat (fake model, {p['chat']} sequential messages, 10 "
          f"chats), then /ping x{p['ping']}, while another client's skill misbehaves "
          f"(skills.timeout {SKILL_TIMEOUT}s, 2 skill hosts)")
    for skill, what in (("", "baseline"), ("spin", "busy-looping skill"),
                        ("nap", "sleep(5) skill")):
        stop, outcomes = threading.Event(), list[str]()
        thread = threading.Thread(target=misbehave, args=(gw, skill, stop, outcomes), daemon=True)
        if skill:
            thread.start()
            time.sleep(0.3)  # the call has reached its skill host
        load("3 isolation", f"chat, {what}", total=p["chat"], chats=10)
        load("3 isolation", f"/ping, {what}", texts=["/ping"], total=p["ping"])
        stop.set()
        if skill:
            thread.join(SKILL_TIMEOUT + 25)  # the call in flight ends at the time-out
            print(f"   the /{skill} calls: {', '.join(outcomes) or 'none'}")
    st.stop(gw.proc)
    st.kill_strays(gw.home)

    rng = random.Random(20240601)
    faq, picked = make_faq(2000, rng)
    first, gw = gw, st.start_gateway("faq-home", config, {
        "knowledge/faq.md": faq, "skills/auto_reply.py": (REPO / "skills/auto_reply.py")
        .read_text("utf-8")})
    print(f"\n4. FAQ skill (skills/auto_reply.py as shipped) over 2000 generated zh/en sections: "
          f"faq.md {len(faq.encode()) / 1024:.0f} KiB; gateway healthy {gw.started_in:.1f}s "
          f"after start, vs {first.started_in:.1f}s for the first workspace (each skill host "
          "indexes faq.md before the gateway listens)")
    picked = [rng.choice(picked) for _ in range(p["faq"])]
    load("4 FAQ search", "/faq_query, 2000 sections", texts=[f"/faq_query {q}" for q, _ in picked],
         expect=[ref for _, ref in picked], total=len(picked))
    print(f"   {sum(q.startswith(('How do I', '如何在')) for q, _ in picked)} of {len(picked)} "
          "queries are the exact questions, the rest paraphrased")
    print(f"\nSummary ({platform.system()} {platform.release()})\n")
    table(["section", "case", "n", "msg/s", "p50 ms", "p99 ms", "max ms", "err", "note"],
          [[r.section, r.name, r.n, fmt(r.rate, 0), fmt(r.p50, 1), fmt(r.p99, 1), fmt(r.max, 1),
            r.errors.total(), r.note] for r in rows])


def misbehave(gw: Gateway, skill: str, stop: threading.Event, outcomes: list[str]) -> None:
    """Call the bad skill back to back: it misbehaves all through the measurement."""
    bad = HttpClient("127.0.0.1", gw.port, gw.token, timeout=SKILL_TIMEOUT + 20)
    while not stop.is_set():
        began = time.perf_counter()
        try:
            status, body = bad.post(f"/{skill}", f"iso-{skill}", "bench")
            code = f"{status} {body.get('error', {}).get('code', 'ok')}"
        except Exception as e:
            code = describe(e)
        outcomes.append(f"{code} after {time.perf_counter() - began:.1f}s")


def make_faq(sections: int, rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
    """An en/zh FAQ, and per section (the question or a paraphrase, its answer's marker)."""
    w = WORDS["faq"]
    en = rng.sample([(v, n, p) for v in w["en_verbs"] for n in w["en_nouns"]
                     for p in w["en_places"]], (sections + 1) // 2)
    zh = rng.sample([(v, n, p) for v in w["zh_verbs"] for n in w["zh_nouns"]
                     for p in w["zh_places"]], sections // 2)
    parts, entries = ["# Moltbot FAQ (generated by bench/run.py skills)\n"], []
    for i in range(sections):
        ref = f"REF{i:05d}"
        if i % 2 == 0:
            verb, noun, place = en[i // 2]
            question = f"How do I {verb} the {noun} {place}?"
            query = question if rng.random() < 0.7 else f"{verb} {noun} {place}"
            steps = ". ".join(rng.sample(w["en_filler"], 3)).capitalize()
            answer = f"To {verb} the {noun} {place}: {steps}. ({ref})"
        else:
            verb, noun, place = zh[i // 2]
            question = f"如何在{place}{verb}{noun}？"
            query = question if rng.random() < 0.7 else f"{place}{noun}怎么{verb}"
            answer = f"在{place}{verb}{noun}：{'，'.join(rng.sample(w['zh_filler'], 3))}。({ref})"
        parts.append(f"## {question}\n{answer}\n")
        entries.append((query, ref))
    return "\n".join(parts), entries


# ------------------------------------------------------------------------------- cold start
COLD_STARTS = 5  # measured starts (--quick: 3)


@dataclass
class ColdStart:
    """One start of the gateway process, seconds from exec."""

    healthy: float  # the first /healthz 200
    healthy_cpu: float  # the gateway process's CPU seconds by then
    answered: float  # the answer to a knowledge question sent right after
    grounded: str  # "grounded" when the reply's sources name the question's section
    stall_ms: float  # the slowest /healthz from healthy to the answer: the loop's longest wait


def bench_cold_start(args: argparse.Namespace, st: Stack) -> None:
    """`python -m gateway.server` from exec to its first /healthz 200 and to its first answered,
    knowledge-grounded message, with a realistic workspace; how long the loop stalls meanwhile."""
    st.start_model()
    faq, picked = make_faq(600, random.Random(7))
    files = {"knowledge/faq.md": faq, **{f"knowledge/{f.name}": f.read_text("utf-8") for f in (
        BENCH / "recall" / "knowledge").glob("*.md")}, **{
        f"skills/{f.name}": f.read_text("utf-8") for f in [
            *(FIXTURES / "skills").glob("*.*"), REPO / "skills" / "auto_reply.py"]}}
    token = "bench-cold-start-token-0123456789"
    config = {"models": {MODEL: {"endpoint": st.model_url}}, "auth": {"tokens": [token]}}
    first = st.start_gateway("home", config, files)  # makes the database: later starts reuse it
    st.stop(first.proc)
    st.kill_strays(first.home)
    question = next(q for q, _ in picked if q.startswith("How do I"))
    env = {**os.environ, "MOLTBOT_HOME": str(first.home)}
    print(f"workspace: {len(files)} files ({sum(len(t.encode()) for t in files.values()) // 1024}"
          f" KiB: knowledge/faq.md of 600 sections and the recall FAQs, the bench skills and "
          f"skills/auto_reply.py); question {question!r}")
    runs = []
    for n in range(3 if args.quick else COLD_STARTS):
        runs.append(r := cold_start(st, f"run{n}", env, token, question))
        print(f"  run {n + 1}: healthy {r.healthy:.2f} s ({r.healthy_cpu:.2f} s CPU), answered "
              f"{r.answered:.2f} s ({r.grounded}), slowest /healthz meanwhile {r.stall_ms:.0f} ms")
    print()
    table([f"median of {len(runs)} starts", "value", "range"], [
        [name, fmt(statistics_median(values)), f"{fmt(min(values))}-{fmt(max(values))}"]
        for name, values in (
            ("exec -> /healthz 200 (s)", [r.healthy for r in runs]),
            ("gateway CPU by then (s)", [r.healthy_cpu for r in runs]),
            ("exec -> first answer (s)", [r.answered for r in runs]),
            ("slowest /healthz from healthy to the answer (ms)", [r.stall_ms for r in runs]))] + [
        ["first answers grounded in knowledge",
         f"{sum(r.grounded == 'grounded' for r in runs)}/{len(runs)}", ""]])


def cold_start(st: Stack, name: str, env: dict[str, str], token: str,
               question: str) -> ColdStart:
    """One start: /healthz polled every 5 ms from exec; once it answers, the question is sent
    while a second connection keeps polling /healthz until the answer is back."""
    port = free_port()
    began = time.perf_counter()
    proc = st.spawn(name, [sys.executable, "-m", "gateway.server", "--port", str(port)], env)
    client, probe = (HttpClient("127.0.0.1", port, token, 60) for _ in range(2))
    answered, slowest = threading.Event(), [0.0]

    def watch() -> None:
        while not answered.is_set():
            tick = time.perf_counter()
            with contextlib.suppress(OSError):
                probe.request("GET", "/healthz")
            slowest[0] = max(slowest[0], time.perf_counter() - tick)
            time.sleep(0.005)

    try:
        while True:
            with contextlib.suppress(OSError):
                if client.request("GET", "/healthz")[0] == 200:
                    break
            if proc.poll() is not None or time.perf_counter() - began > 60:
                raise RuntimeError(f"the gateway did not start:\n{st.tail(name)}")
            time.sleep(0.005)
        healthy, cpu = time.perf_counter() - began, cpu_secs(psutil.Process(proc.pid))
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        status, body = client.post(question, "cold")
        done = time.perf_counter() - began
        answered.set()
        watcher.join(10)
    finally:
        answered.set()
        client.close()
        probe.close()
        st.stop(proc)
    sources = str(body.get("reply", "")).partition("Sources:")[2]  # the reply's last line
    grounded = ("grounded" if question in sources else f"HTTP {status}" if status != 200
                else f"not grounded: {str(body.get('reply'))[-80:]!r}")
    return ColdStart(healthy, cpu, done, grounded, slowest[0] * 1000)


# ------------------------------------------------------------------------------- knowledge
def bench_knowledge(args: argparse.Namespace, st: Stack) -> None:
    """Knowledge index build and query time over mixed zh/en passages from a fixed seed."""
    from gateway.knowledge import KnowledgeIndex, Passage, tokenize

    count = args.passages or (2_000 if args.quick else 10_000)
    queries = args.queries or (200 if args.quick else 1_000)
    rng, w = random.Random(42), WORDS["knowledge"]

    def text(zh: bool) -> str:
        words, glue, share = (w["zh_words"], w["zh_glue"], 0.7) if zh else (
            w["en_words"], w["en_glue"], 0.6)
        out = []
        for _ in range(rng.randint(3, 8)):
            said = [rng.choice(words if rng.random() < share else glue)
                    for _ in range(rng.randint(5, 12) if zh else rng.randint(6, 14))]
            out.append("".join(said) + rng.choice("。，！？") if zh
                       else " ".join(said).capitalize() + ".")
        return ("" if zh else " ").join(out)

    passages = []
    for n in range(count):
        title = (f"常见问题 > {rng.choice(w['zh_words'])}{rng.choice(w['zh_words'])}" if n % 2 == 0
                 else f"FAQ > {rng.choice(w['en_words'])} {rng.choice(w['en_words'])}")
        passages.append(Passage(f"## {title.split(' > ')[1]}\n{text(n % 2 == 0)}",
                                f"doc{n // 50}.md", title, line=n % 50 + 1))
    questions = [f"{rng.choice(w['zh_words'])}{rng.choice(w['zh_glue'])}"
                 f"{rng.choice(w['zh_words'])}怎么办？" for _ in range(queries // 2)] + [
        f"How do I {rng.choice(w['en_words'])} the {rng.choice(w['en_words'])} "
        f"{rng.choice(w['en_words'])}?" for _ in range(queries - queries // 2)]
    rng.shuffle(questions)
    began = time.perf_counter()
    tokenize("预热 jieba 词典 warm up")
    print(f"jieba dictionary load:      {time.perf_counter() - began:8.3f} s")
    began = time.perf_counter()
    tokens = sum(len(tokenize(p.text)) for p in passages)
    tokenize_s, began = time.perf_counter() - began, time.perf_counter()
    index = KnowledgeIndex(passages)
    build_s = time.perf_counter() - began
    print(f"corpus:                     {count} passages, "
          f"{sum(len(p.text) for p in passages) / 1e6:.2f} M chars, {tokens / 1e6:.2f} M tokens")
    print(f"tokenize only:              {tokenize_s:8.3f} s")
    print(f"index build (incl. tokenize): {build_s:6.3f} s")
    latencies, found = [], 0
    for question in questions:
        began = time.perf_counter()
        found += bool(index.find(question, k=3))
        latencies.append((time.perf_counter() - began) * 1000)
    print(f"search over {queries} queries:  p50 {fmt(percentile(latencies, 50), 3)} ms, p99 "
          f"{fmt(percentile(latencies, 99), 3)} ms, max {max(latencies):.3f} ms ({found} answered)")


# ------------------------------------------------------------------------------- overhead
def bench_overhead(args: argparse.Namespace, st: Stack) -> None:
    """Each per-message layer alone, as the gateway builds it, in microseconds per message."""
    import logging

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

    n, config = 5_000 if args.quick else 20_000, CONFIGS["overhead"]
    token, ws = config["auth"]["tokens"][0], Workspace(st.tmp / "ws")
    store = Store(ws.db_url)
    settings = settings_for(parse_config(config), Process(ws, store))
    issued, _ = issue_token(store, 3600, label="bench")
    store.put_sender(SenderRow("enterprise_im", "alice", "approved", updated_at=time.time()))
    rows = []
    credentials = {"static": token, "issued": issued, "platform": "platform-token"}
    for name, (channel, peer, credential, sender) in CONFIGS["callers"].items():
        caller = Caller(channel, peer, credentials[credential], sender, "hi")
        assert isinstance(settings.guards.admit(caller), Allow), name
        rows.append([f"guard chain: {name}",
                     per_call_us(partial(settings.guards.admit, caller), n)])
    access = logging.getLogger(ACCESS_LOGGER)
    access.propagate = False
    handler = logging.FileHandler(st.tmp / "access.log", encoding="utf-8")
    handler.setFormatter(EcsFormatter())
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    msg = Message("http", "ada", "c", "hello", peer="127.0.0.1")
    reply, metrics = Reply(msg.id, "http", "c", "echo: hello", "s1"), Metrics()
    timer = metrics.track("http")

    def trace() -> None:
        t = Trace("m1")
        for step in ("guard", "store", "queue", "session", "route", "knowledge", "context",
                     "model", "x"):
            with t.step(step) as span:
                span.detail = "detail of the step, as long as they usually are"
        json.dumps([vars(s) for s in t.spans], ensure_ascii=False)  # as the store does

    def tracked() -> None:
        with metrics.track("http", "http:c") as t:
            t.route, t.model = "chat", "llama2"

    rows += [["access-log line (ECS JSON to a file)",
              per_call_us(lambda: _access(msg, reply, timer), n // 4)],
             ["trace: 9 spans of a chat answer + JSON for the store", per_call_us(trace, n // 4)],
             ["metrics: message timer (histograms, counters, window)",
              per_call_us(tracked, n // 4)]]
    access.removeHandler(handler)
    handler.close()
    for pool in settings.models.values():
        pool.close()
    store.close()
    table([f"what (n={n})", "us per message"], [[name, f"{us:.1f}"] for name, us in rows])
    print("\nFor scale: the gateway's sequential overhead per message is ~2,500-2,900 us "
          "(bench/README.md).")


# ------------------------------------------------------------------------------- recall
def _asked(path: Path) -> dict[str, list[tuple[str, str]]]:
    """`question -> heading` lines by `[language]` (bench/recall, bench/fixtures/meaning)."""
    cases: dict[str, list[tuple[str, str]]] = {}
    language = ""
    for line in path.read_text("utf-8").splitlines():
        if (line := line.strip()).startswith("[") and line.endswith("]"):
            language = line[1:-1]
        elif line and not line.startswith("#"):
            question, _, heading = line.partition(" -> ")
            cases.setdefault(language, []).append((question.strip(), heading.strip()))
    return cases


def bench_recall(args: argparse.Namespace, st: Stack) -> None:
    """Does a question (a heading or a paraphrase) find its passage, and is it sent along."""
    from gateway.core.grounding import find_passages
    from gateway.knowledge import KnowledgeBase

    context_tokens = 2048  # gateway.context_tokens' default: grounding gets half, passages 500
    kb = KnowledgeBase(BENCH / "recall" / "knowledge", max_tokens=min(500, context_tokens // 4))
    paraphrases = _asked(BENCH / "recall" / "paraphrases.txt")
    print(f"{len(kb.index)} passages from {len(kb.sources)} files\n")
    rows: list[list[Any]] = []
    misses, totals = [], [0, 0, 0, 0]
    for language in ("en", "zh"):
        headings = list(dict.fromkeys(p.title.rsplit(" > ", 1)[-1] for p in kb.index.passages
                                      if p.source.endswith(f"faq_{language}.md")
                                      and " > " in p.title))
        for kind, cases in (("heading", [(h, h) for h in headings]),
                            ("paraphrase", paraphrases.get(language, []))):
            counts = [len(cases), 0, 0, 0]
            for question, heading in cases:
                ranked = [h.passage.title.rsplit(" > ", 1)[-1] for h in kb.find(question, k=3)]
                sent = heading in [h.passage.title.rsplit(" > ", 1)[-1] for h in
                                   find_passages(kb, question, context_tokens // 2)]
                counts[1:] = [counts[1] + (ranked[:1] == [heading]),
                              counts[2] + (heading in ranked), counts[3] + sent]
                if heading not in ranked or not sent:
                    misses.append(f"- {question!r}: wanted {heading!r}, top 3 {ranked}, "
                                  f"sent: {sent}")
            totals = [a + b for a, b in zip(totals, counts, strict=True)]
            rows.append([f"{language} {kind}", *counts])
    table(["questions", "n", "recall@1", "recall@3", "grounded"],
          [[name, n, *(f"{x / (n or 1):.2f}" for x in hits)]
           for name, n, *hits in [*rows, ["all", *totals]]])
    if args.misses:
        print("\nmissed (not in the top 3, or not sent to the model):\n" + "\n".join(misses))


# ------------------------------------------------------------------------------- memory
def bench_memory(args: argparse.Namespace, st: Stack) -> None:
    """Memory recall: facts told over several sessions, asked about 1-50 turns later."""
    from gateway.assistant.memory import Memory
    from gateway.assistant.memory_index import MemoryIndex
    from gateway.core.store import Store
    from gateway.knowledge import estimate_tokens

    cases = yaml.safe_load((FIXTURES / "memory.yaml").read_text("utf-8"))
    rng = random.Random(18)
    sessions, per_session, budget = 5, 40, 2048  # gateway.context_tokens' default
    turn_cost = estimate_tokens("How was the meeting today? " * 3) + estimate_tokens(
        "It went well; here is what was decided and what is left to do. " * 6)
    fits = max(1, budget // turn_cost)  # turns of a plain chat that fit in the context
    folder = st.tmp
    store = Store(f"sqlite:///{folder / 'db.sqlite'}")
    memory = Memory(folder / "memory", MemoryIndex(store))
    events: list[tuple[int, int, str, str, str, int]] = []  # turn, order, kind, lang, text, told
    facts = [(lang, c) for lang in ("en", "zh") for c in cases[lang]]
    told_at = rng.sample(range(sessions * per_session - 50), len(facts))
    for (lang, case), told in zip(facts, told_at, strict=True):
        events.append((told, 0, "tell", lang, case["fact"], told))
        for i, question in enumerate(case["ask"]):
            events.append((told + rng.randint(1, 50), 1, "ask" + ("" if i == 0 else "+"),
                           lang, question, told))
    answers = {c["fact"]: c["fact"] for _, c in facts}
    wanted = {q: c["fact"] for _, c in facts for q in c["ask"]}
    rows: dict[str, list[float]] = {}
    latencies: list[float] = []
    misses: list[str] = []
    for turn, _, kind, lang, text, told in sorted(events):
        if kind == "tell":
            memory.remember("owner", answers[text], 100_000)
            continue
        began = time.perf_counter()
        given = [f.fact.text for f in memory.recall("owner", text, 5)]  # memory.recall
        latencies.append((time.perf_counter() - began) * 1000)
        found = [f.fact.text for f in memory.recall("owner", text, 3)]
        distance = turn - told
        in_history = turn // per_session == told // per_session and distance <= fits
        hit = [found[:1] == [wanted[text]], wanted[text] in found, wanted[text] in given,
               in_history]
        for key in (f"{lang} {'as told' if kind == 'ask' else 'paraphrased'}",
                    f"{lang} {'1-10' if distance <= 10 else '11-25' if distance <= 25 else '26-50'}"
                    " turns earlier", "all"):
            rows.setdefault(key, [0, 0, 0, 0, 0])
            rows[key] = [a + b for a, b in zip(rows[key], [1, *hit], strict=True)]
        if wanted[text] not in found:
            misses.append(f"- {text!r}: wanted {wanted[text]!r}, top 3 {found}")
    print(f"{len(facts)} facts told over {sessions} sessions of {per_session} turns; each "
          f"question asked 1-50 turns after its fact; without memory a fact is in the context "
          f"only in its own session and within the last {fits} turns ({budget} tokens)\n")
    table(["questions", "n", "recall@1", "recall@3", "given (@5)", "in history alone"],
          [[name, int(n), *(f"{x / n:.2f}" for x in hit)] for name, (n, *hit) in
           sorted(rows.items(), key=lambda kv: (kv[0] == "all", kv[0]))])
    many = Memory(folder / "many", MemoryIndex(store))
    for i in range(1000):
        words = WORDS["knowledge"]["en_words" if i % 2 else "zh_words"]
        many.remember("many", " ".join(rng.sample(words, 8)) + f" {i}", 100_000)
    big: list[float] = []
    for question in wanted:
        began = time.perf_counter()
        many.recall("many", question, 3)
        big.append((time.perf_counter() - began) * 1000)
    print()
    table(["recall per message", "facts", "p50 ms", "p95 ms", "max ms"],
          [["this owner", len(facts), fmt(percentile(latencies, 50)),
            fmt(percentile(latencies, 95)), fmt(max(latencies))],
           ["an owner with many facts", 1000, fmt(percentile(big, 50)),
            fmt(percentile(big, 95)), fmt(max(big))]])
    if args.misses:
        print("\nmissed (not in the top 3):\n" + "\n".join(misses))
    store.close()


# ------------------------------------------------------------------------------- by meaning
def bench_knowledge_meaning(args: argparse.Namespace, st: Stack) -> None:
    """Search by meaning: recall@3 of BM25 alone and hybrid on paraphrases, and its costs."""
    import numpy as np

    sys.path.insert(0, str(REPO))
    from gateway.core.grounding import find_passages
    from gateway.knowledge import KnowledgeBase, Passage
    from gateway.knowledge.meaning import BATCH, Embeddings
    from gateway.knowledge.vectors import VectorCache, VectorIndex, text_key, unit_rows
    from gateway.models.options import ModelConfig
    from gateway.models.pool import ModelPool
    from gateway.models.registry import build_providers
    from tests.fakes.fake_model import FakeModelServer

    context_tokens = 2048  # as bench_recall: grounding gets half, passages 500 tokens
    kb = KnowledgeBase(BENCH / "recall" / "knowledge", max_tokens=min(500, context_tokens // 4))
    with FakeModelServer() as fake:
        endpoint, model = args.endpoint or fake.url, args.model or "fake-model"
        pool = ModelPool(model, build_providers(model, ModelConfig(endpoint=endpoint)))
        meaning = Embeddings(lambda model, texts, timeout: pool.embed(texts, timeout=timeout),
                             st.tmp / "embeddings", lambda: kb.index.passages)
        meaning.configure(model, model, args.min_similarity)
        began = time.perf_counter()
        if not meaning.build():
            raise RuntimeError(f"no embeddings from {model} at {endpoint}: {meaning.status()}")
        cold = time.perf_counter() - began
        again = Embeddings(meaning._embed, st.tmp / "embeddings", lambda: kb.index.passages)
        again.configure(model, model, args.min_similarity)
        began = time.perf_counter()
        again.build()
        warm = time.perf_counter() - began
        print(f"{len(kb.index)} passages from {len(kb.sources)} files; {model} at "
              f"{'the fake model server' if endpoint == fake.url else endpoint}, "
              f"min_similarity {args.min_similarity}: {meaning.status()}, built in "
              f"{cold * 1000:.0f} ms, {warm * 1000:.0f} ms from the cache file after a "
              f"restart\n")
        sets = {"meaning": _asked(FIXTURES / "meaning" / "questions.txt"),
                "recall": _asked(BENCH / "recall" / "paraphrases.txt")}
        rows, misses = [], []
        for name, cases in sets.items():
            for language in ("en", "zh"):
                row = [f"{language} {name}", len(cases.get(language, []))]
                for mode in ("bm25", "hybrid"):
                    kb.meaning = meaning if mode == "hybrid" else None
                    top3 = sent = 0
                    for question, heading in cases.get(language, []):
                        ranked = [h.passage.heading for h in kb.find(question, k=3)]
                        grounded = [h.passage.heading for h in
                                    find_passages(kb, question, context_tokens // 2)]
                        top3, sent = top3 + (heading in ranked), sent + (heading in grounded)
                        if mode == "hybrid" and heading not in grounded:
                            misses.append(f"- {question!r}: wanted {heading!r}, top 3 {ranked}")
                    row += [f"{top3 / (row[1] or 1):.2f}", f"{sent / (row[1] or 1):.2f}"]
                rows.append(row)
        count = args.passages or (1_000 if args.quick else 5_000)
        words = WORDS["knowledge"]["en_words"]
        rng = random.Random(42)
        many = tuple(Passage(f"passage {n}: " + " ".join(rng.choices(words, k=60)), "doc.md")
                     for n in range(count))
        if not args.endpoint:  # the fake in a process of its own: our CPU is ours alone
            proc = st.spawn("fake_model", [sys.executable, "-m", "tests.fakes.fake_model"])
            url = st.wait_until(lambda: re.findall(r"READY (\S+)", st.tail("fake_model")),
                                proc, "fake_model")[0]
            pool.close()
            pool = ModelPool(model, build_providers(model, ModelConfig(endpoint=url)))
        bulk = Embeddings(meaning._embed, st.tmp / "bulk", lambda: many)
        bulk.configure(model, f"{model}-bulk", args.min_similarity)
        began, cpu = time.perf_counter(), time.process_time()
        bulk.build()
        bulk_s, cpu = time.perf_counter() - began, time.process_time() - cpu
        pool.close()
    print(f"{count} passages of ~60 words embedded through the same path (batches of {BATCH}, "
          f"{-(-count // BATCH)} calls): {bulk_s:.2f} s, of which {cpu:.2f} s CPU in this "
          f"process (client, JSON, hashing, matrix; the rest is the model server); "
          f"{bulk.status()}\n")
    table(["questions", "n", "bm25 recall@3", "bm25 grounded", "hybrid recall@3",
           "hybrid grounded"], rows)
    if args.misses:
        print("\nhybrid missed (not sent to the model):\n" + "\n".join(misses))

    dims, generator = 768, np.random.default_rng(42)
    vectors = generator.standard_normal((count, dims)).astype(np.float32)
    began = time.perf_counter()
    index = VectorIndex(unit_rows(vectors))
    build_ms = (time.perf_counter() - began) * 1000
    queries = unit_rows(generator.standard_normal((200, dims)))
    latencies = []
    for query in queries:
        began = time.perf_counter()
        index.find(query, 10, 0.0)
        latencies.append((time.perf_counter() - began) * 1000)
    cache = VectorCache(st.tmp / "cost" / "vectors.npz")
    cache.vectors = {text_key(str(n)): row for n, row in enumerate(vectors)}
    began = time.perf_counter()
    cache.save(list(cache.vectors))
    save_ms, began = (time.perf_counter() - began) * 1000, time.perf_counter()
    VectorCache(cache.path).load()
    load_ms = (time.perf_counter() - began) * 1000
    print(f"\n{count} passages x {dims} dimensions (nomic-embed-text's size): matrix "
          f"{index.matrix.nbytes / 1e6:.1f} MB, normalised in {build_ms:.1f} ms; a question "
          f"against all of them p50 {fmt(percentile(latencies, 50), 3)} ms, p99 "
          f"{fmt(percentile(latencies, 99), 3)} ms; cache file "
          f"{cache.path.stat().st_size / 1e6:.1f} MB, saved in {save_ms:.0f} ms, loaded in "
          f"{load_ms:.0f} ms")


# ------------------------------------------------------------------------------- loop libraries
def bench_loop_libraries(args: argparse.Namespace, st: Stack) -> None:
    """Each library the gateway uses under `patch_all(queue=False)` (tests/loopprobe.py)."""
    if args.store_cost:
        table(["write-lock wait", "us per message (add_message + finish_message)"], [
            [v, child("store_cost_child", v, str(st.tmp), env={**os.environ, "BENCH_GEVENT": "1"})]
            for v in ("loop", "pool")])
        return
    from tests import loopprobe as lp

    outcomes = []
    with lp.slow_services(st.tmp) as (svc, _):
        for name in ("keyring", "smtp", "sqlite", "ollama", "prometheus_update",
                     "prometheus_collect", "limits", "jieba", "psutil", "deadlock", "paho",
                     "mqtt_link"):
            if args.names and name not in args.names:
                continue
            (folder := st.tmp / name).mkdir()
            if name == "keyring" and not lp.has_secret_service():
                print("keyring: skipped (needs gnome-keyring and dbus-run-session)")
            elif name == "keyring":
                prefix, env = lp.keyring_session(folder)
                outcomes.append(lp.run_probe(name, prefix=prefix, env=env))
            elif name in ("paho", "mqtt_link"):
                with lp.mosquitto(free_port()) as port:
                    outcomes.append(lp.run_probe(name, {"port": port}))
            else:  # deadlock: a reference row, what issue 13's failure looks like
                for probe in {"smtp": [svc["smtp"]], "ollama": [svc["ollama"]],
                              "sqlite": [{"dir": str(folder), "locked": False},
                                         {"dir": str(folder / "locked"), "locked": True}],
                              "jieba": [{"pool": False}, {"pool": True}, {"sliced": True}],
                              }.get(name, [{}]):
                    Path(probe.get("dir", folder)).mkdir(exist_ok=True)
                    multiproc = {"PROMETHEUS_MULTIPROC_DIR": str(folder)}
                    outcomes.append(lp.run_probe(name, probe, timeout=5 if name == "deadlock"
                                                 else 60, env=multiproc if "prom" in name
                                                 else None))
    table(["library", "version", "operation", "calls", "results arrived",
           "largest loop gap (ms)", "took (s)", "verdict", "note"],
          [[o.library or o.name, o.version, o.operation, o.calls, "yes" if o.arrived else "no",
            fmt(o.largest_gap_ms, 1), f"{o.seconds:.2f}", o.verdict, o.error or o.note]
           for o in outcomes])
    for o in outcomes:
        if o.error:
            print(f"\n{o.name}: {o.error}\n{o.output}")


def store_cost_child(variant: str, folder: str) -> None:
    """us per message, the store as it is ("loop") or locking on gevent's pool ("pool")."""
    from gevent import get_hub

    from gateway.core import store as store_module
    from gateway.core.message import Span
    from tests.loopprobe import _message

    def pooled(dbapi_conn: object, wait: float = store_module.BUSY_WAIT) -> None:
        conn: Any = dbapi_conn

        def begin() -> None:
            conn.execute(f"PRAGMA busy_timeout={int(wait * 1000)}")
            conn.execute("BEGIN IMMEDIATE")
        get_hub().threadpool.apply(begin)

    if variant == "pool":
        store_module.lock_for_write = pooled
    store = store_module.Store(f"sqlite:///{folder}/{variant}.db")
    trace = [Span(step, time.time(), 0.1, "ok") for step in ("guards", "store", "route")]
    ids = itertools.count()

    def one() -> None:
        m = _message(next(ids))
        store.add_message(m, None)
        store.finish_message(m.id, session_id=None, reply="ok", error=None, route="chat",
                             trace=trace)

    print(f"{per_call_us(one, 2000, runs=3):.1f}")
    store.close()


# ------------------------------------------------------------------------------- metrics
LABELS = [(("http", "ws", "mqtt")[i % 3], ("llama2", "qwen")[i % 2],
           ("http://127.0.0.1:11434", "http://127.0.0.1:11435")[(i // 2) % 2], f"s{i % 200}")
          for i in range(600)]  # a busy gateway's: 3 channels x 2 models x 2 endpoints


def bench_metrics(args: argparse.Namespace, st: Stack) -> None:
    """What metrics cost a message, plain, under gevent and in multiprocess mode."""
    messages = args.messages or (20_000 if args.quick else 100_000)
    print(f"{messages:,} messages per mode, best of 3 runs; gateway overhead per message "
          f"~{GATEWAY_OVERHEAD_US:.0f} us\n")
    env, rows = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}, []
    for name, extra in {"plain": {}, "gevent": {"BENCH_GEVENT": "1"},
                        "multiprocess": {"PROMETHEUS_MULTIPROC_DIR": str(st.tmp)}}.items():
        runs = [[float(x) for x in child("metrics_child", str(messages),
                                         env={**env, **extra}).split()] for _ in range(3)]
        per, scrape, snap = (min(r[i] for r in runs) for i in range(3))
        rows.append([name, f"{per:.2f}", f"{per / GATEWAY_OVERHEAD_US:.2%}", f"{scrape:.2f}",
                     f"{snap:.2f}", f"{runs[-1][3]:,.0f}"])
    table(["mode", "us/message", "of overhead", "scrape ms", "snapshot ms", "scrape bytes"], rows)
    print("\nus/message: metrics.track(...) around one model_call, one message's calls.\n"
          "scrape: one GET /metrics body; snapshot: one /api/v1/stats body (60 s window); "
          "both off the message path.")


def metrics_child(messages: str) -> None:
    from gateway.observe.metrics import Metrics

    metrics, count = Metrics(), itertools.count()
    for channel, model, endpoint, session in LABELS:  # warm the label caches
        metrics.message_started()
        metrics.model_call(model, endpoint, 0.01, ok=True, channel=channel)
        metrics.message_finished(channel, "chat", 0.02, model=model, session=session)

    def one() -> None:
        i = next(count)
        channel, model, endpoint, session = LABELS[i % 600]
        with metrics.track(channel, session) as m:
            metrics.model_call(model, endpoint, 0.012, ok=i % 50 != 0, channel=channel,
                               prompt_tokens=120, completion_tokens=40)
            m.route, m.model = "chat", model
            m.error = None if i % 50 else "model_error"

    per = per_call_us(one, int(messages))
    scrape, snap = (per_call_us(f, 20) / 1000 for f in (metrics.exposition,
                                                        lambda: metrics.snapshot(60)))
    print(f"{per:.2f} {scrape:.2f} {snap:.2f} {len(metrics.exposition()[0])}")


# ------------------------------------------------------------------------------- console record
def bench_console_record(args: argparse.Namespace, st: Stack) -> None:
    """What recording the model's input costs a message (`record_input`, one more row)."""
    from gateway.core.chat import record_input
    from gateway.core.message import Message, ModelInput, Span, Trace
    from gateway.core.store import Store

    n = args.messages or (500 if args.quick else 2000)
    prose = ("How do I reset the router when its admin page at http://192.168.1.1 does not "
             "load? The lights keep blinking after the usual steps. ") * 40

    def conversation(chars: int) -> list[dict[str, str]]:
        return [{"role": "system", "content": "You are Moltbot, a private assistant. " * 4},
                {"role": "system", "content": "Passage from knowledge/faq.md: " + prose[:600]},
                *({"role": role, "content": f"{kind} {i} " + prose[:chars]}
                  for i in range(6) for role, kind in (("user", "question"),
                                                       ("assistant", "answer"))),
                {"role": "user", "content": "and my api_key=sk-1234567890 is this"}]

    short, long = conversation(200), conversation(3000)
    short_us = per_call_us(lambda: record_input(Trace("m1"), "llama2", short), n, 3)
    long_us = per_call_us(lambda: record_input(Trace("m1"), "llama2", long), max(1, n // 4), 3)
    spans = [Span("guard", 0.0, 0.1, "ok"), Span("model", 1.0, 30.0, "ok", "llama2")]
    given = ModelInput("llama2", "[" + '{"role": "user", "content": "hi"},' * 80 + "{}]", 120, 30)

    def finish(with_input: bool, run: int) -> float:
        store = Store(f"sqlite:///{st.tmp / f'bench{with_input}{run}.db'}")
        msgs = [Message(channel="http", sender="s", chat="c", text="hi") for _ in range(n // 4)]
        for m in msgs:
            store.add_message(m, None)
        began = time.perf_counter()
        for m in msgs:
            store.finish_message(m.id, session_id=None, reply="ok", error=None, route="chat",
                                 trace=spans, model_input=given if with_input else None,
                                 channel="http")
        store.close()
        return (time.perf_counter() - began) / len(msgs) * 1e6

    plain, recorded = (min(finish(w, run) for run in range(3)) for w in (False, True))
    print(f"record_input, ~3 KB of messages:       {short_us:8.1f} us per model call")
    print(f"record_input, ~40 KB cut to 16 KB:      {long_us:8.1f} us per model call")
    print(f"finish_message without a model input:  {plain:8.1f} us")
    print(f"finish_message with one (same commit): {recorded:8.1f} us (+{recorded - plain:.1f} "
          f"us; with the short input's record_input "
          f"{100 * (recorded - plain + short_us) / GATEWAY_OVERHEAD_US:.1f} % of the gateway's "
          f"~{GATEWAY_OVERHEAD_US / 1000:.1f} ms overhead)")


# ------------------------------------------------------------------------------- mcp
def bench_mcp(args: argparse.Namespace, st: Stack) -> None:
    """MCP tool servers: what one host child per server costs (start, memory, a call's round
    trip through it), against one asyncio process holding every server's session (the other
    design, ARCHITECTURE.md "Processes"). The server is tests/fakes/mcp_clock.py over stdio."""
    clock = [sys.executable, str(REPO / "tests" / "fakes" / "mcp_clock.py")]
    spec = json.dumps({"op": "start", "server": "clock",
                       "spec": {"command": clock, "cwd": str(REPO)}}) + "\n"
    runs, calls = (2, 100) if args.quick else (5, 500)
    starts, rss, trips = list[float](), list[float](), list[float]()
    for run in range(runs):
        began = time.perf_counter()
        host = st.spawn(f"mcp-host{run}", [sys.executable, "-m", "gateway.mcp.host"],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        host.stdin.write(spec)
        host.stdin.flush()
        json.loads(host.stdout.readline())
        starts.append(time.perf_counter() - began)
        rss.append(psutil.Process(host.pid).memory_info().rss / 2**20)
        for i in range(calls // runs):
            began = time.perf_counter()
            host.stdin.write(json.dumps({"op": "call", "server": "clock", "id": i,
                                         "tool": "now", "arguments": {}}) + "\n")
            host.stdin.flush()
            host.stdout.readline()
            trips.append((time.perf_counter() - began) * 1000)
        host.stdin.close()
        host.wait(10)
    shared = []
    for servers in (1, 4):
        out = subprocess.run([sys.executable, "-c", MCP_SHARED, str(servers), *clock],
                             capture_output=True, text=True, cwd=REPO, timeout=120)
        shared.append(float(out.stdout.split()[-1]))
    print(f"MCP host ready (one server started and listed): {statistics_median(starts):.2f} s "
          f"median of {runs}")
    print(f"MCP host RSS: {statistics_median(rss):.0f} MB with one session (the stdio server "
          f"is its own process besides)")
    print(f"tools/call round trip through the host: p50 {fmt(percentile(trips, 50))} ms, "
          f"p90 {fmt(percentile(trips, 90))} ms ({len(trips)} calls)")
    print(f"one asyncio process with every session instead: {shared[0]:.0f} MB for 1 server, "
          f"{shared[1]:.0f} MB for 4 (one child per server: {4 * statistics_median(rss):.0f} "
          f"MB for 4)")


MCP_SHARED = """
import asyncio, sys, psutil
from contextlib import AsyncExitStack
from mcp import Client
from mcp.client.stdio import StdioServerParameters
async def main(n, command):
    async with AsyncExitStack() as stack:
        for _ in range(n):
            client = await stack.enter_async_context(Client(StdioServerParameters(
                command=command[0], args=command[1:])))
            await client.list_tools()
        print(psutil.Process().memory_info().rss / 2**20)
asyncio.run(main(int(sys.argv[1]), sys.argv[2:]))
"""


def bench_browser(args: argparse.Namespace, st: Stack) -> None:
    """The browser tool's host (`gateway.tools.browser_host`): the first call (the process and
    Chromium start), a warm call opening and reading a local page, the memory of the process
    with its Chromium; unconfined and, where bubblewrap works, in the sandbox."""
    sys.path.insert(0, str(REPO))
    from gateway.tools.browser import BrowserHost, BrowserTool
    from gateway.tools.sandbox import find_sandbox
    from tests.fakes.web_pages import Site

    calls = 10 if args.quick else 50
    site = Site().start()
    workspace = Path(tempfile.mkdtemp(prefix="bench-browser-"))
    ways = [("unconfined", None)] + ([("bubblewrap", find_sandbox().sandbox)]
                                     if find_sandbox().available else [])
    try:
        for name, sandbox in ways:
            host = BrowserHost(workspace, sandbox=sandbox, pages=4)
            tool = BrowserTool(lambda r, h=host: h.call(r, 60), workspace=workspace,
                               allowed_hosts=["127.0.0.1"], timeout=15, max_bytes=2**20)
            try:
                began = time.perf_counter()
                tool.call({"url": site.url("/")})
                first = time.perf_counter() - began
                warm = []
                for _ in range(calls):
                    began = time.perf_counter()
                    tool.call({"url": site.url("/"), "read": "markdown"})
                    warm.append((time.perf_counter() - began) * 1000)
                root = psutil.Process(host.pid) if host.pid else None
                pss = 0.0
                for proc in [root, *root.children(recursive=True)] if root else []:
                    with contextlib.suppress(psutil.NoSuchProcess):  # a renderer that ended
                        pss += proc.memory_full_info().pss / 2**20
                print(f"browser ({name}): first call {first:.2f} s; open+read a page p50 "
                      f"{fmt(percentile(warm, 50), 0)} ms, p90 {fmt(percentile(warm, 90), 0)} "
                      f"ms ({calls} calls); {pss:.0f} MB (PSS) with Chromium")
            finally:
                host.stop()
    finally:
        site.stop()
        shutil.rmtree(workspace, ignore_errors=True)


def statistics_median(values: list[float]) -> float:
    return percentile(values, 50) or 0.0


# ------------------------------------------------------------------------------- main
SECTIONS: dict[str, Callable[[argparse.Namespace, Stack], None]] = {
    "gateway": bench_gateway, "mqtt": bench_mqtt, "telegram": bench_telegram,
    "openai": bench_openai, "skills": bench_skills, "knowledge": bench_knowledge,
    "overhead": bench_overhead, "recall": bench_recall, "loop-libraries": bench_loop_libraries,
    "metrics": bench_metrics, "console-record": bench_console_record, "memory": bench_memory,
    "knowledge-meaning": bench_knowledge_meaning, "mcp": bench_mcp, "slack": bench_slack,
    "browser": bench_browser, "cold-start": bench_cold_start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="section", required=True)
    flag, count = {"action": "store_true"}, {"type": int, "nargs": "?"}
    keep = ("--keep", {**flag, "help": "keep the temp workspace and logs"})
    options: dict[str, list[tuple[str, dict[str, Any]]]] = {
        "gateway": [keep, ("--no-hold", {**flag, "help": "skip the held connections"}), (
            "--only", {"action": "append", "metavar": "ROW", "help": "only the rows whose name "
                       "starts so (repeatable), e.g. --only 'http c64' --only 'skill c'"}), (
            "--held", {"type": int, "help": "idle WebSockets to hold (default 10,000; --quick "
                       "1,000)"})],
        "skills": [keep], "mqtt": [keep], "telegram": [keep], "openai": [keep], "slack": [keep],
        "knowledge": [("passages", count), ("queries", count)],
        "recall": [("--misses", {**flag, "help": "list every question that missed"})],
        "memory": [("--misses", {**flag, "help": "list every question that missed"})],
        "loop-libraries": [("names", {"nargs": "*", "help": "only these probes"}),
                           ("--store-cost", flag)],
        "metrics": [("messages", count)], "console-record": [("messages", count)],
        "knowledge-meaning": [("passages", count), (
            "--misses", {**flag, "help": "list every question hybrid search did not ground"}), (
            "--endpoint", {"help": "a real model server (Ollama, or an OpenAI-compatible URL "
                           "ending in /v1) instead of the fake's embeddings"}), (
            "--model", {"help": "the embedding model there, e.g. nomic-embed-text"}), (
            "--min-similarity", {"type": float, "default": 0.5,
                                 "help": "knowledge.min_similarity (default 0.5)"})]}
    for name, func in SECTIONS.items():
        p = sub.add_parser(name, help=" ".join((func.__doc__ or "").split()).split(": ")[0])
        p.add_argument("--quick", action="store_true", help="smaller counts")
        for option, settings in options.get(name, []):
            p.add_argument(option, **settings)
    args = parser.parse_args(argv)

    def stop(signum: int, _frame: Any) -> None:  # unwind like Ctrl-C: every finally runs
        raise KeyboardInterrupt(f"signal {signum}")

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    print(f"Moltbot benchmark: {args.section} ({'quick' if args.quick else 'full'}), "
          f"{datetime.now():%Y-%m-%d %H:%M}, {psutil.cpu_count()} cores, Python "
          f"{platform.python_version()}, load average {os.getloadavg()[0]:.2f}")
    st = Stack(getattr(args, "keep", False))
    try:
        SECTIONS[args.section](args, st)
    except KeyboardInterrupt as e:
        print(f"\ninterrupted ({e}); stopping everything", file=sys.stderr)
        return 130
    except RuntimeError as e:  # set-up failed: say why, still clean up
        print(f"\nbenchmark stopped: {e}", file=sys.stderr)
        return 1
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
        st.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
