"""alerts see every data point: per-company evaluation cursors, alerts.evaluated_at (reset by
a definition change), and the receipts that let a retried bar sync report its first attempt

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 09:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A changed definition (or a re-activated alert) is new to evaluation: it is evaluated against
# its company's latest quote, not against the quotes its old definition already saw. A trigger,
# so that every writer of alerts (CLI, web, SQL by hand) gets this without knowing about it.
# (The schema is only ever built by migrations; models.py mentions the trigger.)
FUNCTION = """
CREATE FUNCTION alerts_definition_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.evaluated_at := NULL;
    RETURN NEW;
END
$$
"""
TRIGGER = """
CREATE TRIGGER alerts_definition_changed
BEFORE UPDATE OF params, company_id, deal_id, active ON alerts
FOR EACH ROW
WHEN (OLD.params IS DISTINCT FROM NEW.params OR OLD.company_id IS DISTINCT FROM NEW.company_id
      OR OLD.deal_id IS DISTINCT FROM NEW.deal_id OR (NEW.active AND NOT OLD.active))
EXECUTE FUNCTION alerts_definition_changed()
"""


# The same expressions as deallens/db/models.py's Alert.alert_type, .level and .window_minutes.
ALERT_TYPE = "params->>'type'"
ALERT_LEVEL = "CAST(coalesce(params->>'threshold', params->>'percent', params->>'multiple') AS numeric)"
ALERT_WINDOW_MINUTES = "CAST(params->>'window_minutes' AS integer)"


def upgrade() -> None:
    # NULL: an alert evaluation has not seen (new or changed); it reads the newest quote only.
    op.add_column("alerts", sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=True))
    # The numbers evaluation compares, parsed from params once when an alert is stored rather
    # than for every alert at every evaluation (bench/README.md: it pays for reading every quote).
    op.add_column(
        "alerts", sa.Column("alert_type", sa.Text(), sa.Computed(ALERT_TYPE, persisted=True), nullable=True)
    )
    op.add_column("alerts", sa.Column("level", sa.Numeric(), sa.Computed(ALERT_LEVEL, persisted=True), nullable=True))
    op.add_column(
        "alerts",
        sa.Column("window_minutes", sa.Integer(), sa.Computed(ALERT_WINDOW_MINUTES, persisted=True), nullable=True),
    )
    op.create_index(
        "ix_alerts_unevaluated", "alerts", ["kind", "company_id"], postgresql_where=sa.text("evaluated_at IS NULL")
    )
    # Each evaluation retires the expired alerts of its kind: without this it read every alert.
    op.create_index(
        "ix_alerts_expires_at", "alerts", ["expires_at"], postgresql_where=sa.text("active AND expires_at IS NOT NULL")
    )
    op.execute(FUNCTION)
    op.execute(TRIGGER)
    op.create_table(
        "alert_cursors",
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("company_id", sa.BigInteger(), nullable=False),
        sa.Column("through_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kind", "company_id", name=op.f("pk_alert_cursors")),
        sa.ForeignKeyConstraint(
            ["company_id"], ["companies.id"], name=op.f("fk_alert_cursors_company_id_companies"), ondelete="CASCADE"
        ),
    )
    # Existing alerts carry on where the previous evaluation left them: evaluated, with each
    # company's newest quote read (an armed alert still reads it; a disarmed one re-arms on the
    # next quote). Without this, the first evaluation after the upgrade would mark every alert
    # evaluated in one statement (bench/README.md, line 1c: about 6 s per 100,000 alerts).
    op.execute("UPDATE alerts SET evaluated_at = now()")
    op.execute(
        """
        INSERT INTO alert_cursors (kind, company_id, through_at)
        SELECT k.kind, q.company_id, max(q.quoted_at)
        FROM price_quotes q CROSS JOIN (VALUES ('price'), ('volume')) AS k(kind)
        GROUP BY k.kind, q.company_id
        """
    )
    op.create_table(
        "bar_sync_receipts",
        sa.Column("activity_key", sa.Text(), nullable=False),
        sa.Column("inserted", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("activity_key", name=op.f("pk_bar_sync_receipts")),
        sa.CheckConstraint("inserted >= 0 AND updated >= 0", name=op.f("ck_bar_sync_receipts_counts_nonnegative")),
    )


def downgrade() -> None:
    op.drop_table("bar_sync_receipts")
    op.drop_table("alert_cursors")
    op.execute("DROP TRIGGER alerts_definition_changed ON alerts")
    op.execute("DROP FUNCTION alerts_definition_changed()")
    op.drop_index("ix_alerts_expires_at", table_name="alerts")
    op.drop_index("ix_alerts_unevaluated", table_name="alerts")
    op.drop_column("alerts", "window_minutes")
    op.drop_column("alerts", "level")
    op.drop_column("alerts", "alert_type")
    op.drop_column("alerts", "evaluated_at")
