"""A tiny `agentstream bench` end to end: ours and the raw loop on the session's broker."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from streams.cli import app

pytestmark = pytest.mark.integration


def test_tiny_bench_reports_positive_numbers(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = {k: None for k in os.environ if k.startswith("AGENTSTREAM_")}  # CliRunner unsets None values
    env["KAFKA_BOOTSTRAP_SERVERS"] = kafka_bootstrap
    args = ["bench", "--events", "3000", "--runs", "1", "--only", "ours,raw", "--level-seconds", "1",
            "--lag-trials", "1", "--out", str(tmp_path), "--json"]  # fmt: skip
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    out = orjson.loads(result.stdout.strip().splitlines()[-1])
    for key in ("ours_eps", "plain_faust_eps", "quix_eps", "raw_eps", "latency_ms", "learning_lag_ms",
                "scale_2_workers"):  # fmt: skip
        assert key in out
    assert out["ours_eps"] > 0 and out["raw_eps"] > 0
    assert out["plain_faust_eps"] is None and out["quix_eps"] is None  # not selected
    assert set(out["latency_ms"]) == {"25%", "50%", "75%", "90%"}
    for level in out["latency_ms"].values():
        assert level["rate"] > 0 and 0 < level["p50"] <= level["p99"] <= level["p99.9"]
    assert out["learning_lag_ms"]["trials"] >= 1 and out["learning_lag_ms"]["first_worker_p50"] > 0
    assert out["scale_2_workers"]["eps_1_worker"] > 0 and out["scale_2_workers"]["eps_2_workers"] > 0
    assert out["throughput"]["ours"]["cpu_s_per_1k"] > 0 and out["throughput"]["ours"]["peak_rss_mb"] > 0
    assert (tmp_path / "results.json").exists() and (tmp_path / "throughput.png").exists()
