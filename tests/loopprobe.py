"""Does a library keep gevent's loop turning? One probe per library, each in a fresh child.

The gateway runs on one gevent loop after `monkey.patch_all(queue=False)`: a library whose
waits go through patched sockets, selectors and locks lets every other conversation run
meanwhile; one that waits in C (a busy handler's sleep, an unpatched queue) or computes for
long stops them all, and one whose own threads wait on a C primitive can deadlock the loop
(watchdog 7.1.1, issue 13). So each probe runs in a new Python process that patches first,
exactly as `gateway.server` does, then uses the library the way the gateway code does while a
ticker greenlet sleeps 10 ms at a time and records the largest interval between its ticks.

A loop that keeps turning shows ~10-20 ms; a block shows its length; a deadlock shows no
result at all: the parent kills the child (its whole process group) at the probe's time
limit. The services a probe talks to are real and, where the point is to see a *wait*, slow
on purpose: the Secret Service is paused with SIGSTOP for 0.3 s, the SMTP server and the
model server answer after 0.3 s, a second process holds SQLite's write lock for 2 s.

Used by `bench/run.py loop-libraries` (prints the table) and `tests/test_loop_libraries.py`
(asserts). A child is `python -c CHILD_BOOT NAME ARGS_JSON` in the repository root.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fakes.mail_server import MailServer

ROOT = Path(__file__).resolve().parent.parent
TICK = 0.01  # the ticker's sleep: a free loop shows intervals just above it
BLOCK_BOUND = 0.5  # the bound: a larger gap is a blocked loop for the tests
SAFE_BOUND = 0.05  # the table's verdict: below this the loop only paused for ordinary CPU work
STALL = 0.3  # how long a slowed service keeps a call waiting
LOCK_HOLD = 2.0  # how long the second process holds SQLite's write lock
MARK = "LOOPPROBE "
CHILD_BOOT = ("from gevent import monkey; monkey.patch_all(queue=False); import sys; "
              "from tests.loopprobe import child_main; child_main(sys.argv[1], sys.argv[2])")
KEYRING_BOOT = ("echo -n throwaway | gnome-keyring-daemon --unlock --components=secrets "
                ">/dev/null && exec \"$@\"")


# -- results ------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What one probe saw; `largest_gap_ms` is None when the child never reported."""

    name: str
    library: str = ""
    version: str = ""
    operation: str = ""
    calls: int = 0
    arrived: bool = False
    largest_gap_ms: float | None = None
    ticks: int = 0
    seconds: float = 0.0
    note: str = ""
    error: str = ""
    output: str = ""  # the child's stderr tail, for a failure message

    @property
    def verdict(self) -> str:
        if self.largest_gap_ms is None:
            return "deadlock" if self.error.startswith("timed out") else "failed"
        if not self.arrived:
            return "failed"
        return "greenlet-safe" if self.largest_gap_ms < SAFE_BOUND * 1000 else "blocks the loop"


@dataclass
class Probe:
    """One library at work: `run` does `calls` operations and says whether results arrived."""

    library: str  # the distribution whose version is shown
    operation: str
    calls: int
    run: Callable[[], bool]
    version: str = ""
    note: Callable[[], str] = field(default=lambda: "")
    cleanup: Callable[[], None] = field(default=lambda: None)


# -- the child ----------------------------------------------------------------------------
class Ticker:
    """A greenlet that sleeps `TICK` at a time; the largest interval between two of its ticks
    is how long the loop was kept from running anything else."""

    def __init__(self) -> None:
        self.largest = 0.0
        self.ticks = 0
        self._last = 0.0
        self._running = False

    def _run(self) -> None:
        import gevent

        while self._running:
            gevent.sleep(TICK)
            now = time.perf_counter()
            self.largest = max(self.largest, now - self._last)
            self._last = now
            self.ticks += 1

    @contextlib.contextmanager
    def watching(self) -> Iterator[Ticker]:
        import gevent

        self._running = True
        self._last = time.perf_counter()
        worker = gevent.spawn(self._run)
        gevent.sleep(TICK * 2)  # the ticker is running before the work starts
        self.largest, self.ticks, self._last = 0.0, 0, time.perf_counter()
        try:
            yield self
        finally:
            # a block that lasted to the end of the work has not been ticked away yet
            self.largest = max(self.largest, time.perf_counter() - self._last)
            self._running = False
            worker.join(TICK * 10)


