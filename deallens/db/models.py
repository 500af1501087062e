"""The database schema: SQLAlchemy 2.0 typed models, one per contract table.

Constraints live in the database, not only in code, because several workers and outside
tools write here: uniques make upserts idempotent (a retried activity never stores a row
twice), CHECKs reject impossible market data, and each foreign key says deliberately what
happens on delete (a user's alerts go with the user; a deal survives the deletion of a
company it names). Columns marked in DESIGN.md as read by outside tools keep their names.

Every provider-fed table has a `source` column: "alphavantage", or "alphavantage-sim" when
the data came from the local stand-in, so simulated rows can never pass for real ones.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Text,
    Time,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Deterministic constraint names, so that migrations can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Price = Numeric(18, 6)
Money = Numeric(20, 2)
Timestamp = DateTime(timezone=True)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        dict[str, Any]: JSONB,
        list[Any]: JSONB,
        dt.datetime: Timestamp,
        Decimal: Price,
    }


def _id() -> Mapped[int]:
    return mapped_column(BigInteger, Identity(always=False), primary_key=True)


def _created_at() -> Mapped[dt.datetime]:
    return mapped_column(Timestamp, server_default=func.now(), nullable=False)


def _updated_at() -> Mapped[dt.datetime]:
    return mapped_column(Timestamp, server_default=func.now(), onupdate=func.now(), nullable=False)


class Company(Base):
    __tablename__ = "companies"
    __table_args__ = (
        CheckConstraint("symbol <> '' AND symbol = upper(symbol)", name="symbol_upper"),
        CheckConstraint("consecutive_failures >= 0", name="failures_nonnegative"),
    )

    id: Mapped[int] = _id()
    symbol: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(Text)
    sector: Mapped[str | None] = mapped_column(Text)
    industry: Mapped[str | None] = mapped_column(Text)
    exchange: Mapped[str | None] = mapped_column(String(16))
    currency: Mapped[str | None] = mapped_column(String(8))
    # The latest OVERVIEW fields as parsed (fundamentals sync); null until first fetched.
    fundamentals: Mapped[dict[str, Any] | None]
    fundamentals_updated_at: Mapped[dt.datetime | None]
    # Symbols the provider keeps calling unknown are quarantined and skipped by syncs.
    consecutive_failures: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    quarantined_at: Mapped[dt.datetime | None]
    quarantine_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = _created_at()
    updated_at: Mapped[dt.datetime] = _updated_at()
    # News: names beyond `name` that headlines use for this company (the linker's curated
    # table holds the well-known ones), and when its news was last fetched (IngestCompanyNews
    # asks only for newer articles and rotates the least recently fetched first).
    aliases: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    news_fetched_at: Mapped[dt.datetime | None]


class PriceQuote(Base):
    """One observed quote. History is kept (retention trims it) so alerts can see changes."""

    __tablename__ = "price_quotes"
    __table_args__ = (
        UniqueConstraint("company_id", "quoted_at"),
        CheckConstraint("price >= 0", name="price_nonnegative"),
        CheckConstraint("volume IS NULL OR volume >= 0", name="volume_nonnegative"),
        CheckConstraint("high IS NULL OR low IS NULL OR high >= low", name="high_ge_low"),
        CheckConstraint("low IS NULL OR low >= 0", name="low_nonnegative"),
        CheckConstraint("previous_close IS NULL OR previous_close >= 0", name="previous_close_nonnegative"),
        Index("ix_price_quotes_quoted_at", "quoted_at"),
    )

    id: Mapped[int] = _id()
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    price: Mapped[Decimal]
    open: Mapped[Decimal | None]
    high: Mapped[Decimal | None]
    low: Mapped[Decimal | None]
    previous_close: Mapped[Decimal | None]
    change: Mapped[Decimal | None]
    change_percent: Mapped[Decimal | None] = mapped_column(Numeric(12, 6))
    volume: Mapped[int | None] = mapped_column(BigInteger)
    latest_trading_day: Mapped[dt.date | None] = mapped_column(Date)
    quoted_at: Mapped[dt.datetime]
    source: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = _created_at()


class OHLCBar(Base):
    __tablename__ = "ohlc_data"
    __table_args__ = (
        UniqueConstraint("company_id", "date"),
        CheckConstraint("low >= 0", name="low_nonnegative"),
        CheckConstraint("high >= low", name="high_ge_low"),
        CheckConstraint("open BETWEEN low AND high", name="open_in_range"),
        CheckConstraint("close BETWEEN low AND high", name="close_in_range"),
        CheckConstraint("volume >= 0", name="volume_nonnegative"),
        Index("ix_ohlc_data_date", "date"),
    )

    id: Mapped[int] = _id()
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    date: Mapped[dt.date] = mapped_column(Date)
    open: Mapped[Decimal]
    high: Mapped[Decimal]
    low: Mapped[Decimal]
    close: Mapped[Decimal]
    volume: Mapped[int] = mapped_column(BigInteger)
    # Today's bar during the session is provisional; the post-close sync overwrites it.
    provisional: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    source: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[dt.datetime] = _updated_at()


class NewsArticle(Base):
    __tablename__ = "news_articles"
    __table_args__ = (
        CheckConstraint(
            "sentiment_score IS NULL OR sentiment_score BETWEEN -1 AND 1", name="sentiment_range"
        ),
        CheckConstraint("category IN ('market', 'company', 'deal')", name="category_known"),
        CheckConstraint(
            "sentiment_label IS NULL OR sentiment_label IN ('positive', 'negative', 'neutral')",
            name="sentiment_label_known",
        ),
        Index("ix_news_articles_published_at", "published_at"),
        Index("ix_news_articles_story_id", "story_id"),
        Index("ix_news_articles_ingest_key", "ingest_key"),
    )

    id: Mapped[int] = _id()
    url: Mapped[str] = mapped_column(Text)
    # URL without tracking parameters, fragments and host case: the dedup key.
    canonical_url: Mapped[str] = mapped_column(Text, unique=True)
    title: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    content: Mapped[str | None] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(Text)
    publisher: Mapped[str | None] = mapped_column(Text)
    image_url: Mapped[str | None] = mapped_column(Text)
    category: Mapped[str] = mapped_column(String(16), server_default=text("'market'"))
    published_at: Mapped[dt.datetime]
    sentiment_score: Mapped[Decimal | None] = mapped_column(Numeric(5, 4))
    sentiment_source: Mapped[str | None] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = _created_at()
    # The event this article reports (deallens/db/news.py sets it in the inserting
    # transaction; nullable only for rows written before stories existed).
    story_id: Mapped[int | None] = mapped_column(ForeignKey("news_stories.id", ondelete="SET NULL"))
    sentiment_label: Mapped[str | None] = mapped_column(String(8))
    # Which ingestion (activity execution) inserted the row: a retried attempt reports the
    # rows its lost predecessor stored, so that they are still scored and signalled.
    ingest_key: Mapped[str | None] = mapped_column(String(200))


class NewsStory(Base):
    """One real-world event, however many outlets reported it; its first article is the lead."""

    __tablename__ = "news_stories"
    __table_args__ = (
        CheckConstraint("articles >= 1", name="articles_positive"),
        Index("ix_news_stories_first_published_at", "first_published_at"),
    )

    id: Mapped[int] = _id()
    lead_article_id: Mapped[int | None] = mapped_column(
        ForeignKey("news_articles.id", ondelete="SET NULL", use_alter=True)
    )
    first_published_at: Mapped[dt.datetime]
    last_published_at: Mapped[dt.datetime]
    articles: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    created_at: Mapped[dt.datetime] = _created_at()


class NewsFeed(Base):
    """When a non-company feed (market, deal) last fetched: the next run asks only for newer articles."""

    __tablename__ = "news_feeds"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    fetched_at: Mapped[dt.datetime]


class NewsCompany(Base):
    __tablename__ = "news_company"
    __table_args__ = (
        CheckConstraint("relevance IS NULL OR relevance BETWEEN 0 AND 1", name="relevance_range"),
        CheckConstraint("found_in IS NULL OR found_in IN ('title', 'description')", name="found_in_known"),
        Index("ix_news_company_company_id", "company_id"),
    )

    news_id: Mapped[int] = mapped_column(
        ForeignKey("news_articles.id", ondelete="CASCADE"), primary_key=True
    )
    company_id: Mapped[int] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE"), primary_key=True
    )
    relevance: Mapped[Decimal | None] = mapped_column(Numeric(5, 4))
    found_in: Mapped[str | None] = mapped_column(String(16))


class AIInsight(Base):
    __tablename__ = "ai_insights"
    __table_args__ = (
        CheckConstraint("kind IN ('company', 'deal', 'market_summary')", name="kind_known"),
        CheckConstraint(
            "recommendation IS NULL OR recommendation IN ('strong_buy', 'buy', 'hold', 'sell', 'strong_sell')",
            name="recommendation_known",
        ),
        Index("ix_ai_insights_kind_subject_created", "kind", "subject_id", "created_at"),
        Index("ix_ai_insights_input_hash", "input_hash"),
        # The insight cache (migration 0011, deallens/db/insights.py): one row per cache key.
        Index("uq_ai_insights_input_hash", "input_hash", unique=True, postgresql_where=text("input_hash IS NOT NULL")),
    )

    id: Mapped[int] = _id()
    kind: Mapped[str] = mapped_column(String(24))
    # companies.id or deals.id by kind; null for the market summary.
    subject_id: Mapped[int | None] = mapped_column(BigInteger)
    content: Mapped[dict[str, Any]]
    recommendation: Mapped[str | None] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(64))
    # Hash of the prompt inputs: the cache key that avoids paying twice for the same analysis.
    input_hash: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = _created_at()


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("position('@' in email) > 1", name="email_has_at"),
        CheckConstraint("daily_alert_cap >= 0", name="daily_alert_cap_nonnegative"),
        CheckConstraint("push_format IN ('json', 'ntfy', 'chat')", name="push_format_known"),
        CheckConstraint("digest_hour IS NULL OR digest_hour BETWEEN 0 AND 23", name="digest_hour_valid"),
    )

    id: Mapped[int] = _id()
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(Text)
    timezone: Mapped[str] = mapped_column(String(64), server_default=text("'UTC'"))
    email_enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    push_webhook_url: Mapped[str | None] = mapped_column(Text)
    # The key that signs this user's webhooks (HMAC-SHA256); the receiver holds the same.
    push_webhook_secret: Mapped[str | None] = mapped_column(Text)
    # json (generic), ntfy (ntfy.sh JSON publishing) or chat (Slack/Mattermost/Discord-style).
    push_format: Mapped[str] = mapped_column(String(8), server_default=text("'json'"))
    sms_number: Mapped[str | None] = mapped_column(String(32))
    digest_opt_in: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    weekly_opt_in: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    # Local hour (in `timezone`) of this user's daily digest; NULL: the worker's DIGEST_HOUR.
    digest_hour: Mapped[int | None] = mapped_column(SmallInteger)
    quiet_hours_start: Mapped[dt.time | None] = mapped_column(Time)
    quiet_hours_end: Mapped[dt.time | None] = mapped_column(Time)
    daily_alert_cap: Mapped[int] = mapped_column(Integer, server_default=text("50"))
    unsubscribed_at: Mapped[dt.datetime | None]
    # Unguessable, per user: the List-Unsubscribe links carry it instead of the user id.
    unsubscribe_token: Mapped[str] = mapped_column(
        String(64), unique=True, server_default=text("replace(CAST(gen_random_uuid() AS text), '-', '')")
    )
    created_at: Mapped[dt.datetime] = _created_at()

    watchlist: Mapped[list[WatchlistEntry]] = relationship(back_populates="user", passive_deletes=True)


class WatchlistEntry(Base):
    __tablename__ = "watchlist"
    __table_args__ = (Index("ix_watchlist_company_id", "company_id"),)

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    company_id: Mapped[int] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE"), primary_key=True
    )
    added_at: Mapped[dt.datetime] = _created_at()

    user: Mapped[User] = relationship(back_populates="watchlist")


DEAL_STATUSES = ("rumored", "announced", "pending_regulatory", "approved", "completed", "terminated")


class Deal(Base):
    __tablename__ = "deals"
    __table_args__ = (
        CheckConstraint(f"status IN {DEAL_STATUSES!r}", name="status_known"),
        CheckConstraint("value_usd IS NULL OR value_usd >= 0", name="value_nonnegative"),
        Index("ix_deals_acquirer_company_id", "acquirer_company_id"),
        Index("ix_deals_target_company_id", "target_company_id"),
        # Deal tracking (migration 0009, deallens/db/deals.py).
        CheckConstraint("consideration IN ('cash', 'stock', 'mixed')", name="consideration_known"),
        CheckConstraint("value IS NULL OR value > 0", name="value_positive"),
        CheckConstraint("price_per_share IS NULL OR price_per_share > 0", name="price_per_share_positive"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso"),
        # One open deal per pair of parties: concurrent trackers cannot create it twice.
        Index(
            "uq_deals_open_party_key",
            "party_key",
            unique=True,
            postgresql_where=text("party_key IS NOT NULL AND status NOT IN ('completed', 'terminated')"),
        ),
    )

    id: Mapped[int] = _id()
    title: Mapped[str] = mapped_column(Text)
    # A deal outlives the deletion of a company it names: the names stay as text.
    acquirer_company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id", ondelete="SET NULL"))
    target_company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id", ondelete="SET NULL"))
    acquirer_name: Mapped[str | None] = mapped_column(Text)
    target_name: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(24), server_default=text("'announced'"))
    value_usd: Mapped[Decimal | None] = mapped_column(Money)
    announced_on: Mapped[dt.date | None] = mapped_column(Date)
    expected_close_on: Mapped[dt.date | None] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = _created_at()
    updated_at: Mapped[dt.datetime] = _updated_at()
    # Deal tracking (migration 0009). The value as reported, in `currency`; value_usd only
    # when that currency is USD (no exchange rates are guessed).
    value: Mapped[Decimal | None] = mapped_column(Money)
    currency: Mapped[str | None] = mapped_column(String(3))
    price_per_share: Mapped[Decimal | None]
    consideration: Mapped[str | None] = mapped_column(String(8))
    closed_on: Mapped[dt.date | None] = mapped_column(Date)
    # When the article that set the current status was published: older news cannot change it.
    status_changed_at: Mapped[dt.datetime | None]
    # The unordered pair of parties ("c:<company id>" or "n:<normalised name>"), see
    # deallens/domain/deals/parties.py; null for deals recorded by other means.
    party_key: Mapped[str | None] = mapped_column(Text)


class DealEvent(Base):
    __tablename__ = "deal_events"
    __table_args__ = (
        CheckConstraint(
            "event_type IN ('created', 'status_change', 'value_change', 'news')", name="event_type_known"
        ),
        Index("ix_deal_events_deal_id_occurred_at", "deal_id", "occurred_at"),
    )

    id: Mapped[int] = _id()
    deal_id: Mapped[int] = mapped_column(ForeignKey("deals.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(24))
    old_status: Mapped[str | None] = mapped_column(String(24))
    new_status: Mapped[str | None] = mapped_column(String(24))
    news_id: Mapped[int | None] = mapped_column(ForeignKey("news_articles.id", ondelete="SET NULL"))
    details: Mapped[dict[str, Any] | None]
    occurred_at: Mapped[dt.datetime]
    created_at: Mapped[dt.datetime] = _created_at()


ALERT_KINDS = ("price", "volume", "news", "deal")


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        CheckConstraint(f"kind IN {ALERT_KINDS!r}", name="kind_known"),
        CheckConstraint("cooldown_seconds >= 0", name="cooldown_nonnegative"),
        # Evaluation reads the active alerts of one kind per company (bench/README.md: with
        # 100k price alerts among 400k, 0.52-0.82 s through company_id alone, 0.32-0.37 s here).
        Index("ix_alerts_kind_active", "kind", "company_id", postgresql_where=text("active")),
        Index("ix_alerts_company_id", "company_id"),
        Index("ix_alerts_user_id", "user_id"),
        Index("ix_alerts_deal_id", "deal_id"),
        # The alerts evaluation has not seen yet (new, or changed): few, found without a scan.
        Index("ix_alerts_unevaluated", "kind", "company_id", postgresql_where=text("evaluated_at IS NULL")),
        # Expired alerts still active: each evaluation retires them (a scan of every alert without).
        Index("ix_alerts_expires_at", "expires_at", postgresql_where=text("active AND expires_at IS NOT NULL")),
        # A price evaluation reads only the armed alerts whose level a new quote reached: a
        # range scan per company and type (deallens/db/alert_eval.py, _PRICE_CANDIDATES), and
        # every other active one through the second index (disarmed, windowed: few).
        Index(
            "ix_alerts_armed_levels", "kind", "company_id", "alert_type", "level",
            postgresql_where=text("active AND armed AND window_minutes IS NULL"),
        ),
        Index(
            "ix_alerts_price_unpruned", "kind", "company_id",
            postgresql_where=text(
                "active AND (NOT armed OR window_minutes IS NOT NULL OR "
                "alert_type NOT IN ('price_above', 'price_below', 'percent_change'))"
            ),
        ),
        # Disarming/re-arming updates stay on their page (HOT) instead of rewriting every index.
        {"postgresql_with": {"fillfactor": 85}},
    )

    id: Mapped[int] = _id()
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # Null for "any company on my watchlist" deal alerts.
    company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    deal_id: Mapped[int | None] = mapped_column(ForeignKey("deals.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    # The validated definition (type and its parameters), see deallens/domain/alert_rules.py.
    params: Mapped[dict[str, Any]]
    # What evaluation compares, parsed from params once (generated): the type, the threshold,
    # percent or multiple, and a percent_change window.
    alert_type: Mapped[str | None] = mapped_column(Text, Computed("params->>'type'"))
    level: Mapped[Decimal | None] = mapped_column(
        Numeric, Computed("CAST(coalesce(params->>'threshold', params->>'percent', params->>'multiple') AS numeric)")
    )
    window_minutes: Mapped[int | None] = mapped_column(Integer, Computed("CAST(params->>'window_minutes' AS integer)"))
    name: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    # Edge triggering: fires on the false -> true transition, re-arms when false again.
    armed: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    cooldown_seconds: Mapped[int] = mapped_column(Integer, server_default=text("3600"))
    one_shot: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    snoozed_until: Mapped[dt.datetime | None]
    expires_at: Mapped[dt.datetime | None]
    last_triggered_at: Mapped[dt.datetime | None]
    # When evaluation first saw this definition; NULL: new or changed (the trigger
    # alerts_definition_changed of migration 0005 resets it), so the next evaluation looks at
    # the latest quote only, not at quotes its previous definition already saw.
    evaluated_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = _created_at()
    updated_at: Mapped[dt.datetime] = _updated_at()


class AlertHistory(Base):
    __tablename__ = "alert_history"
    __table_args__ = (
        # One firing per alert and data point, however many evaluations overlap.
        UniqueConstraint("alert_id", "dedup_key"),
        # (triggered_at, id): a burst (one evaluation's firings) is paged through by id.
        Index("ix_alert_history_triggered_at_id", "triggered_at", "id"),
        Index("ix_alert_history_alert_id_triggered_at", "alert_id", "triggered_at"),
    )

    id: Mapped[int] = _id()
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"))
    triggered_at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=func.now())
    value: Mapped[Decimal | None]
    threshold: Mapped[Decimal | None]
    data_at: Mapped[dt.datetime | None]
    message: Mapped[str] = mapped_column(Text)
    dedup_key: Mapped[str] = mapped_column(String(128))


DELIVERY_CHANNELS = ("email", "push", "sms")
DELIVERY_STATUSES = ("pending", "sent", "failed", "skipped")


class NotificationDelivery(Base):
    """The exactly-once ledger: checked before and written after each send."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        UniqueConstraint("alert_history_id", "channel"),
        CheckConstraint(f"channel IN {DELIVERY_CHANNELS!r}", name="channel_known"),
        CheckConstraint(f"status IN {DELIVERY_STATUSES!r}", name="status_known"),
        CheckConstraint("attempts >= 0", name="attempts_nonnegative"),
        CheckConstraint("auto_retries >= 0", name="auto_retries_nonnegative"),
        Index("ix_notification_deliveries_status", "status", postgresql_where=text("status = 'failed'")),
    )

    id: Mapped[int] = _id()
    alert_history_id: Mapped[int] = mapped_column(ForeignKey("alert_history.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(8), server_default=text("'pending'"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # Times a parked (failed) row was re-queued by RetryParkedDeliveries (deallens/domain/redelivery.py).
    auto_retries: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    message_id: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[dt.datetime | None]
    # Who is sending it right now, and until when that claim holds (deallens/db/claims.py).
    claimed_by: Mapped[str | None] = mapped_column(Text)
    claimed_until: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = _created_at()
    updated_at: Mapped[dt.datetime] = _updated_at()


DIGEST_KINDS = ("daily", "weekly")


class DigestDelivery(Base):
    """The digest ledger: one row per (user, kind, period), so a retried batch never sends twice."""

    __tablename__ = "digest_deliveries"
    __table_args__ = (
        UniqueConstraint("user_id", "kind", "period"),
        CheckConstraint(f"kind IN {DIGEST_KINDS!r}", name="kind_known"),
        CheckConstraint(f"status IN {DELIVERY_STATUSES!r}", name="status_known"),
        CheckConstraint("attempts >= 0", name="attempts_nonnegative"),
        CheckConstraint("auto_retries >= 0", name="auto_retries_nonnegative"),
        Index("ix_digest_deliveries_status", "status", postgresql_where=text("status = 'failed'")),
        # The fan-out pages through one period's pending rows by user id.
        Index("ix_digest_deliveries_pending", "kind", "period", "user_id", postgresql_where=text("status = 'pending'")),
    )

    id: Mapped[int] = _id()
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))
    period: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(8), server_default=text("'pending'"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # Times a parked (failed) row was re-queued by RetryParkedDeliveries (deallens/domain/redelivery.py).
    auto_retries: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    message_id: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[dt.datetime | None]
    # Who is sending it right now, and until when that claim holds (deallens/db/claims.py).
    claimed_by: Mapped[str | None] = mapped_column(Text)
    claimed_until: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = _created_at()
    updated_at: Mapped[dt.datetime] = _updated_at()
    # The window the digest covers, fixed at planning from the user's zone and hour then.
    window_start: Mapped[dt.datetime | None]
    window_end: Mapped[dt.datetime | None]


class ApiUsage(Base):
    """Calls made per provider and day: the daily-quota ledger, reserved atomically in SQL."""

    __tablename__ = "api_usage"
    __table_args__ = (
        CheckConstraint("calls >= 0", name="calls_nonnegative"),
        CheckConstraint("refused >= 0", name="refused_nonnegative"),
    )

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    calls: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # Calls the provider refused for rate reasons despite the budget (should stay 0).
    refused: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    updated_at: Mapped[dt.datetime] = _updated_at()


class ApiRateSlot(Base):
    """The next moment a provider may be called, shared by every worker.

    Each call takes the slot and pushes it one interval (60 s / calls per minute) on, in one
    statement: calls are spaced exactly across workers, which the task queue's rate limiter
    (approximate: it allows bursts and spends tokens when it matches a task) cannot promise.
    """

    __tablename__ = "api_rate_slots"

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    next_call_at: Mapped[dt.datetime]


class LLMUsage(Base):
    """Tokens and cost per LLM call: the ledger the hard cost budget is checked against."""

    __tablename__ = "llm_usage"
    __table_args__ = (
        CheckConstraint(
            "prompt_tokens >= 0 AND completion_tokens >= 0 AND cached_tokens >= 0", name="tokens_nonnegative"
        ),
        CheckConstraint("cost_usd >= 0", name="cost_nonnegative"),
        CheckConstraint(
            "status IN ('reserved', 'ok', 'refused', 'invalid', 'failed', 'error')", name="status_known"
        ),
        CheckConstraint("reserved_usd >= 0", name="reserved_nonnegative"),
        Index("ix_llm_usage_created_at", "created_at"),
        Index("ix_llm_usage_day", "day"),
    )

    id: Mapped[int] = _id()
    model: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(32))
    insight_id: Mapped[int | None] = mapped_column(ForeignKey("ai_insights.id", ondelete="SET NULL"))
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    cached_tokens: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    cost_usd: Mapped[Decimal] = mapped_column(Numeric(12, 6))
    created_at: Mapped[dt.datetime] = _created_at()
    # The gateway's ledger (migration 0008, deallens/db/llm_budget.py): the UTC day whose budget
    # the call counts against, who asked, how it ended, and the estimate it reserved.
    day: Mapped[dt.date] = mapped_column(Date, server_default=text("(now() AT TIME ZONE 'utc')::date"))
    workflow: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), server_default=text("'ok'"))
    attempt: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    reserved_usd: Mapped[Decimal] = mapped_column(Numeric(12, 6), server_default=text("0"))
    response_id: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    settled_at: Mapped[dt.datetime | None]


