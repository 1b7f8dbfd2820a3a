"""Positions per (user, mode, symbol) and candles per (symbol, interval, start)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlmodel import Field, SQLModel

from shared.db import Amount, UTCDateTime


class Position(SQLModel, table=True):
    __tablename__ = "positions"

    user_id: str = Field(primary_key=True, max_length=32)
    mode: str = Field(primary_key=True, max_length=16)
    symbol: str = Field(primary_key=True, max_length=20)
    quantity: Decimal = Field(default=Decimal(0), sa_type=Amount)
    avg_entry_price: Decimal = Field(default=Decimal(0), sa_type=Amount)
    cost_basis: Decimal = Field(default=Decimal(0), sa_type=Amount)
    realized_pnl: Decimal = Field(default=Decimal(0), sa_type=Amount)
    fees_paid: Decimal = Field(default=Decimal(0), sa_type=Amount)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class CandleRow(SQLModel, table=True):
    __tablename__ = "candles"

    symbol: str = Field(primary_key=True, max_length=20)
    interval: str = Field(primary_key=True, max_length=4)
    start: datetime = Field(primary_key=True, sa_type=UTCDateTime)
    open: Decimal = Field(sa_type=Amount)
    high: Decimal = Field(sa_type=Amount)
    low: Decimal = Field(sa_type=Amount)
    close: Decimal = Field(sa_type=Amount)
    volume: Decimal = Field(sa_type=Amount)
    trade_count: int = Field(default=0)
    closed: bool = Field(default=False)
