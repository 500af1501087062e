"""llm gateway: llm_usage outcome and reservation columns, the llm_budget ledger

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 09:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "llm_usage",
        sa.Column("day", sa.Date(), server_default=sa.text("(now() AT TIME ZONE 'utc')::date"), nullable=False),
    )
    op.add_column("llm_usage", sa.Column("workflow", sa.String(64), nullable=True))
    op.add_column("llm_usage", sa.Column("status", sa.String(16), server_default=sa.text("'ok'"), nullable=False))
    op.add_column("llm_usage", sa.Column("attempt", sa.Integer(), server_default=sa.text("1"), nullable=False))
    op.add_column(
        "llm_usage", sa.Column("reserved_usd", sa.Numeric(12, 6), server_default=sa.text("0"), nullable=False)
    )
    op.add_column("llm_usage", sa.Column("response_id", sa.String(64), nullable=True))
    op.add_column("llm_usage", sa.Column("error", sa.Text(), nullable=True))
    op.add_column("llm_usage", sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint(
        op.f("ck_llm_usage_status_known"),
        "llm_usage",
        "status IN ('reserved', 'ok', 'refused', 'invalid', 'failed', 'error')",
    )
    op.create_check_constraint(op.f("ck_llm_usage_reserved_nonnegative"), "llm_usage", "reserved_usd >= 0")
    op.create_index("ix_llm_usage_day", "llm_usage", ["day"], unique=False)
    op.create_table(
        "llm_budget",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("committed_usd", sa.Numeric(12, 6), server_default=sa.text("0"), nullable=False),
        sa.Column("calls", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("committed_usd >= 0", name=op.f("ck_llm_budget_committed_nonnegative")),
        sa.CheckConstraint("calls >= 0", name=op.f("ck_llm_budget_calls_nonnegative")),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_llm_budget")),
    )


def downgrade() -> None:
    op.drop_table("llm_budget")
    op.drop_index("ix_llm_usage_day", table_name="llm_usage")
    op.drop_constraint(op.f("ck_llm_usage_reserved_nonnegative"), "llm_usage", type_="check")
    op.drop_constraint(op.f("ck_llm_usage_status_known"), "llm_usage", type_="check")
    for column in ("settled_at", "error", "response_id", "reserved_usd", "attempt", "status", "workflow", "day"):
        op.drop_column("llm_usage", column)
