"""CPU and memory of the machine and of the gateway's processes, read with psutil.

The gateway's own cost includes its skill host processes and running script skills, so the
process figures cover the whole tree under each gateway process. With several worker
processes (prometheus-client's multiprocess mode) the workers are found from the files in
PROMETHEUS_MULTIPROC_DIR, which prometheus-client names after each writer's pid.

Each meter keeps its own CPU baseline: `psutil.cpu_percent(None)` shares one per process, so
a scrape and the alert evaluator calling it would each see the other's interval.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

_WRITER_PID = re.compile(r"_(\d+)\.db$")


def own_pid() -> list[int]:
    return [os.getpid()]


def multiprocess_pids(directory: str) -> Callable[[], list[int]]:
    """Live pids that have written metrics into `directory`, and this process."""

    def pids() -> list[int]:
        found = {os.getpid()}
        for path in Path(directory).glob("*.db"):
            match = _WRITER_PID.search(path.name)
            if match and psutil.pid_exists(int(match.group(1))):
                found.add(int(match.group(1)))
        return sorted(found)

    return pids


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the machine since boot, counted as psutil does."""
    t = psutil.cpu_times()
    total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    idle = t.idle + getattr(t, "iowait", 0.0)
    return total - idle, total


class MachineMeter:
    """Machine CPU and memory use in percent; CPU over the time since the previous `read`
    (the first: since the meter was made). Cheap: two reads of /proc."""

    def __init__(self) -> None:
        self._last = _machine_busy()

    def read(self) -> tuple[float, float]:
        busy, total = _machine_busy()
        last_busy, last_total = self._last
        self._last = busy, total
        cpu = 100.0 * (busy - last_busy) / (total - last_total) if total > last_total else 0.0
        return round(min(100.0, max(0.0, cpu)), 2), psutil.virtual_memory().percent


@dataclass(frozen=True)
class ProcessReading:
    """Summed over the gateway's process tree; `cpu_percent` is of one core, as `top` shows."""

    cpu_percent: float
    cpu_seconds: float
    rss_bytes: int
    memory_percent: float
    processes: int


class ProcessMeter:
    """The gateway's processes and their children. Finding children scans every process on
    the machine (~1.4 ms for 100), so the tree is looked up again only every `rescan`
    seconds; the known processes are read on every `read`."""

    def __init__(self, pids: Callable[[], Iterable[int]] = own_pid,
                 clock: Callable[[], float] = time.monotonic, rescan: float = 10.0) -> None:
        self.pids = pids
        self.clock = clock
        self.rescan = rescan
        self._procs: dict[int, psutil.Process] = {}
        self._scanned_at: float | None = None
        self._cpu = self._sum()[0]
        self._at = clock()

    def _scan(self) -> None:
        found: dict[int, psutil.Process] = {}
        for pid in self.pids():
            try:
                root = self._procs.get(pid) or psutil.Process(pid)
                for proc in [root, *root.children(recursive=True)]:
                    found.setdefault(proc.pid, self._procs.get(proc.pid, proc))
            except psutil.Error:
                continue
        self._procs = found
        self._scanned_at = self.clock()

    def _sum(self) -> tuple[float, int]:
        """(CPU seconds, RSS bytes) of the known processes; gone ones are dropped."""
        if self._scanned_at is None or self.clock() - self._scanned_at >= self.rescan:
            self._scan()
        cpu, rss = 0.0, 0
        for pid, proc in list(self._procs.items()):
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    cpu += times.user + times.system
                    rss += proc.memory_info().rss
            except psutil.Error:
                del self._procs[pid]
        return cpu, rss

    def read(self) -> ProcessReading:
        cpu, rss = self._sum()
        now = self.clock()
        elapsed = now - self._at
        percent = 100.0 * max(0.0, cpu - self._cpu) / elapsed if elapsed > 0 else 0.0
        self._cpu, self._at = cpu, now
        return ProcessReading(cpu_percent=round(percent, 2), cpu_seconds=cpu, rss_bytes=rss,
                              memory_percent=round(100.0 * rss / psutil.virtual_memory().total,
                                                   2),
                              processes=len(self._procs))


class ProcessCollector(Collector):
    """Prometheus collector read at scrape time; machine CPU is over the time since the
    previous scrape."""

    def __init__(self, processes: ProcessMeter, machine: MachineMeter | None = None) -> None:
        self.processes = processes
        self.machine = machine or MachineMeter()

    def collect(self) -> Iterator[Metric]:
        p = self.processes.read()
        cpu, memory = self.machine.read()
        yield CounterMetricFamily("moltbot_process_cpu_seconds",
                                  "CPU time of the gateway's processes and their children",
                                  value=p.cpu_seconds)
        yield GaugeMetricFamily("moltbot_process_resident_memory_bytes",
                                "Resident memory of the gateway's processes and their children",
                                value=p.rss_bytes)
        yield GaugeMetricFamily("moltbot_process_memory_percent",
                                "The gateway's resident memory as a percent of the machine's",
                                value=p.memory_percent)
        yield GaugeMetricFamily("moltbot_processes", "Processes counted in the figures above",
                                value=p.processes)
        yield GaugeMetricFamily("moltbot_system_cpu_percent",
                                "Machine CPU use since the previous scrape", value=cpu)
        yield GaugeMetricFamily("moltbot_system_memory_percent", "Machine memory in use",
                                value=memory)
