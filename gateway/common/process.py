"""Run one child program with a time limit and bounded output: the one process runner that
script skills and the `command` tool share.

- No shell: `argv` goes to exec as a list, so `;`, `|` or `$(...)` in an argument are text.
- The child leads its own process group; when the time limit passes (or the caller is done
  with it) the whole group is killed, children included.
- Output is read as it comes and capped per stream: stdout keeps its first `max_stdout` bytes,
  stderr its last `max_stderr` (an error is usually at the end); the rest is read and dropped,
  so a chatty program can neither fill the gateway's memory nor block on a full pipe.
- A program that closes its output and keeps running is still bound by the time limit.

Under gevent (the gateway monkey-patches `selectors` and `subprocess`) the waiting is
cooperative: a slow program never stalls other messages.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

_CHUNK = 65536
_GRACE = 2.0  # seconds to let a killed process group release its pipes


@dataclass(frozen=True)
class ProcessResult:
    """What a run produced; `exit_code` is negative (-signal) when the process was killed."""

    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool
    truncated: bool


class _Capture:
    """A bounded buffer for one output stream, keeping either its head or its tail."""

    def __init__(self, limit: int, *, keep_tail: bool) -> None:
        self.data = bytearray()
        self.limit = limit
        self.keep_tail = keep_tail
        self.truncated = False

    def add(self, chunk: bytes) -> None:
        if self.keep_tail:
            self.data += chunk
            excess = len(self.data) - self.limit
            if excess > 0:
                del self.data[:excess]
                self.truncated = True
            return
        room = self.limit - len(self.data)
        if len(chunk) > room:
            self.truncated = True
        self.data += chunk[: max(room, 0)]


def start(argv: list[str], *, cwd: Path | None, env: dict[str, str],
          with_stdin: bool) -> subprocess.Popen[bytes]:
    """Start `argv` in its own process group with piped output; raises OSError."""
    return subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if with_stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=env,
        start_new_session=True,
        close_fds=True,
    )


def collect(proc: subprocess.Popen[bytes], data: bytes | None, *, timeout: float,
            max_stdout: int, max_stderr: int) -> ProcessResult:
    """Feed `data`, read both outputs within `timeout`, kill the group if it runs over.

    The process is always reaped and its pipes closed on return, whatever happened.
    """
    out = _Capture(max_stdout, keep_tail=False)
    err = _Capture(max_stderr, keep_tail=True)
    deadline = time.monotonic() + timeout
    try:
        with selectors.DefaultSelector() as sel:
            assert proc.stdout is not None and proc.stderr is not None
            sel.register(proc.stdout, selectors.EVENT_READ, out)
            sel.register(proc.stderr, selectors.EVENT_READ, err)
            if proc.stdin is not None:
                os.set_blocking(proc.stdin.fileno(), False)
                sel.register(proc.stdin, selectors.EVENT_WRITE, memoryview(data or b""))
            finished = _pump(sel, deadline, proc.stdin)
            if finished:
                try:
                    proc.wait(timeout=max(deadline - time.monotonic(), 0))
                except subprocess.TimeoutExpired:
                    finished = False
            if not finished:
                kill_group(proc)
                _pump(sel, time.monotonic() + _GRACE, proc.stdin)
                proc.wait()
    finally:
        if proc.returncode is None:
            kill_group(proc)
            proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    assert proc.returncode is not None
    return ProcessResult(proc.returncode, bytes(out.data), bytes(err.data),
                         timed_out=not finished, truncated=out.truncated or err.truncated)


def run(argv: list[str], *, stdin: bytes | None = None, cwd: Path | None = None,
        env: dict[str, str], timeout: float, max_stdout: int,
        max_stderr: int) -> ProcessResult:
    """`start` then `collect`: the whole run of one program; raises OSError if it cannot
    start."""
    proc = start(argv, cwd=cwd, env=env, with_stdin=stdin is not None)
    return collect(proc, stdin, timeout=timeout, max_stdout=max_stdout, max_stderr=max_stderr)


def _pump(sel: selectors.BaseSelector, deadline: float, stdin: IO[bytes] | None) -> bool:
    """Feed stdin and drain the outputs until every pipe closes (True) or the deadline passes."""
    while sel.get_map():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        for key, _ in sel.select(remaining):
            if key.fileobj is stdin:
                view: memoryview = key.data
                try:
                    written = os.write(key.fd, view[:_CHUNK])
                except BlockingIOError:
                    continue
                except BrokenPipeError:  # the program stopped reading: drop the rest
                    written = len(view)
                view = view[written:]
                if view:
                    sel.modify(key.fileobj, selectors.EVENT_WRITE, view)
                else:
                    sel.unregister(key.fileobj)
                    stdin.close()
                continue
            chunk = os.read(key.fd, _CHUNK)
            if chunk:
                key.data.add(chunk)
            else:
                sel.unregister(key.fileobj)
    return True


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group, unless the leader was already reaped (its id may then
    belong to someone else)."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def json_lines(stream: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Each JSON object a child writes, one a line (the watcher's, the MCP host's); a line
    that is not JSON (a library printing where it should not) is skipped."""
    for line in stream:
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict):
            yield item
