"""Fixtures: a fake model server, and the real gateway process on a free port.

The gateway fixture runs `python -m gateway.server` exactly as `moltbot gateway start` does, with
a temporary MOLTBOT_HOME, polls /healthz with a deadline (never a bare sleep), keeps the
process's output for the failure message, and stops it with SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from gateway.observe.loopwatch import read_blocks
from tests.fakes.fake_model import FakeModelServer

ROOT = Path(__file__).resolve().parent.parent

# Every gateway a test starts inherits this: gevent's monitor reports any stop of its event loop
# longer than 0.2 s (production: 1 s), and `no_blocked_loop` fails a test with one over 0.5 s.
os.environ["GEVENT_MAX_BLOCKING_TIME"] = "0.2"
BLOCK_FAILS_AFTER = 0.5
REPORTS = ("*/data/gateway-*.blocked", "*/*/data/gateway-*.blocked",
           "*/*/*/data/gateway-*.blocked")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(home: Path, config: dict[str, Any]) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


def run_cli(home: Path, *args: str, timeout: float = 60, env: dict[str, str] | None = None,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`moltbot ARGS` in MOLTBOT_HOME=home; `env` adds variables, `stdin` is piped in."""
    env = {**os.environ, **(env or {}), "MOLTBOT_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "gateway", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, input=stdin,
                          stdin=None if stdin is not None else subprocess.DEVNULL)


