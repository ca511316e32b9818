"""Watching the workspace from the gateway: watchdog runs in a child process, never on the loop.

Why a process: watchdog starts threads and blocks in C inside them. Under gevent those threads
are greenlets (gevent patches `threading` itself, so even a native thread starts greenlets), and
watchdog 7.1.1's dispatcher waiting on a C queue froze the gateway on every start. In
`gateway.live.watcher_child` nothing is patched; it writes one JSON line per change, which the
reader here takes cooperatively (gevent's patched pipes) and hands to `on_change`.

The child ends when its standard input closes, so it never outlives the gateway, even one killed
with SIGKILL. If it dies, it is started again (1 s, doubling up to 30 s) and `on_restart` is
called: changes made while nobody watched are picked up by a full reload.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from gateway.common.backoff import keep_running
from gateway.common.process import json_lines

log = logging.getLogger(__name__)

READY_TIMEOUT = 10.0  # seconds for the child to import watchdog and watch every folder
MAX_BACKOFF = 30.0


def watcher_argv(folders: Sequence[tuple[Path, bool]]) -> list[str]:
    """`-m gateway.live.watcher_child`: the bundled app's binary understands it too."""
    spec = json.dumps([[str(folder), recursive] for folder, recursive in folders])
    return [sys.executable, "-m", "gateway.live.watcher_child", spec]


class FileWatcher:
    """Calls `on_change(path)` for every path the child reports changed (both ends of a move)."""

    def __init__(self, folders: Sequence[tuple[Path, bool]], on_change: Callable[[Path], None],
                 on_restart: Callable[[], None]) -> None:
        self.folders = list(folders)
        self.on_change = on_change
        self.on_restart = on_restart
        self.status = "stopped"
        self._proc: subprocess.Popen[str] | None = None
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the child and wait (bounded) until it watches every folder, so a file written
        after `start` returns is seen. A child that does not get ready is logged, not fatal."""
        self._stopped.clear()
        self._thread = threading.Thread(target=self._run, name="file-watcher", daemon=True)
        self._thread.start()
        if not self._ready.wait(READY_TIMEOUT):
            log.error("the file watcher did not start within %.0fs: files dropped into the "
                      "workspace are not loaded until it does (%s)", READY_TIMEOUT, self.status)

    def stop(self) -> None:
        self._stopped.set()
        proc = self._proc
        if proc is not None:
            _close(proc.stdin)  # the child's signal to end
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.status = "stopped"

    def _run(self) -> None:
        keep_running(self._watch_once, self._stopped, MAX_BACKOFF, self._ended)

    def _ended(self, why: str, delay: float) -> None:
        self.status = f"restarting in {delay:.0f}s: {why}"
        log.warning("the file watcher stopped (%s); starting it again in %.0fs", why, delay)

    def _watch_once(self) -> str:
        """Run one child until it ends; returns why it ended."""
        try:
            proc = subprocess.Popen(watcher_argv(self.folders), stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True, encoding="utf-8",
                                    errors="surrogateescape")
        except OSError as e:
            return f"cannot start it: {e}"
        self._proc = proc
        error = ""
        assert proc.stdout is not None
        for item in json_lines(proc.stdout):
            if item.get("ready"):
                self.status = "watching"
                if self._ready.is_set():  # a restarted child: catch up on what was missed
                    self.on_restart()
                self._ready.set()
            elif "error" in item:
                error = str(item["error"])
            else:
                for raw in (item.get("src"), item.get("dest")):
                    if raw:
                        self._deliver(Path(raw))
        _close(proc.stdin)
        code = proc.wait()
        return error or f"it exited with code {code}"

    def _deliver(self, path: Path) -> None:
        try:
            self.on_change(path)
        except Exception:  # one bad event must not end the watching
            log.exception("handling a change to %s failed", path)


def _close(stream: IO[Any] | None) -> None:
    try:
        if stream is not None:
            stream.close()
    except OSError:
        pass
