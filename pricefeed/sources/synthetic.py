"""Offline prices: a seeded geometric random walk per symbol, so the embedded system looks alive."""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator, Sequence
from decimal import ROUND_HALF_EVEN, Decimal

from pricefeed.domain.ticks import Tick, normalize_symbol
from shared.clock import Clock

from .base import Sleeper, real_sleep

# Plausible levels and annualized volatilities (crypto trades around the clock: 365 days).
START_PRICES: dict[str, Decimal] = {
    "BTCUSDT": Decimal("65000"),
    "ETHUSDT": Decimal("3500"),
    "BNBUSDT": Decimal("600"),
    "SOLUSDT": Decimal("150"),
    "XRPUSDT": Decimal("0.6"),
}
ANNUAL_VOL: dict[str, float] = {"BTCUSDT": 0.55, "ETHUSDT": 0.70, "BNBUSDT": 0.65}
DEFAULT_START = Decimal("100")
DEFAULT_VOL = 0.80
SECONDS_PER_YEAR = 365 * 24 * 3600
SIGNIFICANT_DIGITS = 8


def _round_to_significant(value: float, digits: int) -> Decimal:
    """Prices like an exchange shows them: a fixed number of significant digits, not float noise."""
    dec = Decimal(repr(value))
    exponent = dec.adjusted() - digits + 1
    return dec.quantize(Decimal(1).scaleb(exponent), rounding=ROUND_HALF_EVEN)


class SyntheticSource:
    """Every `interval` seconds one tick per symbol; identical sequences for identical seeds.

    Each step multiplies the price by exp((-sigma^2/2) dt + sigma sqrt(dt) Z), Z ~ N(0, 1) from
    `random.Random(seed)`, i.e. a driftless geometric Brownian motion at the symbol's volatility.
    """

    name = "synthetic"

    def __init__(
        self,
        symbols: Sequence[str],
        clock: Clock,
        *,
        seed: int = 0,
        interval: float = 0.25,
        sleep: Sleeper = real_sleep,
        start_prices: dict[str, Decimal] | None = None,
        annual_vol: dict[str, float] | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.symbols = [normalize_symbol(s) for s in symbols]
        self._clock = clock
        self._rng = random.Random(seed)
        self._interval = interval
        self._sleep = sleep
        starts = {**START_PRICES, **(start_prices or {})}
        vols = {**ANNUAL_VOL, **(annual_vol or {})}
        self._price = {s: float(starts.get(s, DEFAULT_START)) for s in self.symbols}
        dt = interval / SECONDS_PER_YEAR
        self._step = {
            s: (-0.5 * vols.get(s, DEFAULT_VOL) ** 2 * dt, vols.get(s, DEFAULT_VOL) * math.sqrt(dt))
            for s in self.symbols
        }

    def next_round(self) -> list[Tick]:
        """Advance every symbol one step; public so tests can draw prices without an event loop."""
        now = self._clock.now()
        out: list[Tick] = []
        for symbol in self.symbols:
            drift, scale = self._step[symbol]
            price = self._price[symbol] * math.exp(drift + scale * self._rng.gauss(0.0, 1.0))
            self._price[symbol] = price
            out.append(Tick(symbol, _round_to_significant(price, SIGNIFICANT_DIGITS), now, self.name))
        return out

    async def ticks(self) -> AsyncIterator[Tick]:
        while True:
            for tick in self.next_round():
                yield tick
            await self._sleep(self._interval)
