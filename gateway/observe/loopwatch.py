"""A watched event loop: a block longer than `max_blocking_time` is reported with its stack.

The gateway answers everyone from one gevent loop, so one call that blocks in C (watchdog
7.1.1's queue, a SQLite busy wait, a CPU-bound parse) stops every conversation and, until
this, did it silently. Two parts:

- gevent's monitor thread (a real OS thread, `monitor_thread` on, `max_blocking_time`) notices
  that no greenlet switched for a whole period and emits `EventLoopBlocked`. Our subscriber runs
  in that thread while the loop is stuck, so it writes the report (the blocked greenlet's stack)
  straight to a file with plain file calls: no logging, no locks the loop might hold. That file
  is what `moltbot gateway status`, `doctor` and a timed-out `gateway start` show, and it is
  written even when the loop never comes back.
- A heartbeat greenlet on the loop measures how long each block really lasted once the loop
  runs again, then logs the block once with its stack and counts it in `/metrics`.

The report file is JSON lines, one `{"pid", "episode", "at", "greenlet", "stack"}` when a block
is seen and one `{"pid", "episode", "seconds"}` when it ends; `read_blocks` joins them.
Production default: 1 s. gevent's own `GEVENT_MAX_BLOCKING_TIME` overrides it (the test suite
sets 0.2 s and fails any test in which a gateway's loop stopped for more than 0.5 s).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_MAX_BLOCKING = 1.0
REPORT_LIMIT = 1 << 20  # bytes; a report file past this is started afresh at the next start
STACK_FRAMES = 30


@dataclass(frozen=True)
class Block:
    """One time the loop stopped: when, where, and (once it ran again) for how long."""

    pid: int
    episode: int
    at: float
    greenlet: str
    stack: str
    seconds: float | None  # None: the loop had not run again when last seen

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.at))
        length = (f"for {self.seconds:.2f}s" if self.seconds is not None
                  else "and had not run again when last seen")
        return (f"the event loop was blocked at {when} {length}, in {self.greenlet}:\n"
                f"{self.stack.rstrip()}")


def read_blocks(path: Path, pid: int | None = None) -> list[Block]:
    """The blocks recorded in `path` (of process `pid` only, when given), oldest first."""
    seen: dict[tuple[int, int], dict[str, Any]] = {}
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            item = json.loads(line)
            key = (int(item["pid"]), int(item["episode"]))
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a kill
        if pid is None or key[0] == pid:
            seen.setdefault(key, {}).update(item)
    return [Block(pid=k[0], episode=k[1], at=float(v.get("at", 0.0)),
                  greenlet=str(v.get("greenlet", "?")), stack=str(v.get("stack", "")),
                  seconds=v.get("seconds")) for k, v in seen.items() if "at" in v]


def summarize(blocks: list[Block]) -> str:
    """One paragraph for `gateway status`, `doctor` and a timed-out start: how often, how long,
    and the latest block's stack in full (the one a person acts on). Empty when none."""
    if not blocks:
        return ""
    known = [b.seconds for b in blocks if b.seconds is not None]
    longest = f", longest {max(known):.2f}s" if known else ""
    return (f"event loop blocked {len(blocks)} time(s){longest}; the last time, "
            + blocks[-1].describe())


def max_blocking_time() -> float:
    """gevent's `GEVENT_MAX_BLOCKING_TIME` when set, else our production default."""
    raw = os.environ.get("GEVENT_MAX_BLOCKING_TIME", "")
    try:
        return float(raw) if raw else DEFAULT_MAX_BLOCKING
    except ValueError:
        return DEFAULT_MAX_BLOCKING


def _in_hub(frame: FrameType) -> bool:
    """The loop thread is in the hub's own `run` (libev waiting or dispatching), not in a
    greenlet: gevent's tracer can name a greenlet there when the process is starved of CPU."""
    return frame.f_code.co_name == "run" and frame.f_code.co_filename.endswith(
        os.path.join("gevent", "hub.py"))


class LoopWatch:
    """Start once in the gateway process, after `patch_all`, before serving."""

    def __init__(self, report_path: Path, limit: float,
                 on_block: Callable[[float], None] = lambda seconds: None) -> None:
        self.report_path = report_path
        self.limit = limit
        self.on_block = on_block  # the metrics counter, called on the loop
        self.beats = 0
        self.last_beat = time.perf_counter()
        self._reported_episode = -1
        self._stacks: dict[int, str] = {}
        self._loop_thread = 0

    def start(self) -> None:
        import gevent
        from gevent import config, events, get_hub, monkey

        # the OS thread running the loop; patched `threading` would give a greenlet's id
        self._loop_thread = monkey.get_original("_thread", "get_ident")()
        try:
            if self.report_path.stat().st_size > REPORT_LIMIT:
                self.report_path.unlink()
        except OSError:
            pass
        config.monitor_thread = True
        config.max_blocking_time = self.limit
        config.print_blocking_reports = False  # ours go to the file and the log, once each
        events.subscribers.append(self._on_event)
        get_hub().start_periodic_monitoring_thread()
        gevent.spawn(self._heartbeat)

    # In gevent's monitor thread, while the loop is stuck ------------------------------------
    def _on_event(self, event: Any) -> None:
        from gevent.events import EventLoopBlocked

        if not isinstance(event, EventLoopBlocked) or self._reported_episode == self.beats:
            return  # reported already: gevent repeats the event every period of one block
        if time.perf_counter() - self.last_beat < self.limit * 0.9:
            return  # the heartbeat ran lately: gevent's tracer lost track of the hub
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None or _in_hub(frame):
            return  # the loop itself runs (waiting, or starved of CPU): no greenlet holds it
        episode = self._reported_episode = self.beats
        stack = "".join(traceback.format_stack(frame, limit=STACK_FRAMES))
        self._stacks[episode] = stack
        self._append({"pid": os.getpid(), "episode": episode, "at": time.time(),
                      "greenlet": str(event.greenlet), "stack": stack})

    def _append(self, item: dict[str, Any]) -> None:
        """One write of one line with O_APPEND: whole even if the process dies right after."""
        try:
            fd = os.open(self.report_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (json.dumps(item) + "\n").encode())
            finally:
                os.close(fd)
        except OSError:
            pass  # a full disk must not add a second failure to the first

    # On the loop ----------------------------------------------------------------------------
    def _heartbeat(self) -> None:
        import gevent

        interval = self.limit / 2
        last = time.perf_counter()
        while True:
            gevent.sleep(interval)
            now = time.perf_counter()
            late = now - last - interval
            last = now
            if late > self.limit:
                self._ended(self.beats, late)
            self.beats += 1
            self.last_beat = now

    def _ended(self, episode: int, seconds: float) -> None:
        stack = self._stacks.pop(episode, "")
        if stack:
            self._append({"pid": os.getpid(), "episode": episode, "seconds": round(seconds, 3)})
        log.warning("the event loop was blocked for %.2fs (limit %.2fs); every conversation "
                    "waited. Where it was blocked:\n%s", seconds, self.limit,
                    stack.rstrip() or "(not caught: shorter than two monitor periods)")
        self.on_block(seconds)
