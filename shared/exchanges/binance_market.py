"""Binance spot public market data (the testnet, or a local double): WebSocket market streams through ccxt.pro,
with the same calls over REST for when the streams are down.

Why ccxt.pro rather than python-binance's socket manager or raw websockets: ccxt is already the one exchange
library of this package (one URL table, one error classification), and its `watch_order_book` keeps a local
book from the diff-depth stream synced with a REST snapshot the way Binance documents (buffer, snapshot, drop
`u <= lastUpdateId`, resubscribe on a gap), reconnecting on its own; against the Binance double it subscribes
at `<ws_url>/ws/<n>` and all four watchers work unmodified (tests/binance_double/test_streams.py).

Amounts. Trades and tickers are read from Binance's raw strings (`info`). ccxt's order book and candles hold
floats only; each is turned back into the exchange's decimal string with `repr` (the shortest string that
round-trips), which is exact for Binance's amounts (at most 8 decimals and well under 15 significant digits).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import ccxt.pro as ccxt_pro

from shared.exchanges import DEFAULT_TESTNET_URL
from shared.exchanges.base import Disposition, ErrorKind, ExchangeCallFailed, Kline, Ticker, VenueError
from shared.exchanges.binance import SPOT_URL_PATHS, _opt_dec, normalise_base_url, parse_klines
from shared.exchanges.errors import classify

DEFAULT_TESTNET_WS_URL = "wss://ws-api.testnet.binance.vision"  # BINANCE_TESTNET_WS_URL's default
# The public testnet serves its WebSocket API and its market streams on two hosts; one base names both.
_STREAM_HOSTS = {"ws-api.testnet.binance.vision": "stream.testnet.binance.vision"}
INTERVALS = ("1m", "5m", "1h")

Level = tuple[Decimal, Decimal]


@dataclass(frozen=True, slots=True)
class Book:
    """The top of one symbol's order book: bids best first, asks best first."""

    symbol: str
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    update_id: int | None


@dataclass(frozen=True, slots=True)
class PublicTrade:
    """One public trade; `side` is the taker's (BUY when the buyer took liquidity)."""

    trade_id: str
    symbol: str
    price: Decimal
    quantity: Decimal
    side: str
    time_ms: int | None


def _float_dec(value: Any) -> Decimal:
    return Decimal(repr(float(value)))


def _levels(rows: Sequence[Sequence[Any]], limit: int) -> tuple[Level, ...]:
    return tuple((_float_dec(r[0]), _float_dec(r[1])) for r in rows[:limit])


def _trade(symbol: str, t: Mapping[str, Any]) -> PublicTrade | None:
    info = t.get("info")
    raw: Mapping[str, Any] = info if isinstance(info, Mapping) else {}
    price = _opt_dec(raw.get("p", raw.get("price", t.get("price"))))
    qty = _opt_dec(raw.get("q", raw.get("qty", t.get("amount"))))
    if price is None or qty is None:
        return None
    buyer_maker = raw.get("m", raw.get("isBuyerMaker"))
    side = (
        "SELL" if buyer_maker is True else "BUY" if buyer_maker is False else str(t.get("side", "")).upper()
    )
    stamp = raw.get("T", raw.get("time", t.get("timestamp")))
    return PublicTrade(
        str(raw.get("t", raw.get("id", t.get("id")))),
        symbol,
        price,
        qty,
        side,
        int(stamp) if stamp is not None else None,
    )


def _kline(symbol: str, interval: str, row: Sequence[Any]) -> Kline:
    return Kline(
        symbol,
        interval,
        int(row[0]),
        _float_dec(row[1]),
        _float_dec(row[2]),
        _float_dec(row[3]),
        _float_dec(row[4]),
        _float_dec(row[5]),
    )


