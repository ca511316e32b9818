"""The load generator for bench/run.py: a separate gevent process, so the load is not measured
as part of the gateway's one core and 10,000 clients cost one greenlet each, not a thread.

``python bench/loadgen.py MODE '<json params>'`` prints JSON lines: ``start`` when the timed
window opens (the parent samples CPU there), then ``result``; ``hold`` prints ``held`` and then
answers ``probe``/``status``/``quit`` lines on stdin. run.py imports `HttpClient` (unpatched).
Clients: `HttpClient` (`/api/v1/messages`, `/v1/chat/completions`), `WsClient` (`/ws`),
`MqttDevice` (a paho-mqtt device through the broker).
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
import paho.mqtt.client as mqtt
import websocket  # websocket-client; sync, so gevent makes it cooperative
from gevent.event import AsyncResult, Event
from gevent.fileobject import FileObject
from gevent.lock import BoundedSemaphore, Semaphore
from paho.mqtt.enums import CallbackAPIVersion

REQUEST_TIMEOUT = 30.0
Call = Callable[[Any, int, int], str]  # (client, worker, message number; -1 = warm-up) -> reply


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()  # at once: the parent samples the gateway right then


def describe(e: BaseException) -> str:
    """A short error text, so 10,000 identical failures group as one line."""
    return f"{type(e).__name__}: {e}"[:160]


def raise_nofile() -> int:
    """Each client socket is a descriptor here too: lift the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


class HttpClient:
    """One keep-alive HTTP/1.1 connection (http.client: the cheapest client per call)."""

    def __init__(self, host: str, port: int, token: str,
                 timeout: float = REQUEST_TIMEOUT) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """A failure closes the connection and is raised, never retried (a second message)."""
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
        fields = {"text": text, "chat": chat, **({"sender": sender} if sender else {})}
        status, data = self.request("POST", "/api/v1/messages", json.dumps(fields).encode())
        return status, json.loads(data or b"{}")

    def message(self, text: str, chat: str, sender: str = "") -> str:
        status, body = self.post(text, chat, sender)
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {str(body)[:100]}")
        return str(body.get("reply", ""))

    def completion(self, text: str, chat: str, model: str, stream: bool) -> str:
        """`POST /v1/chat/completions` as the openai SDK sends it; streamed: every event read
        (to `data: [DONE]`), the content deltas joined."""
        body = {"model": model, "messages": [{"role": "user", "content": text}], "user": chat,
                "stream": stream}
        status, data = self.request("POST", "/v1/chat/completions", json.dumps(body).encode())
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {data[:100]!r}")
        if not stream:
            return str(json.loads(data)["choices"][0]["message"]["content"])
        events = [line[6:] for line in data.decode().splitlines() if line.startswith("data: ")]
        if events[-1:] != ["[DONE]"]:
            raise RuntimeError(f"stream did not end with [DONE]: {data[-100:]!r}")
        return "".join(str(json.loads(e)["choices"][0]["delta"].get("content") or "")
                       for e in events[:-1] if json.loads(e)["choices"])

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class WsClient:
    """One WebSocket whose reader greenlet routes replies by id and always runs: the gateway
    closes a connection that does not answer its pings, even an idle held one."""

    def __init__(self, url: str, token: str, tag: str) -> None:
        self.ws = websocket.create_connection(
            url, header=[f"Authorization: Bearer {token}"], timeout=REQUEST_TIMEOUT,
            enable_multithread=True, skip_utf8_validation=True)
        self.ws.settimeout(None)  # the reader waits for as long as the connection is idle
        self.tag, self.seq = tag, itertools.count(1)
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
                if frame.get("type") in ("reply", "error") and (
                        waiter := self.pending.pop(str(frame.get("id")), None)):
                    waiter.set(frame)
        except Exception as e:  # the connection is gone: fail whoever waits on it
            self.closed = describe(e)
            for waiter in self.pending.values():
                waiter.set_exception(ConnectionError(self.closed))
            self.pending.clear()

    def ask(self, text: str, chat: str) -> dict[str, Any]:
        """Send one message, wait for its final reply (reply.delta frames are ignored)."""
        if self.closed:
            raise ConnectionError(self.closed)
        mid, waiter = f"{self.tag}-{next(self.seq)}", AsyncResult()
        self.pending[mid] = waiter
        self.ws.send(json.dumps({"type": "message", "id": mid, "text": text, "chat": chat}))
        frame = waiter.get(timeout=REQUEST_TIMEOUT)
        if frame.get("type") != "reply":
            raise RuntimeError(f"error frame: {frame.get('code')}: {frame.get('message')}"[:160])
        return frame

    def close(self) -> None:
        self.reader.kill(block=True)  # first: two greenlets must not read one socket
        with contextlib.suppress(Exception):
            self.ws.send_close()
        with contextlib.suppress(Exception):
            self.ws.shutdown()


