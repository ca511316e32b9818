"""The file watcher's own process: `python -m gateway.live.watcher_child '<json list of folders>'`.

watchdog starts threads of its own and blocks in C inside them (7.1.1's dispatcher waits on a
`_queue.SimpleQueue`). In the gateway, gevent has patched `threading`, so those threads would be
greenlets on the one event loop, and one such wait freezes every conversation. Here nothing is
patched: watchdog runs as its authors tested it, in plain threads.

The argument is a JSON list of `[folder, recursive]` pairs. Out comes one JSON line per change,
`{"event": "modified", "src": "...", "dest": "..."}`, after a first line `{"ready": true}` once
every folder is watched (a file written after that line is seen). The process ends when its
standard input closes: the gateway closed it, or the gateway died, so the watcher never
outlives it. Nothing here imports the rest of the gateway: a plain Python, watchdog and json.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from typing import Any, TextIO

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

IGNORED = frozenset({"opened", "closed_no_write"})  # reads, not changes


class _Forward(FileSystemEventHandler):
    """Writes each change as a JSON line; the lock keeps lines whole across observer threads."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.lock = threading.Lock()

    def send(self, line: dict[str, Any]) -> None:
        with self.lock:
            self.out.write(json.dumps(line) + "\n")
            self.out.flush()

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in IGNORED:
            return
        self.send({"event": event.event_type, "src": _text(event.src_path),
                   "dest": _text(getattr(event, "dest_path", "") or "")})


def _text(path: str | bytes) -> str:
    return path.decode("utf-8", "surrogateescape") if isinstance(path, bytes) else path


def main(argv: list[str]) -> int:
    folders = json.loads(argv[0]) if argv else []
    forward = _Forward(sys.stdout)
    observer = Observer()
    try:
        for folder, recursive in folders:
            observer.schedule(forward, folder, recursive=bool(recursive))
        observer.daemon = True
        observer.start()
    except OSError as e:  # e.g. the system's limit of inotify watches is reached
        forward.send({"error": f"cannot watch the workspace: {e}"})
        return 1
    forward.send({"ready": True})
    with contextlib.suppress(KeyboardInterrupt):
        sys.stdin.read()  # returns when the gateway closes the pipe or dies
    observer.stop()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BrokenPipeError:  # the gateway went away mid-line
        sys.exit(0)
