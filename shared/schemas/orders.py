"""Request and response bodies of the order, portfolio and market endpoints. Decimals travel as strings,
in plain digits (``PlainDecimal``: never "1E-7")."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from shared.amounts import plain

Side = Literal["BUY", "SELL"]
OrderType = Literal["MARKET", "LIMIT", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"]
STOP_TYPES = frozenset({"STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"})
# Types that take a limit price (a *_LIMIT stop becomes a LIMIT order when triggered) and those that run at the
# market (STOP_LOSS and TAKE_PROFIT become MARKET orders), as on Binance.
PRICED_TYPES = frozenset({"LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"})
# What an answer may carry: our own MARKET/LIMIT, or an exchange's own type (LIMIT_MAKER, STOP_LOSS_LIMIT, ...)
# for an external order found on the exchange (recorded as it is there; never one we accept as input).
ExchangeOrderType = Annotated[
    str,
    Field(
        pattern=r"^[A-Z][A-Z0-9_]{0,31}$",
        max_length=32,
        description="MARKET, LIMIT or a stop type (STOP_LOSS, STOP_LOSS_LIMIT, TAKE_PROFIT, TAKE_PROFIT_LIMIT); "
        "an external order (external=true) carries the exchange's own type, "
        "e.g. LIMIT_MAKER or STOP_LOSS_LIMIT",
        examples=["LIMIT", "MARKET", "LIMIT_MAKER"],
    ),
]
TimeInForce = Literal["GTC", "IOC", "FOK"]
Mode = Literal["paper", "testnet"]

# A decimal string as accepted: digits with an optional point and exponent ("0.001", "1E-7": what str() of a
# Python Decimal gives), a non-zero digit somewhere; no sign, spaces, digit separators or non-ASCII digits.
DECIMAL_INPUT_PATTERN = r"^(?=[^eE]*[1-9])(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
# A decimal as answered: plain digits, never an exponent ("0.0000001", not "1E-7").
PLAIN_DECIMAL_PATTERN = r"^-?[0-9]+(?:\.[0-9]+)?$"
_DECIMAL_INPUT = re.compile(DECIMAL_INPUT_PATTERN)


def _decimal_string(v: object) -> object:
    """Hold strings to the documented pattern: pydantic alone would also take " 1", "1_000" or "١٢"."""
    if isinstance(v, str) and not _DECIMAL_INPUT.match(v):
        raise ValueError('must be a positive decimal number written with digits, such as "0.001"')
    return v


PositiveDecimal = Annotated[
    Decimal,
    BeforeValidator(_decimal_string),
    Field(gt=0, max_digits=38, decimal_places=18, allow_inf_nan=False),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {"type": "string", "pattern": DECIMAL_INPUT_PATTERN},
            ],
            "description": "A positive decimal, preferably as a string (at most 18 decimal places).",
        },
        mode="validation",
    ),
]
# Amounts in answers: strings of plain digits (shared.amounts.plain; str() of a Decimal may use an exponent).
PlainDecimal = Annotated[
    Decimal,
    PlainSerializer(plain, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": PLAIN_DECIMAL_PATTERN}, mode="serialization"),
]


def _upper(v: object) -> object:
    return v.strip().upper() if isinstance(v, str) else v


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    symbol: str = Field(min_length=3, max_length=20, pattern=r"^[A-Za-z0-9]{2,10}/?[A-Za-z0-9]{2,10}$")
    side: Side
    type: OrderType
    quantity: PositiveDecimal
    price: PositiveDecimal | None = None
    stop_price: PositiveDecimal | None = Field(
        default=None,
        description="The trigger of a stop order (Binance's rules, on the last trade price): STOP_LOSS and "
        "STOP_LOSS_LIMIT sells trigger at last <= stop_price, buys at last >= stop_price; TAKE_PROFIT and "
        "TAKE_PROFIT_LIMIT the other way round. One that would trigger at once is refused.",
    )
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
        priced = self.type in PRICED_TYPES
        if priced and self.price is None:
            raise ValueError(f"price is required for {self.type} orders")
        if not priced and self.price is not None:
            raise ValueError(f"price must not be given for {self.type} orders")
        if not priced and self.time_in_force == "GTC":
            raise ValueError(f"{self.type} orders cannot rest: time_in_force must be IOC or FOK")
        if self.type in STOP_TYPES and self.stop_price is None:
            raise ValueError(f"stop_price is required for {self.type} orders")
        if self.type not in STOP_TYPES and self.stop_price is not None:
            raise ValueError(f"stop_price must not be given for {self.type} orders")
        return self


class ReplaceIn(BaseModel):
    """Cancel-replace: the open order's remainder canceled and a new order placed with these changes (the rest
    as the old order had it) as one operation. Give at least one field."""

    model_config = ConfigDict(extra="forbid")

    quantity: PositiveDecimal | None = None
    price: PositiveDecimal | None = None
    stop_price: PositiveDecimal | None = None
    client_order_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._:/-]{1,36}$")

    @model_validator(mode="after")
    def _something(self) -> ReplaceIn:
        if self.quantity is None and self.price is None and self.stop_price is None:
            raise ValueError("give quantity, price or stop_price")
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
    price: PlainDecimal
    quantity: PlainDecimal
    fee: PlainDecimal
    fee_asset: str
    liquidity: str
    ts: datetime


class OrderEventOut(BaseModel):
    status: str
    filled_quantity: PlainDecimal
    reason: str | None
    ts: datetime


class OrderOut(BaseModel):
    order_id: str
    client_order_id: str | None
    mode: Mode
    symbol: str
    side: Side
    type: ExchangeOrderType
    time_in_force: TimeInForce
    quantity: PlainDecimal
    price: PlainDecimal | None
    status: str
    filled_quantity: PlainDecimal
    cumulative_quote: PlainDecimal
    avg_price: PlainDecimal | None
    reason: str | None
    external: bool = False
    stop_price: PlainDecimal | None = None  # stop orders: the trigger price
    # stop orders: when the trigger fired (Binance's workingTime); None while the order waits, off the book
    triggered_at: datetime | None = None
    replaces: str | None = None  # placed by cancel-replace: the order it replaced
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
    quantity: PlainDecimal
    fillable_quantity: PlainDecimal
    avg_price: PlainDecimal | None
    worst_price: PlainDecimal | None
    venue: str = "paper"  # whose book the quote walked


class BalanceOut(BaseModel):
    asset: str
    free: PlainDecimal
    locked: PlainDecimal
    total: PlainDecimal


class TradeOut(FillOut):
    pass


class PositionOut(BaseModel):
    symbol: str
    mode: Mode
    quantity: PlainDecimal
    avg_entry_price: PlainDecimal
    mark_price: PlainDecimal | None
    unrealized_pnl: PlainDecimal
    realized_pnl: PlainDecimal
    fees_paid: PlainDecimal
    updated_at: datetime


class CandleOut(BaseModel):
    symbol: str
    interval: str
    start: datetime
    open: PlainDecimal
    high: PlainDecimal
    low: PlainDecimal
    close: PlainDecimal
    volume: PlainDecimal
    trade_count: int | None  # None where the venue's candle stream doesn't say (the testnet's)
    closed: bool
    venue: str = "paper"
