"""The double's exchange state on its own: matching, funds, and its invariants."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.binance_double.state import BinanceError, ExchangeState

D = Decimal


def _limit(side: str, qty: str, price: str, tif: str = "GTC", cid: str | None = None) -> dict[str, str]:
    p = {
        "symbol": "BTCUSDT",
        "side": side,
        "type": "LIMIT",
        "timeInForce": tif,
        "quantity": qty,
        "price": price,
    }
    if cid:
        p["newClientOrderId"] = cid
    return p


def test_rejections_carry_binance_codes() -> None:
    s = ExchangeState()
    key = s.create_account({"USDT": "100"}).api_key
    cases = [
        ({"side": "BUY", "type": "LIMIT"}, -1102, "Mandatory parameter 'symbol'"),
        ({**_limit("BUY", "0.001", "60000"), "symbol": "XXX"}, -1121, "Invalid symbol."),
        ({**_limit("BUY", "0.001", "60000"), "quantity": "1e-3"}, -1100, "Illegal characters"),
        ({**_limit("BUY", "0.001", "60000"), "timeInForce": "DAY"}, -1115, "Invalid timeInForce."),
        ({**_limit("BUY", "0.001", "60000"), "bogus": "1"}, -1104, "Not all sent parameters were read"),
        (_limit("BUY", "0.000015", "60000"), -1013, "Filter failure: LOT_SIZE"),
        (_limit("BUY", "0.001", "60000.001"), -1013, "Filter failure: PRICE_FILTER"),
        (_limit("BUY", "0.00001", "60000"), -1013, "Filter failure: NOTIONAL"),
        (_limit("BUY", "0.01", "60000"), -2010, "Account has insufficient balance for requested action."),
        ({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET"}, -1102, "'quantity' or 'quoteOrderQty'"),
        (
            {**_limit("BUY", "0.001", "60000"), "type": "LIMIT_MAKER", "timeInForce": ""},
            -2010,
            "immediately match",
        ),
    ]
    for params, code, msg in cases:
        with pytest.raises(BinanceError) as info:
            s.place_order(key, params)
        assert (info.value.code, msg in info.value.msg) == (code, True), params
    assert s.orders() == []
    with pytest.raises(BinanceError) as info:
        s.place_order("unknown", _limit("BUY", "0.001", "60000"))
    assert (info.value.code, info.value.http_status) == (-2015, 401)


def test_market_quote_order_qty_buys_what_the_money_allows() -> None:
    s = ExchangeState()
    key = s.create_account({"USDT": "1000"}).api_key
    order, fills = s.place_order(
        key, {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quoteOrderQty": "100"}
    )
    assert order.status == "FILLED" and order.executed_qty == D("0.00166")  # floor(100/60000) to the step
    assert order.cummulative_quote_qty == D("99.6")
    assert fills[0].commission == D("0.00000166") and fills[0].commission_asset == "BTC"
    assert s.balance(key, "USDT").free == D("900.4")


def test_duplicate_policy_known_vs_open() -> None:
    for policy, allowed in (("known", False), ("open", True)):
        s = ExchangeState(duplicate_client_id=policy)  # type: ignore[arg-type]
        key = s.create_account({"USDT": "10000"}).api_key
        first, _ = s.place_order(key, _limit("BUY", "0.01", "50000", cid="same"))
        s.cancel_order(key, "BTCUSDT", order_id=first.order_id)
        if allowed:
            second, _ = s.place_order(key, _limit("BUY", "0.01", "50000", cid="same"))
            assert s.get_order(key, "BTCUSDT", client_order_id="same").order_id == second.order_id
        else:
            with pytest.raises(BinanceError, match=r"Duplicate order sent\."):
                s.place_order(key, _limit("BUY", "0.01", "50000", cid="same"))


def test_price_move_fills_crossing_orders_in_time_order() -> None:
    s = ExchangeState()
    key = s.create_account({"USDT": "10000", "BTC": "1"}).api_key
    a, _ = s.place_order(key, _limit("BUY", "0.01", "59000"))
    b, _ = s.place_order(key, _limit("BUY", "0.01", "58000"))
    c, _ = s.place_order(key, _limit("SELL", "0.01", "61000"))
    fills = s.set_price("BTCUSDT", "58500")
    assert [t.order_id for t in fills] == [a.order_id]
    assert s.order(b.order_id).status == "NEW" and s.order(c.order_id).status == "NEW"
    fills = s.set_price("BTCUSDT", "62000")
    assert [t.order_id for t in fills] == [c.order_id]
    assert s.order(c.order_id).cummulative_quote_qty == D("610")  # maker keeps its own price


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.tuples(
                st.just("order"),
                st.sampled_from(["BUY", "SELL"]),
                st.sampled_from(["LIMIT", "MARKET"]),
                st.integers(1, 300),
                st.integers(-300, 300),
                st.sampled_from(["GTC", "IOC", "FOK"]),
            ),
            st.tuples(st.just("price"), st.integers(-400, 400)),
            st.tuples(st.just("cancel"), st.integers(0, 20)),
            st.tuples(st.just("fill"), st.integers(0, 20), st.integers(1, 100)),
        ),
        max_size=25,
    )
)
def test_funds_are_conserved_and_locks_match_open_orders(ops: list[tuple]) -> None:
    s = ExchangeState(fee_rate=D(0))
    key = s.create_account({"USDT": "20000", "BTC": "0.5"}).api_key
    base_price = D("60000")
    for op in ops:
        try:
            if op[0] == "order":
                _, side, otype, qty_steps, offset, tif = op
                params = {
                    "symbol": "BTCUSDT",
                    "side": side,
                    "type": otype,
                    "quantity": str(D(qty_steps) * D("0.0001")),
                }
                if otype == "LIMIT":
                    params |= {"price": str(s.price("BTCUSDT") + D(offset) * 10), "timeInForce": tif}
                s.place_order(key, params)
            elif op[0] == "price":
                s.set_price("BTCUSDT", base_price + D(op[1]) * 10)
            elif op[0] == "cancel":
                s.cancel_order(key, "BTCUSDT", order_id=op[1])
            else:
                order = s.order(op[1])
                if order.is_open:
                    s.fill_order(order.order_id, min(order.remaining, D(op[2]) * D("0.00001")))
        except (BinanceError, KeyError):
            pass
        usdt, btc = s.balance(key, "USDT"), s.balance(key, "BTC")
        assert min(usdt.free, usdt.locked, btc.free, btc.locked) >= 0
        open_orders = s.open_orders(key)
        assert usdt.locked == sum((o.locked for o in open_orders if o.side == "BUY"), D(0))
        assert btc.locked == sum((o.locked for o in open_orders if o.side == "SELL"), D(0))
        trades = s.trades(key)
        # Without fees, every asset moves only by trades: start + bought - sold.
        bought = sum((t.qty for t in trades if t.is_buyer), D(0)) - sum(
            (t.qty for t in trades if not t.is_buyer), D(0)
        )
        spent = sum((t.quote_qty for t in trades if t.is_buyer), D(0)) - sum(
            (t.quote_qty for t in trades if not t.is_buyer), D(0)
        )
        assert btc.total == D("0.5") + bought
        assert usdt.total == D("20000") - spent
        for o in s.orders(key):
            assert o.executed_qty == sum((t.qty for t in trades if t.order_id == o.order_id), D(0))
            assert o.executed_qty <= o.orig_qty