class MqttDevice:
    """One device as README's "Devices over MQTT" has it: client id `name`, `{"id", "text"}`
    to `<prefix>/in/<name>` and the reply of that id from `<prefix>/out/<name>`, QoS 1 both
    ways; paho's network loop is a greenlet here (patched threads). Ids are unique per
    process: the gateway answers a device's repeated id once."""

    def __init__(self, port: int, name: str, nagle: bool, prefix: str = "moltbot") -> None:
        self.name, self.topic, self.seq = name, f"{prefix}/in/{name}", itertools.count(1)
        self.nonce = f"{random.getrandbits(32):08x}"
        self.pending: dict[str, AsyncResult] = {}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name,
                                  protocol=mqtt.MQTTv5)
        self.client.on_message = self._reply
        subscribed = AsyncResult()
        self.client.on_subscribe = lambda *_: subscribed.set(True)
        self.client.connect("127.0.0.1", port, keepalive=60)
        if not nagle:  # paho leaves Nagle on: each publish waits for the last one's ACK
            self.client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.loop_start()
        self.client.subscribe(f"{prefix}/out/{name}", qos=1)
        subscribed.get(timeout=REQUEST_TIMEOUT)

    def _reply(self, _client: Any, _userdata: Any, message: Any) -> None:
        body = json.loads(message.payload)
        if waiter := self.pending.pop(str(body.get("id")), None):
            waiter.set(body)

    def ask(self, text: str) -> str:
        mid, waiter = f"{self.nonce}-{next(self.seq)}", AsyncResult()
        self.pending[mid] = waiter
        self.client.publish(self.topic, json.dumps({"id": mid, "text": text}), qos=1)
        body = waiter.get(timeout=REQUEST_TIMEOUT)
        if body.get("error"):
            raise RuntimeError(f"error reply: {body['error']}: {body.get('text')}"[:160])
        return str(body.get("text", ""))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def close_all(clients: list[Any]) -> None:
    for client in clients:
        with contextlib.suppress(Exception):
            client.close()


class Tally:
    """Latencies, errors grouped by text, and the replies' first words (the fake model's
    start with "echo:"; anything else came from a skill or a command)."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()
        self.cpu0 = self.t0 = 0.0

    def start(self) -> None:
        emit("start")
        self.cpu0, self.t0 = time.process_time(), time.perf_counter()

    def answered(self, since: float, reply: str) -> None:
        self.latencies.append(time.perf_counter() - since)
        self.kinds[(reply or "").split(" ", 1)[0][:20] or "(empty)"] += 1

    def warm(self, make: Callable[[int], Any], call: Call, w: int, keep: bool) -> Any:
        """A client that has sent one unmeasured request (`keep`: or whose request failed)."""
        client = None
        try:
            client = make(w)
            call(client, w, -1)
            return client
        except Exception as e:
            self.errors[f"warm-up: {describe(e)}"] += 1
            return client if keep else None

    def result(self, elapsed: float = 0.0, **extra: Any) -> dict[str, Any]:
        wall = time.perf_counter() - self.t0
        return {"latencies_ms": [x * 1000 for x in self.latencies], "errors": dict(self.errors),
                "elapsed": elapsed or wall, "client_cpu": (time.process_time() - self.cpu0) / wall,
                "reply_kinds": dict(self.kinds), **extra}


def closed_loop(concurrency: int, total: int, make: Callable[[int], Any], call: Call,
                seconds: float = 0.0) -> dict[str, Any]:
    """Each worker sends its next request when the last is answered; the clock starts after
    every worker's warm-up; with `seconds`, only answers inside that window count."""
    tally, counter, go, ready, end = Tally(), itertools.count(), Event(), Semaphore(0), float("inf")
    clients: list[Any] = []

    def worker(w: int) -> None:
        client = tally.warm(make, call, w, keep=True)
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
                close_all([client])
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
    close_all(clients)
    return result


def open_loop(rate: float, seconds: float, make: Callable[[int], Any], call: Call,
              warm: int) -> dict[str, Any]:
    """Requests start on a fixed schedule and latency counts from it, so falling behind shows
    in p99 (no coordinated omission); up to 256 connections, then requests queue."""
    total, made, tally = int(rate * seconds), itertools.count(), Tally()
    slots = BoundedSemaphore(256)
    idle = [c for c in (tally.warm(make, call, next(made), False) for _ in range(warm)) if c]

    def one(i: int, scheduled: float) -> None:
        with slots:
            client: Any = idle.pop() if idle else None
            try:
                client = client or make(next(made))
                tally.answered(scheduled, call(client, 0, i))
                idle.append(client)
            except Exception as e:
                tally.errors[describe(e)] += 1
                close_all([client])  # None: nothing to close

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
    close_all(idle)
    return tally.result(late_starts=late, clients=next(made))


