# ruff: noqa: E402  (gevent must patch the stdlib before anything else imports socket)
"""Load generator for bench_gateway.py: one gevent process that drives the gateway or the model.

Why a separate process: the gateway is one gevent process on one core; a load generator living
in the same process (or the same core's event loop) would measure itself. Why gevent: thousands
of concurrent clients and 10,000 idle WebSockets cost one greenlet each, not one thread each.

Run by bench_gateway.py as ``python bench/loadgen.py MODE '<json params>'``. It speaks JSON
lines on stdout: ``{"event": "start"}`` when the timed window opens (the parent samples the
gateway's CPU there), then ``{"event": "result", ...}``. The ``hold`` mode is interactive: it
prints ``{"event": "held", ...}`` and then answers ``probe``/``status``/``quit`` lines on stdin.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import contextlib
import http.client
import itertools
import json
import random
import resource
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import gevent
import gevent.pool
import websocket  # websocket-client; sync, so gevent makes it cooperative
from gevent.event import AsyncResult, Event
from gevent.fileobject import FileObject
from gevent.lock import BoundedSemaphore, Semaphore

REQUEST_TIMEOUT = 30.0


def emit(event: str, **fields: Any) -> None:
    """One JSON line to the parent; flushed at once so it can sample the gateway right then."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def describe(e: BaseException) -> str:
    """A short, groupable error text (so 10,000 identical failures show as one line)."""
    return f"{type(e).__name__}: {e}"[:160]


