"""notifications: push secret and style, unsubscribe tokens, the digest ledger

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 14:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("push_webhook_secret", sa.Text(), nullable=True))
    op.add_column("users", sa.Column("push_format", sa.String(8), server_default=sa.text("'json'"), nullable=False))
    op.create_check_constraint(op.f("ck_users_push_format_known"), "users", "push_format IN ('json', 'ntfy', 'chat')")
    op.add_column(
        "users",
        sa.Column(
            "unsubscribe_token",
            sa.String(64),
            server_default=sa.text("replace(CAST(gen_random_uuid() AS text), '-', '')"),
            nullable=False,
        ),
    )
    op.create_unique_constraint(op.f("uq_users_unsubscribe_token"), "users", ["unsubscribe_token"])
    op.create_table(
        "digest_deliveries",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("period", sa.Date(), nullable=False),
        sa.Column("status", sa.String(8), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.Text(), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_digest_deliveries")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_digest_deliveries_user_id_users"), ondelete="CASCADE"
        ),
        sa.UniqueConstraint("user_id", "kind", "period", name=op.f("uq_digest_deliveries_user_id_kind_period")),
        sa.CheckConstraint("kind IN ('daily', 'weekly')", name=op.f("ck_digest_deliveries_kind_known")),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'failed', 'skipped')", name=op.f("ck_digest_deliveries_status_known")
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_digest_deliveries_attempts_nonnegative")),
    )
    # The claim that keeps two senders off one delivery (see deallens/db/claims.py).
    op.add_column("notification_deliveries", sa.Column("claimed_by", sa.Text(), nullable=True))
    op.add_column("notification_deliveries", sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))
    # The digest reads a user's firings in a time window.
    op.create_index("ix_alert_history_alert_id_triggered_at", "alert_history", ["alert_id", "triggered_at"])
    op.create_index(
        "ix_digest_deliveries_status",
        "digest_deliveries",
        ["status"],
        postgresql_where=sa.text("status = 'failed'"),
    )


def downgrade() -> None:
    op.drop_index("ix_alert_history_alert_id_triggered_at", table_name="alert_history")
    op.drop_column("notification_deliveries", "claimed_until")
    op.drop_column("notification_deliveries", "claimed_by")
    op.drop_index("ix_digest_deliveries_status", table_name="digest_deliveries")
    op.drop_table("digest_deliveries")
    op.drop_constraint(op.f("uq_users_unsubscribe_token"), "users", type_="unique")
    op.drop_column("users", "unsubscribe_token")
    op.drop_constraint(op.f("ck_users_push_format_known"), "users", type_="check")
    op.drop_column("users", "push_format")
    op.drop_column("users", "push_webhook_secret")