def new_token(home: Path) -> str:
    result = run_cli(home, "dashboard", "--token-gen", "--expire", "1h", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["token"]


class GatewayProcess:
    """The real gateway in a child process; `.client` speaks HTTP to it with a valid token."""

    def __init__(self, home: Path, port: int) -> None:
        self.home = home
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.out_path = home / "gateway-test.out"
        self.token = ""

    def start(self, wait: bool = True) -> GatewayProcess:
        env = {**os.environ, "MOLTBOT_HOME": str(self.home)}
        with open(self.out_path, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.server", "--port", str(self.port)],
                env=env, cwd=ROOT, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        if wait:
            self.wait_healthy()
        if not self.token:
            self.token = new_token(self.home)
        return self

    def wait_healthy(self, deadline_s: float = 30.0) -> None:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"gateway not healthy in {deadline_s}s:\n{self.output()}")

    def output(self) -> str:
        return self.out_path.read_text(encoding="utf-8", errors="replace")[-4000:]

    def log(self) -> str:
        path = self.home / "data" / "logs" / "gateway.log"
        return path.read_text(encoding="utf-8") if path.exists() else ""

    def stop(self, timeout: float = 20) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"gateway ignored SIGTERM:\n{self.output()}") from None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def post(self, text: str, chat: str = "c1", **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return httpx.post(f"{self.url}/api/v1/messages", json={"text": text, "chat": chat},
                          headers=headers, timeout=30, **kwargs)


DEFAULT_PORT = 18789


@pytest.fixture(scope="module")
def default_port_held() -> Iterator[None]:
    """Hold 127.0.0.1:18789 with a listening socket that is not a gateway (the worst case for
    `doctor` and `gateway start`) while a module's tests run: the suite never depends on the
    default port. The README's two commands run in that order: install.sh starts a gateway on
    18789, then test.sh runs the suite. A port another program already holds proves the same."""
    with socket.socket() as holder:
        try:
            holder.bind(("127.0.0.1", DEFAULT_PORT))
            holder.listen()
        except OSError:
            pass  # someone else holds it: the tests run against that instead
        yield


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """Fail a test that leaves a child process running (a gateway, a skill host, a script)."""
    yield
    me = psutil.Process()
    deadline = time.monotonic() + 10
    while (left := [p for p in me.children(recursive=True) if _running(p)]):
        if time.monotonic() > deadline:
            for p in left:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.kill()
            raise AssertionError(f"test left processes running: {[command_line(p) for p in left]}")
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def no_blocked_loop(request: pytest.FixtureRequest,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fail a test during which any gateway's event loop stopped for more than 0.5 s, naming
    where (the report each gateway writes into its workspace, `observe.loopwatch`). A test that
    blocks a loop on purpose says so with `@pytest.mark.blocks_loop`. A loop that was ready to
    run but got no CPU (a busy machine: `observe.loopwatch.is_starved`) is not the code's
    block and fails nothing."""
    started = time.time()
    yield
    if request.node.get_closest_marker("blocks_loop"):
        return
    base = tmp_path_factory.getbasetemp()
    # resolved: pytest's "<name>current" links lead to the same folders again
    reports = {path.resolve() for pattern in REPORTS for path in base.glob(pattern)}
    blocks = [block for path in reports
              if path.stat().st_mtime >= started for block in read_blocks(path)
              if block.at >= started and not block.starved
              and (block.seconds is None or block.seconds > BLOCK_FAILS_AFTER)]
    if blocks:
        pytest.fail("a gateway's event loop stopped during this test:\n\n"
                    + "\n\n".join(block.describe() for block in blocks), pytrace=False)


def assert_only_gateway_left(gw: GatewayProcess, *shared_pids: int,
                             deadline_s: float = 10.0) -> None:
    """`no_leftover_processes` for a module that shares one gateway: its process and its
    children (skill hosts, the browser, the MCP host, a channel's child) may stay, and the
    module's other shared processes (`shared_pids`); whatever a test started must end."""
    assert gw.proc is not None
    deadline = time.monotonic() + deadline_s
    while True:
        shared = {gw.proc.pid, *shared_pids}
        if gw.proc.poll() is None:
            shared |= {p.pid for p in psutil.Process(gw.proc.pid).children(recursive=True)}
        left = [p for p in psutil.Process().children(recursive=True)
                if p.pid not in shared and _running(p)]
        if not left:
            return
        assert time.monotonic() < deadline, f"test left processes: {left}"
        time.sleep(0.05)


def assert_dead(pid: int, deadline_s: float = 5.0) -> None:
    """The process is gone, or a zombie waiting to be reaped: either way it no longer runs.

    A SIGKILL is delivered asynchronously, so a process can still show as running for a moment
    after a kill: poll with a deadline rather than look once.
    """
    state = ""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} still running (state {state})")


def command_line(process: psutil.Process) -> str:
    """A process's command line, or "" when it ended while we looked (psutil raises
    ZombieProcess or NoSuchProcess then)."""
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def no_fd_leak() -> Iterator[None]:
    """Fail a test that leaves a descriptor open: every path, refusals and time-outs included,
    must close what it opened."""
    before = set(os.listdir("/proc/self/fd"))
    yield
    assert set(os.listdir("/proc/self/fd")) <= before


@pytest.fixture
def sandbox_required() -> None:
    """Tests of the model's sandbox need real bubblewrap: skipped where there is none (say
    why), failed in CI, where installers/test.sh installs it."""
    from gateway.tools.sandbox import find_sandbox
    status = find_sandbox()
    if not status.available:
        if os.environ.get("CI"):
            pytest.fail(f"{status.describe()}: installers/test.sh must install bubblewrap")
        pytest.skip(status.describe())


@pytest.fixture
def fake_model() -> Iterator[FakeModelServer]:
    server = FakeModelServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def model() -> Iterator[FakeModelServer]:
    """One fake model for a module whose tests share one gateway."""
    server = FakeModelServer()
    server.start()
    yield server
    server.stop()


def model_config(*urls: str, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {"endpoint": urls[0], "max_tokens": 64}
    if len(urls) > 1:
        cfg["endpoints"] = list(urls[1:])
    cfg.update(extra)
    return {"models": {"llama2": cfg}}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "ai-gateway"


@pytest.fixture
def gateway(home: Path, fake_model: FakeModelServer) -> Iterator[GatewayProcess]:
    write_config(home, model_config(fake_model.url))
    proc = GatewayProcess(home, free_port()).start()
    yield proc
    proc.stop()
