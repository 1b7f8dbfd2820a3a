"""Partitioned paper execution in one process (EXECUTION_PARTITIONS=2), on PostgreSQL + Redis and on SQLite +
the in-process bus: one process holds every partition, each book is matched by its own partition's worker,
commands travel on their partition's stream, each partition's market maker is an account of its own, and the
reconciliation report merges the partitions' published books."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from execution.service import build_worker
from shared.models import Balance
from shared.streams import MARKET_TICKER, PAPER_COMMANDS, public_event
from tests.reconciliation.conftest import admin_auth, kinds, recon_settings, run_report
from tests.support.api import Api, running_api
from tests.support.eventually import eventually

PRICES = {"BTCUSDT": "60000", "ETHUSDT": "3000", "BNBUSDT": "600"}


async def _tick_all(api: Api) -> None:
    for symbol, price in PRICES.items():
        data = {"symbol": symbol, "price": price, "stale": False}
        await api.parts.bus.publish(MARKET_TICKER, public_event("TICKER", symbol, datetime.now(UTC), data))


async def _quoted(api: Api) -> None:
    """Tick until `/readyz` says every symbol is quoted (each partition's market maker has its prices)."""

    async def ready() -> bool:
        await _tick_all(api)
        return (await api.client.get("/readyz")).status_code == 200

    await eventually(ready, timeout=30, interval=0.2)


@pytest.fixture(params=["postgresql", "sqlite"])
async def split(
    request: pytest.FixtureRequest, tmp_path: Path, pg_url: str, redis_url: str, redis_prefix: str
) -> AsyncIterator[Api]:
    settings, migrate = recon_settings(
        request.param,
        tmp_path,
        pg_url,
        redis_url,
        redis_prefix,
        execution_partitions=2,
        paper_market_maker="on",
        paper_starting_balances_csv="USDT=100000,BTC=1,ETH=10",
    )
    async with running_api(settings, migrate=migrate, services=("execution",)) as api:
        for w in api.system.workers:
            await w.ready.wait()
        await _quoted(api)
        yield api


async def _market_buy(api: Api, auth: dict[str, str], symbol: str, quantity: str) -> dict[str, Any]:
    r = await api.client.post(
        "/api/orders",
        json={"symbol": symbol, "side": "BUY", "type": "MARKET", "quantity": quantity},
        headers=auth,
    )
    assert r.status_code == 202, r.text
    oid = r.json()["order_id"]

    async def filled() -> dict[str, Any] | None:
        o: dict[str, Any] = (await api.client.get(f"/api/orders/{oid}", headers=auth)).json()
        return o if o["status"] == "FILLED" else None

    return await eventually(filled, timeout=15)


async def test_one_process_holds_every_partition_and_routes_each_symbol_to_its_own(split: Api) -> None:
    api = split
    workers = api.system.workers
    assert [w.partition for w in workers] == [0, 1]
    assert all(w.has_paper_lease for w in workers)  # the one process holds every partition
    # Symbols sorted (BNBUSDT, BTCUSDT, ETHUSDT) dealt round-robin over the two partitions.
    assert set(workers[0].rt.markets) == {"BNBUSDT", "ETHUSDT"}
    assert set(workers[1].rt.markets) == {"BTCUSDT"}
    assert workers[0].stream != workers[1].stream

    auth = await api.user("split@example.com")
    btc = await _market_buy(api, auth, "BTCUSDT", "0.001")
    eth = await _market_buy(api, auth, "ETHUSDT", "0.01")

    bus = api.parts.bus
    on = {w.partition: {m.data["order_id"] for m in await bus.range_after(w.stream, "0")} for w in workers}
    assert btc["order_id"] in on[1] and btc["order_id"] not in on[0]
    assert eth["order_id"] in on[0] and eth["order_id"] not in on[1]
    assert await bus.range_after(PAPER_COMMANDS, "0") == []  # the single-partition stream is not used

    # Each partition's market maker trades from an account of its own, funded with its markets' assets.
    async with api.parts.sessions() as s:
        rows = (
            await s.execute(select(Balance).where(col(Balance.account_id).startswith("system/market-maker")))
        ).scalars()
        assets: dict[str, set[str]] = {}
        for b in rows:
            assets.setdefault(b.account_id, set()).add(b.asset)
    assert assets == {
        "system/market-maker": {"BNB", "ETH", "USDT"},
        "system/market-maker-1": {"BTC", "USDT"},
    }

    # Reconciliation reads both partitions' published books, merged: nothing unavailable, nothing off.
    report = await run_report(api, await admin_auth(api))
    assert kinds(report) == {}, report["mismatches"]


async def test_a_partition_rebuilt_alone_leaves_the_other_partitions_quotes_locked(split: Api) -> None:
    """Partition 0 restarts (as when another process takes it over): its rebuild releases what its own market
    maker locked, never the locks of partition 1's quotes, which still rest; the ledger and the merged book
    agree afterwards."""
    api = split
    old = api.system.workers[0]
    await old.stop()
    fresh = build_worker(old.rt, 0, testnet=False)
    api.system.workers[0] = fresh
    await fresh.start()
    try:
        await fresh.ready.wait()
        await _quoted(api)
        auth = await api.user("rebuilt@example.com")
        await _market_buy(api, auth, "BTCUSDT", "0.001")
        await _market_buy(api, auth, "ETHUSDT", "0.01")
        report = await run_report(api, await admin_auth(api))
        assert kinds(report) == {}, report["mismatches"]
    finally:
        await fresh.stop()
