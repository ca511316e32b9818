"""Benchmark skills in the real gateway process: hot reload, cost per call, isolation, FAQ search.

    python bench/bench_skills.py           # full run, under 3 minutes
    python bench/bench_skills.py --quick   # under 45 seconds

Prints numbers, asserts nothing. Why each part exists:

1. Hot reload: the promise is "drop a file into skills/ and it is live within seconds". We time
   a file write until a message reaches the new (or edited) skill, polling every 20 ms, so the
   figure is what a user sees: watchdog event, settle time, loading into every skill host, swap.
2. Cost of a command skill (no model): a Python skill that returns a constant and a `#!/bin/sh`
   script skill. What is left is the gateway's own work per message (storing, tracing, routing)
   plus the skill host round trip or the process spawn, at concurrency 1, 8 and 32.
3. Isolation: skills run in child processes so a runaway one cannot slow other conversations.
   We measure plain chat (fake model) while a skill busy-loops or sleeps, against a baseline.
   On this 2-core machine a spinning host takes a whole core, so some slowdown is expected;
   "isolated" means the chat does not wait for it.
4. Knowledge search: the guide's FAQ skill (skills/auto_reply.py, unchanged) over a generated
   2,000-section zh/en FAQ, reached with `/faq_query <question>`.

Everything runs against `python -m gateway.server` started as `moltbot gateway start` starts it,
in a temporary MOLTBOT_HOME, with the `--fast` fake model. The client is this process: http.client
on keep-alive connections, one thread per concurrent client (fine at these rates). CPU figures
are shares of one core during the timed window (this machine has 2 cores, so 200% is all of
it): `gw` the gateway process, `skills` the skill hosts plus script processes, `client` this
process, `model` the fake model, `other` everything else on the machine (another benchmark or
test run makes the figures incomparable; it shows there). Every process started here, and
every process whose working folder is inside the temporary folder (skill hosts, scripts), is
stopped on exit, on an exception and on Ctrl-C/SIGTERM, and the temporary folder is removed.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
START_WAIT = 60.0
POLL = 0.020  # hot reload: seconds between polls
RELOAD_DEADLINE = 15.0  # give up on one hot reload after this long
SKILL_TIMEOUT = 5  # skills.timeout in config.yaml (the brief's figure)
NAP_SECONDS = 5
SWAP_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO gateway\.reload: "
                       r"skills loaded", re.MULTILINE)

BASE_SKILL = f'''\
import time

from moltbot_sdk import Skill, context


class BenchBase(Skill):
    @context.handle(intent="ping", description="answers pong")
    def ping(self, msg):
        return "pong"

    @context.handle(intent="spin", description="busy-loops forever")
    def spin(self, msg):
        while True:
            pass

    @context.handle(intent="nap", description="sleeps")
    def nap(self, msg):
        time.sleep({NAP_SECONDS})
        return "rested"
'''

SHELL_SKILL = "#!/bin/sh\n# moltbot: intent=shping\necho pong\n"


def reload_skill(n: int, reply: str) -> str:
    """A Python skill answering `/bench_<n>` with `reply` (file name: bench_<n>.py)."""
    return (
        "from moltbot_sdk import Skill, context\n\n\n"
        f"class Bench{n}(Skill):\n"
        f'    @context.handle(intent="bench_{n}")\n'
        "    def run(self, msg):\n"
        f"        return {reply!r}\n"
    )


# --------------------------------------------------------------------------- plan and results


@dataclass(frozen=True)
class Plan:
    """How much of everything to run: full gives steadier tails, quick is a smoke test."""

    new_skills: int
    edits: int
    window: float  # seconds per throughput row
    concurrencies: tuple[int, ...]
    chat_messages: int
    skill_messages: int  # /ping while a skill spins or sleeps
    faq_sections: int
    faq_queries: int


FULL = Plan(new_skills=10, edits=5, window=4.0, concurrencies=(1, 8, 32), chat_messages=200,
            skill_messages=100, faq_sections=2000, faq_queries=300)
QUICK = Plan(new_skills=4, edits=2, window=0.8, concurrencies=(1, 8, 32), chat_messages=100,
             skill_messages=50, faq_sections=2000, faq_queries=100)


@dataclass
class Row:
    """One line of the summary table (times in seconds, printed in ms)."""

    section: str
    name: str
    n: int
    rate: float | None = None
    p50: float | None = None
    p99: float | None = None
    max: float | None = None
    errors: int = 0
    note: str = ""


def percentile(samples: list[float], share: float) -> float | None:
    """Nearest-rank percentile; None for no samples (a row that could not run)."""
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def latency_row(section: str, name: str, samples: list[float], errors: int = 0,
                rate: float | None = None, note: str = "") -> Row:
    return Row(section, name, len(samples), rate, percentile(samples, 0.5),
               percentile(samples, 0.99), max(samples) if samples else None, errors, note)


# --------------------------------------------------------------------------- processes


class Cleanup:
    """Undo actions run last-in first-out, each one even when an earlier one failed."""

    def __init__(self) -> None:
        self._actions: list[Callable[[], None]] = []

    def push(self, action: Callable[[], None]) -> None:
        self._actions.append(action)

    def run(self) -> None:
        while self._actions:
            action = self._actions.pop()
            try:
                action()
            except Exception as e:  # keep undoing the rest
                print(f"cleanup: {type(e).__name__}: {e}", file=sys.stderr)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[Any], grace: float) -> None:
    """SIGTERM, wait up to `grace`, then SIGKILL: a graceful stop, bounded."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(5)


