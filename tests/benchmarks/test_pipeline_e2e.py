"""`benchmarks/pipeline_e2e.py` in a tiny configuration, so that the script cannot rot between the quiet-machine
runs it is made for: every phase runs (the floors, the pipeline floor, the distributed layout with two execution
workers and a py-spy profile, the gateway alone, the embedded default) and the summary names every floor and
target. Only the shape of the output is checked, never a figure: the machine is shared, figures are not test
material."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.services import PG_ADMIN_DSN, service_missing

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "--floor-steps", "10",
    "--fractions", "0.2,0.4",
    "--gateway-fractions", "0.5",
    "--duration", "1",
    "--step-duration", "1",
    "--warmup", "0",
    "--drain", "5",
    "--users", "3",
    "--connections", "3",
    "--workers", "2",
]  # fmt: skip


@pytest.fixture
def services() -> None:
    import asyncio

    import asyncpg

    async def ping() -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        await conn.close()

    try:
        asyncio.run(ping())
    except Exception as exc:
        service_missing("PostgreSQL", exc)
    if shutil.which("redis-server") is None and not Path("/usr/bin/redis-server").exists():
        service_missing("redis-server", FileNotFoundError("redis-server"))


@pytest.mark.slow
def test_tiny_run_prints_every_floor_and_target(services: None, tmp_path: Path) -> None:
    out_json, prof = tmp_path / "figures.json", tmp_path / "profile"
    argv = [sys.executable, "benchmarks/pipeline_e2e.py", *TINY, "--admin-dsn", PG_ADMIN_DSN]
    argv += ["--profile", str(prof), "--json", str(out_json)]
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=280)
    output = run.stdout[-6000:] + run.stderr[-4000:]
    assert run.returncode == 0, output

    figures = json.loads(out_json.read_text())
    floors = [f["floor"].split(" ")[0] for f in figures["floors"]]
    assert floors == ["bare", "durable", "durable", "pipeline", "pipeline"], output
    # the pipeline floor really fills: every accepted order's FILLED reached its socket
    pipeline = figures["pipeline_floor"]
    assert pipeline["accepted"] > 0 and pipeline["not_filled"] == 0, output
    assert set(pipeline["per_process"]) == {"gateway", "execution", "events", "pricefeed"}, output
    assert pipeline["per_process"]["execution"]["syscalls"] > 0, output  # the meter reads /proc/PID/io
    assert "pipeline floor at 0.2 R" in run.stdout, output
    assert [t["target"] for t in figures["targets"]] == ["1", "2", "2", "3", "4", "5", "5", "5"], output
    for t in figures["targets"]:
        assert t["verdict"] in {"PASS", "MISS", "n/a", ""}, t
        assert t["measured"] not in {"", "-"}, t
    per_process = figures["cpu_per_order_ms"]
    assert {"gateway", "execution", "events", "pricefeed", "pg"} <= per_process.keys()
    assert "execution workers" in run.stdout  # --workers 2 says what its figure shows
    assert "== summary" in run.stdout and "CPU ms/order at 0.2 R by process" in run.stdout
    # the slowest 1% of the distributed layout's orders, hop by hop: which hop made the tail
    # a hop's mean may print below zero: a send woken a little before its due time (the event loop's timers
    # round to the millisecond), or the gateway's wall clock read against the load's monotonic one
    ms = r"-?[\d.]+"
    tail = re.search(
        rf"slowest 1% by FILLED \((\d+) orders.*?: due->gateway {ms}, .*event->ws {ms}", run.stdout
    )
    assert tail and int(tail[1]) >= 1, output
    assert re.search(
        rf"slowest 1% by ack \(\d+ orders.*?: due->sent {ms}, sent->gateway {ms}, gateway->ack {ms}",
        run.stdout,
    ), output

    if Path(sys.executable).with_name("py-spy").exists():  # a dev install has it (pyproject's dev extras)
        names = {p.name for p in prof.iterdir()}
        expected = {"distributed-gateway.txt", "distributed-execution-1.txt", "embedded-up.txt"}
        assert expected <= names, (names, output)
    if shutil.which("perf"):  # each process's CPU by what ran it: the interpreter, the kernel, C extensions
        assert re.search(r"perf distributed gateway: .*Python interpreter \d+%", run.stdout), output
