"""The testnet's own market: ticker, depth, trades and candles of the configured SYMBOLS, streamed from the
testnet's WebSocket market streams (REST when a stream is down) and published under the venue "testnet".

Why: a testnet order fills on the testnet's book, so a testnet-mode user must see that book, not the paper
one (a quote of ~65,024 from the paper book beside a testnet fill at 65,000). Everything goes where the paper
venue's data goes (the market data store, the public market streams), with `venue="testnet"`: the gateway
serves it with `?venue=testnet` (the default for a testnet-mode user), the events service on the channels
`ticker:SYMBOL@testnet`, `depth:...@testnet`, `trades:...@testnet`, `candles:SYMBOL:1m@testnet`.

Each (symbol, stream) has its own loop: wait for the next stream update and publish it; on a failure, log it
(a warning the first time), fetch the same data once over REST and publish that (`"source": "rest"`), wait
`fallback_poll_s`, and try the stream again (ccxt.pro reconnects and resyncs the book). While REST fails too
(no route to the testnet), the wait doubles per failure up to `unreachable_max_s`: 27 loops retrying every
2 s kept ccxt's throttler (a 1 ms sleep loop while requests queue) and the DNS resolver busy in an offline
`tradebridge up` (issue #16: most of its idle CPU).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from shared.amounts import plain
from shared.candles import CANDLE_INTERVAL_MS
from shared.clock import Clock
from shared.marketdata import MarketData
from shared.retry import Backoff
from shared.streams import (
    MARKET_CANDLES,
    MARKET_DEPTH,
    MARKET_TICKER,
    MARKET_TRADES,
    TESTNET_VENUE,
    public_event,
)

if TYPE_CHECKING:
    from shared.bus import Bus
    from shared.exchanges.base import Kline
    from shared.exchanges.binance_market import BinanceMarketStreams, Book, PublicTrade
    from shared.settings import Settings

log = structlog.get_logger(__name__)

VENUE = TESTNET_VENUE
SOURCE = "binance-testnet"
INTERVALS: dict[str, timedelta] = {
    name: timedelta(milliseconds=ms) for name, ms in CANDLE_INTERVAL_MS.items()
}
KEEP_CANDLES = 500


@dataclass
class _Top:
    """What the ticker is made of: the last price (mini ticker or trades) and the book's best bid and ask."""

    last: Decimal | None = None
    bid: Decimal | None = None
    ask: Decimal | None = None
    source: str = "stream"
    stale: bool = False
    published: tuple[Any, ...] | None = None


@dataclass
class _Health:
    """Per (stream, symbol): failures in a row, for the log and for tests."""

    failures: dict[tuple[str, str], int] = field(default_factory=dict)
    rest_polls: int = 0


def _ms(ts: int | None, fallback: datetime) -> str:
    return fallback.isoformat() if ts is None else datetime.fromtimestamp(ts / 1000, UTC).isoformat()


