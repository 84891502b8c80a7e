"""`agentstream plan`: the capacity table on published queueing values, and the choice of c."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson
import pytest
import typer
from typer.testing import CliRunner

from perf.cli import register


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def plan_json(cli: typer.Typer, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["plan", *args, "--json"])
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout.strip().splitlines()[-1])


def test_erlang_c_table_value_and_the_smallest_c_that_meets_the_target(cli: typer.Typer) -> None:
    # lambda = 10/s, mu = 1/s: offered load A = 10 Erlangs. With c = 14: rho = 10/14, P(wait) = 0.1741.
    out = plan_json(
        cli, "--rate", "10", "--service-rate", "1", "--latency-p99-ms", "6000", "--max-workers", "16"
    )
    rows = {r["c"]: r for r in out["rows"]}
    assert rows[14]["p_wait"] == pytest.approx(0.1741, abs=5e-5)
    assert rows[14]["rho"] == pytest.approx(10 / 14)
    assert all(not rows[c]["stable"] and rows[c]["w_ms"] is None for c in range(1, 11))  # rho >= 1
    # p99 falls with c: 11 workers give 6.27 s, 12 give 4.97 s, so 12 is the smallest under 6 s.
    assert out["workers"] == 12
    assert not rows[11]["meets"] and rows[11]["p99_ms"] > 6000 >= rows[12]["p99_ms"]
    assert all(rows[c]["meets"] for c in range(12, 17))
    assert out["partitions"] == 24  # a multiple of 12 with 2x headroom
    for r in rows.values():
        if r["stable"]:  # Little's law in every row: L = lambda W
            assert r["l"] == pytest.approx(10 * r["w_ms"] / 1000)


def test_mm1_published_values(cli: typer.Typer) -> None:
    # M/M/1 with lambda = 0.8, mu = 1: rho = 0.8, L = 4, W = 5 s; p99 = ln(100) / (mu - lambda) = 23.0 s.
    out = plan_json(
        cli, "--rate", "0.8", "--service-rate", "1", "--latency-p99-ms", "30000", "--max-workers", "1"
    )
    (row,) = out["rows"]
    assert row["rho"] == pytest.approx(0.8)
    assert row["l"] == pytest.approx(4.0)
    assert row["w_ms"] == pytest.approx(5000.0)
    assert row["p99_ms"] == pytest.approx(1000 * math.log(100) / 0.2, rel=1e-6)
    assert out["workers"] == 1 and out["partitions"] == 2


def test_a_target_below_the_service_time_itself_is_unattainable(cli: typer.Typer) -> None:
    # One event's own p99 service time is ln(100)/mu = 4.6 s: no number of workers gets under 1 s.
    args = ["plan", "--rate", "2", "--service-rate", "1", "--latency-p99-ms", "1000", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0
    assert "no c <= 16 meets" in result.stdout
    assert orjson.loads(result.stdout.strip().splitlines()[-1])["workers"] is None


def test_service_rate_from_a_bench_result(cli: typer.Typer, tmp_path: Path) -> None:
    bench_output = tmp_path / "bench.out"  # captured `bench --json` stdout: tables, then the JSON line
    bench_output.write_text("some table\n" + orjson.dumps({"ours_eps": 20_000.0}).decode() + "\n")
    out = plan_json(cli, "--rate", "30000", "--from-bench", str(bench_output), "--latency-p99-ms", "50")
    assert out["service_rate"] == 20_000.0
    assert out["workers"] == 2  # rho = 0.75 with 2 workers; 1 worker is unstable


def test_exactly_one_source_of_the_service_rate(cli: typer.Typer) -> None:
    neither = CliRunner().invoke(cli, ["plan", "--rate", "10", "--latency-p99-ms", "50"])
    assert neither.exit_code == 2
