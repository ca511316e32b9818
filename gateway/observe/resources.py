"""CPU and memory of the machine and of the gateway's processes, read with psutil.

The gateway's own cost includes its skill host processes and running script skills, so the
process figures cover the whole tree under each gateway process. With several worker
processes (prometheus-client's multiprocess mode) the workers are found from the files in
PROMETHEUS_MULTIPROC_DIR, which prometheus-client names after each writer's pid.

Each `ResourceMeter` keeps its own CPU baseline: `psutil.cpu_percent(None)` shares one per
process, so a scrape and the alert evaluator calling it would each see the other's interval.
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


@dataclass(frozen=True)
class ResourceReading:
    """Machine percents are of the whole machine; `process_cpu_percent` is of one core (as
    `top` shows it), summed over the gateway's process tree."""

    cpu_percent: float
    memory_percent: float
    process_cpu_percent: float
    process_cpu_seconds: float
    process_rss_bytes: int
    process_memory_percent: float
    processes: int


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the machine since boot, counted as psutil does."""
    t = psutil.cpu_times()
    total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    idle = t.idle + getattr(t, "iowait", 0.0)
    return total - idle, total


class ResourceMeter:
    """Reads the machine and the gateway's processes; each `read` covers the time since the
    previous one (the first covers the time since the meter was made)."""

    def __init__(self, pids: Callable[[], Iterable[int]] = own_pid,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pids = pids
        self.clock = clock
        self._procs: dict[int, psutil.Process] = {}
        self._machine = _machine_busy()
        self._tree_cpu = self._tree()[0]
        self._at = clock()

    def _tree(self) -> tuple[float, int, int]:
        """(CPU seconds, RSS bytes, process count) of every listed process and its children."""
        seen: dict[int, psutil.Process] = {}
        for pid in self.pids():
            try:
                root = self._procs.get(pid) or psutil.Process(pid)
                for proc in [root, *root.children(recursive=True)]:
                    seen.setdefault(proc.pid, self._procs.get(proc.pid, proc))
            except psutil.Error:
                continue
        cpu, rss = 0.0, 0
        for pid, proc in list(seen.items()):
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    cpu += times.user + times.system
                    rss += proc.memory_info().rss
            except psutil.Error:
                del seen[pid]
        self._procs = seen
        return cpu, rss, len(seen)

    def read(self) -> ResourceReading:
        busy, total = _machine_busy()
        last_busy, last_total = self._machine
        machine = 100.0 * (busy - last_busy) / (total - last_total) if total > last_total else 0.0
        cpu, rss, count = self._tree()
        now = self.clock()
        elapsed = now - self._at
        tree = 100.0 * max(0.0, cpu - self._tree_cpu) / elapsed if elapsed > 0 else 0.0
        self._machine, self._tree_cpu, self._at = (busy, total), cpu, now
        memory = psutil.virtual_memory()
        return ResourceReading(
            cpu_percent=round(min(100.0, max(0.0, machine)), 2),
            memory_percent=memory.percent,
            process_cpu_percent=round(tree, 2),
            process_cpu_seconds=cpu,
            process_rss_bytes=rss,
            process_memory_percent=round(100.0 * rss / memory.total, 2),
            processes=count)


class ProcessCollector(Collector):
    """Prometheus collector read at scrape time; system CPU is over the time since the
    previous scrape."""

    def __init__(self, meter: ResourceMeter) -> None:
        self.meter = meter

    def collect(self) -> Iterator[Metric]:
        r = self.meter.read()
        yield CounterMetricFamily("moltbot_process_cpu_seconds",
                                  "CPU time of the gateway's processes and their children",
                                  value=r.process_cpu_seconds)
        yield GaugeMetricFamily("moltbot_process_resident_memory_bytes",
                                "Resident memory of the gateway's processes and their children",
                                value=r.process_rss_bytes)
        yield GaugeMetricFamily("moltbot_process_memory_percent",
                                "The gateway's resident memory as a percent of the machine's",
                                value=r.process_memory_percent)
        yield GaugeMetricFamily("moltbot_processes", "Processes counted in the figures above",
                                value=r.processes)
        yield GaugeMetricFamily("moltbot_system_cpu_percent",
                                "Machine CPU use since the previous scrape", value=r.cpu_percent)
        yield GaugeMetricFamily("moltbot_system_memory_percent", "Machine memory in use",
                                value=r.memory_percent)
