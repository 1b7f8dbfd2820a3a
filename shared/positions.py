"""Positions by weighted-average cost, per (user, mode, symbol), long or short, all in Decimal.

Accounting (quote-asset PnL):
- The position keeps its signed `quantity` and its signed `cost` basis (= quantity x average
  entry). Keeping the cost rather than the average makes realized + unrealized track the change
  in mark-to-market equity without division drift; `avg_entry_price` is `cost / quantity`.
- Adding in the position's direction adds `qty x price` to the cost.
- Reducing realizes `closed_qty x (price - avg_entry)` (sign-adjusted for shorts) on the closed
  part only. A fill that crosses zero closes the old position entirely (realizing PnL on that
  part) and opens the remainder at the fill price.
- Unrealized PnL = `quantity x mark - cost` = `quantity x (mark - avg_entry)`.
- The two divisions are rounded (Decimal would carry 28 significant digits into the database, where
  PostgreSQL keeps 18 places and SQLite all of them, and on to clients): `avg_entry_price` to the documented
  precision of derived prices (`shared.amounts.derived`, 8 places); the cost a partial close takes out to the
  database's 18 places (`stored`), fine enough that the cost basis of a tiny remainder stays right, and the
  same amount leaves the cost and enters realized PnL, so realized + unrealized still track equity exactly.

Fees (always reduce realized PnL, never the entry price):
- fee in the quote asset: realized -= fee.
- fee in the base asset: the quantity the fill moves the position by is reduced by the fee
  (a 1 BTC buy with a 0.001 BTC fee adds 0.999 BTC; a sell with a base fee removes qty + fee),
  and the fee is expensed at the fill price: realized -= fee x price.
- fee in a third asset (e.g. BNB): converted with `fee_asset_price` (the fee asset's price in
  the quote asset) when the fill carries one, realized -= fee x fee_asset_price; otherwise it
  is recorded, unconverted, in `unconverted_fees[asset]` and does not touch realized PnL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from shared.amounts import derived, stored
from shared.symbols import normalize_symbol, split_symbol

ZERO = Decimal(0)


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution against a position. `fee_asset=None` means the quote asset."""

    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    fee: Decimal = ZERO
    fee_asset: str | None = None
    quote_asset: str | None = None
    fee_asset_price: Decimal | None = None
    ts: datetime | None = None

    def __post_init__(self) -> None:
        # Accept "buy"/"BUY" from callers that carry sides as strings; never guess an unknown one.
        object.__setattr__(self, "side", Side(str(self.side).upper()))
        for name in ("quantity", "price"):
            value: Decimal = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
                raise ValueError(f"Fill.{name} must be a positive finite Decimal, got {value!r}")
        if not isinstance(self.fee, Decimal) or not self.fee.is_finite() or self.fee < 0:
            raise ValueError(f"Fill.fee must be a non-negative finite Decimal, got {self.fee!r}")
        if self.fee_asset_price is not None and (
            not self.fee_asset_price.is_finite() or self.fee_asset_price <= 0
        ):
            raise ValueError("Fill.fee_asset_price must be positive when given")

    def assets(self) -> tuple[str, str]:
        """(base, quote): from `quote_asset` when given, else split from the symbol."""
        canon = normalize_symbol(self.symbol)
        if self.quote_asset:
            quote = self.quote_asset.upper()
            if not canon.endswith(quote) or len(canon) == len(quote):
                raise ValueError(f"quote asset {quote} does not match symbol {self.symbol}")
            return canon[: -len(quote)], quote
        return split_symbol(canon)


PositionKey = tuple[str, str, str]
"""(user_id, mode, symbol)."""


@dataclass(frozen=True, slots=True)
class PositionSnapshot:
    """An immutable view of a position (for persistence, queries and tests)."""

    user_id: str
    mode: str
    symbol: str
    quantity: Decimal
    avg_entry_price: Decimal
    cost_basis: Decimal
    realized_pnl: Decimal
    fees_paid: Decimal
    unconverted_fees: tuple[tuple[str, Decimal], ...] = field(default=())

    def unrealized_pnl(self, mark: Decimal) -> Decimal:
        return self.quantity * mark - self.cost_basis


@dataclass(frozen=True, slots=True)
class FillEffect:
    """What one fill did: realized PnL it booked (fees included) and the quantity it moved."""

    realized_pnl: Decimal
    quantity_delta: Decimal
    closed_quantity: Decimal
    opened_quantity: Decimal


