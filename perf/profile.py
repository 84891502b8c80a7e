"""Sampling profiles of a running worker with py-spy, and their top frames as a table.

py-spy attaches to a live process without changing it, so the profile is of the worker exactly as
benchmarked. Frames are recorded without line numbers (one row per function) in py-spy's "raw"
collapsed-stack format: `outer (file);...;inner (file) <samples>` per line.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

RATE_HZ = 200


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    """`start(pid)` attaches py-spy; `stop()` ends it and leaves the collapsed stacks in `out`."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None
        self.error: str | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None

    def start(self, pid: int) -> None:
        exe = py_spy()
        if exe is None:
            self.error = "py-spy not found"
            return
        self.out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            exe,
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--nolineno",
            "--rate",
            str(RATE_HZ),
            "--nonblocking",
            "--output",
            str(self.out),
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        if not self.out.exists():
            self.error = err.decode(errors="replace")[-500:]


def read_stacks(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks.append((frames.split(";"), int(count)))
    return stacks


def _package(frame: str) -> str:
    """'handle (streams/agents/decide.py)' -> 'streams'; frames without a file keep their name."""
    _, _, where = frame.partition(" (")
    where = where.rstrip(")")
    return where.split("/", 1)[0] if "/" in where else (where or frame)


def top_frames(path: Path, n: int = 15) -> dict[str, object]:
    """Self time per function, inclusive time per function (below the entry chain), and self time per
    package, as shares of all samples (active threads only: time blocked in the event loop's poll is
    not sampled)."""
    stacks = read_stacks(path)
    total = sum(count for _, count in stacks)
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    for frames, count in stacks:
        own[frames[-1]] += count
        packages[_package(frames[-1])] += count
        for frame in set(frames):
            inclusive[frame] += count

    def share(counter: Counter[str], k: int) -> list[tuple[str, float]]:
        return [(name, round(c / total, 4)) for name, c in counter.most_common(k)] if total else []

    # Frames on (nearly) every stack are the entry chain (runpy, typer, the worker's main): no news.
    below_main = Counter({name: c for name, c in inclusive.items() if c < 0.95 * total})
    return {
        "samples": total,
        "self": share(own, n),
        "inclusive": share(below_main, n),
        "self_by_package": share(packages, 12),
    }