def child_main(name: str, args_json: str) -> None:
    """Inside the patched child: set the probe up, measure its work, print one JSON line."""
    from importlib.metadata import version

    probe = PROBES[name](json.loads(args_json))
    ticker = Ticker()
    result: dict[str, Any] = {"library": probe.library, "operation": probe.operation,
                              "calls": probe.calls,
                              "version": probe.version or version(probe.library)}
    began = time.perf_counter()
    try:
        with ticker.watching():
            result["arrived"] = bool(probe.run())
    except Exception as e:  # reported, not raised: the parent shows it in the table
        result.update(arrived=False, error=f"{type(e).__name__}: {e}"[:300])
    finally:
        probe.cleanup()
    result.update(largest_gap_ms=round(ticker.largest * 1000, 1), ticks=ticker.ticks,
                  seconds=round(time.perf_counter() - began, 2), note=probe.note())
    print(MARK + json.dumps(result), flush=True)


def _resume_later(pid: int, seconds: float) -> subprocess.Popen[bytes]:
    """SIGCONT `pid` after `seconds` from a separate process, so a blocked loop cannot keep
    the resume from happening (that would turn a block into a deadlock)."""
    return subprocess.Popen(["sh", "-c", f"sleep {seconds}; kill -CONT {pid}"])


def _secret_service_pid() -> int:
    """The process that owns org.freedesktop.secrets on this session bus (our own daemon,
    never another session's)."""
    from jeepney import DBusAddress, new_method_call  # type: ignore[import-untyped]
    from jeepney.io.blocking import open_dbus_connection  # type: ignore[import-untyped]

    bus = DBusAddress("/org/freedesktop/DBus", bus_name="org.freedesktop.DBus",
                      interface="org.freedesktop.DBus")
    with open_dbus_connection(bus="SESSION") as conn:
        reply = conn.send_and_get_reply(new_method_call(
            bus, "GetConnectionUnixProcessID", "s", ("org.freedesktop.secrets",)))
    return int(reply.body[0])


def probe_keyring(args: dict[str, Any]) -> Probe:
    """`moltbot secret set` and the `${keyring:NAME}` lookup of a config load, through the real
    Secret Service, which is paused for `STALL` s before the first call."""
    from gateway.common.secrets import lookup_secret, secure_backend, store_secret

    secure_backend()  # the first use resolves the backend (imports, entry points): not a wait
    pid, value, calls = _secret_service_pid(), "s3cret value", int(args.get("calls", 10))
    resumers: list[subprocess.Popen[bytes]] = []

    def run() -> bool:
        os.kill(pid, signal.SIGSTOP)
        resumers.append(_resume_later(pid, STALL))
        store_secret("loopprobe", value)
        return all(lookup_secret("loopprobe") == value for _ in range(calls))

    def cleanup() -> None:
        for resumer in resumers:
            resumer.wait(10)
        os.kill(pid, signal.SIGCONT)

    return Probe("keyring", f"set + {calls} gets, Secret Service paused {STALL} s", calls + 1,
                 run, cleanup=cleanup,
                 note=lambda: "SecretStorage/jeepney over the D-Bus socket")


