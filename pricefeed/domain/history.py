"""Candle history made at start-up, so a fresh system's chart is full from the first minute.

Why one path for every interval: a chart that shows a 1h candle must show, at 1m, the minutes it is made of.
So the history is one price path drawn as pieces of varying length (days long ago, minutes lately) and every
interval's candles are rolled up from the pieces no longer than it (`aggregate`): a 4h candle is exactly its
1h candles, wherever both exist.

The layout: each interval gets at least `count` candles ending at `end`. Interval i's span begins at
`end - count * length_i`, floored to the next interval's bucket; between the start of interval i's span and
that of the next shorter interval, the path is drawn in pieces of length_i. Lengths nest (each divides the
next: 1m, 5m, 15m, 1h, 4h, 1d), so every piece lies inside one bucket of each longer interval.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime

from .candles import ALL_INTERVALS, Candle, Interval, aggregate


def _ordered(intervals: Sequence[Interval]) -> list[Interval]:
    ordered = sorted(intervals, key=lambda iv: iv.length)
    for shorter, longer in itertools.pairwise(ordered):
        if longer.length % shorter.length:
            raise ValueError(f"{longer} is not a whole number of {shorter} candles")
    return ordered


def _begins(end: datetime, count: int, ordered: list[Interval]) -> list[datetime]:
    """Where each interval's span begins (aligned to the next longer interval's buckets)."""
    out = []
    for i, iv in enumerate(ordered):
        coarser = ordered[min(i + 1, len(ordered) - 1)]
        out.append(coarser.bucket_start(end - count * iv.length))
    return out


def history_end(now: datetime, intervals: Sequence[Interval] = ALL_INTERVALS) -> datetime:
    """Where made-up history stops: the start of the shortest interval's current bucket (the live feed's)."""
    return _ordered(intervals)[0].bucket_start(now)


def history_layout(
    end: datetime, count: int, intervals: Sequence[Interval] = ALL_INTERVALS
) -> list[tuple[Interval, datetime, datetime]]:
    """The segments `(piece interval, start, stop)` of the path, oldest first; `end` must be on a bucket
    boundary of the shortest interval (`history_end`)."""
    if count < 1:
        raise ValueError("count must be at least 1")
    ordered = _ordered(intervals)
    if ordered[0].bucket_start(end) != end:
        raise ValueError(f"history must end on a {ordered[0]} boundary, not at {end.isoformat()}")
    segments = []
    stop = end
    for iv, begin in zip(ordered, _begins(end, count, ordered), strict=True):
        if begin < stop:
            segments.append((iv, begin, stop))
            stop = begin
    return segments[::-1]


def roll_up(
    pieces: Sequence[Candle], end: datetime, count: int, intervals: Sequence[Interval] = ALL_INTERVALS
) -> list[Candle]:
    """Every interval's candles from one symbol's path pieces (laid out by `history_layout`): from where the
    interval's span begins, out of the pieces no longer than it. Buckets still running at `end` stay open."""
    ordered = _ordered(intervals)
    out: list[Candle] = []
    for iv, begin in zip(ordered, _begins(end, count, ordered), strict=True):
        parts = [p for p in pieces if p.start >= begin and p.interval.length <= iv.length]
        out.extend(aggregate(parts, iv, complete_by=end))
    return out
