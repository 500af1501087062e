"""llm batches: jobs sent through the OpenAI Batch API and their requests

Revision ID: 0012
Revises: 0008
Create Date: 2026-12-01 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JOB_STATUSES = "status IN ('pending', 'reserved', 'submitted', 'rejected', 'collected')"
ITEM_STATUSES = "status IN ('pending', 'ok', 'refused', 'failed', 'error')"


def upgrade() -> None:
    op.create_table(
        "llm_batch_jobs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("workflow", sa.String(64), nullable=True),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("marker", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("provider_status", sa.String(16), nullable=True),
        sa.Column("batch_id", sa.String(64), nullable=True),
        sa.Column("input_file_id", sa.String(64), nullable=True),
        sa.Column("output_file_id", sa.String(64), nullable=True),
        sa.Column("error_file_id", sa.String(64), nullable=True),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("failed", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("succeeded", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("reserved_usd", sa.Numeric(12, 6), server_default=sa.text("0"), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("collected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(JOB_STATUSES, name=op.f("ck_llm_batch_jobs_status_known")),
        sa.CheckConstraint(
            "requests >= 1 AND done >= 0 AND failed >= 0 AND succeeded >= 0", name=op.f("ck_llm_batch_jobs_counts_valid")
        ),
        sa.CheckConstraint("reserved_usd >= 0", name=op.f("ck_llm_batch_jobs_reserved_nonnegative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_llm_batch_jobs")),
        sa.UniqueConstraint("marker", name=op.f("uq_llm_batch_jobs_marker")),
        sa.UniqueConstraint("batch_id", name=op.f("uq_llm_batch_jobs_batch_id")),
    )
    op.create_table(
        "llm_batch_items",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("custom_id", sa.String(64), nullable=False),
        sa.Column("schema_ref", sa.String(200), nullable=False),
        sa.Column("messages", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("max_output_tokens", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("output", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("usage_id", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(ITEM_STATUSES, name=op.f("ck_llm_batch_items_status_known")),
        sa.CheckConstraint("max_output_tokens >= 1", name=op.f("ck_llm_batch_items_max_output_tokens_positive")),
        sa.ForeignKeyConstraint(
            ["job_id"], ["llm_batch_jobs.id"], name=op.f("fk_llm_batch_items_job_id_llm_batch_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["usage_id"], ["llm_usage.id"], name=op.f("fk_llm_batch_items_usage_id_llm_usage"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_llm_batch_items")),
        sa.UniqueConstraint("job_id", "custom_id", name=op.f("uq_llm_batch_items_job_id_custom_id")),
    )


def downgrade() -> None:
    op.drop_table("llm_batch_items")
    op.drop_table("llm_batch_jobs")