def probe_smtp(args: dict[str, Any]) -> Probe:
    """The alert's `SmtpSender.send_mail`: STARTTLS and login against aiosmtpd, which takes
    `STALL` s to accept each mail."""
    import ssl

    from gateway.observe.alerting.config import SmtpNotify
    from gateway.observe.alerting.senders import SmtpSender

    config = SmtpNotify.model_validate({
        "type": "smtp", "host": "127.0.0.1", "port": args["port"], "starttls": True,
        "username": args["user"], "password": args["password"], "from": "bot@example.test",
        "to": ["owner@example.test"], "timeout": 10})
    sender = SmtpSender(config, ssl.create_default_context(cafile=args["cafile"]))
    calls = int(args.get("calls", 3))

    def run() -> bool:
        for i in range(calls):
            sender.send_mail(f"loop probe {i}", "the loop kept turning")
        return True

    return Probe("smtplib", f"send_mail x{calls} (STARTTLS, login), server slow {STALL} s",
                 calls, run, version=f"Python {sys.version.split()[0]}",
                 note=lambda: "mail accepted by aiosmtpd")


def _new_store(path: str) -> Any:
    from gateway.core.store import Store

    return Store(f"sqlite:///{path}")


def _message(i: int) -> Any:
    from gateway.core.message import Message

    return Message(channel="http", sender="probe", chat=f"c{i}", text=f"hello {i}")


def _sqlite_version() -> str:
    import sqlite3
    from importlib.metadata import version

    return f"{version('SQLAlchemy')} / SQLite {sqlite3.sqlite_version}"


HOLDER = ("import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
          "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); "
          "time.sleep(float(sys.argv[2])); c.execute('COMMIT')")


def probe_sqlite(args: dict[str, Any]) -> Probe:
    """A message's two writes (`Store.add_message`, `finish_message`) from several greenlets
    at once, as concurrent messages make them; with `locked`, while another process (the
    CLI's `token create`, the console) holds the write lock for `LOCK_HOLD` s."""
    import gevent

    path = str(Path(args["dir"]) / "moltbot.db")
    store = _new_store(path)
    store.add_message(_message(-1), None)  # schema and a pooled connection exist
    calls, locked = int(args.get("calls", 5)), bool(args.get("locked"))
    holder: list[subprocess.Popen[str]] = []
    if locked:
        holder.append(subprocess.Popen([sys.executable, "-c", HOLDER, path, str(LOCK_HOLD)],
                                       stdout=subprocess.PIPE, text=True))
        assert holder[0].stdout is not None and holder[0].stdout.readline() == "locked\n"

    def both(msg: Any) -> None:  # a message's two writes, as the pipeline makes them
        store.add_message(msg, None)
        store.finish_message(msg.id, session_id=None, reply="ok", error=None, route="chat",
                             trace=[])

    def run() -> bool:
        sent = [_message(i) for i in range(calls)]
        gevent.joinall([gevent.spawn(both, m) for m in sent], raise_error=True)
        stored = [store.get_message(m.id) for m in sent]
        return all(m is not None and m.status == "answered" for m in stored)

    def cleanup() -> None:
        for proc in holder:
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
        store.close()

    waited = f" while another process holds the write lock {LOCK_HOLD} s" if locked else ""
    return Probe("SQLAlchemy", f"Store.add_message + finish_message x{calls} in greenlets"
                 f"{waited}", calls, run, version=_sqlite_version(), cleanup=cleanup,
                 note=lambda: "busy wait" if locked else "uncontended")


def probe_ollama(args: dict[str, Any]) -> Probe:
    """`OllamaProvider.chat` (the lean client on `http.client`, `models.json_client`)
    against the fake model answering after `STALL` s; every second call streams."""
    from gateway.models.ollama_provider import OllamaProvider

    provider = OllamaProvider(args["url"], "fake-model", max_tokens=32)
    calls = int(args.get("calls", 4))
    deltas: list[str] = []

    def run() -> bool:
        texts = [provider.chat([{"role": "user", "content": f"hello {i}"}],
                               on_delta=deltas.append if i % 2 else None).text
                 for i in range(calls)]
        return all(texts) and bool(deltas)

    return Probe("ollama", f"chat x{calls} (half streamed), model slow {STALL} s", calls, run,
                 version=f"http.client (Python {sys.version.split()[0]})",
                 cleanup=provider.close,
                 note=lambda: f"{len(deltas)} streamed pieces")


