"""Keeps the gateway in the state the user asked for, from a thread of the tray process.

Menu actions only say what is wanted (`request_start`, `request_stop`) and wake the thread; the
thread alone starts, stops and watches the process, so two clicks can never race. It polls
/healthz, restarts a gateway it started that crashed or stopped answering for
`unresponsive_after` seconds (its event loop stuck: alive, but no use to anyone; it is killed
first), 1 s, 2 s, 4 s ... up to a minute apart (the count resets once it has run a minute), and
leaves alone a gateway it found running, except that Stop stops it too. `shutdown` (Quit)
stops only a gateway this tray started.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable

from desktop.icon import State
from gateway.common.workspace import Workspace, ensure_workspace
from gateway.ops.control import (
    ControlError,
    RunningGateway,
    find_gateway,
    start_detached,
    stop_gateway,
)
from gateway.ops.probe import is_healthy

log = logging.getLogger(__name__)

POLL_INTERVAL = 2.0
MAX_BACKOFF = 60.0
STABLE_AFTER = 60.0
UNRESPONSIVE_AFTER = 20.0  # seconds without an answer to /healthz before a restart


def backoff(failures: int) -> float:
    """Seconds before restart number `failures` (1, 2, 4, ... capped at a minute)."""
    return min(MAX_BACKOFF, 2.0 ** max(0, failures - 1))


class GatewaySupervisor:
    def __init__(self, ws: Workspace, host: str, port: int, shutdown_timeout: float,
                 on_change: Callable[[], None], notify: Callable[[str], None],
                 poll_interval: float = POLL_INTERVAL,
                 unresponsive_after: float = UNRESPONSIVE_AFTER) -> None:
        self.ws = ws
        self.host = host
        self.port = port
        self.shutdown_timeout = shutdown_timeout
        self.on_change = on_change
        self.notify = notify
        self.poll_interval = poll_interval
        self.unresponsive_after = unresponsive_after
        self.silent_since: float | None = None  # when /healthz last stopped answering
        self.state = State.STOPPED
        self.detail = ""
        self.running: RunningGateway | None = None
        self.proc: subprocess.Popen[bytes] | None = None  # the gateway this tray started
        self.wanted = False  # the user pressed Start: keep it up
        self.stop_pending = False
        self.failures = 0
        self.retry_at = 0.0
        self.up_since = 0.0
        self._wake = threading.Event()
        self._quit = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gateway-supervisor",
                                        daemon=True)

    @property
    def owns_gateway(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def begin(self, start_now: bool = False) -> None:
        """Look once (so the first menu is right), then watch from the thread."""
        if start_now:
            self.wanted = True
        self._step()
        self._thread.start()

    def request_start(self) -> None:
        self.wanted, self.stop_pending, self.failures, self.retry_at = True, False, 0, 0.0
        self._set(State.STARTING, "")
        self._wake.set()

    def request_stop(self) -> None:
        self.wanted, self.stop_pending = False, True
        self._wake.set()

    def shutdown(self) -> None:
        """Quit: stop watching; stop the gateway if (and only if) this tray started it."""
        self._quit.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()
        if self.owns_gateway:
            self._stop()

    # the thread ---------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._quit.is_set():
            wait = self.poll_interval
            if self.wanted and self.running is None:  # a restart is due at retry_at
                wait = min(wait, max(0.0, self.retry_at - time.monotonic()))
            self._wake.wait(wait)
            self._wake.clear()
            if self._quit.is_set():
                break
            try:
                self._step()
            except Exception:  # keep watching: one bad poll must not end supervision
                log.exception("gateway supervision step failed")

    def _step(self) -> None:
        if self.stop_pending:
            self.stop_pending = False
            self._stop()
        self._reap()
        self.running = find_gateway(self.ws, self.port)
        if self.running is None and self.wanted:
            if time.monotonic() >= self.retry_at:
                self._start()
            return
        if self.running is None:
            self._set(State.STOPPED, "")
        elif is_healthy(self.running.url):
            self.silent_since = None
            if self.failures and time.monotonic() - self.up_since > STABLE_AFTER:
                self.failures = 0
            self._set(State.RUNNING, "")
        else:
            self._unanswered()

    def _unanswered(self) -> None:
        """Alive but silent: say so; past `unresponsive_after`, kill and restart a gateway this
        tray started (one found running belongs to whoever started it: systemd, a terminal)."""
        now = time.monotonic()
        if self.silent_since is None:
            self.silent_since = now
        silent = now - self.silent_since
        if not (self.owns_gateway and self.wanted and silent >= self.unresponsive_after):
            self._set(State.ERROR, f"not answering /healthz for {silent:.0f} s")
            return
        assert self.proc is not None
        self.proc.kill()  # a stuck loop never runs its SIGTERM handler
        self.proc.wait()
        self.proc, self.running, self.silent_since = None, None, None
        self.ws.pid_path(self.port).unlink(missing_ok=True)
        self._failed(f"the gateway stopped answering for {silent:.0f} s and was stopped")

    def _start(self) -> None:
        self._set(State.STARTING, "")
        try:
            ensure_workspace(self.ws)
            self.proc = start_detached(self.ws, self.host, self.port)
        except (ControlError, OSError) as e:
            self._failed(f"could not start: {e}")
            return
        self.up_since = time.monotonic()
        self.running = find_gateway(self.ws, self.port)
        self._set(State.RUNNING, "")

    def _reap(self) -> None:
        """Notice that the gateway we started has exited: a crash is restarted, a clean exit
        (someone ran `moltbot gateway stop`) is respected."""
        if self.proc is None or self.proc.poll() is None:
            return
        code, self.proc = self.proc.returncode, None
        if not self.wanted:
            return
        if code == 0:
            self.wanted = False
            self.notify("The gateway was stopped outside the tray.")
            return
        self._failed(f"the gateway exited unexpectedly (code {code})")

    def _failed(self, why: str) -> None:
        self.failures += 1
        delay = backoff(self.failures)
        self.retry_at = time.monotonic() + delay
        self._set(State.ERROR, why)
        self.notify(f"Moltbot: {why}; trying again in {delay:.0f} s.")

    def _stop(self) -> None:
        try:
            stop_gateway(self.ws, self.port, self.shutdown_timeout)
        finally:
            if self.proc is not None:
                self.proc.wait()
                self.proc = None
        self.running = None
        self._set(State.STOPPED, "")

    def _set(self, state: State, detail: str) -> None:
        """Record what was seen; `on_change` is told every time (the tray redraws only what
        changed, and the messages count moves without a state change)."""
        self.state, self.detail = state, detail
        self.on_change()
