"""Candle intervals, in Binance's spelling, and their lengths in ms: the price feed builds and stores each, the
REST route and the channels "candles:SYMBOL:<interval>" serve them (one table, so they cannot disagree)."""

from __future__ import annotations

from typing import Final

CANDLE_INTERVAL_MS: Final = {
    "1m": 60_000,
    "5m": 300_000,
    "15m": 900_000,
    "1h": 3_600_000,
    "4h": 14_400_000,
    "1d": 86_400_000,
}
