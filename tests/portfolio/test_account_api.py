"""The account's pictures and history through the app as the composition root builds it, on PostgreSQL + Redis
and on SQLite + the in-process bus (issue #19 item 3): equity snapshots at the interval and after a fill,
realized PnL per day adding up to the positions', history filters and paging, CSV equal to the JSON, the
ticket's figures, and problem+json for bad input."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.support.api import Api, running_api_on
from tests.support.eventually import eventually

INTERVAL_S = 0.4


@pytest.fixture(params=["postgresql", "sqlite"])
async def api(
    request: pytest.FixtureRequest, pg_url: str, tmp_path: Path, redis_url: str, redis_prefix: str
) -> AsyncIterator[Api]:
    async with running_api_on(
        request.param,
        pg_url=pg_url,
        sqlite_dir=tmp_path,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        services=("execution", "equity"),
        paper_starting_balances_csv="USDT=10000,BTC=1",
        equity_snapshot_interval_s=INTERVAL_S,
    ) as a:
        await a.system.worker.ready.wait()
        yield a


async def set_price(api: Api, price: str) -> None:
    """The paper ticker as the price feed stores it (what the snapshots value BTC at)."""
    now = datetime.now(UTC).isoformat()
    data = {"symbol": "BTCUSDT", "price": price, "ts": now, "source": "test", "stale": False}
    await api.parts.market_data.put("ticker", "BTCUSDT", data)


async def place(api: Api, auth: dict, **body: str) -> dict:
    r = await api.client.post("/api/orders", json={"symbol": "BTCUSDT", **body}, headers=auth)
    assert r.status_code == 202, r.text
    return r.json()


async def settled(api: Api, auth: dict, order_id: str, *statuses: str) -> dict:
    async def check() -> dict | None:
        o = (await api.client.get(f"/api/orders/{order_id}", headers=auth)).json()
        return o if o["status"] in statuses else None

    return await eventually(check)


async def trade(api: Api, seller: dict, buyer: dict, price: str, qty: str = "0.1") -> None:
    ask = await place(api, seller, side="SELL", type="LIMIT", quantity=qty, price=price)
    await settled(api, seller, ask["order_id"], "NEW")
    bid = await place(api, buyer, side="BUY", type="LIMIT", quantity=qty, price=price)
    await settled(api, buyer, bid["order_id"], "FILLED")


async def equity(api: Api, auth: dict, **params: Any) -> dict:
    r = await api.client.get("/api/equity", headers=auth, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def problem(r: Any, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return r.json()


async def test_equity_snapshots_at_the_interval_and_after_each_fill(api: Api) -> None:
    seller, buyer = await api.user("s@example.com"), await api.user("b@example.com")
    await set_price(api, "50000")
    # the schedule's pace comes with the curve: snapshots are not pushed, a page asks again at it
    empty: dict[str, Any] = {"mode": "paper", "quote_asset": None, "points": [], "interval_s": INTERVAL_S}
    assert (await equity(api, buyer)) == empty
    await trade(api, seller, buyer, "50000")

    # right after the fill: USDT 10000 - 5000 - 5 (taker fee 0.1%), BTC 1.1 at 50000
    async def fill_point() -> dict:
        points = [p for p in (await equity(api, buyer))["points"] if p["reason"] == "fill"]
        assert points, "no snapshot after the fill yet"
        return points[-1]

    filled = await eventually(fill_point)
    assert filled["equity"] == "59995"
    seller_points = await eventually(
        lambda: _fill_points(api, seller), message="the seller's fill snapshot is missing"
    )
    assert seller_points[-1]["equity"] == "59995"  # USDT 10000 + 5000 - 5 (maker fee), BTC 0.9 at 50000

    # at the interval: points one interval apart, the price's move shows in the next one
    async def intervals(n: int) -> list[dict]:
        body = await equity(api, buyer)
        assert body["quote_asset"] == "USDT"
        pts = [p for p in body["points"] if p["reason"] == "interval" and p["ts"] > filled["ts"]]
        assert len(pts) >= n, f"{len(pts)} interval snapshots so far"
        return pts

    first = await eventually(lambda: intervals(2), timeout=15)
    a, b = (datetime.fromisoformat(p["ts"]) for p in first[-2:])
    assert timedelta(seconds=INTERVAL_S * 0.5) <= b - a <= timedelta(seconds=INTERVAL_S * 5)
    assert all(p["equity"] == "59995" for p in first)
    await set_price(api, "51000")

    async def moved() -> dict:
        last = (await intervals(len(first) + 1))[-1]
        assert last["equity"] == "61095", last  # 4995 + 1.1 x 51000
        return last

    await eventually(moved, timeout=15)
    # a range that ends before the fill has none of it; plain digits throughout
    body = await equity(api, buyer, until=first[0]["ts"])
    assert all(p["ts"] < first[0]["ts"] for p in body["points"])
    problem(
        await api.client.get(
            "/api/equity", headers=buyer, params={"since": b.isoformat(), "until": a.isoformat()}
        ),
        422,
    )


async def _fill_points(api: Api, auth: dict) -> list[dict]:
    pts = [p for p in (await equity(api, auth))["points"] if p["reason"] == "fill"]
    assert pts
    return pts


async def test_old_snapshots_are_deleted_after_the_retention(api: Api) -> None:
    """Retention: the component deletes what is older than EQUITY_SNAPSHOT_RETENTION_DAYS."""
    from shared.db import unit_of_work
    from shared.models import EquitySnapshot

    seller, buyer = await api.user("s2@example.com"), await api.user("b2@example.com")
    await set_price(api, "50000")
    await trade(api, seller, buyer, "50000")
    me = (await api.client.get("/api/me", headers=buyer)).json()
    old = datetime.now(UTC) - timedelta(days=31)
    async with unit_of_work(api.parts.sessions) as session:
        session.add(
            EquitySnapshot(
                user_id=me["id"],
                mode="paper",
                ts=old,
                reason="interval",
                ref="old",
                quote_asset="USDT",
                equity=Decimal(1),
            )
        )

    async def pruned() -> bool:
        pts = (await equity(api, buyer, limit=5000))["points"]
        assert len(pts) >= 2 and all(p["equity"] != "1" for p in pts), pts
        return True

    await eventually(pruned, timeout=15)


async def test_realized_pnl_per_day_adds_up_to_the_positions(api: Api) -> None:
    seller, buyer = await api.user("s3@example.com"), await api.user("b3@example.com")
    await trade(api, seller, buyer, "50000")  # buyer: +0.1 at 50000, fee 5
    await trade(api, buyer, seller, "51000")  # buyer sells it back at 51000: +100, fee 5.1
    r = await api.client.get("/api/pnl/daily", headers=buyer)
    assert r.status_code == 200, r.text
    today = datetime.now(UTC).date().isoformat()
    assert r.json() == [{"day": today, "realized_pnl": "89.9", "fees": "10.1", "trades": 2}]
    positions = (await api.client.get("/api/positions", headers=buyer)).json()
    assert Decimal(positions[0]["realized_pnl"]) == Decimal("89.9")
    # days outside the range are left out; an empty range is a 422 problem
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert (await api.client.get("/api/pnl/daily", headers=buyer, params={"since": tomorrow})).json() == []
    problem(
        await api.client.get("/api/pnl/daily", headers=buyer, params={"since": tomorrow, "until": today}), 422
    )


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _as_csv(item: dict) -> dict[str, str]:
    return {
        k: "" if v is None else ("true" if v is True else "false" if v is False else str(v))
        for k, v in item.items()
    }


async def test_history_filters_paging_and_csv_equal_to_the_json(api: Api) -> None:
    seller, buyer = await api.user("s4@example.com"), await api.user("b4@example.com")
    before = datetime.now(UTC)
    for price in ("50000", "50100", "50200"):
        await trade(api, seller, buyer, price, qty="0.01")
    resting = await place(api, buyer, side="BUY", type="LIMIT", quantity="0.01", price="40000")
    await settled(api, buyer, resting["order_id"], "NEW")
    canceled = await place(api, buyer, side="BUY", type="LIMIT", quantity="0.01", price="39000")
    await settled(api, buyer, canceled["order_id"], "NEW")
    assert (await api.client.delete(f"/api/orders/{canceled['order_id']}", headers=buyer)).status_code == 202
    await settled(api, buyer, canceled["order_id"], "CANCELED")

    async def orders(**params: Any) -> dict:
        r = await api.client.get("/api/history/orders", headers=buyer, params=params)
        assert r.status_code == 200, r.text
        return r.json()

    everything = (await orders())["items"]
    assert len(everything) == 5 and all(o["side"] == "BUY" for o in everything)
    assert [o["status"] for o in (await orders(status="FILLED"))["items"]] == ["FILLED"] * 3
    assert {o["status"] for o in (await orders(status="open,canceled"))["items"]} == {"NEW", "CANCELED"}
    assert (await orders(side="SELL"))["items"] == []
    assert len((await orders(symbol="btc/usdt", since=before.isoformat()))["items"]) == 5
    assert (await orders(until=before.isoformat()))["items"] == []
    assert (await orders(symbol="ETHUSDT"))["items"] == []

    # paging: two at a time, the pages together are the whole list, newest first, no repeats
    seen, cursor = [], None
    while True:
        page = await orders(limit=2, **({"cursor": cursor} if cursor else {}))
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [o["order_id"] for o in seen] == [o["order_id"] for o in everything]

    # CSV: the same rows, the same values, the same next cursor
    page = await orders(limit=2)
    r = await api.client.get("/api/history/orders", headers=buyer, params={"limit": 2, "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.headers["x-next-cursor"] == page["next_cursor"]
    assert _csv_rows(r.text) == [_as_csv(o) for o in page["items"]]
    assert r.text.splitlines()[0].split(",")[:3] == ["order_id", "client_order_id", "mode"]

    # trades: filters, paging, CSV
    async def trades(auth: dict, **params: Any) -> dict:
        r = await api.client.get("/api/history/trades", headers=auth, params=params)
        assert r.status_code == 200, r.text
        return r.json()

    fills = (await trades(buyer))["items"]
    assert [f["price"] for f in fills] == ["50200", "50100", "50000"]
    assert (await trades(buyer, side="sell"))["items"] == []
    assert len((await trades(seller, side="SELL"))["items"]) == 3
    first = await trades(buyer, limit=2)
    second = await trades(buyer, limit=2, cursor=first["next_cursor"])
    assert [f["trade_id"] for f in first["items"] + second["items"]] == [f["trade_id"] for f in fills]
    assert second["next_cursor"] is None
    r = await api.client.get("/api/history/trades", headers=buyer, params={"format": "csv"})
    assert _csv_rows(r.text) == [_as_csv(f) for f in fills]
    assert "E" not in r.text.replace("TAKER", "").replace("MAKER", "").replace("SELL", "")  # no exponents

    # bad input: clear 4xx problems
    for params, field in (
        ({"status": "DONE"}, "status"),
        ({"cursor": "!!"}, "cursor"),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
        ({"symbol": "NOPEUSDT"}, "symbol"),
    ):
        body = problem(await api.client.get("/api/history/orders", headers=buyer, params=params), 422)
        assert any(e["field"] == field for e in body["errors"]), body
    problem(await api.client.get("/api/history/trades", headers=buyer, params={"cursor": "x1"}), 422)
    problem(await api.client.get("/api/history/trades", headers=buyer, params={"format": "xml"}), 422)
    problem(await api.client.get("/api/history/trades"), 401)


async def test_ticket_figures_come_from_the_ledger_rules_and_fee_schedule(api: Api) -> None:
    seller, buyer = await api.user("s5@example.com"), await api.user("b5@example.com")
    r = await api.client.get("/api/ticket", headers=buyer, params={"symbol": "btc/usdt", "side": "buy"})
    assert r.status_code == 200, r.text
    t = r.json()
    rules = next(m for m in (await api.client.get("/api/markets")).json() if m["symbol"] == "BTCUSDT")
    assert t["available_asset"] == "USDT" and t["available"] == "10000"  # the starting deposit
    for k in ("tick_size", "step_size", "min_qty", "min_notional"):
        assert t[k] == rules[k]
    assert (t["maker_fee_rate"], t["taker_fee_rate"], t["reserve_fee_rate"]) == ("0.001", "0.001", "0.001")
    assert t["best_ask"] is None
    ask = await place(api, seller, side="SELL", type="LIMIT", quantity="0.1", price="50000")
    await settled(api, seller, ask["order_id"], "NEW")

    async def with_ask() -> dict:
        t = (
            await api.client.get("/api/ticket", headers=buyer, params={"symbol": "BTCUSDT", "side": "BUY"})
        ).json()
        assert t["best_ask"] == "50000"
        return t

    await eventually(with_ask)
    sell = (
        await api.client.get("/api/ticket", headers=seller, params={"symbol": "BTCUSDT", "side": "SELL"})
    ).json()
    assert (sell["available_asset"], sell["available"]) == ("BTC", "0.9")  # 0.1 locked by the ask
    problem(await api.client.get("/api/ticket", headers=buyer, params={"symbol": "NOPE", "side": "BUY"}), 422)
    problem(
        await api.client.get("/api/ticket", headers=buyer, params={"symbol": "BTCUSDT", "side": "UP"}), 422
    )