def _yielded(func: Callable[..., Any], *args: Any) -> Any:
    """`func(*args)` after letting the loop run: each request is its own greenlet in the
    gateway, so a gap should show one call's length, not a burst of them back to back."""
    import gevent

    gevent.sleep(0)
    return func(*args)


def _versions(*dists: str) -> str:
    from importlib.metadata import version

    return " / ".join(f"{d} {version(d)}" for d in dists)


def probe_prometheus_update(args: dict[str, Any]) -> Probe:
    """The message path's metric calls in multiprocess mode (values in mmapped files)."""
    import gevent

    from gateway.observe.metrics import Metrics

    metrics, calls = Metrics(), int(args.get("calls", 5000))

    def run() -> bool:
        for i in range(calls):
            gevent.sleep(0)  # one message at a time, as the gateway's greenlets take turns
            with metrics.track("http", f"s{i % 50}") as m:
                metrics.model_call("llama2", "http://127.0.0.1:11434", 0.01, ok=True,
                                   channel="http", prompt_tokens=100, completion_tokens=20)
                m.route, m.model = "chat", "llama2"
        return b"moltbot_messages_total" in metrics.exposition()[0]

    return Probe("prometheus_client", f"track + model_call x{calls} (inc/observe, multiprocess)",
                 calls, run, cleanup=metrics.close)


def probe_prometheus_collect(args: dict[str, Any]) -> Probe:
    """`GET /metrics` in multiprocess mode over the files of `workers` other processes."""
    from gateway.observe.metrics import Metrics

    metrics = Metrics()
    for i in range(50):
        with metrics.track("http", f"s{i}") as m:
            metrics.model_call("llama2", "e", 0.01, ok=True, channel="http")
            m.route = "chat"
    folder, pid = Path(metrics.multiprocess_dir or ""), os.getpid()
    workers, calls = int(args.get("workers", 100)), int(args.get("calls", 5))
    for own in folder.glob(f"*_{pid}.db"):  # other workers' files, under pids that do not run
        for fake in range(workers):
            shutil.copy(own, folder / own.name.replace(f"_{pid}.db", f"_{4_000_000 + fake}.db"))
    files = len(list(folder.glob("*.db")))

    def run() -> bool:
        bodies = [_yielded(metrics.exposition)[0] for _ in range(calls)]
        return all(b"moltbot_messages_total" in body for body in bodies)

    return Probe("prometheus_client", f"/metrics collect x{calls} over {files} files", calls,
                 run, cleanup=metrics.close, note=lambda: f"{files} .db files, CPU and file reads")


def probe_limits(args: dict[str, Any]) -> Probe:
    """The rate-limit guard's `hit` on the storage the gateway configures by default
    (`auth.rate_limit.storage: memory://`), over many client addresses. `MemoryStorage`
    starts a `threading.Timer` (a greenlet once patched) to expire entries whenever the last
    one has finished; each new one is counted."""
    import gevent

    from gateway.guards.rate_limit import new_limiter, parse_rate

    limiter, item = new_limiter("memory://"), parse_rate("1000/min")
    storage: Any = limiter.storage
    calls, addresses = int(args.get("calls", 20000)), int(args.get("addresses", 2000))
    timers = {id(storage.timer)}

    def run() -> bool:
        allowed = 0
        for i in range(calls):
            allowed += limiter.hit(item, "ip", f"10.0.{i % addresses // 256}.{i % 256}")
            timers.add(id(storage.timer))
            if i % 500 == 0:
                gevent.sleep(0.02)  # messages arrive over time: the expiry timer runs between
        return allowed == calls

    return Probe("limits", f"moving-window hit x{calls} over {addresses} addresses (memory://)",
                 calls, run, note=lambda: f"{len(timers)} threading.Timer started (greenlets)")


