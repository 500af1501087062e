"""deal tracking: price per share, currency, consideration, dates, the open-deal key, and the
marker of articles checked for deals

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 09:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN = "party_key IS NOT NULL AND status NOT IN ('completed', 'terminated')"


def upgrade() -> None:
    op.add_column("deals", sa.Column("value", sa.Numeric(20, 2), nullable=True))
    op.add_column("deals", sa.Column("currency", sa.String(3), nullable=True))
    op.add_column("deals", sa.Column("price_per_share", sa.Numeric(18, 6), nullable=True))
    op.add_column("deals", sa.Column("consideration", sa.String(8), nullable=True))
    op.add_column("deals", sa.Column("closed_on", sa.Date(), nullable=True))
    op.add_column("deals", sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("deals", sa.Column("party_key", sa.Text(), nullable=True))
    op.create_check_constraint(
        op.f("ck_deals_consideration_known"), "deals", "consideration IN ('cash', 'stock', 'mixed')"
    )
    op.create_check_constraint(op.f("ck_deals_value_positive"), "deals", "value IS NULL OR value > 0")
    op.create_check_constraint(
        op.f("ck_deals_price_per_share_positive"), "deals", "price_per_share IS NULL OR price_per_share > 0"
    )
    op.create_check_constraint(op.f("ck_deals_currency_iso"), "deals", "currency ~ '^[A-Z]{3}$'")
    op.create_index("uq_deals_open_party_key", "deals", ["party_key"], unique=True, postgresql_where=sa.text(_OPEN))
    op.create_table(
        "deal_article_checks",
        sa.Column("news_id", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("deal_id", sa.BigInteger(), nullable=True),
        sa.Column("extractor", sa.String(64), nullable=False),
        sa.Column("checked_by", sa.Text(), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("news_id", name=op.f("pk_deal_article_checks")),
        sa.ForeignKeyConstraint(
            ["news_id"], ["news_articles.id"], name=op.f("fk_deal_article_checks_news_id_news_articles"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["deal_id"], ["deals.id"], name=op.f("fk_deal_article_checks_deal_id_deals"), ondelete="SET NULL"
        ),
        sa.CheckConstraint(
            "outcome IN ('no_deal', 'created', 'changed', 'unchanged', 'stale', 'closed')",
            name=op.f("ck_deal_article_checks_outcome_known"),
        ),
    )
    op.create_index("ix_deal_article_checks_deal_id", "deal_article_checks", ["deal_id"])
    op.create_index("ix_deal_article_checks_checked_by", "deal_article_checks", ["checked_by"])


def downgrade() -> None:
    op.drop_index("ix_deal_article_checks_checked_by", table_name="deal_article_checks")
    op.drop_index("ix_deal_article_checks_deal_id", table_name="deal_article_checks")
    op.drop_table("deal_article_checks")
    op.drop_index("uq_deals_open_party_key", table_name="deals")
    for name in ("currency_iso", "price_per_share_positive", "value_positive", "consideration_known"):
        op.drop_constraint(op.f(f"ck_deals_{name}"), "deals", type_="check")
    for column in ("party_key", "status_changed_at", "closed_on", "consideration", "price_per_share", "currency", "value"):
        op.drop_column("deals", column)
