"""auto redelivery: how many times a parked delivery was re-queued without a person

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-01 12:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("notification_deliveries", "digest_deliveries")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("auto_retries", sa.SmallInteger(), server_default=sa.text("0"), nullable=False))
        op.create_check_constraint(op.f(f"ck_{table}_auto_retries_nonnegative"), table, "auto_retries >= 0")


def downgrade() -> None:
    for table in TABLES:
        op.drop_constraint(f"ck_{table}_auto_retries_nonnegative", table, type_="check")
        op.drop_column(table, "auto_retries")
