"""Stop orders and cancel-replace: Binance's rules in the state, its wire shapes through the real clients."""

from __future__ import annotations

import hashlib
import hmac
import time
from decimal import Decimal
from urllib.parse import urlencode

import ccxt
import httpx
import pytest

from tests.binance_double import Account, BinanceDouble, BinanceError, ExchangeState
from tests.binance_double.clients import ccxt_pro, python_binance

D = Decimal


def _account(state: ExchangeState) -> str:
    return state.create_account({"USDT": "10000", "BTC": "1"}).api_key


def _stop(otype: str, side: str, stop: str, price: str | None = None, qty: str = "0.01") -> dict[str, str]:
    params = {"symbol": "BTCUSDT", "side": side, "type": otype, "quantity": qty, "stopPrice": stop}
    if price is not None:
        params.update(price=price, timeInForce="GTC")
    return params


@pytest.mark.parametrize(
    ("otype", "side", "stop", "price", "miss", "hit"),
    [
        ("STOP_LOSS_LIMIT", "SELL", "59000", "58900", "59000.01", "59000"),  # falls into it
        ("STOP_LOSS", "BUY", "61000", None, "60999.99", "61000"),  # rises into it
        ("TAKE_PROFIT_LIMIT", "SELL", "61000", "61000", "60999.99", "61000"),  # rises into it
        ("TAKE_PROFIT", "BUY", "59000", None, "59000.01", "59000"),  # falls into it
    ],
)
def test_stop_orders_wait_for_their_trigger_then_execute(
    otype: str, side: str, stop: str, price: str | None, miss: str, hit: str
) -> None:
    s = ExchangeState()
    key = _account(s)
    order, fills = s.place_order(key, _stop(otype, side, stop, price))
    assert (order.status, order.is_working, order.working_time, fills) == ("NEW", False, -1, [])
    locked = s.balance(key, "BTC" if side == "SELL" else "USDT").locked
    assert locked == (D("0.01") if side == "SELL" else D(stop) * D("0.01"))
    bids, asks = s.depth("BTCUSDT", 1000)
    assert all(q == 1 for _, q in bids + asks)  # only the synthetic levels: a waiting stop is not on the book
    s.set_price("BTCUSDT", miss)
    assert s.order(order.order_id).status == "NEW" and not s.order(order.order_id).is_working
    s.set_price("BTCUSDT", hit)
    done = s.order(order.order_id)
    assert (done.status, done.is_working, done.type) == ("FILLED", True, otype)
    (trade,) = s.trades(order_id=order.order_id)
    assert trade.price == D(hit) and not trade.is_maker  # taken at the last price once triggered
    assert s.balance(key, "BTC").locked == s.balance(key, "USDT").locked == 0


def test_a_triggered_stop_limit_rests_when_its_limit_is_not_marketable() -> None:
    s = ExchangeState()
    key = _account(s)
    order, _ = s.place_order(key, _stop("STOP_LOSS_LIMIT", "BUY", "60500", "60400"))
    s.set_price("BTCUSDT", "60600")  # triggers; a buy limit at 60400 is below the market: it rests
    resting = s.order(order.order_id)
    assert (resting.status, resting.is_working, resting.working_time > 0) == ("NEW", True, True)
    assert (D("60400"), D("0.01")) in s.depth("BTCUSDT", 1000)[0]
    s.set_price("BTCUSDT", "60400")
    assert s.order(order.order_id).status == "FILLED"
    assert s.trades(order_id=order.order_id)[0].is_maker


def test_stop_rules_and_filters() -> None:
    s = ExchangeState()
    key = _account(s)
    cases = [
        (_stop("STOP_LOSS_LIMIT", "SELL", "60000", "59900"), -2010, "Order would trigger immediately."),
        (_stop("STOP_LOSS", "BUY", "59999"), -2010, "Order would trigger immediately."),
        (_stop("TAKE_PROFIT", "SELL", "59000"), -2010, "Order would trigger immediately."),
        (_stop("STOP_LOSS_LIMIT", "SELL", "59000.001", "58900"), -1013, "Filter failure: PRICE_FILTER"),
        (_stop("STOP_LOSS", "SELL", "59000", qty="0.00001"), -1013, "Filter failure: NOTIONAL"),
        (_stop("STOP_LOSS", "SELL", "59000", qty="121"), -1013, "Filter failure: MARKET_LOT_SIZE"),
        ({**_stop("STOP_LOSS", "SELL", "59000"), "price": "1"}, -1106, "'price' sent when not required"),
        ({**_stop("STOP_LOSS_LIMIT", "SELL", "59000", "1"), "stopPrice": ""}, -1102, "'stopPrice'"),
        ({**_stop("STOP_LOSS_LIMIT", "SELL", "59000", "58900"), "timeInForce": ""}, -1102, "'timeInForce'"),
        (
            {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01"}
            | {"price": "50000", "stopPrice": "1"},
            -1106,
            "'stopPrice' sent when not required",
        ),
        (_stop("STOP_LOSS", "SELL", "59000", qty="2"), -2010, "insufficient balance"),
    ]
    for params, code, msg in cases:
        with pytest.raises(BinanceError) as info:
            s.place_order(key, params)
        assert (info.value.code, msg in info.value.msg) == (code, True), (params, info.value)
    assert s.orders() == []


async def test_stop_limit_over_rest_through_python_binance(
    binance_double: BinanceDouble, binance_account: Account
) -> None:
    client, _ = python_binance(binance_double, binance_account)
    try:
        ack = await client.create_order(
            symbol="BTCUSDT",
            side="SELL",
            type="STOP_LOSS_LIMIT",
            timeInForce="GTC",
            quantity="0.01",
            price="58900",
            stopPrice="59000",
        )
        assert set(ack) == {
            "symbol",
            "orderId",
            "orderListId",
            "clientOrderId",
            "transactTime",
        }  # ACK by default
        waiting = await client.get_order(symbol="BTCUSDT", orderId=ack["orderId"])
        assert (waiting["status"], waiting["isWorking"], waiting["workingTime"], waiting["stopPrice"]) == (
            "NEW",
            False,
            -1,
            "59000.00000000",
        )
        binance_double.state.set_price("BTCUSDT", "58950")
        filled = await client.get_order(symbol="BTCUSDT", orderId=ack["orderId"])
        assert (filled["status"], filled["isWorking"], filled["type"], filled["executedQty"]) == (
            "FILLED",
            True,
            "STOP_LOSS_LIMIT",
            "0.01000000",
        )
    finally:
        await client.close_connection()


async def test_ccxt_edit_order_keeps_exactly_one_live_order(
    binance_double: BinanceDouble, binance_account: Account
) -> None:
    exchange = ccxt_pro(binance_double, binance_account)
    state = binance_double.state
    try:
        first = await exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 59000)
        edited = await exchange.edit_order(first["id"], "BTC/USDT", "limit", "buy", 0.02, 59500)
        assert edited["id"] != first["id"] and (edited["price"], edited["amount"]) == (59500.0, 0.02)
        live = state.open_orders(binance_account.api_key)
        assert [(o.order_id, o.price) for o in live] == [(int(edited["id"]), D("59500"))]
        assert state.order(int(first["id"])).status == "CANCELED"
        assert state.balance(binance_account.api_key, "USDT").locked == D("1190")
        with pytest.raises(ccxt.ExchangeError, match="-2022"):  # the cancel failed, nothing was placed
            await exchange.edit_order(first["id"], "BTC/USDT", "limit", "buy", 0.02, 59600)
        assert [o.order_id for o in state.open_orders(binance_account.api_key)] == [int(edited["id"])]
    finally:
        await exchange.close()