def raise_nofile() -> int:
    """Each client socket is a descriptor in this process too: lift the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


# ------------------------------------------------------------------------------- clients


class HttpClient:
    """One keep-alive HTTP/1.1 connection (stdlib http.client: the cheapest client per call)."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self.headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        self.conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """Send one request; a failure closes the connection and is raised (never retried,
        because a retried POST would be a second message)."""
        if self.conn is None:
            self.conn = self._connect()
        try:
            self.conn.request(method, path, body, self.headers)
            resp = self.conn.getresponse()
            data = resp.read()
        except BaseException:
            self.close()
            raise
        if resp.will_close:
            self.close()
        return resp.status, data

    def message(self, text: str, chat: str) -> str:
        status, data = self.request("POST", "/api/v1/messages",
                                    json.dumps({"text": text, "chat": chat}).encode())
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {data[:100]!r}")
        return str(json.loads(data).get("reply", ""))

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class WsClient:
    """One WebSocket with a reader greenlet that answers pings and routes replies by id.

    The reader must always run: the gateway pings every 25 s and closes a connection whose
    pong does not come back, so even an idle held connection needs someone reading it.
    """

    def __init__(self, url: str, token: str, tag: str) -> None:
        self.ws = websocket.create_connection(
            url, header=[f"Authorization: Bearer {token}"], timeout=REQUEST_TIMEOUT,
            enable_multithread=True, skip_utf8_validation=True)
        self.ws.settimeout(None)  # the reader waits for as long as the connection is idle
        self.tag = tag
        self.seq = itertools.count(1)
        self.pending: dict[str, AsyncResult] = {}
        self.closed: str | None = None
        self.reader = gevent.spawn(self._read)

    def _read(self) -> None:
        try:
            while True:
                data = self.ws.recv()
                if not data:
                    if not self.ws.connected:
                        raise ConnectionError(f"closed by the gateway ({self.ws.status})")
                    continue
                frame = json.loads(data)
                if frame.get("type") in ("reply", "error"):
                    waiter = self.pending.pop(str(frame.get("id")), None)
                    if waiter is not None:
                        waiter.set(frame)
        except Exception as e:  # the connection is gone: fail whoever waits on it
            self.closed = describe(e)
            for waiter in self.pending.values():
                waiter.set_exception(ConnectionError(self.closed))
            self.pending.clear()

    def ask(self, text: str, chat: str) -> dict[str, Any]:
        """Send one message and wait for its final reply (reply.delta frames are ignored)."""
        if self.closed:
            raise ConnectionError(self.closed)
        mid = f"{self.tag}-{next(self.seq)}"
        waiter = AsyncResult()
        self.pending[mid] = waiter
        self.ws.send(json.dumps({"type": "message", "id": mid, "text": text, "chat": chat}))
        frame = waiter.get(timeout=REQUEST_TIMEOUT)
        if frame.get("type") != "reply":
            raise RuntimeError(f"error frame: {frame.get('code')}: {frame.get('message')}"[:160])
        return frame

    def close(self) -> None:
        """Stop the reader first (two greenlets must not read one socket), then say goodbye."""
        self.reader.kill(block=True)
        with contextlib.suppress(Exception):
            self.ws.send_close()
        with contextlib.suppress(Exception):
            self.ws.shutdown()


# ------------------------------------------------------------------------------- runners


def kind_of(reply: str | None) -> str:
    """The reply's first word: the fake model's answers start with "echo:", so anything else
    means the message went somewhere else (a skill, a command) and the row is not comparable."""
    return (reply or "").split(" ", 1)[0][:20] or "(empty)"


Call = Callable[[Any, int, int], "str | None"]
"""(client, worker number, message number; -1 = warm-up) -> the reply text."""


def closed_loop(concurrency: int, total: int, make: Callable[[int], Any],
                call: Call) -> dict[str, Any]:
    """`concurrency` workers, each sending its next request as soon as the last is answered.

    Every worker connects and sends one unmeasured warm-up request before the clock starts,
    so the numbers are steady-state, not connection set-up.
    """
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    clients: list[Any] = []
    counter = itertools.count()
    go = Event()
    ready = Semaphore(0)

    def worker(w: int) -> None:
        client = None
        try:
            client = make(w)
            call(client, w, -1)
        except Exception as e:
            errors[f"warm-up: {describe(e)}"] += 1
        ready.release()
        go.wait()
        if client is None:
            return
        while (i := next(counter)) < total:
            t = time.perf_counter()
            try:
                reply = call(client, w, i)
                latencies.append(time.perf_counter() - t)
                kinds[kind_of(reply)] += 1
            except Exception as e:
                errors[describe(e)] += 1
                with contextlib.suppress(Exception):
                    client.close()
                try:
                    client = make(w)
                except Exception as e2:
                    errors[f"reconnect: {describe(e2)}"] += 1
                    return
        clients.append(client)  # closed after the clock stops

    group = gevent.pool.Group()
    for w in range(concurrency):
        group.spawn(worker, w)
    for _ in range(concurrency):
        ready.acquire()
    emit("start")
    cpu0, t0 = time.process_time(), time.perf_counter()
    go.set()
    group.join()
    elapsed = time.perf_counter() - t0
    cpu = (time.process_time() - cpu0) / elapsed
    for client in clients:
        with contextlib.suppress(Exception):
            client.close()
    return {"latencies_ms": [x * 1000 for x in latencies], "errors": dict(errors),
            "elapsed": elapsed, "client_cpu": cpu, "reply_kinds": dict(kinds)}


def open_loop(rate: float, seconds: float, make: Callable[[int], Any],
              call: Call, warm: int,
              max_clients: int = 256) -> dict[str, Any]:
    """Requests started on a fixed schedule (`rate`/s) whatever the answers do.

    Latency counts from the scheduled start, so a gateway that falls behind shows it in p99
    instead of silently slowing the sender (coordinated omission). Clients come from a pool
    that grows while all are busy, up to `max_clients` connections (then requests wait their
    turn, and that wait is part of their latency).
    """
    total = int(rate * seconds)
    idle: list[Any] = []
    made = itertools.count()
    slots = BoundedSemaphore(max_clients)
    errors: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    latencies: list[float] = []
    for _ in range(warm):
        try:
            client = make(next(made))
            call(client, 0, -1)
            idle.append(client)
        except Exception as e:
            errors[f"warm-up: {describe(e)}"] += 1

    def one(i: int, scheduled: float) -> None:
        with slots:
            client = idle.pop() if idle else None
            try:
                if client is None:
                    client = make(next(made))
                reply = call(client, 0, i)
                latencies.append(time.perf_counter() - scheduled)
                kinds[kind_of(reply)] += 1
                idle.append(client)
            except Exception as e:
                errors[describe(e)] += 1
                if client is not None:
                    with contextlib.suppress(Exception):
                        client.close()

    group = gevent.pool.Group()
    emit("start")
    cpu0 = time.process_time()
    t0 = time.perf_counter() + 0.01
    late = 0
    for i in range(total):
        scheduled = t0 + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            gevent.sleep(delay)
        elif delay < -0.005:
            late += 1  # the sender itself fell behind: the schedule was not kept
        group.spawn(one, i, scheduled)
    group.join(timeout=REQUEST_TIMEOUT + 5)
    elapsed = time.perf_counter() - t0
    cpu = (time.process_time() - cpu0) / elapsed
    unfinished = total - len(latencies) - sum(errors.values())
    if unfinished > 0:
        errors["unfinished when the run ended"] += unfinished
    group.kill(block=False)
    for client in idle:
        with contextlib.suppress(Exception):
            client.close()
    return {"latencies_ms": [x * 1000 for x in latencies], "errors": dict(errors),
            "elapsed": elapsed, "client_cpu": cpu, "late_starts": late,
            "clients": next(made), "reply_kinds": dict(kinds)}


# ------------------------------------------------------------------------------- modes


def model_client(p: dict[str, Any]) -> Callable[[int], Any]:
    """The gateway's own Ollama provider (the `ollama` client configured as the gateway does)."""
    from gateway.models.ollama_provider import OllamaProvider

    shared = OllamaProvider(p["model_url"], p["model"], max_tokens=512)
    return lambda _w: shared