def kill_strays(folder: Path) -> int:
    """Kill processes whose working folder is inside `folder` (skill hosts, scripts).

    Skill hosts run in their own sessions with the workspace as their working folder; if the
    gateway died hard they would be orphans (a busy-looping one would spin forever), and no
    other process has a reason to sit in our temporary folder.
    """
    victims: list[psutil.Process] = []
    me = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        try:
            if Path(proc.cwd()).is_relative_to(folder):
                victims.append(proc)
        except (psutil.Error, OSError, ValueError):
            continue
    for proc in victims:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(victims, timeout=5)
    return len(victims)


class FakeModel:
    """`python -m tests.fakes.fake_model --fast` in a child process: an instant model."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> FakeModel:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.fakes.fake_model", "--port", str(free_port()),
                 "--fast"], cwd=REPO, stdout=subprocess.PIPE, stderr=log,
                stdin=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + START_WAIT
        line = b""
        while not line.endswith(b"\n"):  # never a bare readline: it could block forever
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise RuntimeError(f"fake model did not print READY: {line!r}")
            if select.select([self.proc.stdout], [], [], left)[0]:
                chunk = os.read(self.proc.stdout.fileno(), 256)
                if not chunk:
                    raise RuntimeError(f"fake model exited: {self.log_path.read_text()[-800:]}")
                line += chunk
        self.url = line.decode().split()[1]
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 5)
            if self.proc.stdout is not None:
                self.proc.stdout.close()


class Gateway:
    """The real gateway (`python -m gateway.server`) in a child process with its own home."""

    def __init__(self, home: Path, config: dict[str, Any], model_pid: int | None) -> None:
        self.home = home
        self.model_pid = model_pid  # only for the CPU columns
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""
        self.started_in = 0.0
        (home / "skills").mkdir(parents=True, exist_ok=True)  # present: no examples copied
        (home / "knowledge").mkdir(exist_ok=True)
        (home / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False),
                                          encoding="utf-8")

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "MOLTBOT_HOME": str(self.home)}

    def start(self) -> Gateway:
        began = time.perf_counter()
        with open(self.home / "gateway-bench.out", "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.server", "--port", str(self.port)],
                env=self.env, cwd=REPO, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_WAIT
        while not self._healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gateway did not become healthy:\n{self.output()}")
            time.sleep(0.05)
        self.started_in = time.perf_counter() - began
        token = subprocess.run(
            [sys.executable, "-m", "gateway", "dashboard", "--token-gen", "--expire", "1h",
             "--json"], env=self.env, cwd=REPO, capture_output=True, text=True, timeout=60)
        if token.returncode != 0:
            raise RuntimeError(f"token-gen failed: {token.stderr[-800:]}")
        self.token = json.loads(token.stdout)["token"]
        return self

    def _healthy(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def output(self) -> str:
        path = self.home / "gateway-bench.out"
        return path.read_text(encoding="utf-8", errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        """Graceful stop (it kills its skill hosts), then anything left in the home folder."""
        if self.proc is not None:
            stop_process(self.proc, 20)
        left = kill_strays(self.home)
        if left:
            print(f"  (killed {left} leftover process(es) under {self.home.name})")

    def cpu_sample(self) -> tuple[float, float, dict[int, float]]:
        """Gateway CPU seconds, its reaped children's, and each live descendant's."""
        assert self.proc is not None
        try:
            gw = psutil.Process(self.proc.pid)
            times = gw.cpu_times()
            live: dict[int, float] = {}
            for child in gw.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    t = child.cpu_times()
                    live[child.pid] = t.user + t.system
        except psutil.Error:
            return 0.0, 0.0, {}
        return times.user + times.system, times.children_user + times.children_system, live


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent not idle (all cores)."""
    t = psutil.cpu_times()
    return float(sum(t)) - t.idle - getattr(t, "iowait", 0.0)


