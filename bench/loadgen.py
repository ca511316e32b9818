"""The load generator: one gevent process that drives the gateway or the model for bench/run.py.

Why a separate process: the gateway is one gevent process on one core; a load generator living
in the same process (or the same core's event loop) would measure itself. Why gevent: thousands
of concurrent clients and 10,000 idle WebSockets cost one greenlet each, not one thread each.

Started by run.py as ``python bench/loadgen.py MODE '<json params>'``. It speaks JSON lines on
stdout: ``{"event": "start"}`` when the timed window opens (the parent samples CPU there), then
``{"event": "result", ...}``. The ``hold`` mode is interactive: it prints ``{"event": "held",
...}`` and then answers ``probe``/``status``/``quit`` lines on stdin. run.py also imports
`HttpClient` (unpatched, blocking) for its own probes.
"""

from __future__ import annotations

if __name__ == "__main__":  # as a process: patch before anything imports socket
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

    def __init__(self, host: str, port: int, token: str,
                 timeout: float = REQUEST_TIMEOUT) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """Send one request; a failure closes the connection and is raised (never retried,
        because a retried POST would be a second message)."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self.conn.connect()
            self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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

    def post(self, text: str, chat: str, sender: str = "") -> tuple[int, dict[str, Any]]:
        """POST /api/v1/messages: the status and the JSON body."""
        fields = {"text": text, "chat": chat, **({"sender": sender} if sender else {})}
        status, data = self.request("POST", "/api/v1/messages", json.dumps(fields).encode())
        return status, json.loads(data or b"{}")

    def message(self, text: str, chat: str, sender: str = "") -> str:
        status, body = self.post(text, chat, sender)
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {str(body)[:100]}")
        return str(body.get("reply", ""))

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


Call = Callable[[Any, int, int], str]
"""(client, worker number, message number; -1 = warm-up) -> the reply text."""


class Tally:
    """One run's latencies, errors grouped by their text, and the replies' first words: the
    fake model's answers start with "echo:", anything else went elsewhere (a skill, a command)."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()
        self.cpu0 = self.t0 = 0.0

    def start(self) -> None:
        """The clock starts now (after the warm-up), and the parent hears so."""
        emit("start")
        self.cpu0, self.t0 = time.process_time(), time.perf_counter()

    def answered(self, since: float, reply: str) -> None:
        self.latencies.append(time.perf_counter() - since)
        self.kinds[(reply or "").split(" ", 1)[0][:20] or "(empty)"] += 1

    def result(self, elapsed: float = 0.0, **extra: Any) -> dict[str, Any]:
        wall = time.perf_counter() - self.t0
        return {"latencies_ms": [x * 1000 for x in self.latencies], "errors": dict(self.errors),
                "elapsed": elapsed or wall, "client_cpu": (time.process_time() - self.cpu0) / wall,
                "reply_kinds": dict(self.kinds), **extra}


def closed_loop(concurrency: int, total: int, make: Callable[[int], Any], call: Call,
                seconds: float = 0.0) -> dict[str, Any]:
    """`concurrency` workers, each sending its next request as soon as the last is answered.

    Every worker connects and sends one unmeasured warm-up request before the clock starts,
    so the numbers are steady-state, not connection set-up. With `seconds`, the workers stop
    when that window closes and only answers inside it count (the rate is per window second).
    """
    tally, counter, go, ready, end = Tally(), itertools.count(), Event(), Semaphore(0), float("inf")
    clients: list[Any] = []

    def worker(w: int) -> None:
        client = None
        try:
            client = make(w)
            call(client, w, -1)
        except Exception as e:
            tally.errors[f"warm-up: {describe(e)}"] += 1
        ready.release()
        go.wait()
        while client is not None and (i := next(counter)) < total and (
                t := time.perf_counter()) < end:
            try:
                reply = call(client, w, i)
                if time.perf_counter() > end:
                    break
                tally.answered(t, reply)
            except Exception as e:
                tally.errors[describe(e)] += 1
                with contextlib.suppress(Exception):
                    client.close()
                try:
                    client = make(w)
                except Exception as e2:
                    tally.errors[f"reconnect: {describe(e2)}"] += 1
                    return
        clients.append(client)  # closed after the clock stops

    group = gevent.pool.Group()
    for w in range(concurrency):
        group.spawn(worker, w)
    for _ in range(concurrency):
        ready.acquire()
    tally.start()
    end = tally.t0 + seconds if seconds else end
    go.set()
    group.join()
    result = tally.result(seconds)
    for client in clients:
        with contextlib.suppress(Exception):
            client.close()
    return result


