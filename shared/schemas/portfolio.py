"""Response bodies of the account's pictures and history: equity curve, realized PnL per day, history pages
and the order ticket's figures. Amounts are plain-digit strings (``PlainDecimal``)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field

from shared.schemas.orders import Mode, OrderOut, PlainDecimal, Side, TradeOut


class EquityPoint(BaseModel):
    ts: datetime
    equity: PlainDecimal
    reason: Literal["interval", "fill"] = Field(
        description="interval: the schedule; fill: right after a fill"
    )
    unpriced: list[str] = Field(default_factory=list, description="assets held but without a price: left out")


class EquityOut(BaseModel):
    mode: Mode
    quote_asset: str | None = Field(description="what equity is counted in; null before the first snapshot")
    points: list[EquityPoint]
    interval_s: float = Field(
        description="seconds between scheduled snapshots (EQUITY_SNAPSHOT_INTERVAL_S): how often the curve grows "
        "without fills, so a page can ask again at that pace"
    )


class DayPnlOut(BaseModel):
    day: date
    realized_pnl: PlainDecimal = Field(description="PnL the day's fills realized, fees deducted")
    fees: PlainDecimal
    trades: int


class OrderHistoryPage(BaseModel):
    items: list[OrderOut]
    next_cursor: str | None


class TradeHistoryPage(BaseModel):
    items: list[TradeOut]
    next_cursor: str | None


class TicketOut(BaseModel):
    """What the order ticket needs before sending: the side's available balance, the market's rules and the
    venue's fee rates (null where the venue does not tell: the testnet charges its own)."""

    symbol: str
    side: Side
    mode: Mode
    base_asset: str
    quote_asset: str
    available_asset: str = Field(description="what the side spends: the quote asset to buy, the base to sell")
    available: PlainDecimal = Field(description="its free balance")
    tick_size: PlainDecimal
    step_size: PlainDecimal
    min_qty: PlainDecimal
    min_notional: PlainDecimal
    market_protection_pct: PlainDecimal = Field(
        description="a market order walks at most this % from the best price; a paper market buy locks up to it"
    )
    maker_fee_rate: PlainDecimal | None
    taker_fee_rate: PlainDecimal | None
    reserve_fee_rate: PlainDecimal | None = Field(
        description="the fee a paper buy's lock covers (the higher)"
    )
    best_bid: PlainDecimal | None
    best_ask: PlainDecimal | None