def pid_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        return float(sum(psutil.Process(pid).cpu_times()[:2]))
    except psutil.Error:
        return 0.0


@contextlib.contextmanager
def cpu_meter(gw: Gateway, into: dict[str, float]) -> Iterator[None]:
    """Fills `into` with the gateway's and the skills' share of one core over the block.

    A skill host killed during the block is reaped by the gateway, so its time moves into the
    gateway's children times: counting the reaped delta plus the live deltas counts it once.
    """
    me = os.getpid()
    began = time.perf_counter()
    all0, me0, model0 = busy_seconds(), pid_seconds(me), pid_seconds(gw.model_pid)
    gw0, reaped0, live0 = gw.cpu_sample()
    yield
    gw1, reaped1, live1 = gw.cpu_sample()
    all1, me1, model1 = busy_seconds(), pid_seconds(me), pid_seconds(gw.model_pid)
    wall = max(time.perf_counter() - began, 1e-9)
    skills = reaped1 - reaped0 + sum(live1.values()) - sum(
        t for pid, t in live0.items() if pid in live1)
    skills -= sum(t for pid, t in live0.items() if pid not in live1)
    into["gw"] = (gw1 - gw0) / wall * 100
    into["skills"] = max(skills, 0.0) / wall * 100
    into["client"] = (me1 - me0) / wall * 100
    into["model"] = (model1 - model0) / wall * 100
    ours = sum(into[k] for k in ("gw", "skills", "client", "model"))
    into["other"] = max((all1 - all0) / wall * 100 - ours, 0.0)


def cpu_note(cpu: dict[str, float]) -> str:
    return "cpu% " + " ".join(f"{k} {cpu.get(k, 0):.0f}"
                              for k in ("gw", "skills", "client", "model", "other"))


# --------------------------------------------------------------------------- client


class Client:
    """One keep-alive HTTP connection to the gateway (reconnects after an error)."""

    def __init__(self, gw: Gateway, timeout: float = 15.0) -> None:
        self.port = gw.port
        self.timeout = timeout
        self.headers = {"Authorization": f"Bearer {gw.token}",
                        "Content-Type": "application/json"}
        self.conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            self.conn.connect()
            assert self.conn.sock is not None
            self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.conn

    def post(self, text: str, chat: str) -> tuple[int, dict[str, Any]]:
        """Status and JSON body; status 0 and the error text when the request failed."""
        body = json.dumps({"text": text, "chat": chat, "sender": "bench"}).encode()
        try:
            conn = self._connect()
            conn.request("POST", "/api/v1/messages", body, self.headers)
            response = conn.getresponse()
            data = response.read()
            if response.getheader("Connection", "").lower() == "close":
                self.close()
            return response.status, json.loads(data or b"{}")
        except (OSError, http.client.HTTPException, ValueError) as e:
            self.close()
            return 0, {"error": {"code": "client", "message": f"{type(e).__name__}: {e}"}}

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def timed_posts(client: Client, texts: list[str], chats: list[str]) -> tuple[list[float], int]:
    """Sequential messages: latencies of the 200s and the number of failures."""
    latencies: list[float] = []
    errors = 0
    for text, chat in zip(texts, chats, strict=True):
        began = time.perf_counter()
        status, _ = client.post(text, chat)
        if status == 200:
            latencies.append(time.perf_counter() - began)
        else:
            errors += 1
    return latencies, errors


