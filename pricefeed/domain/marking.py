"""Live re-marking: a tick re-marks only its symbol's open positions, and a coalescer caps the
update rate per position while fills are pushed at once.

How the work is bounded:
- `on_tick` is O(1): it stores the mark and flags the symbol dirty. The positions of a dirty
  symbol are re-marked once per `flush` (every 250 ms in the service) however many ticks
  arrived in between: latest price wins.
- `flush` visits only dirty symbols' open positions (an index by symbol; flat positions leave
  it) plus the positions it had to defer earlier. A position updated less than
  `1 / max_per_second` ago (by a fill or an earlier flush) is deferred to a later flush, so
  no position emits more than `max_per_second` updates a second from marking.
- `on_fill` returns the position's update immediately (not rate limited) and counts as that
  position's latest emission, superseding any deferred mark update.

The rate is per position, i.e. per (user, mode, symbol); `flush(now=...)` takes the scheduled
flush time so timer jitter cannot squeeze two emissions into one interval.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from shared.amounts import derived
from shared.clock import Clock
from shared.positions import Fill, FillEffect, Position, PositionBook, PositionKey, PositionSnapshot

from .ticks import normalize_symbol


class PositionUpdate(NamedTuple):
    """A position with its mark and PnL at `updated_at`: what POSITION_UPDATE carries (unrealized PnL at the
    documented precision of derived amounts, shared.amounts).

    A NamedTuple (immutable like a frozen dataclass) because 10,000 of them are built per tick on the hot
    path, and a tuple is several times cheaper to build than a slotted dataclass."""

    user_id: str
    mode: str
    symbol: str
    quantity: Decimal
    avg_entry_price: Decimal
    mark_price: Decimal
    unrealized_pnl: Decimal
    realized_pnl: Decimal
    updated_at: datetime


_tuple_new = tuple.__new__


def _update_of(pos: Position, mark: Decimal, ts: datetime) -> PositionUpdate:
    qty = pos.quantity
    return _tuple_new(
        PositionUpdate,
        (
            pos.user_id,
            pos.mode,
            pos.symbol,
            qty,
            pos.avg_entry_price,
            mark,
            derived(qty * mark - pos.cost),
            pos.realized_pnl,
            ts,
        ),
    )


class MarkingEngine:
    """Positions, their marks, and coalesced `PositionUpdate`s. Synchronous and deterministic."""

    def __init__(
        self, clock: Clock, *, max_per_second: float = 4.0, book: PositionBook | None = None
    ) -> None:
        if max_per_second <= 0:
            raise ValueError("max_per_second must be positive")
        self._clock = clock
        self.min_interval = 1.0 / max_per_second
        self.book = book if book is not None else PositionBook()
        self._open_by_symbol: dict[str, dict[PositionKey, Position]] = {}
        self._marks: dict[str, tuple[Decimal, datetime]] = {}
        self._dirty: set[str] = set()
        self._deferred: dict[PositionKey, Position] = {}

    # -- inputs -------------------------------------------------------------------------------

    def on_tick(self, symbol: str, price: Decimal, ts: datetime) -> None:
        """Record the mark; the symbol's positions are re-marked at the next `flush`."""
        symbol = normalize_symbol(symbol)
        held = self._marks.get(symbol)
        if held is not None and ts < held[1]:
            return  # out of order: never move a mark back in time
        self._marks[symbol] = (price, ts)
        if self._open_by_symbol.get(symbol):
            self._dirty.add(symbol)

    def on_fill(self, user_id: str, mode: str, fill: Fill) -> tuple[PositionUpdate, FillEffect]:
        """Apply a fill and return the position's update now, bypassing the coalescer."""
        pos, effect = self.book.apply_fill(user_id, mode, fill)
        self._index(pos)
        self._deferred.pop(pos.key, None)
        pos.last_emit = self._clock.monotonic()
        mark = self._marks.get(pos.symbol)
        price = fill.price if mark is None else mark[0]
        ts = fill.ts or self._clock.now()
        return _update_of(pos, price, ts), effect

    def load(self, snapshots: Iterable[PositionSnapshot]) -> None:
        """Restore persisted positions (service start); they are marked on their next tick."""
        for snap in snapshots:
            self._index(self.book.restore(snap))

    # -- outputs ------------------------------------------------------------------------------

    def flush(self, now: float | None = None) -> list[PositionUpdate]:
        """Updates for positions re-marked since the last flush and due under the rate cap."""
        out: list[PositionUpdate] = []
        for chunk in self.flush_chunks(now, chunk_size=1 << 62):
            out += chunk
        return out

    def flush_chunks(
        self, now: float | None = None, chunk_size: int = 2_000
    ) -> Iterator[list[PositionUpdate]]:
        """`flush` in chunks, so an async caller can yield to the event loop between them.

        Safe to interleave with `on_tick`/`on_fill` between chunks: the dirty set, the deferred
        set and each symbol's positions are snapshotted when the flush reaches them.
        """
        now = self._clock.monotonic() if now is None else now
        due_before = now - self.min_interval
        dirty, self._dirty = self._dirty, set()
        previous, self._deferred = self._deferred, {}
        deferred = self._deferred
        out: list[PositionUpdate] = []
        append = out.append
        make = _tuple_new
        cls = PositionUpdate
        for symbol in dirty:
            positions = self._open_by_symbol.get(symbol)
            if not positions:
                continue
            mark, ts = self._marks[symbol]
            for pos in list(positions.values()):
                if pos.last_emit <= due_before:
                    qty = pos.quantity
                    if not qty:
                        continue  # closed by a fill between chunks; that fill already reported it
                    pos.last_emit = now
                    # _update_of, inlined: this loop is the 10,000-positions-per-tick hot path.
                    append(
                        make(
                            cls,
                            (
                                pos.user_id,
                                pos.mode,
                                symbol,
                                qty,
                                pos.avg_entry_price,
                                mark,
                                derived(qty * mark - pos.cost),
                                pos.realized_pnl,
                                ts,
                            ),
                        )
                    )
                    if len(out) >= chunk_size:
                        yield out
                        out = []
                        append = out.append
                else:
                    deferred[pos.key] = pos
        for key, pos in previous.items():
            if pos.last_emit == now or key in deferred or not pos.quantity:
                continue  # emitted or re-deferred above, or closed since
            if pos.last_emit <= due_before:
                mark, ts = self._marks[pos.symbol]
                pos.last_emit = now
                append(_update_of(pos, mark, ts))
                if len(out) >= chunk_size:
                    yield out
                    out = []
                    append = out.append
            else:
                deferred[key] = pos
        if out:
            yield out

    def current(self, user_id: str, mode: str | None = None) -> list[PositionUpdate]:
        """The user's positions (open and flat) marked at the latest price, for queries."""
        now = self._clock.now()
        out: list[PositionUpdate] = []
        for snap in self.book.positions(user_id, mode):
            pos = self.book.get(snap.user_id, snap.mode, snap.symbol)
            assert pos is not None
            mark = self._marks.get(pos.symbol)
            price = mark[0] if mark is not None else pos.avg_entry_price
            out.append(_update_of(pos, price, mark[1] if mark is not None else now))
        return out

    def mark_of(self, symbol: str) -> Decimal | None:
        mark = self._marks.get(normalize_symbol(symbol))
        return None if mark is None else mark[0]

    @property
    def open_positions(self) -> int:
        return sum(len(p) for p in self._open_by_symbol.values())

    @property
    def pending(self) -> int:
        """Positions whose mark changed but whose update is deferred by the rate cap."""
        return len(self._deferred)

    def _index(self, pos: Position) -> None:
        if pos.quantity:
            self._open_by_symbol.setdefault(pos.symbol, {})[pos.key] = pos
        else:
            bucket = self._open_by_symbol.get(pos.symbol)
            if bucket is not None:
                bucket.pop(pos.key, None)
