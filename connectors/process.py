"""Child processes that never outlive their owner (workers, broker JVMs)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Runs in the child before exec: the kernel SIGKILLs it when the parent dies, even by SIGKILL.

    The child also gets its own process group, so a Ctrl-C in the terminal reaches the owner, which
    then stops its children in order (workers first, the broker last).
    """
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    os.setpgrp()


def spawn(args: list[str], env: dict[str, str], log: Path | None = None) -> subprocess.Popen[bytes]:
    out = log.open("ab") if log is not None else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            args,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
    finally:
        if log is not None:
            out.close()  # type: ignore[union-attr]


def spawn_worker(
    env_overrides: dict[str, str], log: Path | None = None, *args: str
) -> subprocess.Popen[bytes]:
    """Start `agentstream worker` in a child process with settings passed through the environment."""
    env = {**os.environ, **env_overrides}
    return spawn([sys.executable, "-m", "streams.cli", "worker", *args], env, log)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
    """Stop a child: `sig` first (SIGTERM lets a worker commit and leave the group), then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout_s)
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)
    return proc.returncode