# --------------------------------------------------------------------------- 1. hot reload


def wait_for_reply(client: Client, command: str, expected: str, began: float) -> float | None:
    """Post `command` every POLL seconds until the reply is `expected`; seconds since `began`."""
    tick = time.perf_counter()
    while time.perf_counter() - began < RELOAD_DEADLINE:
        status, body = client.post(command, "reload")
        if status == 200 and body.get("reply") == expected:
            return time.perf_counter() - began
        tick += POLL
        time.sleep(max(0.0, tick - time.perf_counter()))
    return None


def settle_seconds() -> str:
    """The reloader's settle time, read from its source (importing it would load jieba too)."""
    text = (REPO / "gateway" / "reload.py").read_text(encoding="utf-8")
    found = re.search(r"^SETTLE\s*=\s*([0-9.]+)", text, re.MULTILINE)
    return f"{float(found.group(1)) * 1000:.0f} ms" if found else "?"


def swap_times(gw: Gateway) -> list[float]:
    """Wall-clock times of the reloader's "skills loaded" lines (logged right after the swap)."""
    path = gw.home / "data" / "logs" / "gateway.log"
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    return [datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            for m in SWAP_LINE.finditer(text)]


def reload_series(gw: Gateway, client: Client, writes: list[tuple[Path, str]],
                  label: str, rows: list[Row]) -> None:
    """Write each (file, reply) as a skill; time it until its command answers with `reply`.

    Besides the user-visible time, the gateway log says when the new snapshot was swapped in.
    An edited reply can arrive before that: the skill hosts are reloaded in place, one after
    the other, and the old snapshot's handler already reaches the new code in the first one.
    """
    answered: list[float] = []
    written_at: list[float] = []
    failed = 0
    for path, expected in writes:
        time.sleep(0.5)  # let the previous reload finish: each write is timed on its own
        n = int(path.stem.rsplit("_", 1)[1])
        written_at.append(time.time())
        began = time.perf_counter()
        path.write_text(reload_skill(n, expected), encoding="utf-8")
        took = wait_for_reply(client, f"/bench_{n}", expected, began)
        if took is None:  # reloading is broken: say so, and keep the run bounded
            failed += 1
            break
        answered.append(took)
    swaps = swap_times(gw)
    swapped = [next(t for t in swaps if t >= w - 0.001) - w for w in written_at
               if any(t >= w - 0.001 for t in swaps)]
    row = latency_row("1 hot reload", label, answered, failed,
                      note=f"swap p50 {ms(percentile(swapped, 0.5))} ms (gateway.log)")
    rows.append(row)
    print(f"   {label:<17} answered p50 {ms(row.p50)} ms  max {ms(row.max)} ms   "
          f"[{' '.join(f'{t * 1000:.0f}' for t in answered)}]"
          + (f"  (stopped: one was not answered within {RELOAD_DEADLINE:.0f}s)" if failed
             else ""))
    print(f"   {'':<17} swapped p50 {ms(percentile(swapped, 0.5))} ms  "
          f"max {ms(max(swapped) if swapped else None)} ms after the write (gateway.log)")


def bench_hot_reload(gw: Gateway, plan: Plan, rows: list[Row]) -> None:
    print(f"\n1. Hot reload (poll every {POLL * 1000:.0f} ms; the reloader waits "
          f"{settle_seconds()} for writes to settle, then loads into every skill host)")
    client = Client(gw)
    skills = gw.home / "skills"
    nonce = random.randrange(1 << 30)
    reload_series(gw, client, [(skills / f"bench_{n}.py", f"bench {n} v0 {nonce}")
                               for n in range(plan.new_skills)], "new skill file", rows)
    reload_series(gw, client, [(skills / "bench_0.py", f"bench 0 v{v} {nonce}")
                               for v in range(1, plan.edits + 1)], "edit skill reply", rows)

    # Remove the reload skills so later sections see the same skills on every run.
    for n in range(plan.new_skills):
        (skills / f"bench_{n}.py").unlink(missing_ok=True)
    began = time.perf_counter()
    gone = wait_for_reply(client, "/bench_0", "echo: /bench_0", began)
    print(f"   {plan.new_skills} files deleted -> gone after "
          f"{'not within the deadline' if gone is None else f'{gone * 1000:.0f} ms'}")
    client.close()


