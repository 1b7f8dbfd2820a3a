"""Request and response bodies of the order, portfolio and market endpoints. Decimals travel as strings."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Side = Literal["BUY", "SELL"]
OrderType = Literal["MARKET", "LIMIT"]
TimeInForce = Literal["GTC", "IOC", "FOK"]
Mode = Literal["paper", "testnet"]

PositiveDecimal = Annotated[Decimal, Field(gt=0, max_digits=38, decimal_places=18, allow_inf_nan=False)]


def _upper(v: object) -> object:
    return v.strip().upper() if isinstance(v, str) else v


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    symbol: str = Field(min_length=3, max_length=20, pattern=r"^[A-Za-z0-9]{2,10}/?[A-Za-z0-9]{2,10}$")
    side: Side
    type: OrderType
    quantity: PositiveDecimal
    price: PositiveDecimal | None = None
    time_in_force: TimeInForce | None = None
    client_order_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._:/-]{1,36}$")
    mode: Mode | None = None

    _norm = field_validator("side", "type", "time_in_force", mode="before")(_upper)

    @field_validator("mode", mode="before")
    @classmethod
    def _lower(cls, v: object) -> object:
        return v.strip().lower() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _price_matches_type(self) -> OrderIn:
        if self.type == "LIMIT" and self.price is None:
            raise ValueError("price is required for LIMIT orders")
        if self.type == "MARKET" and self.price is not None:
            raise ValueError("price must not be given for MARKET orders")
        if self.type == "MARKET" and self.time_in_force == "GTC":
            raise ValueError("MARKET orders cannot rest: time_in_force must be IOC or FOK")
        return self


class QuoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    symbol: str = Field(min_length=3, max_length=20)
    side: Side
    quantity: PositiveDecimal

    _norm = field_validator("side", mode="before")(_upper)


class FillOut(BaseModel):
    trade_id: str
    order_id: str
    symbol: str
    side: Side
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_asset: str
    liquidity: str
    ts: datetime


class OrderEventOut(BaseModel):
    status: str
    filled_quantity: Decimal
    reason: str | None
    ts: datetime


class OrderOut(BaseModel):
    order_id: str
    client_order_id: str | None
    mode: Mode
    symbol: str
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    quantity: Decimal
    price: Decimal | None
    status: str
    filled_quantity: Decimal
    cumulative_quote: Decimal
    avg_price: Decimal | None
    reason: str | None
    external: bool = False
    # Grows with every change of the order: a client merging REST snapshots and ORDER_UPDATE events keeps the
    # highest (the events service and the REST answer may reach it in either order).
    version: int = 0
    created_at: datetime
    updated_at: datetime


class OrderDetail(OrderOut):
    fills: list[FillOut]
    history: list[OrderEventOut]


class OrderPage(BaseModel):
    items: list[OrderOut]
    next_cursor: str | None


class QuoteOut(BaseModel):
    symbol: str
    side: Side
    quantity: Decimal
    fillable_quantity: Decimal
    avg_price: Decimal | None
    worst_price: Decimal | None


class BalanceOut(BaseModel):
    asset: str
    free: Decimal
    locked: Decimal
    total: Decimal


class TradeOut(FillOut):
    pass


class PositionOut(BaseModel):
    symbol: str
    mode: Mode
    quantity: Decimal
    avg_entry_price: Decimal
    mark_price: Decimal | None
    unrealized_pnl: Decimal
    realized_pnl: Decimal
    fees_paid: Decimal
    updated_at: datetime


class CandleOut(BaseModel):
    symbol: str
    interval: str
    start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trade_count: int
    closed: bool
