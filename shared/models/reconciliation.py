"""Reconciliation reports: one row per run, one row per mismatch it found (and whether it was repaired)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from shared.db import UTCDateTime


class ReconciliationReport(SQLModel, table=True):
    __tablename__ = "reconciliation_reports"
    __table_args__ = (Index("ix_reconciliation_reports_started", "started_at"),)

    id: str = Field(primary_key=True, max_length=32)
    status: str = Field(max_length=16)  # running | done | failed
    trigger: str = Field(max_length=16)  # api | cli | schedule
    requested_by: str | None = Field(default=None, max_length=32)
    started_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    mismatch_count: int = Field(default=0)
    error: str | None = Field(default=None, max_length=1024)
    summary: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class ReconciliationMismatch(SQLModel, table=True):
    __tablename__ = "reconciliation_mismatches"
    __table_args__ = (Index("ix_reconciliation_mismatches_report", "report_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    report_id: str = Field(foreign_key="reconciliation_reports.id", max_length=32, ondelete="CASCADE")
    kind: str = Field(max_length=40)
    scope: str = Field(max_length=16)  # paper | testnet
    user_id: str | None = Field(default=None, max_length=40)  # a user id or a paper account id
    asset: str | None = Field(default=None, max_length=16)
    symbol: str | None = Field(default=None, max_length=20)
    order_id: str | None = Field(default=None, max_length=64)
    trade_id: str | None = Field(default=None, max_length=64)
    tradebridge_value: str | None = Field(default=None, max_length=256)
    reference_value: str | None = Field(default=None, max_length=256)
    reference_source: str = Field(max_length=16)  # ledger | journal | exchange | memory | fills | clock
    action: str = Field(max_length=256)
    repair: str | None = Field(default=None, max_length=32)  # the repair an admin may request, if any
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    repaired_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    repaired_by: str | None = Field(default=None, max_length=32)


__all__ = ["ReconciliationMismatch", "ReconciliationReport"]