# --------------------------------------------------------------------------- 2. throughput


def load_window(gw: Gateway, text: str, label: str, concurrency: int,
                window: float) -> tuple[list[float], int, Counter[str], dict[str, float]]:
    """`concurrency` clients (own connection, own chat) send `text` back to back for `window` s.

    Each client sends one untimed message first (connect, create its session); the window opens
    when all are ready. Only messages finished inside the window count.
    """
    window_at: list[float] = [0.0, 0.0]

    def open_window() -> None:  # runs once, before any client is released
        window_at[0] = time.perf_counter()
        window_at[1] = window_at[0] + window

    ready = threading.Barrier(concurrency + 1, action=open_window)
    results: list[list[tuple[float, float, int]]] = [[] for _ in range(concurrency)]
    problems: Counter[str] = Counter()
    lock = threading.Lock()

    def client_loop(k: int) -> None:
        client = Client(gw)
        chat = f"{label}-c{concurrency}-{k}"
        try:
            client.post(text, chat)
            ready.wait(30)
            end = window_at[1]
            mine = results[k]
            while True:
                began = time.perf_counter()
                if began >= end:
                    break
                status, body = client.post(text, chat)
                done = time.perf_counter()
                mine.append((done, done - began, status))
                if status != 200:
                    with lock:
                        problems[str(body.get("error", {}).get("code", status))] += 1
        except threading.BrokenBarrierError:
            pass
        finally:
            client.close()

    threads = [threading.Thread(target=client_loop, args=(k,), daemon=True)
               for k in range(concurrency)]
    for t in threads:
        t.start()
    cpu: dict[str, float] = {}
    try:
        ready.wait(30)
    except threading.BrokenBarrierError:
        problems["clients not ready"] += 1
        open_window()
    with cpu_meter(gw, cpu):
        time.sleep(max(0.0, window_at[1] - time.perf_counter()))
    for t in threads:
        t.join(30)
    inside = [(lat, status) for mine in results for done, lat, status in mine
              if done <= window_at[1]]
    latencies = [lat for lat, status in inside if status == 200]
    return latencies, len(inside) - len(latencies), problems, cpu


def bench_command_skills(gw: Gateway, plan: Plan, rows: list[Row]) -> None:
    print(f"\n2. Command skills without a model ({plan.window:.1f} s per row, "
          "keep-alive, one chat per client)")
    print(f"   {'skill':<14}{'clients':>8}{'msg/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'errors':>8}  cpu")
    for text, label, kind in (("/ping", "ping", "python"), ("/shping", "shping", "script")):
        for concurrency in plan.concurrencies:
            latencies, errors, problems, cpu = load_window(gw, text, label, concurrency,
                                                           plan.window)
            rate = len(latencies) / plan.window
            row = latency_row("2 command skill", f"{text} ({kind}) x{concurrency}", latencies,
                              errors, rate, cpu_note(cpu))
            rows.append(row)
            extra = f"  {dict(problems)}" if problems else ""
            print(f"   {text + ' ' + kind:<14}{concurrency:>8}{rate:>9.0f}{ms(row.p50):>9}"
                  f"{ms(row.p99):>9}{errors:>8}  {cpu_note(cpu)}{extra}")


# --------------------------------------------------------------------------- 3. isolation


def chat_run(gw: Gateway, plan: Plan, tag: str) -> tuple[list[float], int, dict[str, float]]:
    """Plain chat (fake model) from 10 other clients, one message at a time."""
    client = Client(gw)
    texts = [f"hello from client {i % 10}, message {i}" for i in range(plan.chat_messages)]
    chats = [f"iso-{tag}-{i % 10}" for i in range(plan.chat_messages)]
    cpu: dict[str, float] = {}
    try:
        with cpu_meter(gw, cpu):
            latencies, errors = timed_posts(client, texts, chats)
    finally:
        client.close()
    return latencies, errors, cpu


def ping_run(gw: Gateway, plan: Plan, tag: str) -> tuple[list[float], int]:
    """The Python /ping skill, sequential: it must find the skill host that is not stuck."""
    client = Client(gw)
    try:
        return timed_posts(client, ["/ping"] * plan.skill_messages,
                           [f"isoping-{tag}"] * plan.skill_messages)
    finally:
        client.close()


