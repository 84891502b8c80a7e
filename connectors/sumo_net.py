"""SUMO inputs generated, not downloaded: networks by `netgenerate`, demand by `randomTrips.py`.

Generation is deterministic (fixed seeds) and cached under `<data_dir>/sumo/<net>/`, so a run on a
fresh machine needs only the `traffic` extra and a second run costs nothing. Files are written
to a temporary name and renamed, so parallel runs (tests, workers) never read half a file.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = "SUMO is not installed: pip install .[traffic]  (eclipse-sumo, libsumo, traci)"

# Every approach: 2 through/right lanes plus a dedicated left-turn lane, so the default program
# has four green phases (N-S through, N-S left, E-W through, E-W left) as at a real junction.
_LAYOUT = (
    "--default.lanenumber=2",
    "--turn-lanes=1",
    "--turn-lanes.length=200",  # the whole approach: queues are never hidden on an upstream edge
    "--no-turnarounds",
    "--tls.green.time=30",
    "--tls.left-green.time=10",  # = the minimum green, so fixed time obeys the same constraint
    "--tls.yellow.time=3",
)


@dataclass(frozen=True, slots=True)
class NetSpec:
    """One generated network and the demand profile that loads it."""

    name: str
    netgenerate_args: tuple[str, ...]
    # Vehicles per hour for equal slices of the demand period: off-peak, rush hour, off-peak.
    rates_veh_h: tuple[float, ...]


NETWORKS: dict[str, NetSpec] = {
    "single": NetSpec(
        "single",
        ("--grid", "--grid.number=1", "--grid.attach-length=200", "--tls.set=A0", *_LAYOUT),
        (700.0, 1600.0, 700.0),
    ),
    "grid2x2": NetSpec(
        "grid2x2",
        (
            "--grid",
            "--grid.number=2",
            "--grid.length=200",
            "--grid.attach-length=200",
            "--tls.set=A0,A1,B0,B1",
            *_LAYOUT,
        ),
        (1100.0, 2400.0, 1100.0),
    ),
}


def sumo_home() -> Path:
    """SUMO_HOME of the pip-installed `eclipse-sumo` (or the environment's), with a clear error."""
    env = os.environ.get("SUMO_HOME")
    if env and (Path(env) / "tools" / "randomTrips.py").exists():
        return Path(env)
    try:
        import sumo
    except ImportError:
        raise RuntimeError(INSTALL_HINT) from None
    return Path(sumo.SUMO_HOME)


def tool_env() -> dict[str, str]:
    home = sumo_home()
    return {**os.environ, "SUMO_HOME": str(home), "PATH": f"{home / 'bin'}{os.pathsep}{os.environ['PATH']}"}


def binary(name: str) -> str:
    path = sumo_home() / "bin" / name
    if not path.exists():
        raise RuntimeError(f"{name} not found under {path.parent}; {INSTALL_HINT}")
    return str(path)


def _run(cmd: Sequence[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=tool_env(), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")


def _atomic(target: Path, build: Callable[[Path], None]) -> Path:
    """Build `target` through a temporary file unless it already exists."""
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tmp{os.getpid()}-{target.name}")  # keeps the .xml suffix tools expect
    try:
        build(tmp)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def ensure_network(spec: NetSpec, cache_dir: Path) -> Path:
    """The `.net.xml` of `spec`, generated once."""
    target = cache_dir / spec.name / f"{spec.name}.net.xml"

    def build(tmp: Path) -> None:
        _run([binary("netgenerate"), *spec.netgenerate_args, "--seed=1", "-o", str(tmp)], target.parent)

    return _atomic(target, build)


def ensure_demand(
    spec: NetSpec, net_file: Path, *, duration_s: int, seed: int, cache_dir: Path, scale: float = 1.0
) -> Path:
    """Routes of random fringe-to-fringe trips with a mid-period rush hour, generated once per seed.

    `--insertion-rate` with several values spreads them over equal slices of [0, duration_s];
    `--binomial` makes arrivals random rather than equidistant; `--min-distance` drops U-turns.
    `-r` routes the trips with duarouter once here, so SUMO does not route them at every start.
    """
    rates = [f"{r * scale:g}" for r in spec.rates_veh_h]
    tag = hashlib.blake2b(" ".join(rates).encode(), digest_size=4).hexdigest()
    target = cache_dir / spec.name / f"routes-{duration_s}s-seed{seed}-{tag}.rou.xml"

    def build(tmp: Path) -> None:
        trips = tmp.with_name(f"{tmp.name}.trips.xml")
        try:
            _run(
                [
                    sys.executable,
                    str(sumo_home() / "tools" / "randomTrips.py"),
                    *("-n", str(net_file), "-o", str(trips), "-r", str(tmp)),
                    *("-b", "0", "-e", str(duration_s), "--insertion-rate", *rates, "--binomial", "4"),
                    *("--fringe-factor", "max", "--min-distance", "100"),
                    *("--seed", str(seed), "--prefix", f"s{seed}_"),
                ],
                target.parent,
            )
        finally:
            trips.unlink(missing_ok=True)

    return _atomic(target, build)
