"""Every benchmark script without a test of its own, run in a tiny configuration so it cannot rot: a composition
root change once left `ws_fanout.py` building the events app the old way, failing at start-up, and nothing said
so. Only that each runs to the end and prints its figures is checked, never a figure."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.services import REDIS_URL

ROOT = Path(__file__).resolve().parents[2]

# script, tiny arguments, a line every complete run prints
SMALL_RUNS = [
    (
        "ws_fanout.py",
        ["--clients", "20", "--client-procs", "1", "--seconds", "2", "--private-users", "5"],
        r"clients: 20 connected of 20 in [\d.]+s, 0 dropped",
    ),
    (
        "bus_throughput.py",
        ["--n", "200", "--redis-url", REDIS_URL],
        r"read_group\+ack \(count 100\)\s+[\d,]+ msg/s",
    ),
    ("gateway_place.py", ["--orders", "20", "--users", "2"], r"COMMIT"),
    ("embedded_work.py", ["--orders", "20", "--clients", "2", "--users", "2"], r"codes \{202: 20\}"),
    ("paper_book.py", ["--ops", "500", "--repeat", "1"], r"traded qty: paper book=\d+"),
    ("pnl_remark.py", ["--positions", "50", "--ticks", "3"], r"one-symbol\s+updates/tick=\s+50"),
    ("binance_double_roundtrip.py", [], r"orders in the double's record: \d+"),
    ("testnet_fill_latency.py", ["--fills", "2"], r"^polling\s+2\s"),
]


@pytest.mark.parametrize(("script", "args", "expect"), SMALL_RUNS, ids=[r[0] for r in SMALL_RUNS])
def test_the_benchmark_runs_to_its_figures(script: str, args: list[str], expect: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": REDIS_URL}
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert re.search(expect, out.stdout, re.M), out.stdout[-3000:]