def probe_jieba(args: dict[str, Any]) -> Probe:
    """The first Chinese text the knowledge search tokenizes loads jieba's dictionary; with
    `pool`, that first call runs on gevent's thread pool as `reload.off_loop` runs indexing;
    with `sliced`, the dictionary is built first the way the gateway's start builds it (on
    the loop, in slices with `gevent.idle` between them)."""
    import gevent
    from gevent import get_hub

    from gateway.knowledge.search import load_dictionary, tokenize

    pool, sliced = bool(args.get("pool")), bool(args.get("sliced"))
    text = "如何安装网关并连接本地模型"

    def run() -> bool:
        if sliced:
            load_dictionary(pause=gevent.idle)
        words = get_hub().threadpool.apply(tokenize, (text,)) if pool else tokenize(text)
        return "安装" in words

    where = ("in slices on the loop (load_dictionary)" if sliced
             else "on gevent's thread pool" if pool else "on the loop")
    return Probe("jieba", f"first tokenize (dictionary load) {where}", 1, run,
                 note=lambda: "CPU")


def probe_psutil(args: dict[str, Any]) -> Probe:
    """What `/api/v1/stats` and `/metrics` read with psutil: the gateway's process tree (here
    with two children, as the skill hosts are) and the machine."""
    from gateway.observe.metrics import Metrics

    children = [subprocess.Popen(["sleep", "30"]) for _ in range(2)]
    metrics, calls = Metrics(), int(args.get("calls", 100))

    def run() -> bool:
        for _ in range(calls):
            snap = _yielded(metrics.snapshot, 60)
            body = _yielded(metrics.exposition)[0]
        return snap["process"]["processes"] == 3 and b"moltbot_process_cpu_seconds" in body

    def cleanup() -> None:
        for child in children:
            child.kill()
            child.wait()

    return Probe("psutil", f"stats snapshot + /metrics x{calls} (process tree of 3)", calls,
                 run, cleanup=cleanup, note=lambda: "reads of /proc")


def probe_paho(args: dict[str, Any]) -> Probe:
    """paho-mqtt's own network thread (`loop_start`) against mosquitto: subscribe, publish
    QoS 1 to ourselves and wait for every message to come back."""
    import threading

    import paho.mqtt.client as mqtt

    calls, got = int(args.get("calls", 50)), []
    done, subscribed = threading.Event(), threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="loopprobe")

    def on_message(_client: Any, _userdata: Any, message: Any) -> None:
        got.append(message.payload)
        if len(got) == calls:
            done.set()

    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()

    def run() -> bool:
        client.connect("127.0.0.1", int(args["port"]), keepalive=30)
        client.loop_start()
        client.subscribe("moltbot/in/+", qos=1)
        if not subscribed.wait(10):
            return False
        for i in range(calls):
            client.publish(f"moltbot/in/c{i % 3}", f"hello {i}", qos=1)
        arrived = done.wait(10)
        client.disconnect()
        client.loop_stop()
        return arrived

    return Probe("paho-mqtt", f"loop_start, subscribe, publish x{calls} QoS 1 and receive",
                 calls, run, note=lambda: f"{len(got)} received; network loop in its thread")


