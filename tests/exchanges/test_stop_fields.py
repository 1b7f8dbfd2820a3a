"""A stop order's trigger as Binance reports it: workingTime -1 (REST) or no `W` (executionReport) while it
waits, set once it works; the stop price read from stopPrice / `P`."""

from __future__ import annotations

from decimal import Decimal

from shared.exchanges.binance import parse_order
from shared.exchanges.binance_stream import parse_execution_report

REST = {
    "symbol": "BTCUSDT",
    "orderId": 7,
    "clientOrderId": "ours",
    "price": "58900.00000000",
    "origQty": "0.01000000",
    "executedQty": "0.00000000",
    "cummulativeQuoteQty": "0.00000000",
    "status": "NEW",
    "timeInForce": "GTC",
    "type": "STOP_LOSS_LIMIT",
    "side": "SELL",
    "stopPrice": "59000.00000000",
    "time": 1,
    "isWorking": False,
    "workingTime": -1,
}


def test_rest_orders_tell_a_waiting_stop_from_a_triggered_one() -> None:
    waiting = parse_order(REST)
    assert (waiting.stop_price, waiting.triggered) == (Decimal("59000"), False)
    assert parse_order({**REST, "isWorking": True, "workingTime": 5}).triggered
    assert not parse_order({**REST, "type": "LIMIT", "stopPrice": "0.00000000", "workingTime": 5}).triggered


def report(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "e": "executionReport", "E": 2, "s": "BTCUSDT", "c": "ours", "S": "SELL", "o": "STOP_LOSS_LIMIT",
        "f": "GTC", "q": "0.01", "p": "58900", "P": "59000", "x": "NEW", "X": "NEW", "i": 7, "l": "0",
        "z": "0", "L": "0", "n": "0", "N": None, "T": 2, "t": -1, "w": False, "m": False, "O": 1, "Z": "0",
    }  # fmt: skip
    return {**base, **over}


def test_execution_reports_tell_a_waiting_stop_from_a_triggered_one() -> None:
    waiting = parse_execution_report(report()).order
    assert (waiting.stop_price, waiting.triggered) == (Decimal("59000"), False)
    assert parse_execution_report(report(w=True, W=3)).order.triggered
    assert parse_execution_report(report(x="CANCELED", X="CANCELED", w=False, W=3)).order.triggered
