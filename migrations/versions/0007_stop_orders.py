"""stop orders and cancel-replace: orders.stop_price, orders.triggered_at, orders.replaces

STOP_LOSS, STOP_LOSS_LIMIT, TAKE_PROFIT and TAKE_PROFIT_LIMIT orders carry their trigger price and the time
their trigger fired (NULL while they wait); an order placed by cancel-replace names the order it replaced.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("stop_price", shared.db.Amount(precision=38, scale=18), nullable=True))
        batch.add_column(sa.Column("triggered_at", shared.db.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("replaces", sa.String(length=36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("replaces")
        batch.drop_column("triggered_at")
        batch.drop_column("stop_price")
