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
  runs again, then logs the block once with its stack and counts it in `/metrics`. A stop the
  monitor could not look at is judged by where the CPU went meanwhile: to the loop's thread (a
  block shorter than two monitor periods), to the process's other threads (one of them held
  Python's lock, which the monitor needs too: jieba's `marshal.load` on the thread pool did
  that for 0.45 s at every start; reported like a block), or nowhere (starved).

A loop that is ready to run but gets no CPU (a machine busy with other work) looks the same
from outside. The monitor tells them apart when it sees the stop: the loop thread's kernel state
and the CPU time it used since its last heartbeat. Waiting in C (`S`/`D`) or running in C (CPU
time growing) is a block in the gateway's code; runnable (`R`) with under a quarter of the time
on a CPU is starvation: said as such, not counted as a block, and not what the test suite fails.

The report file is JSON lines, one `{"pid", "episode", "at", "greenlet", "stack", "starved"}`
when a stop is seen and one `{"pid", "episode", "seconds"}` when it ends; `read_blocks` joins
them.
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
STARVED_SHARE = 0.25  # runnable and on a CPU less than this share of the time: starved
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
    starved: bool = False  # ready to run, but the machine gave it (almost) no CPU

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.at))
        length = (f"for {self.seconds:.2f}s" if self.seconds is not None
                  else "and had not run again when last seen")
        if self.starved:
            return (f"the event loop got almost no CPU at {when} {length} (the machine was "
                    f"busy; not a block in the gateway), in {self.greenlet}")
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
                  seconds=v.get("seconds"), starved=bool(v.get("starved")))
            for k, v in seen.items() if "at" in v]


def summarize(blocks: list[Block]) -> str:
    """One paragraph for `gateway status`, `doctor` and a timed-out start: how often, how long,
    and the latest block's stack in full (the one a person acts on); starvation only as a
    count, since the fix is elsewhere on the machine. Empty when none."""
    starved = sum(b.starved for b in blocks)
    busy = f"got almost no CPU {starved} time(s) (the machine was busy)" if starved else ""
    blocks = [b for b in blocks if not b.starved]
    if not blocks:
        return f"event loop {busy}" if busy else ""
    known = [b.seconds for b in blocks if b.seconds is not None]
    longest = f", longest {max(known):.2f}s" if known else ""
    return (f"event loop blocked {len(blocks)} time(s){longest}; the last time, "
            + blocks[-1].describe() + (f"\nIt also {busy}." if busy else ""))


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


