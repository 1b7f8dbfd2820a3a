"""Public tickers from Binance (mainnet or spot testnet) through ccxt's async client, polled.

Failures never end the loop: network and exchange errors (and anything unexpected) are logged
and retried after an exponential, jittered backoff; the first success resets the backoff.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from pricefeed.domain.backoff import Backoff
from pricefeed.domain.ticks import Tick, normalize_symbol, to_ccxt_symbol
from shared.clock import Clock

from .base import Sleeper, real_sleep

log = logging.getLogger(__name__)

DEFAULT_TESTNET_URL = "https://testnet.binance.vision"


class TickerClient(Protocol):
    """The slice of a ccxt async exchange this source uses (a fake implements just this)."""

    async def fetch_tickers(self, symbols: list[str] | None = None) -> dict[str, Any]: ...

    async def close(self) -> None: ...


TickerClientFactory = Callable[[], TickerClient]


def binance_client_factory(*, testnet: bool, testnet_url: str | None = None) -> TickerClientFactory:
    """A factory for ccxt's async Binance spot client; for the testnet, rooted at `testnet_url`
    (the REST base, e.g. `https://testnet.binance.vision` or a local double's `http://127.0.0.1:PORT`)."""

    def make() -> TickerClient:
        import ccxt.async_support as ccxt_async  # imported lazily: no I/O or heavy import at module load

        client = ccxt_async.binance(
            {
                "enableRateLimit": True,
                # Spot only: do not touch futures endpoints (absent from the testnet double).
                "options": {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False},
            }
        )
        if testnet:
            client.set_sandbox_mode(True)
            base = (testnet_url or DEFAULT_TESTNET_URL).rstrip("/")
            for suffix in ("/api/v3", "/api"):
                base = base.removesuffix(suffix)
            client.urls["api"]["public"] = f"{base}/api/v3"
            client.urls["api"]["private"] = f"{base}/api/v3"
            client.urls["api"]["v1"] = f"{base}/api/v1"
        return client  # type: ignore[no-any-return]

    return make


def _failure_kind(exc: BaseException) -> str:
    """A short label for the log: which family of failure this is."""
    try:
        import ccxt
    except ImportError:  # pragma: no cover - ccxt is a dependency
        return type(exc).__name__
    if isinstance(exc, ccxt.NetworkError):
        return "network"
    if isinstance(exc, ccxt.ExchangeError):
        return "exchange"
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
        self._unified = {to_ccxt_symbol(s): s for s in self.symbols}
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
                try:
                    raw = await client.fetch_tickers(list(self._unified))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a feed must survive anything and retry
                    self.failures += 1
                    self.total_failures += 1
                    delay = self._backoff.delay(self.failures, self._rng)
                    log.warning(
                        "pricefeed %s: fetch_tickers failed (%s: %r), attempt %d, retrying in %.2fs",
                        self.name, _failure_kind(exc), exc, self.failures, delay,
                    )
                    await self._sleep(delay)
                    continue
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

    def _parse(self, raw: dict[str, Any], now: Any) -> list[Tick]:
        out: list[Tick] = []
        for unified, symbol in self._unified.items():
            ticker = raw.get(unified)
            if not isinstance(ticker, dict):
                continue
            price = _price_of(ticker)
            if price is None:
                log.debug("pricefeed %s: no usable price for %s in %r", self.name, symbol, ticker)
                continue
            out.append(Tick(symbol, price, now, self.name))
        return out


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        dec = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return dec if dec.is_finite() and dec > 0 else None


def _price_of(ticker: dict[str, Any]) -> Decimal | None:
    """The last trade price; the bid/ask midpoint when there has been no trade."""
    last = _decimal(ticker.get("last"))
    if last is not None:
        return last
    bid, ask = _decimal(ticker.get("bid")), _decimal(ticker.get("ask"))
    if bid is not None and ask is not None:
        return (bid + ask) / 2
    return None
