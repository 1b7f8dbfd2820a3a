"""Crash tests with every service as its own process on real PostgreSQL and a Redis of the test's own:
kill -9 the worker or the gateway mid-load, restart Redis under load. Every order that got a 2xx ends exactly
once in a resting or final state, no fill is duplicated, and the ledger is conserved."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import col

from shared.clock import SystemClock
from shared.db import create_engine, session_factory
from shared.ledger_store import SqlLedger
from shared.models import Balance, Fill, Order
from shared.symbols import split_symbol
from tests.support.eventually import eventually
from tests.support.procs import RedisServer, Service, free_port, service_env

pytestmark = pytest.mark.slow

USERS = 12
START = {"USDT": Decimal("1000000"), "BTC": Decimal("100")}
RESTING_OR_FINAL = {"NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "EXPIRED", "REJECTED"}


@dataclass
class Cluster:
    tmp: Path
    pg_url: str
    redis: RedisServer
    gateway: Service
    worker: Service
    base: str
    tokens: list[str] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    failures: int = 0
    retries: int = 0
    by_client_id: dict[str, set[str]] = field(default_factory=dict)

    def new_gateway(self) -> Service:
        return Service("gateway", self.gateway.env, self.tmp / "gateway.log", port=self.gateway.port)

    def new_worker(self) -> Service:
        return Service("execution", self.worker.env, self.tmp / "worker.log")


@pytest.fixture
async def cluster(pg_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    redis = RedisServer(tmp_path)
    redis.start()
    env = service_env(pg_url, redis.url, "crash:", PAPER_STARTING_BALANCES="USDT=1000000,BTC=100")
    port = free_port()
    gateway = Service("gateway", env, tmp_path / "gateway.log", port=port)
    worker = Service("execution", env, tmp_path / "worker.log")
    gateway.start()
    worker.start()
    c = Cluster(tmp_path, pg_url, redis, gateway, worker, f"http://127.0.0.1:{port}")
    try:
        await asyncio.to_thread(gateway.wait_http, "/readyz")
        async with httpx.AsyncClient(base_url=c.base, timeout=10) as http:
            for i in range(USERS):
                email = f"trader{i}@example.com"
                assert (
                    await http.post("/auth/register", json={"email": email, "password": "password-123"})
                ).status_code == 201
                r = await http.post("/auth/login", json={"email": email, "password": "password-123"})
                c.tokens.append(r.json()["access_token"])
        yield c
    finally:
        for s in (c.gateway, c.worker):
            s.stop()
        redis.stop()


def order_bodies(n: int, seed: int = 7) -> list[dict[str, str]]:
    """Crossing limit orders around 60000 so many trade, some rest; a few IOC that may expire."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        side = rng.choice(("BUY", "SELL"))
        price = Decimal(60000) + Decimal(rng.randint(-20, 20))
        out.append(
            {
                "symbol": "BTCUSDT",
                "side": side,
                "type": "LIMIT",
                "quantity": str(Decimal(rng.randint(1, 20)) / 1000),
                "price": str(price),
                "time_in_force": rng.choice(("GTC", "GTC", "GTC", "IOC")),
            }
        )
    return out


