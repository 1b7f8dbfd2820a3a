"""Offline prices: a seeded geometric random walk per symbol, so the embedded system looks alive."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from pricefeed.domain.candles import Candle, Interval
from pricefeed.domain.history import history_layout, roll_up
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
HISTORY_STEPS = 8  # points drawn inside each history piece (its high and low are theirs)
HISTORY_QUOTE_PER_MINUTE = 250_000.0  # made-up traded value per minute, in the quote asset
_VOLUME_PLACES = Decimal("0.00000001")


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
        self._seed = seed
        starts = {**START_PRICES, **(start_prices or {})}
        vols = {**ANNUAL_VOL, **(annual_vol or {})}
        self._price = {s: float(starts.get(s, DEFAULT_START)) for s in self.symbols}
        self._start = dict(self._price)
        self._vol = {s: vols.get(s, DEFAULT_VOL) for s in self.symbols}
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

    async def candle_history(self, end: datetime, count: int) -> list[Candle]:
        """`history` off the event loop: thousands of candles take a noticeable fraction of a second."""
        return await asyncio.to_thread(self.history, end, count)

    def history(self, end: datetime, count: int) -> list[Candle]:
        """The walk's past: candles of every interval (at least `count` each) ending at `end` at the price the
        live ticks start from, so history and live join without a jump. Deterministic for (seed, symbol, end's
        layout): drawn backwards from the start price by the same walk, with made-up volume (the synthetic
        market has no trades of its own)."""
        layout = history_layout(end, count)
        out: list[Candle] = []
        for symbol in self.symbols:
            rng = random.Random(f"{self._seed}:{symbol}:history")
            price = self._start[symbol]
            pieces: list[Candle] = []
            for interval, begin, stop in reversed(layout):
                start = stop
                while start > begin:
                    start -= interval.length
                    piece = self._piece(symbol, interval, start, price, rng)
                    pieces.append(piece)
                    price = float(piece.open)
            out.extend(roll_up(pieces, end, count))
        return out

    def _piece(
        self, symbol: str, interval: Interval, start: datetime, close: float, rng: random.Random
    ) -> Candle:
        """One piece of the path, drawn backwards from its close: the reversed walk of the same volatility."""
        vol = self._vol[symbol]
        dt = interval.length.total_seconds() / HISTORY_STEPS / SECONDS_PER_YEAR
        drift, scale = -0.5 * vol**2 * dt, vol * math.sqrt(dt)
        points = [close]
        for _ in range(HISTORY_STEPS):
            points.append(points[-1] * math.exp(-drift - scale * rng.gauss(0.0, 1.0)))
        minutes = interval.length.total_seconds() / 60
        quote = HISTORY_QUOTE_PER_MINUTE * minutes * rng.lognormvariate(0.0, 0.5)
        rounded = [_round_to_significant(p, SIGNIFICANT_DIGITS) for p in points]
        return Candle(
            symbol,
            interval,
            start,
            rounded[-1],
            max(rounded),
            min(rounded),
            rounded[0],
            Decimal(repr(quote / close)).quantize(_VOLUME_PLACES),
            0,
            closed=True,
        )
