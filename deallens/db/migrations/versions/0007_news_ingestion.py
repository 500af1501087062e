"""news ingestion: stories (one per real-world event), article labels, link evidence,
company aliases and per-company / per-feed fetch state

Revision ID: 0007
Revises: 0004
Create Date: 2026-12-01 09:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "news_stories",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("lead_article_id", sa.BigInteger(), nullable=True),
        sa.Column("first_published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("articles", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_news_stories")),
        sa.ForeignKeyConstraint(
            ["lead_article_id"],
            ["news_articles.id"],
            name=op.f("fk_news_stories_lead_article_id_news_articles"),
            ondelete="SET NULL",
        ),
        sa.CheckConstraint("articles >= 1", name=op.f("ck_news_stories_articles_positive")),
    )
    op.create_index("ix_news_stories_first_published_at", "news_stories", ["first_published_at"])
    op.add_column("news_articles", sa.Column("story_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        op.f("fk_news_articles_story_id_news_stories"),
        "news_articles",
        "news_stories",
        ["story_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_index("ix_news_articles_story_id", "news_articles", ["story_id"])
    op.add_column("news_articles", sa.Column("sentiment_label", sa.String(8), nullable=True))
    op.add_column("news_articles", sa.Column("ingest_key", sa.String(200), nullable=True))
    op.create_index("ix_news_articles_ingest_key", "news_articles", ["ingest_key"])
    op.create_check_constraint(
        op.f("ck_news_articles_sentiment_label_known"),
        "news_articles",
        "sentiment_label IS NULL OR sentiment_label IN ('positive', 'negative', 'neutral')",
    )
    op.add_column("news_company", sa.Column("found_in", sa.String(16), nullable=True))
    op.create_check_constraint(
        op.f("ck_news_company_found_in_known"), "news_company", "found_in IS NULL OR found_in IN ('title', 'description')"
    )
    op.add_column(
        "companies",
        sa.Column("aliases", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
    )
    op.add_column("companies", sa.Column("news_fetched_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "news_feeds",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_news_feeds")),
    )


def downgrade() -> None:
    op.drop_table("news_feeds")
    op.drop_column("companies", "news_fetched_at")
    op.drop_column("companies", "aliases")
    op.drop_constraint(op.f("ck_news_company_found_in_known"), "news_company", type_="check")
    op.drop_column("news_company", "found_in")
    op.drop_constraint(op.f("ck_news_articles_sentiment_label_known"), "news_articles", type_="check")
    op.drop_column("news_articles", "sentiment_label")
    op.drop_index("ix_news_articles_ingest_key", table_name="news_articles")
    op.drop_column("news_articles", "ingest_key")
    op.drop_index("ix_news_articles_story_id", table_name="news_articles")
    op.drop_constraint(op.f("fk_news_articles_story_id_news_stories"), "news_articles", type_="foreignkey")
    op.drop_column("news_articles", "story_id")
    op.drop_index("ix_news_stories_first_published_at", table_name="news_stories")
    op.drop_table("news_stories")