class LLMBudget(Base):
    """LLM_DAILY_BUDGET_USD's ledger: per UTC day, settled costs plus reservations in flight.

    Reserved atomically in SQL before each call (deallens/db/llm_budget.py), so concurrent
    workers can never commit more than the day's budget.
    """

    __tablename__ = "llm_budget"
    __table_args__ = (
        CheckConstraint("committed_usd >= 0", name="committed_nonnegative"),
        CheckConstraint("calls >= 0", name="calls_nonnegative"),
    )

    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    committed_usd: Mapped[Decimal] = mapped_column(Numeric(12, 6), server_default=text("0"))
    calls: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    updated_at: Mapped[dt.datetime] = _updated_at()


DEAL_CHECK_OUTCOMES = ("no_deal", "created", "changed", "unchanged", "stale", "closed")


class DealArticleCheck(Base):
    """The marker of an article examined for deals (migration 0009): examined once, whatever
    the range or run it comes up in again."""

    __tablename__ = "deal_article_checks"
    __table_args__ = (
        CheckConstraint(f"outcome IN {DEAL_CHECK_OUTCOMES!r}", name="outcome_known"),
        Index("ix_deal_article_checks_deal_id", "deal_id"),
        Index("ix_deal_article_checks_checked_by", "checked_by"),
    )

    news_id: Mapped[int] = mapped_column(ForeignKey("news_articles.id", ondelete="CASCADE"), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(16))
    deal_id: Mapped[int | None] = mapped_column(ForeignKey("deals.id", ondelete="SET NULL"))
    # "patterns", or the LLM model that read it.
    extractor: Mapped[str] = mapped_column(String(64))
    # The run that examined it (workflow, run and activity id: the same on every retry), so
    # that a retry reports what its lost first attempt did and another run reports nothing.
    checked_by: Mapped[str] = mapped_column(Text)
    checked_at: Mapped[dt.datetime] = _created_at()


