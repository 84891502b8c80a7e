"""CPU time and memory of the processes under test, sampled in a background thread.

CPU seconds are read per process (user + system, plus reaped children) and remembered per pid, so
a process that exits keeps its last reading in the total. Samples carry wall-clock times, the
clock Kafka record timestamps use, so CPU can be taken over exactly the throughput window.
"""

from __future__ import annotations

import bisect
import threading
import time

import psutil

TREE_REFRESH_S = 1.0


class TreeSampler(threading.Thread):
    """CPU seconds and RSS of `pids` and their descendants, every `interval_s`."""

    def __init__(self, pids: list[int], interval_s: float = 0.02) -> None:
        super().__init__(daemon=True, name="perf-sampler")
        self.roots = pids
        self.interval_s = interval_s
        self.times: list[float] = []
        self.cpu: list[float] = []
        self.rss: list[int] = []
        self._halt = threading.Event()
        self._procs: dict[int, psutil.Process] = {}
        self._cpu_of: dict[int, float] = {}

    def _refresh_tree(self) -> None:
        for pid in self.roots:
            try:
                root = self._procs.get(pid) or psutil.Process(pid)
                self._procs[pid] = root
                for child in root.children(recursive=True):
                    self._procs.setdefault(child.pid, child)
            except psutil.NoSuchProcess:
                continue

    def _sample(self) -> None:
        rss = 0
        for pid, proc in list(self._procs.items()):
            try:
                with proc.oneshot():
                    t = proc.cpu_times()
                    self._cpu_of[pid] = t.user + t.system + t.children_user + t.children_system
                    rss += proc.memory_info().rss
            except psutil.NoSuchProcess:
                del self._procs[pid]
        self.times.append(time.time())
        self.cpu.append(sum(self._cpu_of.values()))
        self.rss.append(rss)

    def run(self) -> None:
        refreshed = 0.0
        while not self._halt.is_set():
            if time.monotonic() - refreshed > TREE_REFRESH_S:
                self._refresh_tree()
                refreshed = time.monotonic()
            self._sample()
            self._halt.wait(self.interval_s)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def cpu_at(self, t: float) -> float:
        """CPU seconds used by time t, interpolated between the samples around it."""
        times, cpu = self.times, self.cpu
        if not times:
            return 0.0
        i = bisect.bisect_left(times, t)
        if i <= 0:
            return cpu[0]
        if i >= len(times):
            return cpu[-1]
        t0, t1 = times[i - 1], times[i]
        return cpu[i - 1] + (cpu[i] - cpu[i - 1]) * (t - t0) / max(t1 - t0, 1e-9)

    @property
    def peak_rss_bytes(self) -> int:
        return max(self.rss, default=0)
