"""Starting, stopping and finding the gateway process from outside it.

One implementation for `moltbot gateway start|stop|status`, `dashboard` and the tray, so they
cannot drift apart. Nothing here imports gevent or `gateway.server`: the gateway runs in its own
process (started with `gateway_argv`) and is found again through its pid file, one per port,
and its command line, which always carries `--host` and `--port`. Errors are raised as
`ControlError` with a message that says what to do; only the CLI turns them into exit codes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from gateway.common.workspace import Workspace
from gateway.config import GatewayConfig
from gateway.observe.loopwatch import read_blocks, summarize
from gateway.ops.probe import base_url, gateway_pid, is_healthy, is_port_free

START_WAIT = 30.0
KILL_GRACE = 10.0  # beyond gateway.shutdown_timeout, before SIGKILL
DEFAULTS = GatewayConfig()
if sys.platform == "win32":
    DETACHED_FLAGS = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.DETACHED_PROCESS
else:
    DETACHED_FLAGS = 0


class ControlError(Exception):
    """A start or stop that could not be done; the message says why and what to do."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class PortBusy(ControlError):
    """Another program holds the port (ours would have been found by its pid file)."""


@dataclass(frozen=True)
class RunningGateway:
    """A gateway process of this workspace, as found from outside it."""

    pid: int
    host: str
    port: int

    @property
    def url(self) -> str:
        return base_url(self.host, self.port)


@dataclass(frozen=True)
class StopResult:
    pid: int
    killed: bool  # True when it ignored SIGTERM for too long


def gateway_argv(host: str, port: int, *flags: str) -> list[str]:
    """The gateway's command line. The bundled app's binary understands `-m gateway.server`
    too, so this one form serves a source install and the frozen bundle alike."""
    return [sys.executable, "-m", "gateway.server", "--host", host, "--port", str(port), *flags]


def gateway_env(ws: Workspace) -> dict[str, str]:
    return {**os.environ, "MOLTBOT_HOME": str(ws.root)}


def find_gateway(ws: Workspace, port: int) -> RunningGateway | None:
    """Our gateway on `port`, with the host it was started with, or None."""
    pid = gateway_pid(ws, port)
    if not pid:
        return None
    try:
        argv = psutil.Process(pid).cmdline()
    except psutil.Error:
        return None
    host = argv[argv.index("--host") + 1] if "--host" in argv[:-1] else DEFAULTS.host
    return RunningGateway(pid, host, port)


def find_gateways(ws: Workspace) -> list[RunningGateway]:
    """Every gateway of this workspace that is running now, by port (stale pid files go)."""
    found = []
    for path in sorted(ws.data.glob("gateway-*.pid")):
        port = path.stem.removeprefix("gateway-")
        if port.isdigit() and (running := find_gateway(ws, int(port))):
            found.append(running)
    return found


def check_port_free(host: str, port: int) -> None:
    """Raise PortBusy unless `port` can be bound: checked before anything is written."""
    if not is_port_free(host, port):
        raise PortBusy(f"Port {port} is in use by another program. Stop it, or start Moltbot "
                       f"on another port: moltbot gateway start --port {port + 1}")


def start_detached(ws: Workspace, host: str, port: int,
                   wait: float = START_WAIT) -> subprocess.Popen[bytes]:
    """Start the gateway in its own session and return once it answers /healthz.

    The process outlives its caller (the CLI exits at once; the tray keeps the handle to see a
    crash). Raises PortBusy when another program holds the port, ControlError when the gateway
    exits during start (with the tail of its output) or does not answer within `wait`.
    """
    check_port_free(host, port)
    out_path = ws.logs / "gateway.out"
    with open(out_path, "ab") as out:
        # cut from our terminal (its own session or process group): closing it does not stop it
        proc = subprocess.Popen(gateway_argv(host, port), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=out, env=gateway_env(ws),
                                start_new_session=sys.platform != "win32",
                                creationflags=DETACHED_FLAGS)
    url = base_url(host, port)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ControlError(f"The gateway exited during start (code {proc.returncode}):\n"
                               f"{_tail(out_path)}", proc.returncode or 1)
        if is_healthy(url):
            return proc
        time.sleep(0.1)
    # Alive but silent: most likely its event loop is stuck. Say where, then stop it, so it
    # does not hold the port (its report and log stay for whoever looks).
    blocked = loop_report(ws, port, proc.pid)
    proc.terminate()  # a stuck loop never runs its SIGTERM handler: a short grace, then kill
    try:
        proc.wait(2)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    ws.pid_path(port).unlink(missing_ok=True)
    raise ControlError(f"The gateway did not answer {url}/healthz within {wait:.0f}s and was "
                       f"stopped; see {ws.logs / 'gateway.log'}"
                       + (f"\nIts {blocked}" if blocked else ""))


def loop_report(ws: Workspace, port: int, pid: int) -> str:
    """What the gateway (process `pid`) on `port` reported of its event loop being blocked."""
    return summarize(read_blocks(ws.loop_report_path(port), pid))


def stop_gateway(ws: Workspace, port: int,
                 shutdown_timeout: float = DEFAULTS.shutdown_timeout) -> StopResult | None:
    """Stop our gateway on `port` gracefully (SIGTERM: in-flight replies finish), killing it if
    it is still there `shutdown_timeout` + 10 s later. None when none was running."""
    pid = gateway_pid(ws, port)
    if not pid:
        return None
    killed = False
    try:
        process = psutil.Process(pid)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(shutdown_timeout + KILL_GRACE)
        except psutil.TimeoutExpired:
            process.kill()
            process.wait(KILL_GRACE)
            killed = True
    except psutil.NoSuchProcess:
        pass
    ws.pid_path(port).unlink(missing_ok=True)
    return StopResult(pid, killed)


def _tail(path: Path, size: int = 2000) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[-size:]
