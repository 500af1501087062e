"""insight cache: one ai_insights row per cache key (model, prompt version, context hash)

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-01 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "insight_cache_stats",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("hits", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("misses", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("fallbacks", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("day", "kind", name=op.f("pk_insight_cache_stats")),
    )
    # Storing an insight is INSERT ... ON CONFLICT DO NOTHING on this index: a retried
    # activity, two workers, or a batch result collected twice store it once.
    op.create_index(
        "uq_ai_insights_input_hash", "ai_insights", ["input_hash"], unique=True,
        postgresql_where="input_hash IS NOT NULL",
    )


def downgrade() -> None:
    op.drop_index("uq_ai_insights_input_hash", table_name="ai_insights")
    op.drop_table("insight_cache_stats")
