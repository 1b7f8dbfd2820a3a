"""positions and candles

Revision ID: 0003p
Revises: 0002
Create Date: 2026-11-22 05:30:20.891623
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db
import sqlmodel  # noqa: F401  (autogenerate may reference its types)

revision: str = '0003p'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('candles',
    sa.Column('symbol', sa.String(length=20), nullable=False),
    sa.Column('interval', sa.String(length=4), nullable=False),
    sa.Column('start', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('open', shared.db.Amount(precision=38, scale=18), nullable=False),
    sa.Column('high', shared.db.Amount(precision=38, scale=18), nullable=False),
    sa.Column('low', shared.db.Amount(precision=38, scale=18), nullable=False),
    sa.Column('close', shared.db.Amount(precision=38, scale=18), nullable=False),
    sa.Column('volume', shared.db.Amount(precision=38, scale=18), nullable=False),
    sa.Column('trade_count', sa.Integer(), nullable=False),
    sa.Column('closed', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('symbol', 'interval', 'start')
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        # A TimescaleDB hypertable when the extension is available; a plain table otherwise.
        available = bind.execute(
            sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
        ).scalar()
        if available:
            op.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            op.execute("SELECT create_hypertable('candles', 'start', if_not_exists => TRUE, migrate_data => TRUE)")
    op.create_table('positions',
    sa.Column('user_id', sa.String(length=32), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('symbol', sa.String(length=20), nullable=False),
    sa.Column('quantity', shared.db.Amount(precision=38, scale=18), nullable=False),
    sa.Column('avg_entry_price', shared.db.Amount(precision=38, scale=18), nullable=False),
    sa.Column('cost_basis', shared.db.Amount(precision=38, scale=18), nullable=False),
    sa.Column('realized_pnl', shared.db.Amount(precision=38, scale=18), nullable=False),
    sa.Column('fees_paid', shared.db.Amount(precision=38, scale=18), nullable=False),
    sa.Column('updated_at', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('user_id', 'mode', 'symbol')
    )


def downgrade() -> None:
    op.drop_table('positions')
    op.drop_table('candles')
