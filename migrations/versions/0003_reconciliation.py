"""reconciliation reports and their mismatches

Revision ID: 0003
Revises: 0003p
Create Date: 2026-11-23 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = '0003'
# The brief said '0002'; positions/candles ('0003p') landed on that parent first, so this follows it: one head.
down_revision: str | None = '0003p'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('reconciliation_reports',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('requested_by', sa.String(length=32), nullable=True),
    sa.Column('started_at', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', shared.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('mismatch_count', sa.Integer(), nullable=False),
    sa.Column('error', sa.String(length=1024), nullable=True),
    sa.Column('summary', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('reconciliation_reports', schema=None) as batch_op:
        batch_op.create_index('ix_reconciliation_reports_started', ['started_at'], unique=False)

    op.create_table('reconciliation_mismatches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('report_id', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('user_id', sa.String(length=40), nullable=True),
    sa.Column('asset', sa.String(length=16), nullable=True),
    sa.Column('symbol', sa.String(length=20), nullable=True),
    sa.Column('order_id', sa.String(length=64), nullable=True),
    sa.Column('trade_id', sa.String(length=64), nullable=True),
    sa.Column('tradebridge_value', sa.String(length=256), nullable=True),
    sa.Column('reference_value', sa.String(length=256), nullable=True),
    sa.Column('reference_source', sa.String(length=16), nullable=False),
    sa.Column('action', sa.String(length=256), nullable=False),
    sa.Column('repair', sa.String(length=32), nullable=True),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('repaired_at', shared.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('repaired_by', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['report_id'], ['reconciliation_reports.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('reconciliation_mismatches', schema=None) as batch_op:
        batch_op.create_index('ix_reconciliation_mismatches_report', ['report_id', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('reconciliation_mismatches', schema=None) as batch_op:
        batch_op.drop_index('ix_reconciliation_mismatches_report')

    op.drop_table('reconciliation_mismatches')
    with op.batch_alter_table('reconciliation_reports', schema=None) as batch_op:
        batch_op.drop_index('ix_reconciliation_reports_started')

    op.drop_table('reconciliation_reports')
