"""Replay a CSV of `timestamp,symbol,price` rows (ISO-8601 or epoch-ms timestamps) in time order."""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from pricefeed.domain.ticks import Tick, normalize_symbol
from shared.clock import Clock

from .base import Sleeper, real_sleep


class ReplayFormatError(ValueError):
    pass


def parse_timestamp(text: str) -> datetime:
    """Epoch milliseconds (all digits) or ISO-8601; a naive ISO time is taken as UTC."""
    text = text.strip()
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
    ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def read_ticks(path: Path, source: str = "replay") -> list[Tick]:
    """All rows as ticks, stably sorted by time (equal times keep file order). Header optional."""
    ticks: list[Tick] = []
    with path.open(newline="", encoding="utf-8") as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if lineno == 1 and row[0].strip().lower() == "timestamp":
                continue
            if len(row) != 3:
                raise ReplayFormatError(f"{path}:{lineno}: expected timestamp,symbol,price, got {row!r}")
            try:
                ts = parse_timestamp(row[0])
                price = Decimal(row[2].strip())
                ticks.append(Tick(normalize_symbol(row[1].strip()), price, ts, source))
            except (ValueError, InvalidOperation) as exc:
                raise ReplayFormatError(f"{path}:{lineno}: {exc}") from exc
    ticks.sort(key=lambda t: t.ts)
    return ticks


class ReplaySource:
    """Yields the file's ticks in time order, then ends.

    `speed` scales the gaps between rows: 1 = real time, 10 = ten times faster, 0 = no waiting.
    With `retime=True` each tick is stamped with the clock's time when emitted instead of the
    file's, so a live system (whose `PriceBook` judges freshness by the clock) can fill on it.
    """

    name = "replay"

    def __init__(
        self,
        path: Path | str,
        clock: Clock,
        *,
        speed: float = 0.0,
        retime: bool = False,
        sleep: Sleeper = real_sleep,
    ) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0 (0 = as fast as possible)")
        self.path = Path(path)
        self._clock = clock
        self._speed = speed
        self._retime = retime
        self._sleep = sleep

    def _rows(self) -> Iterator[Tick]:
        return iter(read_ticks(self.path, self.name))

    async def ticks(self) -> AsyncIterator[Tick]:
        previous: datetime | None = None
        for tick in self._rows():
            if self._speed > 0 and previous is not None:
                gap = (tick.ts - previous).total_seconds() / self._speed
                if gap > 0:
                    await self._sleep(gap)
            previous = tick.ts
            yield Tick(tick.symbol, tick.price, self._clock.now(), self.name) if self._retime else tick