async def submit(
    c: Cluster,
    bodies: list[dict[str, str]],
    *,
    on_progress: Callable[[int], object] | None = None,
    concurrency: int = 24,
) -> None:
    counter = itertools.count()
    queue: asyncio.Queue[tuple[int, dict[str, str]]] = asyncio.Queue()
    for i, b in enumerate(bodies):
        queue.put_nowait((i, b))

    async def one(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            i, body = queue.get_nowait()
            token = c.tokens[i % len(c.tokens)]
            # Like a careful client: a client_order_id makes retrying after a lost answer safe.
            body = {**body, "client_order_id": f"crash-{i}"}
            for _attempt in range(300):
                try:
                    r = await http.post(
                        "/api/orders", json=body, headers={"Authorization": f"Bearer {token}"}
                    )
                except httpx.HTTPError:
                    c.retries += 1
                    await asyncio.sleep(0.1)
                    continue
                if r.status_code >= 500:
                    c.retries += 1
                    await asyncio.sleep(0.1)
                    continue
                if 200 <= r.status_code < 300:
                    c.accepted.append(r.json()["order_id"])
                    c.by_client_id.setdefault(body["client_order_id"], set()).add(r.json()["order_id"])
                else:
                    c.failures += 1
                break
            else:
                c.failures += 1
            done = next(counter)
            if on_progress is not None:
                result = on_progress(done)
                if asyncio.iscoroutine(result):
                    await result

    async with httpx.AsyncClient(
        base_url=c.base, timeout=10, limits=httpx.Limits(max_connections=concurrency)
    ) as http:
        await asyncio.gather(*(one(http) for _ in range(concurrency)))


async def check_invariants(
    c: Cluster, *, timeout: float = 120, start: dict[str, Decimal] | None = None
) -> None:
    """Every order settled (resting or final), fills two-sided and adding up, the ledger conserved (each
    funded account got `start`) and every lock exactly what the open orders still reserve."""
    engine = create_engine(c.pg_url)
    sessions = session_factory(engine)
    try:

        async def settled() -> bool:
            async with sessions() as s:
                pending = (
                    await s.execute(
                        select(col(Order.id))
                        .where(col(Order.status).in_(["PENDING", "PENDING_CANCEL"]))
                        .limit(1)
                    )
                ).first()
                return pending is None

        await eventually(settled, timeout=timeout, interval=0.5, message="orders still PENDING")
        async with sessions() as s:
            orders = {o.id: o for o in (await s.execute(select(Order))).scalars()}
            fills = (await s.execute(select(Fill))).scalars().all()
            balances = (await s.execute(select(Balance))).scalars().all()
            totals = await SqlLedger(s, SystemClock()).totals()
    finally:
        await engine.dispose()

    assert all(len(ids) == 1 for ids in c.by_client_id.values()), "a retried request made a second order"
    assert set(c.accepted) <= set(orders), "an acknowledged order is missing"
    assert all(o.status in RESTING_OR_FINAL for o in orders.values())
    # Fills: each trade has one fill per side; each order's fills add up to its filled quantity.
    per_trade: dict[str, list[str]] = {}
    per_order: dict[str, Decimal] = {}
    for f in fills:
        per_trade.setdefault(f.trade_id, []).append(f.side)
        per_order[f.order_id] = per_order.get(f.order_id, Decimal(0)) + f.quantity
    assert all(sorted(sides) == ["BUY", "SELL"] for sides in per_trade.values()), (
        "a fill is duplicated or one-sided"
    )
    for oid, o in orders.items():
        assert per_order.get(oid, Decimal(0)) == o.filled_quantity, oid
    # Ledger: conserved; every lock is exactly what the open orders still reserve.
    funded = len(
        {o.user_id for o in orders.values()} | {b.account_id for b in balances if "/" not in b.account_id}
    )
    assert totals == {a: v * funded for a, v in (start or START).items()}, totals
    expected_locked: dict[tuple[str, str], Decimal] = {}
    for o in orders.values():
        if o.status in ("NEW", "PARTIALLY_FILLED"):
            remaining = o.quantity - o.filled_quantity
            base, quote = split_symbol(o.symbol)
            key, amount = (
                ((o.user_id, quote), remaining * o.price * Decimal("1.001"))  # type: ignore[operator]
                if o.side == "BUY"
                else ((o.user_id, base), remaining)
            )
            expected_locked[key] = expected_locked.get(key, Decimal(0)) + amount
    for b in balances:
        if "/" not in b.account_id:
            assert b.free >= 0 and b.locked == expected_locked.get((b.account_id, b.asset), Decimal(0)), b


async def test_kill_worker_mid_load(cluster: Cluster) -> None:
    c = cluster

    async def chaos(done: int) -> None:
        if done == 600:
            c.worker.kill()
        if done == 1100:
            c.worker = c.new_worker()
            c.worker.start()

    await submit(c, order_bodies(2000), on_progress=chaos)
    assert c.failures == 0 and len(c.by_client_id) == 2000
    await check_invariants(c)


async def test_kill_gateway_mid_load(cluster: Cluster) -> None:
    c = cluster

    async def chaos(done: int) -> None:
        if done == 500:
            c.gateway.kill()
            c.gateway = c.new_gateway()
            c.gateway.start()
            await asyncio.to_thread(c.gateway.wait_http, "/healthz")

    await submit(c, order_bodies(1200, seed=11), on_progress=chaos)
    assert c.failures == 0 and len(c.by_client_id) == 1200 and c.retries > 0
    await check_invariants(c)


async def test_restart_redis_mid_load(cluster: Cluster) -> None:
    c = cluster

    async def chaos(done: int) -> None:
        if done == 400:
            c.redis.stop()
        if done == 800:
            c.redis.start_on_same_port()

    await submit(c, order_bodies(1200, seed=13), on_progress=chaos)
    assert c.failures == 0 and len(c.by_client_id) == 1200
    await check_invariants(c, timeout=180)