class Misbehaver:
    """One client calling a bad skill (`/spin` or `/nap`) back to back until told to stop.

    Back to back so the skill keeps misbehaving even if the measurement outlasts one call.
    """

    def __init__(self, gw: Gateway, skill: str) -> None:
        self.gw = gw
        self.skill = skill
        self.stop = threading.Event()
        self.outcomes: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        client = Client(self.gw, timeout=SKILL_TIMEOUT + 20)
        try:
            while not self.stop.is_set():
                began = time.perf_counter()
                status, body = client.post(f"/{self.skill}", f"iso-{self.skill}")
                code = body.get("error", {}).get("code", "ok")
                self.outcomes.append(f"{status} {code} after {time.perf_counter() - began:.1f}s")
        finally:
            client.close()

    def __enter__(self) -> Misbehaver:
        self.thread.start()
        time.sleep(0.3)  # the call has reached its skill host
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(SKILL_TIMEOUT + 25)  # the call in flight ends at the time-out


def isolation_phase(gw: Gateway, plan: Plan, rows: list[Row], tag: str, what: str) -> None:
    """Chat, then /ping, measured now; one summary line for the phase."""
    began = time.perf_counter()
    latencies, errors, cpu = chat_run(gw, plan, tag)
    ping, ping_errors = ping_run(gw, plan, tag)
    took = time.perf_counter() - began
    chat_row = latency_row("3 isolation", f"chat, {what}", latencies, errors,
                           note=cpu_note(cpu))
    ping_row = latency_row("3 isolation", f"/ping, {what}", ping, ping_errors)
    rows.extend([chat_row, ping_row])
    print(f"   {what:<20}{ms(chat_row.p50):>9}{ms(chat_row.p99):>8}{errors:>5}"
          f"{ms(ping_row.p50):>10}{ms(ping_row.p99):>8}{ping_errors:>5}{took:>6.1f}  "
          f"{cpu_note(cpu)} (during chat)")


def bench_isolation(gw: Gateway, plan: Plan, rows: list[Row]) -> None:
    print(f"\n3. Isolation: plain chat (fake model, {plan.chat_messages} sequential messages, "
          f"10 chats), then /ping x{plan.skill_messages},\n   while another client's skill "
          f"misbehaves (skills.timeout {SKILL_TIMEOUT}s, 2 skill hosts)")
    print(f"   {'':<20}{'chat p50':>9}{'p99':>8}{'err':>5}{'/ping p50':>10}{'p99':>8}"
          f"{'err':>5}{'secs':>6}  (ms)")
    isolation_phase(gw, plan, rows, "base", "baseline")
    for skill, what in (("spin", "busy-looping skill"), ("nap", f"sleep({NAP_SECONDS}) skill")):
        with Misbehaver(gw, skill) as bad:
            isolation_phase(gw, plan, rows, skill, what)
        print(f"   {'':<20}the /{skill} calls: {', '.join(bad.outcomes) or 'none'}")


# --------------------------------------------------------------------------- 4. FAQ search

EN_VERBS = ("reset", "rotate", "export", "import", "back up", "restore", "enable", "disable",
            "configure", "upgrade", "monitor", "limit", "schedule", "debug", "migrate",
            "encrypt")
EN_NOUNS = ("password", "token", "gateway", "skill", "knowledge base", "log file", "model",
            "config file", "console", "session", "database", "certificate", "proxy", "webhook",
            "plugin", "script", "channel", "keyring", "workspace", "queue", "cache", "index",
            "trace", "dashboard", "rate limit", "blocklist", "mqtt broker", "websocket",
            "tray icon", "installer")
EN_PLACES = ("on Linux", "on macOS", "on Windows", "in Docker", "behind nginx", "for my team",
             "offline", "on a Raspberry Pi", "with Ollama", "after an upgrade")
ZH_VERBS = ("重置", "轮换", "导出", "导入", "备份", "恢复", "启用", "禁用", "配置", "升级", "监控",
            "限制", "定时", "调试", "迁移", "加密")