class AlertCursor(Base):
    """The newest quote each kind's evaluation has seen per company: the next evaluation
    replays every quote after it, in order (deallens/db/alert_eval.py). Per company rather
    than per alert, so an evaluation writes one row per company with new quotes, not one
    per alert."""

    __tablename__ = "alert_cursors"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"), primary_key=True)
    through_at: Mapped[dt.datetime]


class BarSyncReceipt(Base):
    """What one bar-sync activity has stored over its attempts, committed with the bars: a
    retry whose predecessor committed but never reported reports the predecessor's work
    (deallens/db/ohlc.py, `receipt`)."""

    __tablename__ = "bar_sync_receipts"
    __table_args__ = (CheckConstraint("inserted >= 0 AND updated >= 0", name="counts_nonnegative"),)

    # workflow id / run id / activity id: the same for every attempt of one activity.
    activity_key: Mapped[str] = mapped_column(Text, primary_key=True)
    inserted: Mapped[int] = mapped_column(Integer)
    updated: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = _created_at()


class InsightCacheStats(Base):
    """Per UTC day and insight kind: insights reused from the cache, analysed anew, and rule-based
    fallbacks (migration 0011): the cache hit rate of `python starter.py costs`."""

    __tablename__ = "insight_cache_stats"

    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    kind: Mapped[str] = mapped_column(String(24), primary_key=True)
    hits: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    misses: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    fallbacks: Mapped[int] = mapped_column(Integer, server_default=text("0"))
