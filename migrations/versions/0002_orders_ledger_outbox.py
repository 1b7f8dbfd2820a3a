"""orders, fills, paper ledger, outbox

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 05:19:46.080724
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db
import sqlmodel  # noqa: F401  (autogenerate may reference its types)

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('balances',
    sa.Column('account_id', sa.String(length=40), nullable=False),
    sa.Column('asset', sa.String(length=16), nullable=False),
    sa.Column('free', shared.db.Amount(precision=38, scale=18), nullable=False),
    sa.Column('locked', shared.db.Amount(precision=38, scale=18), nullable=False),
    sa.Column('updated_at', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('account_id', 'asset')
    )
    op.create_table('ledger_postings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('entry_kind', sa.String(length=16), nullable=False),
    sa.Column('ref', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.String(length=40), nullable=False),
    sa.Column('asset', sa.String(length=16), nullable=False),
    sa.Column('bucket', sa.String(length=8), nullable=False),
    sa.Column('amount', shared.db.Amount(precision=38, scale=18), nullable=False),
    sa.Column('ts', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('ledger_postings', schema=None) as batch_op:
        batch_op.create_index('ix_ledger_postings_account', ['account_id', 'asset'], unique=False)

    op.create_table('outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('stream', sa.String(length=128), nullable=False),
    sa.Column('mirror_to', sa.String(length=128), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('created_at', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('published_at', shared.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_unpublished', ['published_at', 'id'], unique=False)

    op.create_table('paper_accounts',
    sa.Column('user_id', sa.String(length=32), nullable=False),
    sa.Column('funded_at', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('user_id')
    )
    op.create_table('processed_commands',
    sa.Column('command_id', sa.String(length=64), nullable=False),
    sa.Column('processed_at', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('command_id')
    )
    op.create_table('orders',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=32), nullable=False),
    sa.Column('client_order_id', sa.String(length=64), nullable=True),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('symbol', sa.String(length=20), nullable=False),
    sa.Column('side', sa.String(length=4), nullable=False),
    sa.Column('type', sa.String(length=8), nullable=False),
    sa.Column('time_in_force', sa.String(length=3), nullable=False),
    sa.Column('quantity', shared.db.Amount(precision=38, scale=18), nullable=False),
    sa.Column('price', shared.db.Amount(precision=38, scale=18), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('filled_quantity', shared.db.Amount(precision=38, scale=18), nullable=False),
    sa.Column('cumulative_quote', shared.db.Amount(precision=38, scale=18), nullable=False),
    sa.Column('avg_price', shared.db.Amount(precision=38, scale=18), nullable=True),
    sa.Column('reason', sa.String(length=256), nullable=True),
    sa.Column('reserved_asset', sa.String(length=16), nullable=True),
    sa.Column('reserved_amount', shared.db.Amount(precision=38, scale=18), nullable=True),
    sa.Column('reserved_price_cap', shared.db.Amount(precision=38, scale=18), nullable=True),
    sa.Column('venue_order_id', sa.String(length=64), nullable=True),
    sa.Column('venue_seq', sa.BigInteger(), nullable=True),
    sa.Column('external', sa.Boolean(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('user_id', 'client_order_id', name='uq_orders_user_client_order_id')
    )
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index('ix_orders_mode_status', ['mode', 'status'], unique=False)
        batch_op.create_index('ix_orders_user_id_desc', ['user_id', 'id'], unique=False)
        batch_op.create_index('ix_orders_user_status', ['user_id', 'status'], unique=False)

    op.create_table('fills',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('trade_id', sa.String(length=64), nullable=False),
    sa.Column('order_id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=32), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('symbol', sa.String(length=20), nullable=False),
    sa.Column('side', sa.String(length=4), nullable=False),
    sa.Column('price', shared.db.Amount(precision=38, scale=18), nullable=False),
    sa.Column('quantity', shared.db.Amount(precision=38, scale=18), nullable=False),
    sa.Column('quote_quantity', shared.db.Amount(precision=38, scale=18), nullable=False),
    sa.Column('fee', shared.db.Amount(precision=38, scale=18), nullable=False),
    sa.Column('fee_asset', sa.String(length=16), nullable=False),
    sa.Column('liquidity', sa.String(length=5), nullable=False),
    sa.Column('ts', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('order_id', 'trade_id', name='uq_fills_order_trade')
    )
    with op.batch_alter_table('fills', schema=None) as batch_op:
        batch_op.create_index('ix_fills_user_ts', ['user_id', 'ts'], unique=False)

    op.create_table('order_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.String(length=36), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('filled_quantity', shared.db.Amount(precision=38, scale=18), nullable=False),
    sa.Column('reason', sa.String(length=256), nullable=True),
    sa.Column('ts', shared.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('order_events', schema=None) as batch_op:
        batch_op.create_index('ix_order_events_order', ['order_id', 'id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('order_events', schema=None) as batch_op:
        batch_op.drop_index('ix_order_events_order')

    op.drop_table('order_events')
    with op.batch_alter_table('fills', schema=None) as batch_op:
        batch_op.drop_index('ix_fills_user_ts')

    op.drop_table('fills')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index('ix_orders_user_status')
        batch_op.drop_index('ix_orders_user_id_desc')
        batch_op.drop_index('ix_orders_mode_status')

    op.drop_table('orders')
    op.drop_table('processed_commands')
    op.drop_table('paper_accounts')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_unpublished')

    op.drop_table('outbox')
    with op.batch_alter_table('ledger_postings', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_postings_account')

    op.drop_table('ledger_postings')
    op.drop_table('balances')