class TestnetMarketFeed:
    """Streams the testnet's market for `symbols` into the market data store and onto the bus (venue testnet)."""

    def __init__(
        self,
        streams: BinanceMarketStreams,
        *,
        symbols: Sequence[str],
        market_data: MarketData,
        bus: Bus,
        clock: Clock,
        book_levels: int = 50,
        fallback_poll_s: float = 2.0,
        unreachable_max_s: float = 60.0,
    ) -> None:
        self.streams = streams
        self.symbols = list(symbols)
        self.market_data = market_data
        self.bus = bus
        self.clock = clock
        self.book_levels = book_levels
        self.fallback_poll_s = fallback_poll_s
        # The wait after the n-th failure in a row of the stream and REST both (REST working: fallback_poll_s).
        self.unreachable = Backoff(
            base=fallback_poll_s, factor=2.0, cap=max(unreachable_max_s, fallback_poll_s), jitter=0.25
        )
        self.health = _Health()
        self._top: dict[str, _Top] = {s: _Top() for s in self.symbols}
        self._candles: dict[tuple[str, str], dict[int, Kline]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for symbol in self.symbols:
            self._spawn("book", symbol, partial(self._watch_book, symbol), partial(self._poll_book, symbol))
            self._spawn(
                "trades", symbol, partial(self._watch_trades, symbol), partial(self._poll_trades, symbol)
            )
            self._spawn(
                "ticker", symbol, partial(self._watch_last, symbol), partial(self._poll_ticker, symbol)
            )
            for interval in INTERVALS:
                self._spawn(
                    f"candles:{interval}",
                    symbol,
                    partial(self._watch_klines, symbol, interval),
                    partial(self._poll_klines, symbol, interval, 2),
                    first=partial(self._poll_klines, symbol, interval, 200),
                )

    async def stop(self) -> None:
        """Bounded: a connection attempt to an unreachable stream host must not hold up shutdown."""
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2.0)
        self._tasks = []
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.streams.close(), 2.0)

    def _spawn(
        self,
        what: str,
        symbol: str,
        watch: Callable[[], Awaitable[None]],
        poll: Callable[[], Awaitable[None]],
        *,
        first: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._tasks.append(
            asyncio.create_task(
                self._follow(what, symbol, watch, poll, first or poll), name=f"testnet-{what}-{symbol}"
            )
        )

    async def _follow(
        self,
        what: str,
        symbol: str,
        watch: Callable[[], Awaitable[None]],
        poll: Callable[[], Awaitable[None]],
        first: Callable[[], Awaitable[None]],
    ) -> None:
        """The stream, with REST as the fallback (and as the first snapshot, so REST readers need not wait)."""
        key = (what, symbol)
        down = 0  # REST failures in a row (the stream failing too): the wait backs off
        try:
            await first()
        except Exception:
            down = 1
        while not self.streams.streaming:  # no WebSocket configured (BINANCE_TESTNET_WS_URL empty): REST only
            await asyncio.sleep(self.unreachable.delay(down) if down else self.fallback_poll_s)
            try:
                await poll()
                down = 0
            except Exception:
                down += 1
        while True:
            try:
                await watch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures = self.health.failures.get(key, 0) + 1
                first_down = not self.health.failures  # one warning when the feed goes down, not per loop
                self.health.failures[key] = failures
                (log.warning if first_down else log.debug)(
                    "testnet market stream failed; polling REST meanwhile",
                    stream=what,
                    symbol=symbol,
                    error=str(exc),
                    failures=failures,
                )
                try:
                    await poll()
                    self.health.rest_polls += 1
                    down = 0
                except asyncio.CancelledError:
                    raise
                except Exception as rest_exc:
                    down += 1
                    log.debug(
                        "testnet market REST fallback failed", stream=what, symbol=symbol, error=str(rest_exc)
                    )
                    if what == "ticker":
                        await self._mark_stale(symbol)
                await asyncio.sleep(self.unreachable.delay(down) if down else self.fallback_poll_s)
                continue
            if self.health.failures.pop(key, 0) and not self.health.failures:
                log.info("testnet market streams recovered", stream=what, symbol=symbol)

    # -- depth ---------------------------------------------------------------------------------------------

    async def _watch_book(self, symbol: str) -> None:
        await self._publish_book(await self.streams.watch_book(symbol, self.book_levels), "stream")

    async def _poll_book(self, symbol: str) -> None:
        await self._publish_book(await self.streams.fetch_book(symbol, self.book_levels), "rest")

    async def _publish_book(self, book: Book, source: str) -> None:
        now = self.clock.now()
        data = {
            "symbol": book.symbol,
            "bids": [[plain(p), plain(q)] for p, q in book.bids],
            "asks": [[plain(p), plain(q)] for p, q in book.asks],
            "ts": now.isoformat(),
            "venue": VENUE,
            "source": source,
        }
        await self.market_data.put("depth", book.symbol, data, venue=VENUE)
        await self.bus.publish(MARKET_DEPTH, public_event("DEPTH", book.symbol, now, data, venue=VENUE))
        top = self._top[book.symbol]
        top.bid = book.bids[0][0] if book.bids else None
        top.ask = book.asks[0][0] if book.asks else None
        await self._publish_ticker(book.symbol, source)

    # -- ticker --------------------------------------------------------------------------------------------

    async def _watch_last(self, symbol: str) -> None:
        last = await self.streams.watch_last_price(symbol)
        if last is not None:
            self._top[symbol].last = last
        await self._publish_ticker(symbol, "stream")

    async def _poll_ticker(self, symbol: str) -> None:
        ticker = await self.streams.fetch_ticker(symbol)
        top = self._top[symbol]
        top.last = ticker.last if ticker.last is not None else top.last
        top.bid, top.ask = ticker.bid, ticker.ask
        await self._publish_ticker(symbol, "rest")

    async def _mark_stale(self, symbol: str) -> None:
        top = self._top[symbol]
        if not top.stale:
            top.stale = True
            with contextlib.suppress(Exception):
                await self._publish_ticker(symbol, top.source, stale=True)

    async def _publish_ticker(self, symbol: str, source: str, *, stale: bool = False) -> None:
        top = self._top[symbol]
        price = top.last
        if price is None and top.bid is not None and top.ask is not None:
            price = (top.bid + top.ask) / 2
        if price is None:
            return
        state = (price, top.bid, top.ask, stale)
        if state == top.published:
            return  # a book update below the top changes nothing a ticker shows
        top.published, top.source, top.stale = state, source, stale
        now = self.clock.now()
        data = {
            "symbol": symbol,
            "price": plain(price),
            "bid": None if top.bid is None else plain(top.bid),
            "ask": None if top.ask is None else plain(top.ask),
            "ts": now.isoformat(),
            "source": SOURCE,
            "via": source,
            "stale": stale,
            "venue": VENUE,
        }
        await self.market_data.put("ticker", symbol, data, venue=VENUE)
        await self.bus.publish(MARKET_TICKER, public_event("TICKER", symbol, now, data, venue=VENUE))

    # -- trades --------------------------------------------------------------------------------------------

    async def _watch_trades(self, symbol: str) -> None:
        await self._publish_trades(symbol, await self.streams.watch_trades(symbol))

    async def _poll_trades(self, symbol: str) -> None:
        """REST gives the latest trades, some already published: only newer ids go out."""
        trades = await self.streams.fetch_trades(symbol, 50)
        seen = await self.market_data.recent_trades(symbol, 1, venue=VENUE)
        last_id = int(seen[0]["trade_id"]) if seen and str(seen[0].get("trade_id", "")).isdigit() else -1
        await self._publish_trades(
            symbol, [t for t in trades if t.trade_id.isdigit() and int(t.trade_id) > last_id]
        )

    async def _publish_trades(self, symbol: str, trades: list[PublicTrade]) -> None:
        if not trades:
            return
        now = self.clock.now()
        rows = [
            {
                "trade_id": t.trade_id,
                "symbol": t.symbol,
                "price": plain(t.price),
                "quantity": plain(t.quantity),
                "side": t.side,
                "ts": _ms(t.time_ms, now),
                "venue": VENUE,
            }
            for t in trades
        ]
        await self.market_data.push_trades(symbol, rows, venue=VENUE)
        await self.bus.publish_many(
            [(MARKET_TRADES, public_event("MARKET_TRADE", symbol, now, row, venue=VENUE)) for row in rows]
        )
        self._top[symbol].last = trades[-1].price
        await self._publish_ticker(symbol, "stream")

    # -- candles -------------------------------------------------------------------------------------------

    async def _watch_klines(self, symbol: str, interval: str) -> None:
        await self._publish_klines(symbol, interval, await self.streams.watch_klines(symbol, interval), True)

    async def _poll_klines(self, symbol: str, interval: str, limit: int) -> None:
        klines = await self.streams.fetch_klines(symbol, interval, limit)
        await self._publish_klines(symbol, interval, klines, limit <= 2)

    async def _publish_klines(self, symbol: str, interval: str, klines: list[Kline], push: bool) -> None:
        if not klines:
            return
        known = self._candles.setdefault((symbol, interval), {})
        for k in klines:
            known[k.open_ms] = k
        for old in sorted(known)[:-KEEP_CANDLES]:
            del known[old]
        now = self.clock.now()
        span = INTERVALS[interval]
        ordered = [candle_payload(known[t], span, now) for t in sorted(known)]
        await self.market_data.put(
            "candles",
            f"{symbol}:{interval}",
            {"symbol": symbol, "interval": interval, "candles": ordered},
            venue=VENUE,
        )
        if push:
            await self.bus.publish_many(
                [
                    (
                        MARKET_CANDLES,
                        public_event(
                            "CANDLE",
                            symbol,
                            now,
                            candle_payload(k, span, now),
                            interval=interval,
                            venue=VENUE,
                        ),
                    )
                    for k in klines
                ]
            )


def candle_payload(k: Kline, span: timedelta, now: datetime) -> dict[str, Any]:
    """The paper candle's shape (pricefeed.runner.candle_payload), plus the venue."""
    start = datetime.fromtimestamp(k.open_ms / 1000, UTC)
    return {
        "symbol": k.symbol,
        "interval": k.interval,
        "start": start.isoformat(),
        "open": plain(k.open),
        "high": plain(k.high),
        "low": plain(k.low),
        "close": plain(k.close),
        "volume": plain(k.volume),
        "trade_count": None,
        "closed": start + span <= now,
        "venue": VENUE,
    }


class FeedParts(Protocol):
    """What the feed needs from its process (the runtime, or the price feed's parts, both fit)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def bus(self) -> Bus: ...
    @property
    def market_data(self) -> MarketData: ...


async def start_testnet_market(
    parts: FeedParts, stack: AsyncExitStack, **overrides: Any
) -> TestnetMarketFeed:
    """Start hook (beside the price feed): the testnet's market for SYMBOLS, from BINANCE_TESTNET_WS_URL with
    BINANCE_TESTNET_URL as the REST fallback; it stops when the stack closes. `overrides`: TestnetMarketFeed's
    tuning (tests shorten `fallback_poll_s`)."""
    from shared.exchanges.binance_market import testnet_market_streams  # imports ccxt: only when started

    s = parts.settings
    feed = TestnetMarketFeed(
        testnet_market_streams(s.binance_testnet_url, s.binance_testnet_ws_url),
        symbols=s.symbols,
        market_data=parts.market_data,
        bus=parts.bus,
        clock=parts.clock,
        **overrides,
    )
    await feed.start()
    stack.push_async_callback(feed.stop)
    return feed
