"""users.locked_at and users.last_login_at: the admin console's user list and its lock

An admin locks a user (is_active false, which every authentication path already refuses) and the time is kept
in locked_at (NULL while unlocked); last_login_at is set by each successful password login.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import shared.db

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("locked_at", shared.db.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("last_login_at", shared.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # SQLite (3.35+) drops these plain columns in place: recreating `users` (batch mode's default) would run an
    # implicit DELETE that every table referencing users refuses while foreign keys are on.
    with op.batch_alter_table("users", recreate="never") as batch:
        batch.drop_column("last_login_at")
        batch.drop_column("locked_at")