ZH_NOUNS = ("密码", "令牌", "网关", "技能", "知识库", "日志", "模型", "配置文件", "控制台", "会话",
            "数据库", "证书", "代理", "回调", "插件", "脚本", "频道", "密钥", "工作区", "队列",
            "缓存", "索引", "追踪", "仪表盘", "限流", "黑名单", "消息代理", "长连接", "托盘",
            "安装包")
ZH_PLACES = ("Linux上", "苹果电脑上", "Windows上", "容器里", "反向代理后", "团队里", "断网时",
             "树莓派上", "本地模型下", "升级后")
EN_FILLER = ("open the settings page first", "the change applies without a restart",
             "check data/logs/gateway.log if it fails", "run moltbot doctor to verify it",
             "keep a copy of config.yaml", "the console shows the new state",
             "this needs the gateway to be running", "see the README for the full steps")
ZH_FILLER = ("先打开设置页面", "修改后无需重启", "失败时请查看日志文件", "可以运行诊断命令检查",
             "请先备份配置文件", "控制台会显示新的状态", "需要网关正在运行", "完整步骤见说明文档")


@dataclass
class FaqEntry:
    question: str
    query: str  # what a user would type: the question, or a shorter paraphrase
    ref: str  # unique marker inside the answer, to check which section was found


@dataclass
class Faq:
    text: str
    entries: list[FaqEntry] = field(default_factory=list)