def thread_state(native_id: int) -> str | None:
    """The kernel's one-letter state of a thread of this process (`R` running or ready, `S`
    waiting, `D` waiting on a disk, ...); None where there is no /proc."""
    try:
        stat = Path(f"/proc/self/task/{native_id}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[0]  # the name in parentheses may hold spaces


def is_starved(state: str | None, cpu: float, wall: float) -> bool:
    """Ready to run for `wall` seconds and on a CPU for only `cpu` of them: the machine, not
    the code, held the loop. A thread waiting in C is `S`/`D`, one running in C uses CPU."""
    return state == "R" and cpu < wall * STARVED_SHARE


class LoopWatch:
    """Start once in the gateway process, after `patch_all`, before serving."""

    def __init__(self, report_path: Path, limit: float,
                 on_block: Callable[[float], None] = lambda seconds: None) -> None:
        self.report_path = report_path
        self.limit = limit
        self.on_block = on_block  # the metrics counter, called on the loop
        self.beats = 0
        self.last_beat = time.perf_counter()
        self.last_cpu = 0.0  # the loop thread's CPU time at its last heartbeat
        self._reported_episode = -1
        self._stacks: dict[int, str] = {}
        self._starved_episodes: set[int] = set()  # written by the monitor, read on the loop
        self._loop_thread = 0
        self._loop_native = 0
        self._loop_cpu_clock: int | None = None
        # set once the port serves (`gateway.server.main`): before, the loop building the
        # gateway without a turn for others is the start being slow, not a conversation
        # waiting; the monitor still reports a start that hangs
        self.serving = False

    def start(self) -> None:
        import gevent
        from gevent import config, events, get_hub, monkey

        # the OS thread running the loop; patched `threading` would give a greenlet's id
        self._loop_thread = monkey.get_original("_thread", "get_ident")()
        self._loop_native = monkey.get_original("threading", "get_native_id")()
        try:
            self._loop_cpu_clock = time.pthread_getcpuclockid(self._loop_thread)
        except (AttributeError, OSError):  # not on every platform: every stop is then a block
            self._loop_cpu_clock = None
        try:
            if self.report_path.stat().st_size > REPORT_LIMIT:
                self.report_path.unlink()
        except OSError:
            pass
        config.monitor_thread = True
        config.max_blocking_time = self.limit
        config.print_blocking_reports = False  # ours go to the file and the log, once each
        self.last_beat, self.last_cpu = time.perf_counter(), time.thread_time()
        events.subscribers.append(self._on_event)
        get_hub().start_periodic_monitoring_thread()
        gevent.spawn(self._heartbeat)

    # In gevent's monitor thread, while the loop is stuck ------------------------------------
    def _on_event(self, event: Any) -> None:
        from gevent.events import EventLoopBlocked

        episode = self.beats
        if not isinstance(event, EventLoopBlocked) or (
                self._reported_episode == episode and episode not in self._starved_episodes):
            return  # reported already: gevent repeats the event every period of one block
        if time.perf_counter() - self.last_beat < self.limit * 0.9:
            return  # the heartbeat ran lately: gevent's tracer lost track of the hub
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None or _in_hub(frame):
            return  # the loop itself runs (waiting, or starved of CPU): no greenlet holds it
        # a stop first seen as starvation is looked at again each period: it becomes a block
        # if the loop then waits or runs in C (a busy machine while the gateway starts, then
        # a library that hangs)
        starved = self._starved()
        if starved and episode in self._starved_episodes:
            return  # still only starved: said already
        if starved:
            self._starved_episodes.add(episode)
        else:
            self._starved_episodes.discard(episode)
        self._reported_episode = episode
        stack = "".join(traceback.format_stack(frame, limit=STACK_FRAMES))
        self._stacks[episode] = stack
        self._append({"pid": os.getpid(), "episode": episode, "at": time.time(),
                      "greenlet": str(event.greenlet), "stack": stack, "starved": starved})

    def _starved(self) -> bool:
        if self._loop_cpu_clock is None:
            return False
        cpu = time.clock_gettime(self._loop_cpu_clock) - self.last_cpu
        return is_starved(thread_state(self._loop_native), cpu,
                          time.perf_counter() - self.last_beat)

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
        last, last_process = time.perf_counter(), time.process_time()
        while True:
            gevent.sleep(interval)
            now, cpu, process = time.perf_counter(), time.thread_time(), time.process_time()
            late = now - last - interval
            if late > self.limit:
                loop_cpu = cpu - self.last_cpu
                self._ended(self.beats, late, now - last, loop_cpu,
                            process - last_process - loop_cpu)
            self.beats += 1
            self.last_beat, self.last_cpu = now, cpu
            last, last_process = now, process

    def _ended(self, episode: int, seconds: float, wall: float, loop_cpu: float,
               other_cpu: float) -> None:
        """The loop ran again after `seconds`: say what held it. `wall` is the whole gap since
        the last heartbeat, `loop_cpu` the loop thread's CPU time in it, `other_cpu` that of
        the process's other threads."""
        stack = self._stacks.pop(episode, "")
        if not stack and not self.serving:
            return
        if stack:
            self._append({"pid": os.getpid(), "episode": episode, "seconds": round(seconds, 3)})
        elif other_cpu >= wall * STARVED_SHARE and other_cpu > loop_cpu:
            # the monitor could not look: it needs Python's lock too, and another thread had it
            stack = (f"(no greenlet: another thread of the gateway used {other_cpu:.2f}s of "
                     "CPU meanwhile and held Python's lock; a library working on a thread, "
                     "which ARCHITECTURE.md's thread rule runs in a child process)\n")
            self._append({"pid": os.getpid(), "episode": episode,
                          "at": time.time() - seconds, "greenlet": "another thread",
                          "stack": stack, "starved": False, "seconds": round(seconds, 3)})
        elif loop_cpu < wall * STARVED_SHARE:
            # nothing of ours ran: the machine was busy (a thread that waits in C holding the
            # lock looks the same from here; the monitor sees one that waits on the loop)
            self._starved_episodes.add(episode)
        if episode in self._starved_episodes:
            self._starved_episodes.discard(episode)
            log.warning("the gateway got almost no CPU for %.2fs: the machine is busy with "
                        "other work (not a block in the gateway; `uptime` shows the load)",
                        seconds)
            return
        log.warning("the event loop was blocked for %.2fs (limit %.2fs); every conversation "
                    "waited. Where it was blocked:\n%s", seconds, self.limit,
                    stack.rstrip() or "(not caught: shorter than two monitor periods)")
        self.on_block(seconds)
