"""A child process that speaks JSON lines, kept running by the gateway: the MCP host, and
the company chats' asyncio SDKs (DingTalk's stream, Feishu's long connection).

Why a child at all: asyncio SDKs and their threads may not run on the gevent loop (the thread
rule in ARCHITECTURE.md). A native thread of the gateway reads the child's stdout (gevent's
patched pipes keep that cooperative), hands each line to `on_line`, and when the child ends
says why to `on_ended` and starts it again after the backoff (`common.backoff`). What the child
must know (credentials among it) travels as lines on its stdin, never in argv or the
environment, so `ps` shows no secret. The child ends when its stdin closes, so a gateway
killed with SIGKILL leaves none behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.common.backoff import keep_running
from gateway.common.process import json_lines

log = logging.getLogger(__name__)

STOP_WAIT = 3.0


class ChildLink:
    """`python -m <module>` with JSON lines both ways, restarted until `stop`.

    `on_start()` runs each time a new child is up, before any line is read (send it what it
    must know there); `on_line(item)` each line it writes; `on_ended(why, wait)` each end that
    `stop` did not ask for, with the seconds until the next start.
    """

    def __init__(self, module: str, *, cwd: Path, env: dict[str, str],
                 on_start: Callable[[], None], on_line: Callable[[dict[str, Any]], None],
                 on_ended: Callable[[str, float], None], cap: float = 30.0) -> None:
        self.module = module
        self.cwd = cwd
        self.env = env
        self.on_start = on_start
        self.on_line = on_line
        self.on_ended = on_ended
        self.cap = cap
        self._proc: subprocess.Popen[str] | None = None
        self._write = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._up = threading.Event()

    def argv(self) -> list[str]:
        """`-m module`: the bundled app's binary understands it too (installers/launcher.py)."""
        return [sys.executable, "-m", self.module]

    def start(self) -> None:
        """Start the child (a no-op while it runs)."""
        if self._thread is None:
            self._stopped.clear()
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name=f"child {self.module}")
            self._thread.start()

    def stop(self) -> None:
        """End the child: its stdin closes (it ends itself), SIGKILL to its group after
        STOP_WAIT seconds."""
        self._stopped.set()
        proc = self._proc
        if proc is not None:
            _close(proc.stdin)
            try:
                proc.wait(timeout=STOP_WAIT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=STOP_WAIT)

    def send(self, line: dict[str, Any]) -> None:
        """One line to the child; OSError when it is not running (it gets its state again
        from `on_start` when it is)."""
        proc = self._proc
        if proc is None or proc.stdin is None or not self._up.is_set():
            raise OSError(f"the {self.module} process is not running")
        with self._write:
            proc.stdin.write(json.dumps(line, ensure_ascii=False) + "\n")
            proc.stdin.flush()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._up.is_set() else None

    def _run(self) -> None:
        keep_running(self._run_once, self._stopped, self.cap, self.on_ended)

    def _run_once(self) -> str:
        try:
            proc = subprocess.Popen(self.argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    text=True, encoding="utf-8", errors="replace",
                                    cwd=self.cwd, env=self.env, start_new_session=True)
        except OSError as e:
            return f"cannot start it: {e}"
        self._proc = proc
        self._up.set()
        try:
            self.on_start()
            assert proc.stdout is not None
            for item in json_lines(proc.stdout):
                self.on_line(item)
        except Exception as e:  # a handler's bug: this life ends, the next one starts
            log.exception("reading the %s process failed", self.module)
            _close(proc.stdin)
            proc.wait()
            return f"the gateway could not read it: {e}"
        finally:
            self._up.clear()
            _close(proc.stdout)
        _close(proc.stdin)
        return f"exit code {proc.wait()}"


def _close(stream: Any) -> None:
    with contextlib.suppress(OSError, ValueError):
        if stream is not None:
            stream.close()
