"""Pure, synchronous, deterministic pricefeed logic: ticks, staleness, candles, positions, marking."""

from shared.positions import Fill, FillEffect, Position, PositionBook, PositionKey, PositionSnapshot, Side

from .backoff import Backoff
from .candles import ALL_INTERVALS, Candle, CandleAggregator, CandleStore, InMemoryCandleStore, Interval
from .marking import MarkingEngine, PositionUpdate
from .staleness import DEFAULT_STALE_AFTER, Mark, PriceBook, StalePrice
from .ticks import Tick, normalize_symbol, split_symbol, to_ccxt_symbol

__all__ = [
    "ALL_INTERVALS",
    "DEFAULT_STALE_AFTER",
    "Backoff",
    "Candle",
    "CandleAggregator",
    "CandleStore",
    "Fill",
    "FillEffect",
    "InMemoryCandleStore",
    "Interval",
    "Mark",
    "MarkingEngine",
    "Position",
    "PositionBook",
    "PositionKey",
    "PositionSnapshot",
    "PositionUpdate",
    "PriceBook",
    "Side",
    "StalePrice",
    "Tick",
    "normalize_symbol",
    "split_symbol",
    "to_ccxt_symbol",
]
