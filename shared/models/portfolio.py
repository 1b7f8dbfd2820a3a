"""Equity snapshots: the value of an account in its quote asset at an instant, the equity curve's points."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from shared.db import Amount, UTCDateTime


class EquitySnapshot(SQLModel, table=True):
    """One point of a user's equity curve. ``reason`` is ``interval`` (the schedule; ``ref`` the interval's
    start) or ``fill`` (``ref`` the trade id): (user, mode, reason, ref) is unique, so two processes taking the
    same snapshot write it once. ``unpriced`` lists assets held but left out for want of a price."""

    __tablename__ = "equity_snapshots"
    __table_args__ = (
        UniqueConstraint("user_id", "mode", "reason", "ref", name="uq_equity_snapshots_ref"),
        Index("ix_equity_snapshots_user_ts", "user_id", "mode", "ts"),
        Index("ix_equity_snapshots_ts", "ts"),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: str = Field(max_length=32)
    mode: str = Field(max_length=16)
    ts: datetime = Field(sa_type=UTCDateTime)
    reason: str = Field(max_length=8)
    ref: str = Field(max_length=64)
    quote_asset: str = Field(max_length=16)
    equity: Decimal = Field(sa_type=Amount)
    unpriced: str | None = Field(default=None, max_length=256)