def probe_mqtt_link(args: dict[str, Any]) -> Probe:
    """The gateway's own MQTT link (`gateway.channels.mqtt_link`), as the channel runs it:
    `calls` QoS 1 messages queued in its persistent session while it was away arrive at
    once when it connects, each handed to a greenlet that acknowledges it; then a broker
    that refuses the connection (a closed port) for two attempts with backoff."""
    import threading

    import gevent
    import paho.mqtt.client as mqtt

    from gateway.channels.liveness import Liveness
    from gateway.channels.mqtt_link import LinkSettings, MqttLink

    calls, port, got, why = int(args.get("calls", 1000)), int(args["port"]), [], []
    done = threading.Event()
    settings = LinkSettings("127.0.0.1", port, False, "loopprobe-link", None, None, None,
                            None, None, 30, 3600, ("probe/in/+",), "probe/in/loopprobe-link")

    def arrived(inbound: Any) -> None:  # on paho's loop: hand off, as the channel does
        def take() -> None:
            link.ack(inbound)
            got.append(inbound.mid)
            if len(got) == calls:
                done.set()
        gevent.spawn(take)

    link = MqttLink(settings, arrived, Liveness(60))
    link.start()  # the session and its subscription, then away
    deadline = time.monotonic() + 10
    while not link.connected and time.monotonic() < deadline:
        gevent.sleep(0.01)
    link.stop()
    device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="loopprobe-device")
    device.connect("127.0.0.1", port)
    device.loop_start()
    for info in [device.publish("probe/in/device", f"message {i}", qos=1)
                 for i in range(calls)]:
        info.wait_for_publish(10)
    device.disconnect()
    device.loop_stop()
    refused = MqttLink(LinkSettings("127.0.0.1", 1, False, "loopprobe-refused", None, None,
                                    None, None, None, 30, 3600, ("x/+",), "x/y"),
                       arrived, Liveness(60))

    def run() -> bool:
        link.start()
        arrived_all = done.wait(30)
        link.stop()
        refused.start()
        while refused.state != "retrying":
            gevent.sleep(0.01)
        gevent.sleep(1.5)  # the first backoff and a second refused attempt
        why.append(refused.why)
        refused.stop()
        return arrived_all

    return Probe("paho-mqtt", f"the channel's link: a backlog of {calls} QoS 1 acked by "
                 "hand, then a refused broker retried", calls, run,
                 note=lambda: f"{len(got)} received; {''.join(why)}")


def probe_slack_builtin(args: dict[str, Any]) -> Probe:
    """slack_sdk's sync Socket Mode client (`socket_mode.builtin`) in the gateway's process,
    against FakeSlack: open a socket and acknowledge the one envelope waiting there. Its
    listeners run on a `ThreadPoolExecutor`, whose workers wait in C
    (`_queue.SimpleQueue.get`): why the Slack channel runs the asyncio client in a child."""
    import threading

    from slack_sdk import WebClient
    from slack_sdk.socket_mode.builtin import SocketModeClient

    done = threading.Event()
    client = SocketModeClient(app_token=args["app_token"],
                              web_client=WebClient(base_url=args["api_base"]))

    def listener(sock: Any, request: Any) -> None:
        sock.send_socket_mode_response({"envelope_id": request.envelope_id})
        done.set()

    client.socket_mode_request_listeners.append(listener)

    def run() -> bool:
        client.connect()
        return done.wait(10)

    return Probe("slack_sdk", "builtin SocketModeClient: connect, one envelope acked", 1, run,
                 cleanup=client.close, note=lambda: "listeners on a ThreadPoolExecutor")


def probe_slack_web(args: dict[str, Any]) -> Probe:
    """The Slack channel's replies (`channels.slack_web`: slack_sdk's sync WebClient over
    urllib) against FakeSlack: auth.test, then chat.postMessage in a thread."""
    from gateway.channels.slack_web import SlackWeb

    web, calls = SlackWeb(args["api_base"], args["bot_token"]), int(args.get("calls", 50))

    def run() -> bool:
        ok = web.whoami()["user_id"] != ""
        for i in range(calls):
            _yielded(web.post, "C0PROBE", f"reply {i}", "1.000100", [])
        return ok

    return Probe("slack_sdk", f"WebClient auth.test + chat.postMessage x{calls}", calls + 1,
                 run, note=lambda: "urllib over patched sockets")


def probe_deadlock(args: dict[str, Any]) -> Probe:
    """Not a library: the failure of issue 13 made small, so the harness shows what a deadlock
    looks like. watchdog 7.1.1's thread (a greenlet once patched) waited in `_queue.SimpleQueue`
    (C, left alone by `queue=False`): here the loop waits there for an item that a greenlet
    would put, and nothing ever runs again."""
    import queue

    import gevent

    events: queue.SimpleQueue[str] = queue.SimpleQueue()

    def run() -> bool:
        gevent.spawn_later(0.05, events.put, "event")
        return events.get() == "event"

    return Probe("gevent", "C SimpleQueue.get while a greenlet would put (watchdog 7.1.1)", 1,
                 run)