class BinanceMarketStreams:
    """Public market data of one Binance spot network: `watch_*` wait for the next stream update, `fetch_*`
    ask REST once. Symbols are the exchange's ids (BTCUSDT). Every failure is an `ExchangeCallFailed` (a
    dropped stream is NETWORK, retryable); the next `watch_*` reconnects."""

    def __init__(self, client: Any, *, label: str, streaming: bool = True) -> None:
        self.client = client
        self.label = label
        self.streaming = streaming  # False: no WebSocket configured, callers poll fetch_* only
        self._markets_lock = asyncio.Lock()

    async def _call(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kw: Any) -> Any:
        try:
            async with self._markets_lock:
                if not self.client.markets:
                    await self.client.load_markets()
            return await fn(*args, **kw)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise ExchangeCallFailed(classify(exc, venue=self.label)) from exc

    def _unified(self, symbol: str) -> str:
        try:
            return str(self.client.markets_by_id[symbol][0]["symbol"])
        except (KeyError, IndexError, TypeError):
            reason = f"{self.label} does not list {symbol}"
            raise ExchangeCallFailed(VenueError(ErrorKind.BAD_SYMBOL, Disposition.FINAL, reason)) from None

    async def _symbol(self, symbol: str) -> str:
        await self._call(_noop)
        return self._unified(symbol)

    # -- streams -------------------------------------------------------------------------------------------

    async def watch_book(self, symbol: str, limit: int = 50) -> Book:
        book = await self._call(self.client.watch_order_book, await self._symbol(symbol))
        return Book(symbol, _levels(book["bids"], limit), _levels(book["asks"], limit), book.get("nonce"))

    async def watch_trades(self, symbol: str) -> list[PublicTrade]:
        """The trades since the previous call (ccxt's newUpdates)."""
        rows = await self._call(self.client.watch_trades, await self._symbol(symbol))
        return [t for t in (_trade(symbol, r) for r in rows) if t is not None]

    async def watch_last_price(self, symbol: str) -> Decimal | None:
        """The last price from the symbol's mini ticker stream (Binance's raw `c`)."""
        ticker = await self._call(self.client.watch_ticker, await self._symbol(symbol))
        info = ticker.get("info")
        raw: Mapping[str, Any] = info if isinstance(info, Mapping) else {}
        return _opt_dec(raw.get("c", ticker.get("last")))

    async def watch_klines(self, symbol: str, interval: str) -> list[Kline]:
        rows = await self._call(self.client.watch_ohlcv, await self._symbol(symbol), interval)
        return [_kline(symbol, interval, r) for r in rows]

    # -- REST ----------------------------------------------------------------------------------------------

    async def fetch_book(self, symbol: str, limit: int = 50) -> Book:
        raw = await self._call(self.client.public_get_depth, {"symbol": symbol, "limit": limit})
        return Book(
            symbol,
            tuple((Decimal(p), Decimal(q)) for p, q in raw.get("bids", [])[:limit]),
            tuple((Decimal(p), Decimal(q)) for p, q in raw.get("asks", [])[:limit]),
            int(raw["lastUpdateId"]) if raw.get("lastUpdateId") is not None else None,
        )

    async def fetch_trades(self, symbol: str, limit: int = 50) -> list[PublicTrade]:
        """The most recent public trades, oldest first."""
        rows = await self._call(self.client.public_get_trades, {"symbol": symbol, "limit": limit})
        return [t for t in (_trade(symbol, {"info": r}) for r in rows) if t is not None]

    async def fetch_ticker(self, symbol: str) -> Ticker:
        raw = await self._call(self.client.public_get_ticker_24hr, {"symbol": symbol})
        return Ticker(
            symbol,
            _opt_dec(raw.get("lastPrice")),
            _opt_dec(raw.get("bidPrice")),
            _opt_dec(raw.get("askPrice")),
        )

    async def fetch_klines(self, symbol: str, interval: str, limit: int = 200) -> list[Kline]:
        rows = await self._call(
            self.client.public_get_klines, {"symbol": symbol, "interval": interval, "limit": limit}
        )
        return parse_klines(symbol, interval, rows)

    async def close(self) -> None:
        await self.client.close()


async def _noop() -> None:
    return None


def market_stream_base(ws_url: str) -> str:
    """Where the market streams of BINANCE_TESTNET_WS_URL live (`<this>/ws/<stream>`): the base itself (a local
    double serves everything on one port), or the public testnet's stream host for its ws-api host."""
    parts = urlsplit(ws_url.rstrip("/"))
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"the WebSocket base must be like ws://host:port or wss://host, got {ws_url!r}")
    host = _STREAM_HOSTS.get(parts.netloc, parts.netloc)
    return f"{parts.scheme}://{host}{parts.path.removesuffix('/ws-api/v3').removesuffix('/ws')}"


# How often ccxt's rate limiter looks again while requests wait for tokens (its default: every 1 ms). Market data
# polls need no millisecond precision, and the price feed's REST fallbacks queued behind exchangeInfo (weight
# 20 = 1 s of tokens) kept the default spinning the event loop ~1,600 times a second while the testnet was
# unreachable (issue #16: a third of the price feed's idle CPU).
MARKET_THROTTLE_POLL_S = 0.025


def make_market_client(base_url: str, ws_url: str, *, timeout_ms: int = 10_000) -> Any:
    """A ccxt.pro binance client, spot only, whose REST and market-stream URLs all lead to `base_url` /
    `ws_url` (sandbox first: it replaces urls['api'] wholesale; see shared.exchanges.binance)."""
    base = normalise_base_url(base_url)
    ws = market_stream_base(ws_url)
    client = ccxt_pro.binance(
        {
            "timeout": int(timeout_ms),
            "enableRateLimit": True,
            "tokenBucket": {"delay": MARKET_THROTTLE_POLL_S},
            "options": {
                "defaultType": "spot",
                "fetchMarkets": {"types": ["spot"]},
                "fetchMargins": False,
                "fetchCurrencies": False,
            },
        }
    )
    client.set_sandbox_mode(True)
    client.urls["api"] = {
        **{key: base + prefix for key, prefix in SPOT_URL_PATHS.items()},
        "ws": {"spot": ws + "/ws", "margin": ws + "/ws"},
    }
    return client


def testnet_market_streams(base_url: str | None = None, ws_url: str | None = None) -> BinanceMarketStreams:
    """The spot testnet's public market data: REST at `base_url` (BINANCE_TESTNET_URL), streams at `ws_url`
    (BINANCE_TESTNET_WS_URL; empty: REST only, `streaming` False); a local double in tests."""
    client = make_market_client(base_url or DEFAULT_TESTNET_URL, ws_url or DEFAULT_TESTNET_WS_URL)
    return BinanceMarketStreams(client, label="Binance testnet", streaming=bool(ws_url))


__all__ = [
    "DEFAULT_TESTNET_WS_URL",
    "INTERVALS",
    "BinanceMarketStreams",
    "Book",
    "Kline",
    "PublicTrade",
    "make_market_client",
    "market_stream_base",
    "testnet_market_streams",
]