def run_mode(mode: str, p: dict[str, Any]) -> dict[str, Any]:
    host, port, token = p.get("host", "127.0.0.1"), p.get("port", 0), p.get("token", "")
    conc, total, tag = p.get("concurrency", 1), p.get("total", 0), p.get("tag", mode)
    ws_url = f"ws://{host}:{port}/ws"

    def chat_for(w: int, i: int) -> str:
        """One chat per worker (a conversation each), or a fresh chat per message."""
        return f"{tag}-{w}-{i}" if p.get("chat_each") else f"{tag}-{w}"

    if mode == "model":
        make = model_client(p)

        def call_model(provider: Any, _w: int, i: int) -> str:
            return str(provider.chat([{"role": "user", "content": f"hello {i}"}]).text)

        return closed_loop(conc, total, make, call_model)
    if mode == "healthz":
        def call_get(c: HttpClient, _w: int, _i: int) -> str:
            status, _ = c.request("GET", "/healthz")
            if status != 200:
                raise RuntimeError(f"HTTP {status}")
            return "healthz"

        return closed_loop(conc, total, lambda _w: HttpClient(host, port, token), call_get)
    if mode in ("http", "http-rate"):
        def call_http(c: HttpClient, w: int, i: int) -> str:
            return c.message(f"hello {i}", chat_for(w, i) if mode == "http" else f"{tag}-{i % 256}")

        def make_http(_w: int) -> HttpClient:
            return HttpClient(host, port, token)

        if mode == "http":
            return closed_loop(conc, total, make_http, call_http)
        return open_loop(p["rate"], p["seconds"], make_http, call_http, warm=conc)
    if mode in ("ws", "ws-rate"):
        def call_ws(c: WsClient, w: int, i: int) -> str:
            frame = c.ask(f"hello {i}", chat_for(w, i) if mode == "ws" else f"{tag}-{i % 256}")
            return str(frame.get("text", ""))

        def make_ws(w: int) -> WsClient:
            return WsClient(ws_url, token, f"{tag}{w}")

        if mode == "ws":
            return closed_loop(conc, total, make_ws, call_ws)
        return open_loop(p["rate"], p["seconds"], make_ws, call_ws, warm=conc)
    raise SystemExit(f"unknown mode {mode!r}")


def hold(p: dict[str, Any]) -> None:
    """Open `count` idle authenticated WebSockets, then answer the parent's commands."""
    limit = raise_nofile()
    url = f"ws://{p['host']}:{p['port']}/ws"
    tag = p.get("tag", "held")
    conns: list[WsClient] = []
    errors: Counter[str] = Counter()
    pool = gevent.pool.Pool(p.get("handshakes", 64))
    t0 = time.perf_counter()

    def open_one(i: int) -> None:
        try:
            conns.append(WsClient(url, p["token"], f"{tag}{i}"))
        except Exception as e:
            errors[describe(e)] += 1

    for i in range(p["count"]):
        pool.spawn(open_one, i)
    pool.join()
    emit("held", ok=len(conns), errors=dict(errors), secs=time.perf_counter() - t0,
         client_nofile=limit)
    stdin = FileObject(sys.stdin.fileno(), "r")  # cooperative: the readers keep running
    for line in stdin:
        cmd = line.strip()
        if cmd == "status":
            closed = Counter(c.closed for c in conns if c.closed)
            emit("status", open=sum(1 for c in conns if not c.closed), closed=dict(closed))
        elif cmd == "probe":
            alive = [c for c in conns if not c.closed]
            if not alive:
                emit("probe", ok=False, error="no open connection left")
                continue
            conn = random.choice(alive)
            t = time.perf_counter()
            try:
                frame = conn.ask("are you there?", f"{tag}-probe")
                emit("probe", ok=True, ms=(time.perf_counter() - t) * 1000,
                     reply=str(frame.get("text"))[:60], conn=conn.tag)
            except Exception as e:
                emit("probe", ok=False, error=describe(e), conn=conn.tag)
        elif cmd == "quit":
            break
    # No polite close of thousands of sockets: exiting closes them all at once.


def main() -> int:
    mode, params = sys.argv[1], json.loads(sys.argv[2] if len(sys.argv) > 2 else "{}")
    raise_nofile()
    if mode == "hold":
        hold(params)
        return 0
    result = run_mode(mode, params)
    emit("result", **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
