"""Stop orders and cancel-replace on paper, end to end (REST -> worker -> paper exchange -> database), on
PostgreSQL + Redis and on SQLite + the in-process bus: Binance's trigger rules on the paper book's trades,
funds reserved at acceptance, the stop and its triggered progression visible under one id, an unfundable
trigger expired with its lock released, and a replacement that keeps exactly one live order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.support.api import Api, make_settings, running_api
from tests.support.eventually import eventually

RESERVE = Decimal("1.001")  # 1 + the highest fee rate


@pytest.fixture(params=["postgresql", "sqlite"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, str], bool]:
    """(database URL, bus settings, migrate?): PostgreSQL + Redis Streams, or SQLite + the in-process bus."""
    if request.param == "postgresql":
        bus = {k: request.getfixturevalue(k) for k in ("redis_url", "redis_prefix")}
        return request.getfixturevalue("pg_url"), bus, False
    return f"sqlite+aiosqlite:///{tmp_path / 'tb.db'}", {}, True


@pytest.fixture
async def api(db: tuple[str, dict[str, str], bool]) -> AsyncIterator[Api]:
    url, bus, migrate = db
    settings = make_settings(url, paper_starting_balances_csv="USDT=10000,BTC=1", **bus)
    async with running_api(settings, services=("execution",), migrate=migrate) as a:
        await a.system.worker.ready.wait()
        yield a


async def place(api: Api, auth: dict, **body: str) -> dict:
    r = await api.client.post("/api/orders", json={"symbol": "BTCUSDT", **body}, headers=auth)
    assert r.status_code == 202, r.text
    return r.json()


async def settled(api: Api, auth: dict, order_id: str, *statuses: str) -> dict:
    async def check() -> dict | None:
        r = await api.client.get(f"/api/orders/{order_id}", headers=auth)
        assert r.status_code == 200, r.text
        o = r.json()
        return o if o["status"] in statuses else None

    return await eventually(check)


async def balance(api: Api, auth: dict, asset: str) -> tuple[Decimal, Decimal]:
    rows = (await api.client.get("/api/balances", headers=auth)).json()
    row = next(r for r in rows if r["asset"] == asset)
    return Decimal(row["free"]), Decimal(row["locked"])


async def trade_at(api: Api, maker: dict, taker: dict, price: str, quote: str = "0.01") -> None:
    """A trade of 0.01 at ``price`` between two other users (``quote`` offered: the rest stays on the book)."""
    ask = await place(api, maker, side="SELL", type="LIMIT", quantity=quote, price=price)
    await settled(api, maker, ask["order_id"], "NEW")
    bid = await place(api, taker, side="BUY", type="LIMIT", quantity="0.01", price=price)
    await settled(api, taker, bid["order_id"], "FILLED")


async def test_stops_trigger_reserve_and_expire_unfunded(api: Api) -> None:
    user, maker, taker, bidder = [await api.user(f"{n}@example.com") for n in ("u", "m", "t", "b")]
    await trade_at(api, maker, taker, "60000")
    bid = await place(api, bidder, side="BUY", type="LIMIT", quantity="0.01", price="58000")
    await settled(api, bidder, bid["order_id"], "NEW")

    # a STOP_LOSS sell: accepted, waiting off the book with its base locked
    stop = await place(api, user, side="SELL", type="STOP_LOSS", quantity="0.01", stop_price="59000")
    assert stop["type"] == "STOP_LOSS" and stop["stop_price"] == "59000" and stop["triggered_at"] is None
    waiting = await settled(api, user, stop["order_id"], "NEW")
    assert waiting["triggered_at"] is None
    assert await balance(api, user, "BTC") == (Decimal("0.99"), Decimal("0.01"))
    depth = (await api.client.get("/api/markets/BTCUSDT/depth")).json()
    assert all(Decimal(p) != Decimal("59000") for p, _q in depth.get("asks", []))

    # one tick above the stop price: nothing; at it: triggered, sold into the 58000 bid, same id
    await trade_at(api, maker, taker, "59000.01")
    assert (await settled(api, user, stop["order_id"], "NEW", "FILLED"))["status"] == "NEW"
    await trade_at(api, maker, taker, "59000")
    done = await settled(api, user, stop["order_id"], "FILLED")
    assert done["triggered_at"] is not None and done["avg_price"] == "58000"
    assert [h["status"] for h in done["history"]] == ["PENDING", "NEW", "FILLED"]
    assert (await balance(api, user, "BTC"))[1] == 0

    # the last price is 58000 now: a STOP_LOSS sell at 58500 would trigger at once, and is refused
    now = await place(
        api, user, side="SELL", type="STOP_LOSS_LIMIT", quantity="0.01", price="58400", stop_price="58500"
    )
    refused = await settled(api, user, now["order_id"], "REJECTED")
    assert refused["reason"] == "Order would trigger immediately."
    assert (await balance(api, user, "BTC"))[1] == 0

    # a STOP_LOSS buy reserves against the band above its stop price (58100 x 1.05); the price gaps past it
    gap = await place(api, user, side="BUY", type="STOP_LOSS", quantity="0.01", stop_price="58100")
    await settled(api, user, gap["order_id"], "NEW")
    free_before, locked = await balance(api, user, "USDT")
    assert locked == Decimal("0.01") * Decimal("61005") * RESERVE
    await trade_at(api, maker, taker, "62000", quote="0.02")  # 0.01 left at 62000, above the reserved cap
    expired = await settled(api, user, gap["order_id"], "EXPIRED")
    assert expired["reason"] == "STOP_UNFUNDED_AT_TRIGGER" and expired["triggered_at"] is not None
    assert await balance(api, user, "USDT") == (free_before + locked, Decimal(0))


async def test_cancel_replace_keeps_exactly_one_live_order(api: Api) -> None:
    user = await api.user("amend@example.com")
    old = await place(api, user, side="BUY", type="LIMIT", quantity="0.01", price="50000")
    await settled(api, user, old["order_id"], "NEW")

    r = await api.client.post(f"/api/orders/{old['order_id']}/replace", json={"price": "51000"}, headers=user)
    assert r.status_code == 202, r.text
    new = r.json()
    assert new["replaces"] == old["order_id"] and new["status"] == "PENDING" and new["price"] == "51000"
    await settled(api, user, new["order_id"], "NEW")
    assert (await settled(api, user, old["order_id"], "CANCELED"))["status"] == "CANCELED"
    open_ = (await api.client.get("/api/orders?status=open", headers=user)).json()["items"]
    assert [o["order_id"] for o in open_] == [new["order_id"]]
    assert (await balance(api, user, "USDT"))[1] == Decimal("0.01") * Decimal("51000") * RESERVE

    # more than free + what the old order frees: refused at once, nothing changes
    r = await api.client.post(f"/api/orders/{new['order_id']}/replace", json={"quantity": "1"}, headers=user)
    assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "INSUFFICIENT_BALANCE", r.text
    # a field the type has not: 422; the replaced order is final: 409
    r = await api.client.post(
        f"/api/orders/{new['order_id']}/replace", json={"stop_price": "1"}, headers=user
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "stop_price", r.text
    r = await api.client.post(f"/api/orders/{old['order_id']}/replace", json={"price": "1"}, headers=user)
    assert r.status_code == 409, r.text
    r = await api.client.post(f"/api/orders/{new['order_id']}/replace", json={}, headers=user)
    assert r.status_code == 422, r.text

    # a stop replaced by one that would trigger at once (after a trade at 51000): the new one is REJECTED
    # and the old one stays live
    seller = await api.user("seller@example.com")
    ask = await place(api, seller, side="SELL", type="LIMIT", quantity="0.01", price="51000")
    await settled(api, seller, ask["order_id"], "FILLED")
    await settled(api, user, new["order_id"], "FILLED")
    stop = await place(
        api, user, side="SELL", type="TAKE_PROFIT_LIMIT", quantity="0.01", price="52000", stop_price="52000"
    )
    await settled(api, user, stop["order_id"], "NEW")
    r = await api.client.post(
        f"/api/orders/{stop['order_id']}/replace", json={"stop_price": "50000"}, headers=user
    )
    assert r.status_code == 202, r.text
    bad = await settled(api, user, r.json()["order_id"], "REJECTED")
    assert bad["reason"] == "Order would trigger immediately."
    open_ = (await api.client.get("/api/orders?status=open", headers=user)).json()["items"]
    assert [o["order_id"] for o in open_] == [stop["order_id"]]
    assert (await balance(api, user, "BTC"))[1] == Decimal("0.01")
    r = await api.client.post(
        f"/api/orders/{stop['order_id']}/replace",
        json={"stop_price": "53000", "price": "53000"},
        headers=user,
    )
    moved = await settled(api, user, r.json()["order_id"], "NEW")
    assert moved["stop_price"] == "53000" and moved["replaces"] == stop["order_id"]
    open_ = (await api.client.get("/api/orders?status=open", headers=user)).json()["items"]
    assert [o["order_id"] for o in open_] == [moved["order_id"]]
    assert (await balance(api, user, "BTC"))[1] == Decimal("0.01")


@pytest.fixture
async def testnet_api(db: tuple[str, dict[str, str], bool], binance_double, binance_account):
    """The app with a testnet-mode user whose keys are on the Binance double."""
    url, bus, migrate = db
    settings = make_settings(url, binance_testnet_url=binance_double.url, **bus)
    fast = {"timeout_ms": 2000, "poll_fast_s": 0.2, "poll_slow_s": 0.5}
    async with running_api(settings, services=("execution",), migrate=migrate, testnet_overrides=fast) as a:
        user = await a.user("testnet-stop@example.com")
        keys = {"api_key": binance_account.api_key, "api_secret": binance_account.api_secret}
        assert (await a.client.put("/api/keys/binance-testnet", json=keys, headers=user)).status_code == 200
        assert (await a.client.put("/api/me/mode", json={"mode": "testnet"}, headers=user)).status_code == 200
        yield a, user


async def test_testnet_stop_loss_limit_triggers_on_the_exchange_at_its_stop_price(
    testnet_api, binance_double, binance_account
) -> None:
    """Sent as Binance's own STOP_LOSS_LIMIT (the exchange holds the trigger): NEW and waiting under our id,
    untouched by a price above the stop, then triggered and filled when the last price reaches it."""
    api, user = testnet_api
    body = {
        "side": "SELL",
        "type": "STOP_LOSS_LIMIT",
        "quantity": "0.01",
        "price": "58900",
        "stop_price": "59000",
    }
    stop = await place(api, user, **body)
    waiting = await settled(api, user, stop["order_id"], "NEW")
    assert (
        waiting["mode"] == "testnet" and waiting["triggered_at"] is None and waiting["stop_price"] == "59000"
    )
    [ex] = binance_double.state.orders(binance_account.api_key, client_order_id=stop["order_id"])
    assert (ex.type, ex.stop_price, ex.price, ex.is_working) == ("STOP_LOSS_LIMIT", 59000, 58900, False)

    binance_double.state.set_price("BTCUSDT", "59001")
    binance_double.state.set_price("BTCUSDT", "59000")
    done = await settled(api, user, stop["order_id"], "FILLED")
    assert done["triggered_at"] is not None and Decimal(done["filled_quantity"]) == Decimal("0.01")
    assert {Decimal(f["price"]) for f in done["fills"]} == {Decimal("59000")}
    assert len(binance_double.state.orders(binance_account.api_key, client_order_id=stop["order_id"])) == 1


async def test_testnet_cancel_replace_keeps_exactly_one_live_order(
    testnet_api, binance_double, binance_account
) -> None:
    """One cancelReplace on the exchange: the old order CANCELED, the new one (our id as its client order id)
    live with the new stop; and a replacement of an order the exchange no longer has open is REJECTED
    without anything placed."""
    api, user = testnet_api
    body = {
        "side": "SELL",
        "type": "STOP_LOSS_LIMIT",
        "quantity": "0.01",
        "price": "58900",
        "stop_price": "59000",
    }
    old = await place(api, user, **body)
    await settled(api, user, old["order_id"], "NEW")
    r = await api.client.post(
        f"/api/orders/{old['order_id']}/replace", json={"stop_price": "58000", "price": "57900"}, headers=user
    )
    assert r.status_code == 202, r.text
    moved = await settled(api, user, r.json()["order_id"], "NEW")
    assert moved["replaces"] == old["order_id"] and moved["stop_price"] == "58000"
    await settled(api, user, old["order_id"], "CANCELED")
    live = [o for o in binance_double.state.orders(binance_account.api_key) if o.is_open]
    assert [(o.client_order_id, o.stop_price, o.price) for o in live] == [(moved["order_id"], 58000, 57900)]
    assert len(binance_double.state.requests(path="/api/v3/order/cancelReplace")) == 1
    open_ = (await api.client.get("/api/orders?status=open", headers=user)).json()["items"]
    assert [o["order_id"] for o in open_] == [moved["order_id"]]

    # canceled on the exchange behind our back: the replace is refused there and nothing new is placed
    [ex] = live
    binance_double.state.expire_order(ex.order_id, "CANCELED")
    r = await api.client.post(
        f"/api/orders/{moved['order_id']}/replace", json={"price": "57800"}, headers=user
    )
    if r.status_code == 202:  # (the worker may already have seen the cancel, then it is a 409)
        bad = await settled(api, user, r.json()["order_id"], "REJECTED")
        assert "could not be canceled" in bad["reason"] or "no longer open" in bad["reason"], bad
        assert binance_double.state.orders(binance_account.api_key, client_order_id=bad["order_id"]) == []
    else:
        assert r.status_code == 409, r.text
    assert [o for o in binance_double.state.orders(binance_account.api_key) if o.is_open] == []
