"""api_rate_slots: exact spacing of provider calls across workers

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 12:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_rate_slots",
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("next_call_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("provider", name=op.f("pk_api_rate_slots")),
    )


def downgrade() -> None:
    op.drop_table("api_rate_slots")
