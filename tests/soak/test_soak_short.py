"""`benchmarks/soak.py` in short (about 80 s of load after start-up): the distributed deployment (private PostgreSQL
and Redis, gateway, execution, events and pricefeed processes from the working tree) under steady orders and
WebSocket clients coming and going, with small stream caps and a short processed-mark retention so that every
bound is reached inside the run. The quantities the system must bound are asserted from the run's figures; memory
and file descriptors are only judged by the long run (a short one is mostly warm-up)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CAPS = {"orders.commands.*": 150, "events.private": 500, "events.user.*": 60, "market.*": 100}
RETENTION_S = 15
ARGV = [
    "--minutes", "1.3",
    "--interval", "10",
    "--rate", "5",
    "--users", "8",
    "--ws-clients", "6",
    "--ws-min-s", "2",
    "--ws-max-s", "8",
    "--marks-retention", str(RETENTION_S),
    "--stream-caps", ",".join(f"{k}={v}" for k, v in CAPS.items()),
    "--code", "tree",
]  # fmt: skip


@pytest.fixture
def private_servers() -> None:
    for exe in ("redis-server", "runuser"):
        if shutil.which(exe) is None:
            pytest.skip(f"{exe} is not installed")
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.skip("no PostgreSQL initdb under /usr/lib/postgresql")


@pytest.mark.slow
@pytest.mark.timeout(900)  # four services and two private servers start first: minutes on a busy machine
def test_short_soak_keeps_streams_outbox_marks_and_connections_bounded(
    private_servers: None, tmp_path: Path
) -> None:
    out = tmp_path / "soak.json"
    run = subprocess.run(
        [sys.executable, "benchmarks/soak.py", *ARGV, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    log = run.stdout[-8000:] + run.stderr[-4000:]
    assert out.exists(), log
    figures = json.loads(out.read_text())
    verdicts = {v["name"]: v for v in figures["verdicts"]}
    assert figures["orders_accepted"] >= 100, log

    # Streams: never above their cap (+ one node of `MAXLEN ~` slack), and the busy ones reached it: trimmed.
    for name in ("events.private", "market.ticker", "market.depth", "orders.commands.paper", "events.user.*"):
        v = verdicts[f"stream:{name}"]
        assert v["rule"] == "cap" and v["ok"], (v, log)
    assert verdicts["stream:events.private"]["peak"] >= CAPS["events.private"], log
    assert verdicts["stream:market.ticker"]["peak"] >= CAPS["market.*"], log
    assert verdicts["user_streams"]["ok"], log

    # The outbox drains: flat while running, empty soon after the load stops; nothing left pending in the group.
    assert verdicts["rows:outbox"]["ok"], log
    assert figures["drain_s"]["outbox"] is not None and figures["drain_s"]["pending"] is not None, log

    # Processed marks are pruned: only the retention's worth stays, far fewer than the commands executed.
    marks = verdicts["rows:processed_commands"]
    assert marks["ok"] and marks["last"] < figures["orders_accepted"] / 2, (marks, log)

    # Connections: the hub never holds more sockets than clients are connected, and none once they left.
    assert verdicts["ws_open"]["ok"] and figures["drain_s"]["ws_open"] is not None, log
    assert figures["websocket"].get("dropped", 0) > 0 and figures["websocket"].get("closed", 0) > 0, log

    # File descriptors of every process: flat.
    fds = [v for n, v in verdicts.items() if n.startswith("fds:")]
    assert len(fds) >= 5 and all(v["ok"] for v in fds), (fds, log)
