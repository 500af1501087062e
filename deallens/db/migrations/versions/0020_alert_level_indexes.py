"""alert level indexes: a price evaluation reads only the alerts a new quote can change

Revision ID: 0020
Revises: 0012
Create Date: 2026-12-01 12:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The same predicates as deallens/db/models.py and deallens/db/alert_eval.py's _PRUNABLE and
# _UNPRUNABLE: the planner uses a partial index only when the query implies its predicate.
ARMED_LEVELS = "active AND armed AND window_minutes IS NULL"
UNPRUNED = (
    "active AND (NOT armed OR window_minutes IS NOT NULL OR "
    "alert_type NOT IN ('price_above', 'price_below', 'percent_change'))"
)


def upgrade() -> None:
    # Armed alerts by level, per kind, company and type: an evaluation range-scans the levels a
    # company's new quotes reached instead of reading every alert (bench/README.md, alert_eval).
    op.create_index(
        "ix_alerts_armed_levels",
        "alerts",
        ["kind", "company_id", "alert_type", "level"],
        postgresql_where=sa.text(ARMED_LEVELS),
    )
    # The rest, read in full by every evaluation: disarmed (they may re-arm) and windowed alerts.
    op.create_index("ix_alerts_price_unpruned", "alerts", ["kind", "company_id"], postgresql_where=sa.text(UNPRUNED))


def downgrade() -> None:
    op.drop_index("ix_alerts_price_unpruned", table_name="alerts")
    op.drop_index("ix_alerts_armed_levels", table_name="alerts")