def _signed_post(
    double: BinanceDouble, account: Account, path: str, params: dict[str, str]
) -> httpx.Response:
    query = urlencode({**params, "timestamp": str(int(time.time() * 1000))})
    signature = hmac.new(account.api_secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    with httpx.Client(base_url=double.url) as http:
        return http.post(f"{path}?{query}&signature={signature}", headers={"X-MBX-APIKEY": account.api_key})


def test_cancel_replace_answers_in_binance_shapes(
    binance_double: BinanceDouble, binance_account: Account
) -> None:
    state = binance_double.state
    resting = state.place_external_order(binance_account.api_key, "BTCUSDT", "SELL", "LIMIT", "0.01", "61000")
    base = {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01"}

    def replace(mode: str, cancel_id: int, price: str, **extra: str) -> httpx.Response:
        params = {**base, "price": price, "cancelReplaceMode": mode, "cancelOrderId": str(cancel_id), **extra}
        return _signed_post(binance_double, binance_account, "/api/v3/order/cancelReplace", params)

    ok = replace("STOP_ON_FAILURE", resting.order_id, "61500", cancelNewClientOrderId="cxl-a")
    body = ok.json()
    assert ok.status_code == 200 and (body["cancelResult"], body["newOrderResult"]) == ("SUCCESS", "SUCCESS")
    assert (body["cancelResponse"]["status"], body["cancelResponse"]["clientOrderId"]) == (
        "CANCELED",
        "cxl-a",
    )
    assert body["cancelResponse"]["origClientOrderId"] == resting.client_order_id
    new_id = body["newOrderResponse"]["orderId"]
    assert body["newOrderResponse"]["status"] == "NEW" and "fills" in body["newOrderResponse"]

    stop = replace("STOP_ON_FAILURE", resting.order_id, "61600")  # already canceled
    assert (stop.status_code, stop.json()) == (
        400,
        {
            "code": -2022,
            "msg": "Order cancel-replace failed.",
            "data": {
                "cancelResult": "FAILURE",
                "newOrderResult": "NOT_ATTEMPTED",
                "cancelResponse": {"code": -2011, "msg": "Unknown order sent."},
                "newOrderResponse": None,
            },
        },
    )
    allow = replace("ALLOW_FAILURE", resting.order_id, "61700", newOrderRespType="ACK")
    assert allow.status_code == 409 and allow.json()["code"] == -2021
    assert (allow.json()["data"]["cancelResult"], allow.json()["data"]["newOrderResult"]) == (
        "FAILURE",
        "SUCCESS",
    )
    placed = allow.json()["data"]["newOrderResponse"]["orderId"]

    maker = {"type": "LIMIT_MAKER", "timeInForce": ""}  # a maker sell under the market would take
    partial = replace("STOP_ON_FAILURE", new_id, "59000", **maker)
    assert (partial.status_code, partial.json()["code"]) == (409, -2021)
    assert partial.json()["data"]["newOrderResponse"] == {
        "code": -2010,
        "msg": "Order would immediately match and take.",
    }
    assert state.order(new_id).status == "CANCELED"

    filters = replace("STOP_ON_FAILURE", placed, "61000.001")  # filters first: nothing is canceled
    assert (filters.status_code, filters.json()) == (
        400,
        {"code": -1013, "msg": "Filter failure: PRICE_FILTER"},
    )
    assert [o.order_id for o in state.open_orders(binance_account.api_key)] == [placed]
    missing = replace("", placed, "61000")
    assert missing.json()["code"] == -1102
