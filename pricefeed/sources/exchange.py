"""Public tickers from Binance (mainnet or spot testnet) through the exchange adapter (shared.exchanges), polled.

Failures never end the loop: network and exchange errors (and anything unexpected) are logged
and retried after an exponential, jittered backoff; the first success resets the backoff.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol

from pricefeed.domain.backoff import Backoff
from pricefeed.domain.candles import ALL_INTERVALS, Candle, Interval
from pricefeed.domain.ticks import Tick, normalize_symbol
from shared.clock import Clock
from shared.exchanges import DEFAULT_TESTNET_URL, ExchangeCallFailed, Kline, Ticker, get_adapter
from shared.exchanges.base import UNREACHED
from shared.retry import retry

from .base import Sleeper, real_sleep

log = logging.getLogger(__name__)


class TickerClient(Protocol):
    """The slice of an exchange session this source uses (shared.exchanges.ExchangeSession fits)."""

    async def tickers(self, symbols: list[str]) -> Mapping[str, Ticker]: ...

    async def klines(self, symbol: str, interval: str, limit: int) -> list[Kline]: ...

    async def close(self) -> None: ...


TickerClientFactory = Callable[[], TickerClient]


def binance_client_factory(*, testnet: bool, testnet_url: str | None = None) -> TickerClientFactory:
    """Public-data sessions of the binance-testnet adapter rooted at `testnet_url` (the REST base, e.g.
    `https://testnet.binance.vision` or a local double's `http://127.0.0.1:PORT`), or of binance (mainnet)."""

    def make() -> TickerClient:
        if testnet:
            return get_adapter("binance-testnet", base_url=testnet_url or DEFAULT_TESTNET_URL).session()
        return get_adapter("binance").session()

    return make


def _failure_kind(exc: BaseException) -> str:
    """A short label for the log: what the adapter made of the failure, or 'unexpected'."""
    if isinstance(exc, ExchangeCallFailed):
        return f"{exc.error.kind}, {exc.error.disposition}"
    return "unexpected"


class ExchangeTickerSource:
    """Polls `fetch_tickers` every `poll_interval` seconds and yields one tick per symbol.

    Tick timestamps are the time we received the ticker (by the injected clock): Binance's
    24h-ticker timestamp describes its statistics window, not the moment the price was current,
    and staleness must measure how long ago *we* last heard from the venue.
    """

    def __init__(
        self,
        name: str,
        symbols: Sequence[str],
        clock: Clock,
        client_factory: TickerClientFactory,
        *,
        poll_interval: float = 1.0,
        backoff: Backoff | None = None,
        sleep: Sleeper = real_sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.symbols = [normalize_symbol(s) for s in symbols]
        self._clock = clock
        self._factory = client_factory
        self._poll_interval = poll_interval
        self._backoff = backoff or Backoff()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.failures = 0  # consecutive failures, observable for health checks and tests
        self.total_failures = 0

    async def ticks(self) -> AsyncIterator[Tick]:
        client = self._factory()
        try:
            while True:
                raw = await retry(  # a feed must survive anything: every error is retried
                    lambda: client.tickers(list(self.symbols)),
                    what=f"pricefeed {self.name}: tickers",
                    backoff=self._backoff,
                    sleep=self._sleep,
                    rng=self._rng,
                    on_retry=self._failed,
                )
                if self.failures:
                    log.info("pricefeed %s: recovered after %d failures", self.name, self.failures)
                    self.failures = 0
                now = self._clock.now()
                for tick in self._parse(raw, now):
                    yield tick
                await self._sleep(self._poll_interval)
        finally:
            try:
                await client.close()
            except Exception:  # closing must not mask the reason we stopped
                log.debug("pricefeed %s: error closing client", self.name, exc_info=True)

    async def candle_history(self, end: datetime, count: int) -> list[Candle]:
        """The exchange's own klines of every interval (its aggregation, so the intervals agree), the most
        recent `count` (Binance sends at most 1,000 a call). A refused call is logged and leaves that interval
        without history; an exchange not reached ends the history there. The feed starts regardless."""
        client = self._factory()
        out: list[Candle] = []
        try:
            for symbol in self.symbols:
                for interval in ALL_INTERVALS:
                    try:
                        klines = await client.klines(symbol, str(interval), min(count, 1000))
                    except Exception as exc:
                        log.warning(
                            "pricefeed %s: no %s history for %s (%s)", self.name, interval, symbol, exc
                        )
                        if isinstance(exc, ExchangeCallFailed) and exc.error.kind in UNREACHED:
                            return out  # the exchange is not there: asking 17 more times only delays the feed
                        continue
                    out.extend(_candle(k, interval, end) for k in klines)
        finally:
            try:
                await client.close()
            except Exception:
                log.debug("pricefeed %s: error closing client", self.name, exc_info=True)
        return out

    def _failed(self, exc: BaseException, attempt: int, delay: float) -> None:
        self.failures = attempt
        self.total_failures += 1
        log.warning(
            "pricefeed %s: tickers failed (%s: %s), attempt %d, retrying in %.2fs",
            self.name,
            _failure_kind(exc),
            exc,
            attempt,
            delay,
        )

    def _parse(self, raw: Mapping[str, Ticker], now: datetime) -> list[Tick]:
        out: list[Tick] = []
        for symbol in self.symbols:
            ticker = raw.get(symbol)
            price = None if ticker is None else _price_of(ticker)
            if price is None:
                log.debug("pricefeed %s: no usable price for %s in %r", self.name, symbol, ticker)
                continue
            out.append(Tick(symbol, price, now, self.name))
        return out


def _candle(k: Kline, interval: Interval, end: datetime) -> Candle:
    start = datetime.fromtimestamp(k.open_ms / 1000, UTC)
    return Candle(
        normalize_symbol(k.symbol),
        interval,
        start,
        k.open,
        k.high,
        k.low,
        k.close,
        k.volume,
        0,  # Binance's kline has a trade count, but it counts the exchange's trades, not ours
        closed=start + interval.length <= end,
    )


def _price_of(ticker: Ticker) -> Decimal | None:
    """The last trade price; the bid/ask midpoint when there has been no trade."""
    if ticker.last is not None:
        return ticker.last
    if ticker.bid is not None and ticker.ask is not None:
        return (ticker.bid + ticker.ask) / 2
    return None


__all__ = [
    "DEFAULT_TESTNET_URL",
    "ExchangeTickerSource",
    "TickerClient",
    "TickerClientFactory",
    "binance_client_factory",
]
