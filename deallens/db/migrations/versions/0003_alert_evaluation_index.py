"""alerts: index by (kind, company_id) for active alerts; fillfactor 85 for HOT updates

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 13:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_alerts_kind_active", table_name="alerts")
    op.create_index(
        "ix_alerts_kind_active", "alerts", ["kind", "company_id"], postgresql_where=sa.text("active")
    )
    op.execute("ALTER TABLE alerts SET (fillfactor = 85)")


def downgrade() -> None:
    op.execute("ALTER TABLE alerts RESET (fillfactor)")
    op.drop_index("ix_alerts_kind_active", table_name="alerts")
    op.create_index("ix_alerts_kind_active", "alerts", ["kind"], postgresql_where=sa.text("active"))
