"""digests at the user's local hour: a per-user digest hour, pages of pending ledger rows

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-01 09:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL: the worker's DIGEST_HOUR.
    op.add_column("users", sa.Column("digest_hour", sa.SmallInteger(), nullable=True))
    op.create_check_constraint(
        op.f("ck_users_digest_hour_valid"), "users", "digest_hour IS NULL OR digest_hour BETWEEN 0 AND 23"
    )
    # The window a digest covers, fixed when it is planned (from the user's zone and hour then):
    # a re-run says the same thing, and a zone changed meanwhile moves nothing. NULL: rows of
    # runs that predate local hours (12:00 UTC windows).
    op.add_column("digest_deliveries", sa.Column("window_start", sa.DateTime(timezone=True), nullable=True))
    op.add_column("digest_deliveries", sa.Column("window_end", sa.DateTime(timezone=True), nullable=True))
    # The digest fan-out pages through one period's pending rows by user id; the unique
    # (user_id, kind, period) index leads with the user and would read every period of each.
    op.create_index(
        "ix_digest_deliveries_pending",
        "digest_deliveries",
        ["kind", "period", "user_id"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    # A burst (one evaluation's firings, all at one triggered_at) is planned a page at a time
    # by id; (triggered_at) alone made each page read and sort the whole burst.
    op.create_index("ix_alert_history_triggered_at_id", "alert_history", ["triggered_at", "id"])
    op.drop_index("ix_alert_history_triggered_at", table_name="alert_history")


def downgrade() -> None:
    op.create_index("ix_alert_history_triggered_at", "alert_history", ["triggered_at"])
    op.drop_index("ix_alert_history_triggered_at_id", table_name="alert_history")
    op.drop_index("ix_digest_deliveries_pending", table_name="digest_deliveries")
    op.drop_column("digest_deliveries", "window_end")
    op.drop_column("digest_deliveries", "window_start")
    op.drop_constraint(op.f("ck_users_digest_hour_valid"), "users", type_="check")
    op.drop_column("users", "digest_hour")
