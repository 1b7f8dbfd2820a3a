"""orders.type wide enough for an exchange's own order types

An external order found on the exchange keeps its type there (LIMIT_MAKER, STOP_LOSS_LIMIT,
TAKE_PROFIT_LIMIT: up to 17 characters on Binance spot); VARCHAR(8) refused them on PostgreSQL, which
dropped the whole start-up recovery result they were part of.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.alter_column(
            "type", existing_type=sa.String(length=8), type_=sa.String(length=32), existing_nullable=False
        )


def downgrade() -> None:
    # Narrowing would truncate (or, on PostgreSQL, refuse) the exchange types recorded since: say so instead.
    wide = op.get_bind().execute(sa.text("SELECT COUNT(*) FROM orders WHERE LENGTH(type) > 8")).scalar_one()
    if wide:
        raise RuntimeError(
            f"{wide} orders have a type longer than 8 characters (external orders' exchange types); "
            "downgrading below 0005 would lose them: delete or archive those orders first"
        )
    with op.batch_alter_table("orders") as batch:
        batch.alter_column(
            "type", existing_type=sa.String(length=32), type_=sa.String(length=8), existing_nullable=False
        )
