"""`benchmarks/binance_api.py` in a tiny configuration, so the script cannot rot: it starts `tradebridge up`, runs
every loop and prints every figure. Only the shape of the output is checked, never a figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_binance_api_benchmark_runs_every_loop() -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "binance_api.py"),
            "--rounds",
            "10",
            "--idle",
            "0.5",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout)
    for loop in ("binance", "binance-ack", "ours"):
        assert figures[loop]["calls"] == 30
        for field in (
            "requests_per_s",
            "server_cpu_ms_per_call",
            "place_p99_ms",
            "fetch_p99_ms",
            "cancel_p99_ms",
        ):
            assert field in figures[loop]
    assert "cpu_ratio_to_ours" in figures["binance"]
