"""ccxt's async binance client, unmodified and built by our factory, against the double."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import ccxt
import ccxt.async_support as ccxt_async
import pytest

from shared.exchanges.binance import make_binance_client
from tests.binance_double import Account, BinanceDouble
from tests.support.eventually import eventually

D = Decimal
BTC = "BTC/USDT"


@pytest.fixture
async def client(
    binance_double: BinanceDouble, binance_account: Account
) -> AsyncIterator[ccxt_async.binance]:
    c = make_binance_client(
        binance_account.api_key,
        binance_account.api_secret,
        base_url=binance_double.url,
        timeout_ms=1000,
        enable_rate_limit=False,
    )
    await c.load_markets()
    yield c
    await c.close()


async def test_load_markets_parses_filters(client: ccxt_async.binance) -> None:
    assert set(client.markets) == {"BTC/USDT", "ETH/USDT", "BNB/USDT"}
    m = client.market(BTC)
    assert m["spot"] and m["active"] and m["id"] == "BTCUSDT"
    assert m["precision"]["price"] == 0.01 and m["precision"]["amount"] == 0.00001
    assert m["limits"]["amount"] == {"min": 0.00001, "max": 9000.0}
    assert m["limits"]["price"] == {"min": 0.01, "max": 1000000.0}
    assert m["limits"]["cost"]["min"] == 5.0
    assert m["limits"]["market"]["max"] == 120.0
    assert client.market("ETH/USDT")["precision"]["amount"] == 0.0001


async def test_only_spot_urls_point_at_the_double(
    client: ccxt_async.binance, binance_double: BinanceDouble
) -> None:
    assert client.urls["api"] == {
        "public": binance_double.url + "/api/v3",
        "private": binance_double.url + "/api/v3",
        "v1": binance_double.url + "/api/v1",
    }
    paths = {r.path for r in binance_double.state.requests()}
    assert paths == {"/api/v3/exchangeInfo"}  # load_markets made no futures/sapi call
    with pytest.raises(ccxt.NotSupported):
        await client.fapiPublicGetTime()


async def test_fetch_balance(
    client: ccxt_async.binance, binance_double: BinanceDouble, binance_account: Account
) -> None:
    binance_double.state.set_balance(binance_account.api_key, "ETH", "2.5")
    balance = await client.fetch_balance()
    assert (balance["USDT"]["free"], balance["USDT"]["used"], balance["USDT"]["total"]) == (
        10000.0,
        0.0,
        10000.0,
    )
    assert balance["free"]["ETH"] == 2.5


async def test_market_buy_and_sell_fill_with_fees(
    client: ccxt_async.binance, binance_double: BinanceDouble, binance_account: Account
) -> None:
    state = binance_double.state
    buy = await client.create_order(BTC, "market", "buy", 0.1)
    assert buy["status"] == "closed" and buy["filled"] == 0.1 and buy["average"] == 60000.0
    assert buy["fee"] == {"currency": "BTC", "cost": 0.0001}
    assert state.balance(binance_account.api_key, "BTC").free == D("1.0999")
    assert state.balance(binance_account.api_key, "USDT").free == D("4000")

    state.set_price("BTCUSDT", "61000")
    sell = await client.create_order(BTC, "market", "sell", 0.05)
    assert sell["status"] == "closed" and sell["cost"] == 3050.0
    assert sell["fee"] == {"currency": "USDT", "cost": 3.05}
    assert state.balance(binance_account.api_key, "USDT").free == D("7046.95")
    trades = await client.fetch_my_trades(BTC)
    assert [(t["side"], t["amount"], t["takerOrMaker"]) for t in trades] == [
        ("buy", 0.1, "taker"),
        ("sell", 0.05, "taker"),
    ]


async def test_limit_rests_then_fills_on_price_move(
    client: ccxt_async.binance, binance_double: BinanceDouble, binance_account: Account
) -> None:
    state = binance_double.state
    order = await client.create_order(BTC, "limit", "buy", 0.01, 59000)
    assert order["status"] == "open" and order["filled"] == 0.0
    assert state.balance(binance_account.api_key, "USDT").locked == D("590")
    assert [o["id"] for o in await client.fetch_open_orders(BTC)] == [order["id"]]

    fills = state.set_price("BTCUSDT", "58900")
    assert len(fills) == 1 and fills[0].price == D("59000") and fills[0].is_maker

    fetched = await client.fetch_order(order["id"], BTC)
    assert fetched["status"] == "closed" and fetched["filled"] == 0.01 and fetched["average"] == 59000.0
    trades = await client.fetch_my_trades(BTC)
    assert len(trades) == 1 and trades[0]["order"] == order["id"] and trades[0]["takerOrMaker"] == "maker"
    assert state.balance(binance_account.api_key, "USDT").locked == 0
    assert await client.fetch_open_orders(BTC) == []


async def test_partial_fill_then_cancel_releases_the_rest(
    client: ccxt_async.binance, binance_double: BinanceDouble, binance_account: Account
) -> None:
    state = binance_double.state
    order = await client.create_order(BTC, "limit", "sell", 0.5, 65000)
    state.fill_order(int(order["id"]), "0.2")
    fetched = await client.fetch_order(order["id"], BTC)
    assert fetched["status"] == "open" and fetched["filled"] == 0.2 and fetched["remaining"] == 0.3
    canceled = await client.cancel_order(order["id"], BTC)
    assert canceled["status"] == "canceled" and canceled["filled"] == 0.2
    btc = state.balance(binance_account.api_key, "BTC")
    assert (btc.free, btc.locked) == (D("0.8"), D(0))
    with pytest.raises(ccxt.OrderNotFound, match="Unknown order sent"):
        await client.cancel_order(order["id"], BTC)


async def test_by_client_order_id(client: ccxt_async.binance, binance_double: BinanceDouble) -> None:
    placed = await client.create_order(BTC, "limit", "buy", 0.01, 50000, params={"clientOrderId": "tb-123"})
    assert placed["clientOrderId"] == "tb-123"
    fetched = await client.fetch_order("", BTC, params={"clientOrderId": "tb-123"})
    assert fetched["id"] == placed["id"]
    fetched2 = await client.fetch_order("", BTC, params={"origClientOrderId": "tb-123"})
    assert fetched2["id"] == placed["id"]
    canceled = await client.cancel_order("", BTC, params={"clientOrderId": "tb-123"})
    assert canceled["status"] == "canceled"
    assert binance_double.state.orders(client_order_id="tb-123")[0].status == "CANCELED"


async def test_ioc_and_fok(client: ccxt_async.binance, binance_double: BinanceDouble) -> None:
    away = await client.create_order(BTC, "limit", "buy", 0.01, 50000, params={"timeInForce": "IOC"})
    assert away["status"] == "expired" and away["filled"] == 0.0
    binance_double.state.set_liquidity("BTCUSDT", "0.004")
    partial = await client.create_order(BTC, "limit", "buy", 0.01, 60000, params={"timeInForce": "IOC"})
    assert partial["status"] == "expired" and partial["filled"] == 0.004
    fok = await client.create_order(BTC, "limit", "buy", 0.01, 60000, params={"timeInForce": "FOK"})
    assert fok["status"] == "expired" and fok["filled"] == 0.0


@pytest.mark.parametrize(
    ("amount", "price", "exc", "message"),
    [
        (100, 60000, ccxt.InsufficientFunds, "insufficient balance"),
        (9001, 0.01, ccxt.InvalidOrder, "Filter failure: LOT_SIZE"),
        (0.01, 2000000, ccxt.InvalidOrder, "Filter failure: PRICE_FILTER"),
        (0.00001, 60000, ccxt.BadRequest, "Filter failure: NOTIONAL"),
    ],
)
async def test_rejections_map_to_ccxt_exceptions(
    client: ccxt_async.binance,
    binance_double: BinanceDouble,
    amount: float,
    price: float,
    exc: type[Exception],
    message: str,
) -> None:
    with pytest.raises(exc, match=message) as info:
        await client.create_order(BTC, "limit", "buy", amount, price)
    assert type(info.value) is exc
    assert binance_double.state.orders() == []


async def test_duplicate_client_order_id(client: ccxt_async.binance, binance_double: BinanceDouble) -> None:
    await client.create_order(BTC, "limit", "buy", 0.01, 50000, params={"clientOrderId": "dup-1"})
    # ccxt maps -2010 to InvalidOrder (its DuplicateOrderId is not used for Binance spot).
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent") as info:
        await client.create_order(BTC, "limit", "buy", 0.01, 50000, params={"clientOrderId": "dup-1"})
    assert type(info.value) is ccxt.InvalidOrder
    assert len(binance_double.state.orders(client_order_id="dup-1")) == 1


async def test_unknown_order_and_symbol(client: ccxt_async.binance) -> None:
    with pytest.raises(ccxt.OrderNotFound, match="Order does not exist"):
        await client.fetch_order("999", BTC)
    with pytest.raises(ccxt.BadSymbol, match="Invalid symbol"):
        await client.privateGetOrder({"symbol": "DOGEUSDT", "orderId": 1})
    with pytest.raises(ccxt.BadRequest, match="-1102"):
        await client.privateGetOrder({"symbol": "BTCUSDT"})


async def test_bad_key_and_bad_signature(binance_double: BinanceDouble, binance_account: Account) -> None:
    for key, secret, code in [
        ("nope", binance_account.api_secret, "-2015"),
        (binance_account.api_key, "wrong", "-1022"),
    ]:
        c = make_binance_client(
            key, secret, base_url=binance_double.url, timeout_ms=1000, enable_rate_limit=False
        )
        try:
            with pytest.raises(ccxt.AuthenticationError, match=code):
                await c.fetch_balance()
        finally:
            await c.close()


async def test_timestamp_outside_recv_window_is_invalid_nonce(
    client: ccxt_async.binance, binance_double: BinanceDouble
) -> None:
    binance_double.state.set_time_offset_ms(30_000)  # exchange clock 30 s ahead of ours; recvWindow is 10 s
    with pytest.raises(ccxt.InvalidNonce, match="outside of the recvWindow"):
        await client.create_order(BTC, "market", "buy", 0.01)
    binance_double.state.set_time_offset_ms(-5_000)  # our clock ahead of the exchange
    with pytest.raises(ccxt.InvalidNonce, match="ahead of the server"):
        await client.fetch_balance()
    assert binance_double.state.orders() == []


# ---------------------------------------------------------------------- injected faults on placement


async def test_503_before_processing(client: ccxt_async.binance, binance_double: BinanceDouble) -> None:
    binance_double.fail_next("POST", "/api/v3/order", 503)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await client.create_order(BTC, "market", "buy", 0.01, params={"clientOrderId": "f-503"})
    assert binance_double.state.orders() == []
    again = await client.create_order(BTC, "market", "buy", 0.01, params={"clientOrderId": "f-503"})
    assert again["status"] == "closed"
    assert len(binance_double.state.orders(client_order_id="f-503")) == 1


async def test_503_after_processing_leaves_the_order(
    client: ccxt_async.binance, binance_double: BinanceDouble
) -> None:
    binance_double.fail_next("POST", "/api/v3/order", 503, after_processing=True)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await client.create_order(BTC, "limit", "buy", 0.01, 50000, params={"clientOrderId": "f-503b"})
    [order] = binance_double.state.orders(client_order_id="f-503b")
    assert order.status == "NEW"


@pytest.mark.parametrize("status", [429, 418])
async def test_rate_limit_and_ban(
    client: ccxt_async.binance, binance_double: BinanceDouble, status: int
) -> None:
    client.enableLastResponseHeaders = True
    binance_double.fail_next("POST", "/api/v3/order", status, retry_after=7)
    with pytest.raises(ccxt.DDoSProtection, match=str(status)):
        await client.create_order(BTC, "market", "buy", 0.01)
    assert client.last_response_headers["Retry-After"] == "7"
    assert binance_double.state.orders() == []
    assert [r.status for r in binance_double.state.requests("POST", "/api/v3/order")] == [status]


async def test_timeout_order_was_placed(client: ccxt_async.binance, binance_double: BinanceDouble) -> None:
    binance_double.delay_next("POST", "/api/v3/order", 1.5)
    with pytest.raises(ccxt.RequestTimeout):
        await client.create_order(BTC, "limit", "buy", 0.01, 50000, params={"clientOrderId": "f-timeout"})
    [order] = binance_double.state.orders(client_order_id="f-timeout")
    assert order.status == "NEW"
    # A retry with the same client order id is refused: the exchange still holds exactly one order.
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):
        await client.create_order(BTC, "limit", "buy", 0.01, 50000, params={"clientOrderId": "f-timeout"})
    found = await client.fetch_order("", BTC, params={"clientOrderId": "f-timeout"})
    assert found["id"] == str(order.order_id)
    assert len(binance_double.state.orders(client_order_id="f-timeout")) == 1


async def test_dropped_connection_order_was_placed(
    client: ccxt_async.binance, binance_double: BinanceDouble
) -> None:
    binance_double.drop_next("POST", "/api/v3/order")
    with pytest.raises(ccxt.NetworkError):
        await client.create_order(BTC, "market", "buy", 0.01, params={"clientOrderId": "f-drop"})
    [order] = binance_double.state.orders(client_order_id="f-drop")
    assert order.status == "FILLED"
    assert [r.fault for r in binance_double.state.requests("POST", "/api/v3/order")] == ["drop"]


async def test_dropped_before_processing_leaves_nothing(
    client: ccxt_async.binance, binance_double: BinanceDouble
) -> None:
    binance_double.drop_next("POST", "/api/v3/order", after_processing=False)
    with pytest.raises(ccxt.NetworkError):
        await client.create_order(BTC, "market", "buy", 0.01, params={"clientOrderId": "f-drop0"})
    assert binance_double.state.orders() == []


async def test_lost_cancel_ack(client: ccxt_async.binance, binance_double: BinanceDouble) -> None:
    placed = await client.create_order(BTC, "limit", "buy", 0.01, 50000)
    # aiohttp silently retries an idempotent DELETE once when a pooled connection dies, so cut both tries.
    binance_double.lose_cancel_ack(times=2)
    with pytest.raises(ccxt.NetworkError):
        await client.cancel_order(placed["id"], BTC)
    assert binance_double.state.order(int(placed["id"])).status == "CANCELED"
    assert [r.fault for r in binance_double.state.requests("DELETE", "/api/v3/order")] == ["drop", "drop"]
    assert (await client.fetch_order(placed["id"], BTC))["status"] == "canceled"


async def test_lost_cancel_ack_retried_by_aiohttp_reads_as_order_not_found(
    client: ccxt_async.binance, binance_double: BinanceDouble
) -> None:
    """What a real lost ack looks like through ccxt: the transparent retry finds the order already gone."""
    placed = await client.create_order(BTC, "limit", "buy", 0.01, 50000)
    binance_double.lose_cancel_ack()
    with pytest.raises(ccxt.OrderNotFound, match="Unknown order sent"):
        await client.cancel_order(placed["id"], BTC)
    assert [(r.fault, r.status) for r in binance_double.state.requests("DELETE", "/api/v3/order")] == [
        ("drop", 0),
        (None, 400),
    ]
    assert binance_double.state.order(int(placed["id"])).status == "CANCELED"


async def test_exchange_side_events_are_visible(
    client: ccxt_async.binance, binance_double: BinanceDouble, binance_account: Account
) -> None:
    state = binance_double.state
    placed = await client.create_order(BTC, "limit", "buy", 0.01, 50000)
    state.expire_order(int(placed["id"]))
    external = state.place_external_order(binance_account.api_key, "BTCUSDT", "SELL", "LIMIT", "0.1", "70000")
    assert external.external

    async def probe() -> bool:
        orders = await client.fetch_orders(BTC)
        return [o["status"] for o in orders] == ["expired", "open"]

    await eventually(probe, timeout=5)
    open_ids = [o["id"] for o in await client.fetch_open_orders(BTC)]
    assert open_ids == [str(external.order_id)]


async def test_wipe_resets_like_the_monthly_testnet_reset(
    client: ccxt_async.binance, binance_double: BinanceDouble
) -> None:
    await client.create_order(BTC, "market", "buy", 0.01)
    binance_double.state.wipe()
    assert await client.fetch_orders(BTC) == []
    assert (await client.fetch_balance())["total"]["BTC"] == 1.0
