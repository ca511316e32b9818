"""The child's side of `common.child_link`: JSON lines on stdin and stdout, under asyncio.

A child module's `main()` calls `run(serve)`: stdout becomes the protocol's own (fd 1 is
pointed at stderr, so nothing a library prints can corrupt a line), stdin is read by a plain
thread (portable: Windows pipes have no asyncio reader) into an asyncio queue, and `serve(lines,
out)` runs until it returns; `None` on the queue means stdin closed: the gateway is gone.
Nothing here imports gevent or the gateway's server: the child is plain asyncio, as the SDKs'
authors test them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import IO, Any

Lines = asyncio.Queue[dict[str, Any] | None]


class Out:
    """Protocol lines to the gateway: one writer at a time, whole lines only."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.lock = threading.Lock()

    def send(self, line: dict[str, Any]) -> None:
        with self.lock:
            self.stream.write(json.dumps(line, ensure_ascii=False) + "\n")
            self.stream.flush()


def read_lines(loop: asyncio.AbstractEventLoop, queue: Lines, stream: IO[str]) -> None:
    """Each JSON line of `stream` onto `queue` (a line that is not JSON is skipped), then
    None when it closes."""
    for line in stream:
        with contextlib.suppress(ValueError):
            item = json.loads(line)
            if isinstance(item, dict):
                loop.call_soon_threadsafe(queue.put_nowait, item)
    loop.call_soon_threadsafe(queue.put_nowait, None)


async def each_line(lines: Lines, take: Callable[[dict[str, Any]], None],
                    close: Callable[[], Awaitable[None]]) -> None:
    """Hand every line to `take` until stdin closes, then `close` (also when `take` fails)."""
    try:
        while (line := await lines.get()) is not None:
            take(line)
    finally:
        await close()


def run(serve: Callable[[Lines, Out], Awaitable[None]]) -> None:
    """The child's whole life: `serve(lines, out)` under `asyncio.run`; exits quietly when
    the gateway goes away mid-line."""
    out = Out(os.fdopen(os.dup(1), "w", encoding="utf-8"))
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    async def main() -> None:
        lines: Lines = asyncio.Queue()
        threading.Thread(target=read_lines, args=(asyncio.get_running_loop(), lines, sys.stdin),
                         daemon=True).start()
        await serve(lines, out)

    try:
        asyncio.run(main())
    except (BrokenPipeError, KeyboardInterrupt):
        sys.exit(0)