class Position:
    """Mutable state of one position; owned by a `PositionBook`, exposed as `PositionSnapshot`s."""

    __slots__ = (
        "avg_entry_price",
        "cost",
        "fees_paid",
        "key",
        "last_emit",
        "mode",
        "quantity",
        "realized_pnl",
        "symbol",
        "unconverted_fees",
        "user_id",
    )

    def __init__(self, user_id: str, mode: str, symbol: str) -> None:
        self.user_id = user_id
        self.mode = mode
        self.symbol = normalize_symbol(symbol)
        self.key: PositionKey = (user_id, mode, self.symbol)
        self.quantity = ZERO
        self.cost = ZERO
        self.avg_entry_price = ZERO
        self.realized_pnl = ZERO
        self.fees_paid = ZERO
        self.unconverted_fees: dict[str, Decimal] = {}
        self.last_emit = float("-inf")  # monotonic time of the last update emitted (see marking)

    @classmethod
    def restore(cls, snap: PositionSnapshot) -> Position:
        """Rebuild state from a persisted snapshot (e.g. at service start)."""
        pos = cls(snap.user_id, snap.mode, snap.symbol)
        pos.quantity = snap.quantity
        pos.cost = snap.cost_basis
        pos.avg_entry_price = derived(snap.avg_entry_price) if snap.quantity else ZERO
        pos.realized_pnl = snap.realized_pnl
        pos.fees_paid = snap.fees_paid
        pos.unconverted_fees = dict(snap.unconverted_fees)
        return pos

    @property
    def is_open(self) -> bool:
        return bool(self.quantity)

    def unrealized_pnl(self, mark: Decimal) -> Decimal:
        return self.quantity * mark - self.cost

    def snapshot(self) -> PositionSnapshot:
        return PositionSnapshot(
            self.user_id,
            self.mode,
            self.symbol,
            self.quantity,
            self.avg_entry_price,
            self.cost,
            self.realized_pnl,
            self.fees_paid,
            tuple(sorted(self.unconverted_fees.items())),
        )

    def apply(self, fill: Fill) -> FillEffect:
        if normalize_symbol(fill.symbol) != self.symbol:
            raise ValueError(f"fill for {fill.symbol} applied to a {self.symbol} position")
        base, quote = fill.assets()
        signed = fill.quantity if fill.side == Side.BUY else -fill.quantity
        fee_asset = (fill.fee_asset or quote).upper()
        realized = ZERO
        if fill.fee:
            if fee_asset == quote:
                realized -= fill.fee
                self.fees_paid += fill.fee
            elif fee_asset == base:
                signed -= fill.fee
                expensed = fill.fee * fill.price
                realized -= expensed
                self.fees_paid += expensed
            elif fill.fee_asset_price is not None:
                converted = fill.fee * fill.fee_asset_price
                realized -= converted
                self.fees_paid += converted
            else:
                self.unconverted_fees[fee_asset] = self.unconverted_fees.get(fee_asset, ZERO) + fill.fee
        closed, opened, trade_pnl = self._trade(signed, fill.price)
        realized += trade_pnl
        self.realized_pnl += realized
        return FillEffect(realized, signed, closed, opened)

    def _trade(self, delta: Decimal, price: Decimal) -> tuple[Decimal, Decimal, Decimal]:
        """Move the position by `delta` at `price`; returns (closed qty, opened qty, realized PnL)."""
        if not delta:
            return ZERO, ZERO, ZERO
        qty = self.quantity
        if not qty or (qty > 0) == (delta > 0):
            self.quantity = qty + delta
            self.cost += delta * price
            self.avg_entry_price = derived(self.cost / self.quantity)
            return ZERO, abs(delta), ZERO
        held = abs(qty)
        closing = min(held, abs(delta))
        removed = self.cost if closing == held else stored(self.cost * closing / held)
        sign = 1 if qty > 0 else -1
        pnl = sign * closing * price - removed
        remainder = abs(delta) - closing
        if closing == held:
            if remainder:
                self.quantity = delta + qty  # the flip: only the part beyond zero is new
                self.cost = self.quantity * price
                self.avg_entry_price = price
            else:
                self.quantity = ZERO
                self.cost = ZERO
                self.avg_entry_price = ZERO
        else:
            self.quantity = qty + delta
            self.cost -= removed
            # The average entry of what remains is unchanged by a partial close.
        return closing, remainder, pnl


class PositionBook:
    """All positions, keyed by (user_id, mode, symbol); flat positions keep their realized PnL."""

    def __init__(self) -> None:
        self._positions: dict[PositionKey, Position] = {}

    def get_or_create(self, user_id: str, mode: str, symbol: str) -> Position:
        key = (user_id, mode, normalize_symbol(symbol))
        pos = self._positions.get(key)
        if pos is None:
            pos = self._positions[key] = Position(user_id, mode, symbol)
        return pos

    def get(self, user_id: str, mode: str, symbol: str) -> Position | None:
        return self._positions.get((user_id, mode, normalize_symbol(symbol)))

    def apply_fill(self, user_id: str, mode: str, fill: Fill) -> tuple[Position, FillEffect]:
        pos = self.get_or_create(user_id, mode, fill.symbol)
        return pos, pos.apply(fill)

    def restore(self, snap: PositionSnapshot) -> Position:
        pos = Position.restore(snap)
        self._positions[pos.key] = pos
        return pos

    def positions(self, user_id: str | None = None, mode: str | None = None) -> list[PositionSnapshot]:
        return [
            p.snapshot()
            for (uid, m, _), p in sorted(self._positions.items())
            if (user_id is None or uid == user_id) and (mode is None or m == mode)
        ]

    def __len__(self) -> int:
        return len(self._positions)