def make_faq(sections: int, rng: random.Random) -> Faq:
    """A Markdown FAQ of `sections` distinct Q&A sections, alternating English and Chinese."""
    en = rng.sample([(v, n, p) for v in EN_VERBS for n in EN_NOUNS for p in EN_PLACES],
                    (sections + 1) // 2)
    zh = rng.sample([(v, n, p) for v in ZH_VERBS for n in ZH_NOUNS for p in ZH_PLACES],
                    sections // 2)
    parts = ["# Moltbot FAQ (generated for bench_skills.py)\n"]
    entries: list[FaqEntry] = []
    for i in range(sections):
        ref = f"REF{i:05d}"
        if i % 2 == 0:
            verb, noun, place = en[i // 2]
            question = f"How do I {verb} the {noun} {place}?"
            query = question if rng.random() < 0.7 else f"{verb} {noun} {place}"
            steps = ". ".join(rng.sample(EN_FILLER, 3)).capitalize()
            answer = f"To {verb} the {noun} {place}: {steps}. ({ref})"
        else:
            verb, noun, place = zh[i // 2]
            question = f"如何在{place}{verb}{noun}？"
            query = question if rng.random() < 0.7 else f"{place}{noun}怎么{verb}"
            steps = "，".join(rng.sample(ZH_FILLER, 3))
            answer = f"在{place}{verb}{noun}：{steps}。({ref})"
        parts.append(f"## {question}\n{answer}\n")
        entries.append(FaqEntry(question, query, ref))
    return Faq("\n".join(parts), entries)


def bench_faq(root: Path, model: FakeModel, plan: Plan, rows: list[Row], cleanup: Cleanup,
              plain_start: float) -> None:
    print(f"\n4. FAQ skill (skills/auto_reply.py as shipped) over {plan.faq_sections} "
          "generated zh/en sections")
    rng = random.Random(20240601)
    faq = make_faq(plan.faq_sections, rng)
    config = {"models": {"llama2": {"endpoint": model.url, "max_tokens": 64}},
              "skills": {"timeout": SKILL_TIMEOUT}}
    gw = Gateway(root / "faq-home", config, model.pid)
    (gw.home / "knowledge" / "faq.md").write_text(faq.text, encoding="utf-8")
    shutil.copy2(REPO / "skills" / "auto_reply.py", gw.home / "skills" / "auto_reply.py")
    cleanup.push(gw.stop)
    gw.start()
    size = len(faq.text.encode())
    print(f"   faq.md {size / 1024:.0f} KiB; gateway healthy {gw.started_in:.1f}s after start, "
          f"vs {plain_start:.1f}s for the first workspace (each skill host indexes faq.md "
          "before the gateway listens)")
    client = Client(gw)
    picked = [rng.choice(faq.entries) for _ in range(plan.faq_queries)]
    client.post("/faq_query " + picked[0].query, "faq-warm")  # untimed: first-call costs
    latencies: list[float] = []
    errors = hits = 0
    cpu: dict[str, float] = {}
    with cpu_meter(gw, cpu):
        for entry in picked:
            began = time.perf_counter()
            status, body = client.post("/faq_query " + entry.query, "faq")
            if status != 200:
                errors += 1
                continue
            latencies.append(time.perf_counter() - began)
            hits += entry.ref in str(body.get("reply", ""))
    client.close()
    exact = sum(e.query == e.question for e in picked)
    note = f"right section {hits}/{len(latencies)}; {cpu_note(cpu)}"
    rows.append(latency_row("4 FAQ search", f"/faq_query, {plan.faq_sections} sections",
                            latencies, errors, note=note))
    row = rows[-1]
    print(f"   {len(latencies)} queries ({exact} exact questions, the rest paraphrased): "
          f"p50 {ms(row.p50)} ms  p99 {ms(row.p99)} ms  max {ms(row.max)} ms  "
          f"errors {errors}; {note}")
    gw.stop()


# --------------------------------------------------------------------------- main


def busy_note(seconds: float = 0.5) -> str:
    """How busy the machine is before we start: other work on 2 cores changes every figure."""
    busy = psutil.cpu_percent(interval=seconds) * (os.cpu_count() or 1)
    note = f"machine busy before start: {busy:.0f}% of one core"
    if busy > 30:
        note += " -- other processes are running: compare the 'other' CPU column"
    return note


def print_summary(rows: list[Row], plan_name: str, elapsed: float, load_before: str) -> None:
    print(f"\nSummary  {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}  ({plan_name} run, "
          f"{elapsed:.0f}s; {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{platform.system()} {platform.release()}); {load_before}")
    header = (f"{'section':<16}{'case':<36}{'n':>6}{'msg/s':>8}{'p50 ms':>9}{'p99 ms':>9}"
              f"{'max ms':>9}{'err':>5}  note")
    print(header)
    print("-" * len(header))
    for r in rows:
        rate = "-" if r.rate is None else f"{r.rate:.0f}"
        print(f"{r.section:<16}{r.name:<36}{r.n:>6}{rate:>8}{ms(r.p50):>9}{ms(r.p99):>9}"
              f"{ms(r.max):>9}{r.errors:>5}  {r.note}")


def on_signal(signum: int, _frame: Any) -> None:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so every `finally` stops what it started."""
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter runs (<45 s)")
    args = parser.parse_args(argv)
    plan, plan_name = (QUICK, "quick") if args.quick else (FULL, "full")
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)

    started = time.perf_counter()
    load_before = busy_note()
    print(f"moltbot bench_skills ({plan_name}); {load_before}")
    rows: list[Row] = []
    cleanup = Cleanup()
    root = Path(tempfile.mkdtemp(prefix="moltbot-bench-skills-")).resolve()
    cleanup.push(lambda: shutil.rmtree(root, ignore_errors=True))
    cleanup.push(lambda: kill_strays(root) and None)
    try:
        model = FakeModel(root / "fake-model.log")
        cleanup.push(model.stop)
        model.start()
        config = {"models": {"llama2": {"endpoint": model.url, "max_tokens": 64}},
                  "skills": {"timeout": SKILL_TIMEOUT}}
        gw = Gateway(root / "home", config, model.pid)
        (gw.home / "skills" / "bench_base.py").write_text(BASE_SKILL, encoding="utf-8")
        script = gw.home / "skills" / "shping.sh"
        script.write_text(SHELL_SKILL, encoding="utf-8")
        script.chmod(0o755)
        cleanup.push(gw.stop)
        gw.start()
        print(f"gateway on port {gw.port} healthy {gw.started_in:.1f}s after start; "
              f"fake model {model.url}; workspace {root}")
        bench_hot_reload(gw, plan, rows)
        bench_command_skills(gw, plan, rows)
        bench_isolation(gw, plan, rows)
        gw.stop()
        bench_faq(root, model, plan, rows, cleanup, gw.started_in)
    except KeyboardInterrupt as e:
        print(f"\ninterrupted ({e}); stopping everything", file=sys.stderr)
        return 130
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
        cleanup.run()
        if rows:
            print_summary(rows, plan_name, time.perf_counter() - started, load_before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
