"""equity_snapshots: the account's value in its quote asset over time (the equity curve)

Written by the equity snapshot component every interval and after each fill; rows older than the retention
are deleted by it. (user_id, mode, reason, ref) is unique so a snapshot taken twice is stored once.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 11:05:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "equity_snapshots",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("ts", shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=8), nullable=False),
        sa.Column("ref", sa.String(length=64), nullable=False),
        sa.Column("quote_asset", sa.String(length=16), nullable=False),
        sa.Column("equity", shared.db.Amount(precision=38, scale=18), nullable=False),
        sa.Column("unpriced", sa.String(length=256), nullable=True),
        sa.UniqueConstraint("user_id", "mode", "reason", "ref", name="uq_equity_snapshots_ref"),
    )
    op.create_index("ix_equity_snapshots_user_ts", "equity_snapshots", ["user_id", "mode", "ts"])
    op.create_index("ix_equity_snapshots_ts", "equity_snapshots", ["ts"])


def downgrade() -> None:
    op.drop_index("ix_equity_snapshots_ts", table_name="equity_snapshots")
    op.drop_index("ix_equity_snapshots_user_ts", table_name="equity_snapshots")
    op.drop_table("equity_snapshots")