def run_mode(mode: str, p: dict[str, Any]) -> dict[str, Any]:
    """One measurement. Message i has texts[i] ({i} replaced) and goes to chat i % chats (0:
    one chat per worker, which `turns` unmeasured messages fill first); `expect` holds a text
    the i-th reply must contain (counted as hits)."""
    port, token, tag, chats = p.get("port", 0), p.get("token", ""), p["tag"], p.get("chats", 0)
    texts, expect, hits = p.get("texts") or ["hello {i}"], p.get("expect"), [0]
    conc, kind = p.get("concurrency", 1), mode.removesuffix("-rate")
    if mode not in ("model", "healthz", "http", "http-rate", "ws", "ws-rate", "mqtt", "openai",
                    "openai-stream"):
        raise SystemExit(f"unknown mode {mode!r}")
    if kind == "model":  # the gateway's own client, shared as the gateway shares it
        from gateway.models.ollama_provider import OllamaProvider

        model = OllamaProvider(p["model_url"], p["model"], max_tokens=512)
        return {**closed_loop(conc, p.get("total", 0), lambda w: model, lambda c, w, i: str(
            c.chat([{"role": "user", "content": f"hello {i}"}]).text)), "hits": 0}

    def connect(w: int) -> Any:
        if kind == "ws":
            return WsClient(f"ws://127.0.0.1:{port}/ws", token, f"{tag}{w}")
        if kind == "mqtt":
            return MqttDevice(p["mqtt_port"], f"{tag}-{w}", p.get("nagle", False))
        return HttpClient("127.0.0.1", port, token)

    def make(w: int) -> Any:
        """A client whose chat already holds `turns` answered messages (before the clock)."""
        client = connect(w)
        for _ in range(p.get("turns", 0)):
            call(client, w, -1)
        return client

    def call(c: Any, w: int, i: int) -> str:
        if kind == "healthz":
            if (status := c.request("GET", "/healthz")[0]) != 200:
                raise RuntimeError(f"HTTP {status}")
            return "healthz"
        text = str(texts[i % len(texts)]).replace("{i}", str(i))
        if mode.endswith("-rate"):  # an open loop spreads over 256 chats
            chat = f"{tag}-{i % 256}"
        else:
            chat = f"{tag}-{w}-{i % chats if i >= 0 else 'warm'}" if chats else f"{tag}-{w}"
        if kind == "ws":
            reply = str(c.ask(text, chat).get("text", ""))
        elif kind == "mqtt":  # the device is the chat
            reply = c.ask(text)
        elif kind.startswith("openai"):
            reply = c.completion(text, chat, p["model"], kind == "openai-stream")
        else:
            reply = c.message(text, chat, p.get("sender", ""))
        if expect and i >= 0:
            hits[0] += expect[i % len(expect)] in reply
        return reply

    if mode.endswith("-rate"):
        result = open_loop(p["rate"], p["seconds"], make, call, warm=conc)
    else:
        result = closed_loop(conc, p.get("total", 0), make, call, p.get("seconds", 0.0))
    return {**result, "hits": hits[0]}


def hold(p: dict[str, Any], limit: int) -> None:
    """Open `count` idle authenticated WebSockets, then answer the parent's commands."""
    conns: list[WsClient] = []
    errors: Counter[str] = Counter()
    pool, t0 = gevent.pool.Pool(64), time.perf_counter()

    def open_one(i: int) -> None:
        try:
            conns.append(WsClient(f"ws://127.0.0.1:{p['port']}/ws", p["token"], f"{p['tag']}{i}"))
        except Exception as e:
            errors[describe(e)] += 1

    for i in range(p["count"]):
        pool.spawn(open_one, i)
    pool.join()
    emit("held", ok=len(conns), errors=dict(errors), secs=time.perf_counter() - t0,
         client_nofile=limit)
    for line in FileObject(sys.stdin.fileno(), "r"):  # cooperative: the readers keep running
        alive = [c for c in conns if not c.closed]
        if (cmd := line.strip()) == "status":
            emit("status", open=len(alive), closed=dict(Counter(c.closed for c in conns
                                                                if c.closed)))
        elif cmd == "probe" and not alive:
            emit("probe", ok=False, error="no open connection left")
        elif cmd == "probe":
            conn, t = random.choice(alive), time.perf_counter()
            try:
                frame = conn.ask("are you there?", f"{p['tag']}-probe")
                emit("probe", ok=True, ms=(time.perf_counter() - t) * 1000,
                     reply=str(frame.get("text"))[:60], conn=conn.tag)
            except Exception as e:
                emit("probe", ok=False, error=describe(e), conn=conn.tag)
        elif cmd == "quit":
            break  # no polite close of thousands of sockets: exiting closes them all


if __name__ == "__main__":
    mode, params = sys.argv[1], json.loads(sys.argv[2] if len(sys.argv) > 2 else "{}")
    if mode == "hold":
        hold(params, raise_nofile())
    else:
        raise_nofile()
        emit("result", **run_mode(mode, params))