class LLMBatchJob(Base):
    """One job for the OpenAI Batch API (migration 0012, deallens/db/llm_batches.py).

    `marker` is written into the batch's metadata and the input file's name, so that a
    submission whose commit was lost is found again instead of submitted twice; `batch_id`
    is unique for the same reason.
    """

    __tablename__ = "llm_batch_jobs"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'reserved', 'submitted', 'rejected', 'collected')", name="status_known"),
        CheckConstraint("requests >= 1 AND done >= 0 AND failed >= 0 AND succeeded >= 0", name="counts_valid"),
        CheckConstraint("reserved_usd >= 0", name="reserved_nonnegative"),
    )

    id: Mapped[int] = _id()
    purpose: Mapped[str] = mapped_column(String(32))
    workflow: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(64))
    marker: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), server_default=text("'pending'"))
    provider_status: Mapped[str | None] = mapped_column(String(16))
    batch_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    input_file_id: Mapped[str | None] = mapped_column(String(64))
    output_file_id: Mapped[str | None] = mapped_column(String(64))
    error_file_id: Mapped[str | None] = mapped_column(String(64))
    requests: Mapped[int] = mapped_column(Integer)
    done: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    failed: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    succeeded: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    reserved_usd: Mapped[Decimal] = mapped_column(Numeric(12, 6), server_default=text("0"))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = _created_at()
    submitted_at: Mapped[dt.datetime | None]
    collected_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = _updated_at()


class LLMBatchItem(Base):
    """One request of a batch job and, once collected, its validated answer or its error."""

    __tablename__ = "llm_batch_items"
    __table_args__ = (
        UniqueConstraint("job_id", "custom_id"),
        CheckConstraint("status IN ('pending', 'ok', 'refused', 'failed', 'error')", name="status_known"),
        CheckConstraint("max_output_tokens >= 1", name="max_output_tokens_positive"),
    )

    id: Mapped[int] = _id()
    job_id: Mapped[int] = mapped_column(ForeignKey("llm_batch_jobs.id", ondelete="CASCADE"))
    custom_id: Mapped[str] = mapped_column(String(64))
    # "module:QualName" of the pydantic model the answer must validate against.
    schema_ref: Mapped[str] = mapped_column(String(200))
    messages: Mapped[list[Any]]
    max_output_tokens: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), server_default=text("'pending'"))
    output: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    # The item's llm_usage row: reserved at submission, settled at collection.
    usage_id: Mapped[int | None] = mapped_column(ForeignKey("llm_usage.id", ondelete="SET NULL"))
