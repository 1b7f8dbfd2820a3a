"""`benchmarks/chaos.py` in its short form: the distributed deployment on its own PostgreSQL and Redis, a few
hundred paper and testnet orders, and every fault kind at least once (each service SIGKILLed, Redis restarted
with and without its data, PostgreSQL crashed, the double's 503/429/timeouts/lost acknowledgements and cut user
streams). The invariants are the test: nothing accepted lost or placed twice, nothing stuck, every ledger and
position consistent, no WebSocket gap or duplicate, reconciliation clean after repair. Figures (orders/s,
waits) are printed by the script but not asserted: the machine is shared."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1800),
    # 5-15 minutes on this 2-core machine, and not yet all-zero on every seed (see docs/reliability.md): run it
    # on purpose, not in every CI run, until it is both short and steady.
    pytest.mark.skipif(
        not os.environ.get("TRADEBRIDGE_CHAOS"),
        reason="set TRADEBRIDGE_CHAOS=1 to run the chaos run's short form",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
SHORT = [
    "--seed", "7",
    "--orders", "300",
    "--users", "30",
    "--duration", "45",
    "--kills", "1",
    "--ws-clients", "6",
    "--stuck-bound", "120",
    "--json",
]  # fmt: skip
FAULTS = {
    "gateway-1",
    "gateway-2",
    "execution",
    "events-1",
    "events-2",
    "pricefeed",
    "redis-keep",
    "redis-empty",
    "postgres",
    "503",
    "429",
    "timeout",
    "lost-ack",
    "lost-cancel-ack",
    "lookup-500",
    "stream-cut",
    "stream-terminated",
}


def test_short_chaos_run_keeps_every_invariant() -> None:
    if shutil.which("redis-server") is None or not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.skip("needs redis-server and PostgreSQL's initdb (a private server of the run's own)")
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "chaos.py"), *SHORT],
        capture_output=True,
        text=True,
        timeout=1500,
        cwd=ROOT,
    )
    lines = out.stdout.strip().splitlines()
    assert lines and lines[-1].startswith("{"), out.stdout[-3000:] + out.stderr[-3000:]
    figures = json.loads(lines[-1])
    assert set(figures["faults"]) == FAULTS, figures["faults"]  # each kind once, none failed to run
    assert figures["accepted_paper"] > 0 and figures["accepted_testnet"] > 0
    assert figures["details"]["ws"]["resumes"] > 0
    assert figures["invariants"] == {name: 0 for name in figures["invariants"]}, out.stdout[-6000:]
    assert out.returncode == 0