def open_loop(rate: float, seconds: float, make: Callable[[int], Any], call: Call, warm: int,
              max_clients: int = 256) -> dict[str, Any]:
    """Requests started on a fixed schedule (`rate`/s) whatever the answers do.

    Latency counts from the scheduled start, so a gateway that falls behind shows it in p99
    instead of silently slowing the sender (coordinated omission). Clients come from a pool
    that grows while all are busy, up to `max_clients` connections (then requests wait their
    turn, and that wait is part of their latency).
    """
    total, idle, made, slots = int(rate * seconds), [], itertools.count(), BoundedSemaphore(
        max_clients)
    tally = Tally()
    for _ in range(warm):
        try:
            client = make(next(made))
            call(client, 0, -1)
            idle.append(client)
        except Exception as e:
            tally.errors[f"warm-up: {describe(e)}"] += 1

    def one(i: int, scheduled: float) -> None:
        with slots:
            client: Any = idle.pop() if idle else None
            try:
                client = client or make(next(made))
                tally.answered(scheduled, call(client, 0, i))
                idle.append(client)
            except Exception as e:
                tally.errors[describe(e)] += 1
                if client is not None:
                    with contextlib.suppress(Exception):
                        client.close()

    group, late = gevent.pool.Group(), 0
    tally.start()
    t0 = time.perf_counter() + 0.01
    for i in range(total):
        scheduled = t0 + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            gevent.sleep(delay)
        elif delay < -0.005:
            late += 1  # the sender itself fell behind: the schedule was not kept
        group.spawn(one, i, scheduled)
    group.join(timeout=REQUEST_TIMEOUT + 5)
    if (unfinished := total - len(tally.latencies) - tally.errors.total()) > 0:
        tally.errors["unfinished when the run ended"] += unfinished
    group.kill(block=False)
    for client in idle:
        with contextlib.suppress(Exception):
            client.close()
    return tally.result(late_starts=late, clients=next(made))


# ------------------------------------------------------------------------------- modes


def run_mode(mode: str, p: dict[str, Any]) -> dict[str, Any]:
    """One measurement. Params: concurrency, total (closed loop; `seconds` makes it a window)
    or rate and seconds (the ``-rate`` modes); texts (``{i}`` is the message number), chats
    (message i goes to chat i % chats; 0: one chat per worker), expect (a text the i-th reply
    must hold: counted as hits), sender."""
    host, port, token = p.get("host", "127.0.0.1"), p.get("port", 0), p.get("token", "")
    conc, tag, chats = p.get("concurrency", 1), p.get("tag", mode), p.get("chats", 0)
    texts, expect = p.get("texts") or ["hello {i}"], p.get("expect")
    hits = [0]
    make: Callable[[int], Any]

    def text_for(i: int) -> str:
        return str(texts[i % len(texts)]).replace("{i}", str(i))

    def chat_for(w: int, i: int) -> str:
        if mode.endswith("-rate"):  # an open loop spreads over 256 chats
            return f"{tag}-{i % 256}"
        return f"{tag}-{w}-{i % chats if i >= 0 else 'warm'}" if chats else f"{tag}-{w}"

    def checked(reply: str, i: int) -> str:
        if expect and i >= 0:
            hits[0] += expect[i % len(expect)] in reply
        return reply

    if mode == "model":
        from gateway.models.ollama_provider import OllamaProvider

        shared = OllamaProvider(p["model_url"], p["model"], max_tokens=512)

        def make(_w: int) -> Any:
            return shared

        def call(c: Any, w: int, i: int) -> str:
            return str(c.chat([{"role": "user", "content": f"hello {i}"}]).text)
    elif mode in ("healthz", "http", "http-rate"):
        def make(_w: int) -> Any:
            return HttpClient(host, port, token)

        def call(c: Any, w: int, i: int) -> str:
            if mode == "healthz":
                status, _ = c.request("GET", "/healthz")
                if status != 200:
                    raise RuntimeError(f"HTTP {status}")
                return "healthz"
            return checked(c.message(text_for(i), chat_for(w, i), p.get("sender", "")), i)
    elif mode in ("ws", "ws-rate"):
        def make(w: int) -> Any:
            return WsClient(f"ws://{host}:{port}/ws", token, f"{tag}{w}")

        def call(c: Any, w: int, i: int) -> str:
            return checked(str(c.ask(text_for(i), chat_for(w, i)).get("text", "")), i)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    if mode.endswith("-rate"):
        result = open_loop(p["rate"], p["seconds"], make, call, warm=conc)
    else:
        result = closed_loop(conc, p.get("total", 0), make, call, p.get("seconds", 0.0))
    return {**result, "hits": hits[0]}


def hold(p: dict[str, Any]) -> None:
    """Open `count` idle authenticated WebSockets, then answer the parent's commands."""
    limit = raise_nofile()
    url = f"ws://{p.get('host', '127.0.0.1')}:{p['port']}/ws"
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
