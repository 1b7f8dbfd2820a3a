"""Partitioned execution across processes, on real PostgreSQL and a Redis of the test's own: two `tradebridge
execution` processes split the paper books (EXECUTION_PARTITIONS=2, each naming its own partition); one is
killed with `kill -9` mid-load, with orders in flight; the other takes its partition within a few seconds and
every accepted order reaches its resting or final state exactly once (orders, status history, fills, ledger).
When the killed process comes back it gets its partition handed back, and the books split again."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import text
from sqlmodel import col, select

from execution.lease import LEASE_CLASS
from shared.db import create_engine, session_factory
from shared.models import Order, OrderEvent
from tests.pipeline.test_crash import Cluster, check_invariants, submit
from tests.support.eventually import eventually
from tests.support.procs import RedisServer, Service, free_port, service_env

pytestmark = pytest.mark.slow

START = {"USDT": Decimal("1000000"), "BTC": Decimal("100"), "ETH": Decimal("1000")}
FINAL = {"FILLED", "CANCELED", "EXPIRED", "REJECTED"}
# Symbols sorted, dealt round-robin over 2 partitions: BNBUSDT and ETHUSDT are partition 0, BTCUSDT 1.
MIDS = {"BTCUSDT": (Decimal(60000), Decimal("0.001")), "ETHUSDT": (Decimal(3000), Decimal("0.01"))}


def bodies(n: int, seed: int) -> list[dict[str, str]]:
    """Crossing limit orders on both partitions' symbols: many trade, some rest, a few IOC expire."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        symbol = ("BTCUSDT", "ETHUSDT")[i % 2]
        mid, lot = MIDS[symbol]
        out.append(
            {
                "symbol": symbol,
                "side": rng.choice(("BUY", "SELL")),
                "type": "LIMIT",
                "quantity": str(lot * rng.randint(1, 20)),
                "price": str(mid + rng.randint(-20, 20)),
                "time_in_force": rng.choice(("GTC", "GTC", "GTC", "IOC")),
            }
        )
    return out


async def lease_holders(pg_url: str, services: list[Service]) -> dict[str, int]:
    """Which of `services` holds how many paper lease locks (one per symbol of its partitions): the locks'
    backends, by their client port, to the process owning that port."""
    engine = create_engine(pg_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT a.client_port, count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = CAST(:c AS oid) "
                    "AND l.objsubid = 2 "
                    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                    "GROUP BY a.client_port"
                ),
                {"c": LEASE_CLASS},
            )
            by_port = {int(port): int(n) for port, n in rows}
    finally:
        await engine.dispose()
    out: dict[str, int] = {}
    for s in services:
        if s.proc is None or s.proc.poll() is not None:
            continue
        ports = {c.laddr.port for c in psutil.Process(s.proc.pid).net_connections(kind="tcp")}
        held = sum(n for port, n in by_port.items() if port in ports)
        if held:
            out[s.log.stem] = held
    assert sum(out.values()) == sum(by_port.values()), (out, by_port)  # no lock held by anyone else
    return out


async def check_histories_once(pg_url: str) -> None:
    """Each order's status history reaches its resting and final states once: no step replayed."""
    engine = create_engine(pg_url)
    try:
        async with session_factory(engine)() as s:
            events = (await s.execute(select(col(OrderEvent.order_id), col(OrderEvent.status)))).all()
            orders = {o.id: o.status for o in (await s.execute(select(Order))).scalars()}
    finally:
        await engine.dispose()
    per_order: dict[str, Counter[str]] = {}
    for oid, status in events:
        per_order.setdefault(oid, Counter())[status] += 1
    for oid, status in orders.items():
        seen = per_order.get(oid, Counter())
        assert sum(n for st, n in seen.items() if st in FINAL) == (1 if status in FINAL else 0), (oid, seen)
        assert seen["NEW"] <= 1 and seen["PENDING"] <= 1, (oid, seen)


async def traders(c: Cluster, prefix: str, n: int = 12) -> None:
    """Register and log in `n` users; they place the next orders."""
    c.tokens.clear()
    async with httpx.AsyncClient(base_url=c.base, timeout=10) as http:
        for i in range(n):
            email = f"{prefix}{i}@example.com"
            r = await http.post("/auth/register", json={"email": email, "password": "password-123"})
            assert r.status_code == 201, r.text
            r = await http.post("/auth/login", json={"email": email, "password": "password-123"})
            c.tokens.append(r.json()["access_token"])


@pytest.mark.timeout(900)  # four process starts and two loads: minutes on a busy 2-core machine
async def test_a_killed_workers_partition_is_taken_over_and_handed_back(pg_url: str, tmp_path: Path) -> None:
    redis = RedisServer(tmp_path)
    redis.start()
    env = service_env(
        pg_url,
        redis.url,
        "split:",
        PAPER_STARTING_BALANCES="USDT=1000000,BTC=100,ETH=1000",
        EXECUTION_PARTITIONS="2",
    )
    port = free_port()
    gateway = Service("gateway", env, tmp_path / "gateway.log", port=port)

    def worker(k: int) -> Service:
        return Service("execution", {**env, "EXECUTION_PARTITION": str(k)}, tmp_path / f"worker{k}.log")

    survivor, victim = worker(0), worker(1)
    for s in (gateway, survivor, victim):
        s.start()
    c = Cluster(tmp_path, pg_url, redis, gateway, victim, f"http://127.0.0.1:{port}")

    async def holding(want: dict[str, int]) -> bool:
        got = await lease_holders(pg_url, [survivor, victim])
        assert got == want, f"lease locks held: {got}"
        return True

    try:
        # Generous: on a machine this busy three processes starting at once may take a minute.
        await asyncio.to_thread(gateway.wait_http, "/readyz", 180)
        # Each process takes its own partition: the books are split between two holders.
        # BNBUSDT + ETHUSDT (partition 0) | BTCUSDT (partition 1)
        split = {"worker0": 2, "worker1": 1}
        await eventually(lambda: holding(split), timeout=120, interval=0.2)
        await traders(c, "split")

        takeover: list[float] = []

        async def chaos(done: int) -> None:
            if done == 200:  # 24 requests in flight, commands pending on both partitions' streams
                victim.kill()
                killed = time.monotonic()
                await eventually(lambda: holding({"worker0": 3}), timeout=30, interval=0.1)
                takeover.append(time.monotonic() - killed)

        await submit(c, bodies(500, seed=5), on_progress=chaos)
        assert c.failures == 0 and len(c.by_client_id) == 500
        # "Within a few seconds": the lease's own delay is 2 s of seeing the partition free.
        assert takeover and takeover[0] < 10, takeover
        await check_invariants(c, start=START)
        await check_histories_once(pg_url)

        # The killed process comes back: the survivor hands its partition back between two batches.
        c.worker = victim = worker(1)
        victim.start()
        await eventually(lambda: holding(split), timeout=120, interval=0.2)
        await traders(c, "again")  # new users: `submit`'s client order ids start again from 0
        c.by_client_id.clear()
        await submit(c, bodies(150, seed=6))
        assert c.failures == 0 and len(c.by_client_id) == 150
        await check_invariants(c, start=START)
        await check_histories_once(pg_url)
    finally:
        for s in (gateway, survivor, victim):
            s.stop()
        redis.stop()