PROBES: dict[str, Callable[[dict[str, Any]], Probe]] = {
    "keyring": probe_keyring, "smtp": probe_smtp, "sqlite": probe_sqlite,
    "ollama": probe_ollama, "prometheus_update": probe_prometheus_update,
    "prometheus_collect": probe_prometheus_collect, "limits": probe_limits,
    "jieba": probe_jieba, "psutil": probe_psutil, "paho": probe_paho,
    "mqtt_link": probe_mqtt_link, "slack_builtin": probe_slack_builtin,
    "slack_web": probe_slack_web,
    "deadlock": probe_deadlock,
}


# -- the parent ---------------------------------------------------------------------------
def run_probe(name: str, args: dict[str, Any] | None = None, *, timeout: float = 60.0,
              env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()) -> Outcome:
    """Run probe `name` in a fresh patched child (after `prefix`, e.g. a D-Bus session);
    past `timeout` its process group is killed and the outcome says so."""
    command = [*prefix, sys.executable, "-c", CHILD_BOOT, name, json.dumps(args or {})]
    base = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    child = subprocess.Popen(command, cwd=ROOT, env={**base, **(env or {})},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        out, err = child.communicate()
        return Outcome(name, error=f"timed out after {timeout:.0f} s: no result", output=err)
    finally:
        with contextlib.suppress(ProcessLookupError):  # whatever the probe left behind
            os.killpg(child.pid, signal.SIGKILL)
    lines = [line for line in out.splitlines() if line.startswith(MARK)]
    if not lines:
        return Outcome(name, error=f"exit {child.returncode}, no result", output=err[-3000:])
    return Outcome(name, **json.loads(lines[-1][len(MARK):]), output=err[-3000:])


def has_secret_service() -> bool:
    return bool(shutil.which("gnome-keyring-daemon") and shutil.which("dbus-run-session"))


def keyring_session(home: Path) -> tuple[tuple[str, ...], dict[str, str]]:
    """(prefix, env) that run a probe in its own D-Bus session with an unlocked gnome-keyring
    under `home`, as tests/test_secrets.py does: the user's own keyring is never touched."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DBUS_", "XDG_", "GNOME_KEYRING", "PYTHON_KEYRING"))}
    env["HOME"] = str(home)
    prefix = ("dbus-run-session", "--", "bash", "-c", KEYRING_BOOT, "keyring-probe")
    return prefix, env


@contextlib.contextmanager
def slow_services(tmp: Path) -> Iterator[tuple[dict[str, Any], MailServer]]:
    """A real SMTP server (aiosmtpd, STARTTLS, login) and the fake model server, both taking
    `STALL` s to answer, here in the parent: (probe arguments, the mail server)."""
    from tests.fakes.fake_model import FakeModelServer
    from tests.fakes.mail_server import MailServer

    mail = MailServer(tls=True, users={"bot": "pw"}, delay=STALL)
    model = FakeModelServer()
    with mail, model:
        model.delay_first = STALL
        yield {"smtp": {"port": mail.port, "user": "bot", "password": "pw",
                        "cafile": mail.write_ca(str(tmp / "ca.pem"))},
               "ollama": {"url": model.url}}, mail


def _wait_port(port: int, deadline_s: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {deadline_s} s")


@contextlib.contextmanager
def mosquitto(port: int) -> Iterator[int]:
    """The real Mosquitto broker on 127.0.0.1:`port`, stopped at the end."""
    with tempfile.TemporaryDirectory() as folder:
        conf = Path(folder) / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                        f"persistence false\n", encoding="utf-8")
        broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            _wait_port(port)
            yield port
        finally:
            broker.terminate()
            broker.wait(10)
