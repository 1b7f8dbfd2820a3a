"""The Binance adapter's pure parts: one status map, typed records with exact amounts, the client factory."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
from decimal import Decimal

import pytest
from structlog.testing import capture_logs

from shared.exchanges import adapter_names, get_adapter, register_adapter
from shared.exchanges.binance import (
    BINANCE_STATUS,
    CLIENT_LOGGER,
    REWRITTEN_URL_KEYS,
    map_status,
    parse_balances,
    parse_order,
    parse_ticker,
    parse_trade,
)
from shared.orders import Status

D = Decimal
# Binance spot API, "ENUM definitions" / Order status.
DOCUMENTED = (
    "NEW",
    "PENDING_NEW",
    "PARTIALLY_FILLED",
    "FILLED",
    "CANCELED",
    "PENDING_CANCEL",
    "REJECTED",
    "EXPIRED",
    "EXPIRED_IN_MATCH",
)

FULL_ANSWER = {
    "symbol": "BTCUSDT",
    "orderId": 28,
    "orderListId": -1,
    "clientOrderId": "tb-1",
    "transactTime": 1507725176595,
    "price": "0.00000000",
    "origQty": "0.00100000",
    "executedQty": "0.00100000",
    "cummulativeQuoteQty": "60.00000123",
    "status": "FILLED",
    "timeInForce": "GTC",
    "type": "MARKET",
    "side": "BUY",
    "fills": [
        {
            "price": "60000.00000123",
            "qty": "0.00060000",
            "commission": "0.00000060",
            "commissionAsset": "BTC",
            "tradeId": 56,
        },
        {
            "price": "59999.99999999",
            "qty": "0.00040000",
            "commission": "0.00000040",
            "commissionAsset": "BTC",
            "tradeId": 57,
        },
    ],
}


def test_every_documented_status_is_mapped_to_ours() -> None:
    assert set(BINANCE_STATUS) == set(DOCUMENTED)
    assert set(BINANCE_STATUS.values()) <= set(Status) - {Status.PENDING}
    assert {
        s
        for s in DOCUMENTED
        if map_status(s, D(0)) in (Status.FILLED, Status.CANCELED, Status.REJECTED, Status.EXPIRED)
    } == {"FILLED", "CANCELED", "REJECTED", "EXPIRED", "EXPIRED_IN_MATCH"}
    assert (
        map_status("EXPIRED_IN_MATCH", D(1)) is Status.EXPIRED
        and map_status("PENDING_NEW", D(0)) is Status.NEW
    )


def test_an_unknown_status_is_never_taken_for_final() -> None:
    row = {**FULL_ANSWER, "status": "SOMETHING_NEW", "executedQty": "0", "fills": []}
    with capture_logs() as logs:
        order = parse_order(row)
        partly = parse_order({**row, "executedQty": "0.0004"})
    assert (order.status, order.exchange_status) == (Status.NEW, "SOMETHING_NEW")
    assert partly.status is Status.PARTIALLY_FILLED
    assert [e["exchange_status"] for e in logs if e["log_level"] == "warning"] == ["SOMETHING_NEW"] * 2


def test_a_full_new_order_answer_parses_to_exact_immutable_records() -> None:
    order = parse_order(FULL_ANSWER)
    assert (order.venue_order_id, order.client_order_id, order.status, order.exchange_status) == (
        "28",
        "tb-1",
        Status.FILLED,
        "FILLED",
    )
    assert (order.quantity, order.filled, order.cum_quote, order.price) == (
        D("0.001"),
        D("0.001"),
        D("60.00000123"),
        None,
    )  # "0.00000000" is "no price"
    assert order.avg_price == D("60000.00123000")
    assert order.time_ms == order.transact_ms == 1507725176595
    first, second = order.fills
    assert (first.trade_id, first.venue_order_id, first.symbol, first.side, first.price, first.quantity) == (
        "56",
        "28",
        "BTCUSDT",
        "BUY",
        D("60000.00000123"),
        D("0.0006"),
    )
    assert first.quote_quantity == D("60000.00000123") * D("0.0006") and first.fee == D("0.0000006")
    assert not first.is_maker and second.time_ms == 1507725176595
    assert all(isinstance(v, Decimal) for v in (order.quantity, order.filled, first.price, first.fee))
    with pytest.raises(dataclasses.FrozenInstanceError):
        order.status = Status.NEW  # type: ignore[misc]


def test_a_cancel_answer_carries_the_orders_own_client_id() -> None:
    cancel = {
        "symbol": "BTCUSDT",
        "origClientOrderId": "tb-2",
        "orderId": 4,
        "clientOrderId": "cancel-9",
        "transactTime": 1,
        "price": "50000.00",
        "origQty": "0.01",
        "executedQty": "0.004",
        "cummulativeQuoteQty": "200",
        "status": "CANCELED",
        "timeInForce": "GTC",
        "type": "LIMIT",
        "side": "SELL",
    }
    order = parse_order(cancel)
    assert (order.client_order_id, order.status, order.price, order.filled) == (
        "tb-2",
        Status.CANCELED,
        D("50000"),
        D("0.004"),
    )


def test_trades_balances_and_tickers() -> None:
    trade = parse_trade(
        {
            "symbol": "ETHUSDT",
            "id": 7,
            "orderId": 3,
            "price": "3000.10",
            "qty": "0.5",
            "quoteQty": "1500.05",
            "commission": "0.0005",
            "commissionAsset": "ETH",
            "time": 99,
            "isBuyer": False,
            "isMaker": True,
        }
    )
    assert (trade.trade_id, trade.venue_order_id, trade.side, trade.is_maker, trade.quote_quantity) == (
        "7",
        "3",
        "SELL",
        True,
        D("1500.05"),
    )
    balances = parse_balances(
        {
            "balances": [
                {"asset": "USDT", "free": "10.5", "locked": "0.00000001"},
                {"asset": "BTC", "free": "0", "locked": "0"},
            ]
        }
    )
    assert [(b.asset, b.free, b.locked, b.total) for b in balances] == [
        ("BTC", D(0), D(0), D(0)),
        ("USDT", D("10.5"), D("0.00000001"), D("10.50000001")),
    ]
    ticker = parse_ticker(
        "BTCUSDT",
        {"last": 1.0, "info": {"lastPrice": "65000.01000000", "bidPrice": "0", "askPrice": "65000.02"}},
    )
    assert (ticker.last, ticker.bid, ticker.ask) == (D("65000.01"), None, D("65000.02"))


def test_the_testnet_client_talks_only_to_the_configured_root() -> None:
    for given in (
        "http://127.0.0.1:9999",
        "http://127.0.0.1:9999/",
        "http://127.0.0.1:9999/api/",
        "http://127.0.0.1:9999/api/v3",
    ):
        adapter = get_adapter("binance-testnet", base_url=given)
        assert adapter.base_url == "http://127.0.0.1:9999"  # type: ignore[attr-defined]
        client = adapter.session().client  # type: ignore[attr-defined]
        assert set(client.urls["api"]) == REWRITTEN_URL_KEYS  # no sapi/fapi/...: such a call fails loudly
        assert client.urls["api"]["private"] == "http://127.0.0.1:9999/api/v3"
        assert client.urls["api"]["v1"] == "http://127.0.0.1:9999/api/v1"
        assert client.isSandboxModeEnabled and client.options["defaultType"] == "spot"
    for bad in ("127.0.0.1:9000", "ftp://host", "http://host/?x=1"):
        with pytest.raises(ValueError):
            get_adapter("binance-testnet", base_url=bad)


def test_mainnet_is_binances_own_hosts_and_has_no_url_to_configure() -> None:
    client = get_adapter("binance").session().client  # type: ignore[attr-defined]
    assert client.urls["api"]["public"].startswith("https://api.binance.com/")
    assert not client.isSandboxModeEnabled
    with pytest.raises(ValueError):
        get_adapter("binance", base_url="http://127.0.0.1:1")


def test_keys_never_reach_the_client_log(caplog: pytest.LogCaptureFixture) -> None:
    client = get_adapter("binance-testnet", base_url="http://127.0.0.1:1").session("visible-key", "s").client  # type: ignore[attr-defined]
    with caplog.at_level(logging.DEBUG, logger=CLIENT_LOGGER):
        client.logger.debug("%s %s, Request: %s %s", "GET", "u", {"X-MBX-APIKEY": "visible-key"}, None)
    assert "visible-key" not in caplog.text and "***" in caplog.text


def test_the_registry() -> None:
    assert {"binance", "binance-testnet"} <= set(adapter_names())
    with pytest.raises(ValueError, match="unknown exchange"):
        get_adapter("kraken")
    with pytest.raises(ValueError):
        register_adapter("kraken", "no-colon")
    register_adapter("binance-testnet-2", "shared.exchanges.binance:testnet")
    try:
        assert get_adapter("binance-testnet-2", base_url="http://127.0.0.1:5").label == "Binance testnet"
    finally:
        from shared.exchanges import _ADAPTERS

        _ADAPTERS.pop("binance-testnet-2")


def test_importing_the_package_does_not_import_ccxt() -> None:
    code = "import sys, shared.exchanges, shared.exchanges.verify; print('ccxt' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"
