"""The testnet market feed backs off while the testnet cannot be reached at all (issue #16): an offline
`tradebridge up` retried its 27 (symbol, stream) loops every 2 s, keeping ccxt's throttler and the DNS
resolver busy. Once REST answers again it polls at `fallback_poll_s` as before."""

from __future__ import annotations

import asyncio
from collections import Counter
from decimal import Decimal
from typing import Any, cast

from pricefeed.testnet_market import TestnetMarketFeed as Feed
from shared.bus.memory import MemoryBus
from shared.clock import SystemClock
from shared.exchanges.base import Ticker
from shared.exchanges.binance_market import BinanceMarketStreams, Book
from shared.marketdata import MemoryMarketData
from tests.support.eventually import eventually

D = Decimal


class _Testnet:
    """A testnet whose streams always fail and whose REST answers only while ``up``."""

    streaming = True

    def __init__(self) -> None:
        self.up = False
        self.fetches: Counter[str] = Counter()

    async def _stream(self, *_: Any) -> Any:
        raise ConnectionError("stream host unreachable")

    watch_book = watch_trades = watch_last_price = watch_klines = _stream

    def _rest(self, what: str) -> None:
        self.fetches[what] += 1
        if not self.up:
            raise ConnectionError("Cannot connect to host testnet.binance.vision")

    async def fetch_book(self, symbol: str, limit: int = 50) -> Book:
        self._rest("book")
        return Book(symbol, ((D("99"), D("1")),), ((D("101"), D("1")),), 1)

    async def fetch_trades(self, symbol: str, limit: int = 50) -> list[Any]:
        self._rest("trades")
        return []

    async def fetch_ticker(self, symbol: str) -> Ticker:
        self._rest("ticker")
        return Ticker(symbol=symbol, last=D("100"), bid=D("99"), ask=D("101"))

    async def fetch_klines(self, symbol: str, interval: str, limit: int = 200) -> list[Any]:
        self._rest("klines")
        return []

    async def close(self) -> None:
        return None


async def test_unreachable_testnet_is_retried_less_and_less_then_polled_again() -> None:
    testnet = _Testnet()
    feed = Feed(
        cast(BinanceMarketStreams, testnet),
        symbols=["BTCUSDT"],
        market_data=MemoryMarketData(),
        bus=MemoryBus(),
        clock=SystemClock(),
        fallback_poll_s=0.05,
        unreachable_max_s=1.0,
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    await feed.start()
    try:
        await eventually(lambda: testnet.fetches["ticker"] >= 5, timeout=10)
        # Four waits between five failed tries: 0.05 + 0.1 + 0.2 + 0.4 s less at most 25 % jitter (>= 0.56 s);
        # without the backoff, 4 x 0.05 s.
        assert loop.time() - started >= 0.55

        testnet.up = True
        before, up_at = testnet.fetches["ticker"], loop.time()
        await eventually(lambda: testnet.fetches["ticker"] - before >= 8, timeout=10)
        # Back within one capped wait (<= 1 s), then every 0.05 s (the stream still down); had the wait
        # stayed backed off, 8 polls would take >= 8 x 0.75 s.
        assert loop.time() - up_at < 4.0
        assert (await feed.market_data.get("ticker", "BTCUSDT", venue="testnet") or {}).get("via") == "rest"
    finally:
        await feed.stop()
