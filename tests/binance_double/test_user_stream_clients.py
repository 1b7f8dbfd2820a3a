"""The user data stream through the real clients: python-binance's user_socket() and ccxt.pro's watch_orders."""

from __future__ import annotations

import asyncio

import pytest
from binance.exceptions import BinanceAPIException

from tests.binance_double import Account, BinanceDouble
from tests.binance_double.clients import ccxt_pro, python_binance
from tests.support.eventually import eventually


async def user_subscribed(double: BinanceDouble, api_key: str) -> None:
    await eventually(lambda: any(api_key in keys for keys in double.ws_subscriptions()["api"]))


async def test_python_binance_user_socket_gets_the_fill(
    binance_double: BinanceDouble, binance_account: Account
) -> None:
    client, sockets = python_binance(binance_double, binance_account)
    try:
        async with sockets.user_socket() as user:  # userDataStream.subscribe.signature on /ws-api/v3
            await user_subscribed(binance_double, binance_account.api_key)
            placed = await client.order_limit_sell(symbol="BTCUSDT", quantity="0.01", price="60500")
            binance_double.state.set_price("BTCUSDT", "60600")
            events = [await asyncio.wait_for(user.recv(), 10) for _ in range(4)]
            assert [(e["e"], e.get("X")) for e in events] == [
                ("executionReport", "NEW"),
                ("outboundAccountPosition", None),
                ("executionReport", "FILLED"),
                ("outboundAccountPosition", None),
            ]
            fill = events[2]
            assert (fill["i"], fill["x"], fill["L"], fill["l"]) == (
                placed["orderId"],
                "TRADE",
                "60500.00000000",
                "0.01000000",
            )
    finally:
        await client.close_connection()


async def test_python_binance_wrong_secret_is_rejected(
    binance_double: BinanceDouble, binance_account: Account
) -> None:
    wrong = Account(binance_account.api_key, "0" * 64)
    client, sockets = python_binance(binance_double, wrong)
    try:
        with pytest.raises(BinanceAPIException) as info:
            async with sockets.user_socket():
                pass
        assert (info.value.status_code, info.value.code) == (400, -1022)
    finally:
        await client.close_connection()


async def test_ccxt_watch_orders_and_event_stream_terminated(
    binance_double: BinanceDouble, binance_account: Account
) -> None:
    exchange = ccxt_pro(binance_double, binance_account)
    try:
        await exchange.load_markets()
        watching = asyncio.ensure_future(exchange.watch_orders("ETH/USDT"))
        await user_subscribed(binance_double, binance_account.api_key)
        order = await exchange.create_order("ETH/USDT", "market", "buy", 0.5)
        orders = await watching
        assert orders[-1]["id"] == order["id"]
        while orders[-1]["status"] != "closed":
            orders = await exchange.watch_orders("ETH/USDT")
        assert (orders[-1]["filled"], orders[-1]["average"]) == (0.5, 3000.0)

        (client,) = [c for url, c in exchange.clients.items() if url.endswith("/ws-api/v3")]
        binance_double.terminate_user_streams(binance_account.api_key)
        await eventually(lambda: binance_double.ws_subscriptions()["api"] == [[]])
        await eventually(lambda: "spot" not in client.subscriptions)  # ccxt read eventStreamTerminated

        again = asyncio.ensure_future(exchange.watch_orders("ETH/USDT"))  # so it subscribes anew
        await user_subscribed(binance_double, binance_account.api_key)
        binance_double.state.place_external_order(
            binance_account.api_key, "ETHUSDT", "SELL", "LIMIT", "0.1", "3100"
        )
        assert (await asyncio.wait_for(again, 10))[-1]["price"] == 3100.0
    finally:
        await exchange.close()
