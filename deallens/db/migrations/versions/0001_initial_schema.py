"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-28 11:18:06.646946
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('ai_insights',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('subject_id', sa.BigInteger(), nullable=True),
    sa.Column('content', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('recommendation', sa.String(length=16), nullable=True),
    sa.Column('model', sa.String(length=64), nullable=False),
    sa.Column('input_hash', sa.String(length=64), nullable=True),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("kind IN ('company', 'deal', 'market_summary')", name=op.f('ck_ai_insights_kind_known')),
    sa.CheckConstraint("recommendation IS NULL OR recommendation IN ('strong_buy', 'buy', 'hold', 'sell', 'strong_sell')", name=op.f('ck_ai_insights_recommendation_known')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ai_insights'))
    )
    op.create_index('ix_ai_insights_input_hash', 'ai_insights', ['input_hash'], unique=False)
    op.create_index('ix_ai_insights_kind_subject_created', 'ai_insights', ['kind', 'subject_id', 'created_at'], unique=False)
    op.create_table('api_usage',
    sa.Column('provider', sa.String(length=32), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('calls', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('refused', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('calls >= 0', name=op.f('ck_api_usage_calls_nonnegative')),
    sa.CheckConstraint('refused >= 0', name=op.f('ck_api_usage_refused_nonnegative')),
    sa.PrimaryKeyConstraint('provider', 'day', name=op.f('pk_api_usage'))
    )
    op.create_table('companies',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('symbol', sa.String(length=16), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('sector', sa.Text(), nullable=True),
    sa.Column('industry', sa.Text(), nullable=True),
    sa.Column('exchange', sa.String(length=16), nullable=True),
    sa.Column('currency', sa.String(length=8), nullable=True),
    sa.Column('fundamentals', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('fundamentals_updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('consecutive_failures', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('quarantined_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('quarantine_reason', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("symbol <> '' AND symbol = upper(symbol)", name=op.f('ck_companies_symbol_upper')),
    sa.CheckConstraint('consecutive_failures >= 0', name=op.f('ck_companies_failures_nonnegative')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_companies')),
    sa.UniqueConstraint('symbol', name=op.f('uq_companies_symbol'))
    )
    op.create_table('news_articles',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('canonical_url', sa.Text(), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('content', sa.Text(), nullable=True),
    sa.Column('author', sa.Text(), nullable=True),
    sa.Column('publisher', sa.Text(), nullable=True),
    sa.Column('image_url', sa.Text(), nullable=True),
    sa.Column('category', sa.String(length=16), server_default=sa.text("'market'"), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sentiment_score', sa.Numeric(precision=5, scale=4), nullable=True),
    sa.Column('sentiment_source', sa.String(length=32), nullable=True),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("category IN ('market', 'company', 'deal')", name=op.f('ck_news_articles_category_known')),
    sa.CheckConstraint('sentiment_score IS NULL OR sentiment_score BETWEEN -1 AND 1', name=op.f('ck_news_articles_sentiment_range')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_news_articles')),
    sa.UniqueConstraint('canonical_url', name=op.f('uq_news_articles_canonical_url'))
    )
    op.create_index('ix_news_articles_published_at', 'news_articles', ['published_at'], unique=False)
    op.create_table('users',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('timezone', sa.String(length=64), server_default=sa.text("'UTC'"), nullable=False),
    sa.Column('email_enabled', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('push_webhook_url', sa.Text(), nullable=True),
    sa.Column('sms_number', sa.String(length=32), nullable=True),
    sa.Column('digest_opt_in', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('weekly_opt_in', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('quiet_hours_start', sa.Time(), nullable=True),
    sa.Column('quiet_hours_end', sa.Time(), nullable=True),
    sa.Column('daily_alert_cap', sa.Integer(), server_default=sa.text('50'), nullable=False),
    sa.Column('unsubscribed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("position('@' in email) > 1", name=op.f('ck_users_email_has_at')),
    sa.CheckConstraint('daily_alert_cap >= 0', name=op.f('ck_users_daily_alert_cap_nonnegative')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('email', name=op.f('uq_users_email'))
    )
    op.create_table('deals',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('acquirer_company_id', sa.BigInteger(), nullable=True),
    sa.Column('target_company_id', sa.BigInteger(), nullable=True),
    sa.Column('acquirer_name', sa.Text(), nullable=True),
    sa.Column('target_name', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=24), server_default=sa.text("'announced'"), nullable=False),
    sa.Column('value_usd', sa.Numeric(precision=20, scale=2), nullable=True),
    sa.Column('announced_on', sa.Date(), nullable=True),
    sa.Column('expected_close_on', sa.Date(), nullable=True),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("status IN ('rumored', 'announced', 'pending_regulatory', 'approved', 'completed', 'terminated')", name=op.f('ck_deals_status_known')),
    sa.CheckConstraint('value_usd IS NULL OR value_usd >= 0', name=op.f('ck_deals_value_nonnegative')),
    sa.ForeignKeyConstraint(['acquirer_company_id'], ['companies.id'], name=op.f('fk_deals_acquirer_company_id_companies'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['target_company_id'], ['companies.id'], name=op.f('fk_deals_target_company_id_companies'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deals'))
    )
    op.create_index('ix_deals_acquirer_company_id', 'deals', ['acquirer_company_id'], unique=False)
    op.create_index('ix_deals_target_company_id', 'deals', ['target_company_id'], unique=False)
    op.create_table('llm_usage',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('model', sa.String(length=64), nullable=False),
    sa.Column('purpose', sa.String(length=32), nullable=False),
    sa.Column('insight_id', sa.BigInteger(), nullable=True),
    sa.Column('prompt_tokens', sa.Integer(), nullable=False),
    sa.Column('completion_tokens', sa.Integer(), nullable=False),
    sa.Column('cached_tokens', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('cost_usd', sa.Numeric(precision=12, scale=6), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('cost_usd >= 0', name=op.f('ck_llm_usage_cost_nonnegative')),
    sa.CheckConstraint('prompt_tokens >= 0 AND completion_tokens >= 0 AND cached_tokens >= 0', name=op.f('ck_llm_usage_tokens_nonnegative')),
    sa.ForeignKeyConstraint(['insight_id'], ['ai_insights.id'], name=op.f('fk_llm_usage_insight_id_ai_insights'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_llm_usage'))
    )
    op.create_index('ix_llm_usage_created_at', 'llm_usage', ['created_at'], unique=False)
    op.create_table('news_company',
    sa.Column('news_id', sa.BigInteger(), nullable=False),
    sa.Column('company_id', sa.BigInteger(), nullable=False),
    sa.Column('relevance', sa.Numeric(precision=5, scale=4), nullable=True),
    sa.CheckConstraint('relevance IS NULL OR relevance BETWEEN 0 AND 1', name=op.f('ck_news_company_relevance_range')),
    sa.ForeignKeyConstraint(['company_id'], ['companies.id'], name=op.f('fk_news_company_company_id_companies'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['news_id'], ['news_articles.id'], name=op.f('fk_news_company_news_id_news_articles'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('news_id', 'company_id', name=op.f('pk_news_company'))
    )
    op.create_index('ix_news_company_company_id', 'news_company', ['company_id'], unique=False)
    op.create_table('ohlc_data',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('company_id', sa.BigInteger(), nullable=False),
    sa.Column('date', sa.Date(), nullable=False),
    sa.Column('open', sa.Numeric(precision=18, scale=6), nullable=False),
    sa.Column('high', sa.Numeric(precision=18, scale=6), nullable=False),
    sa.Column('low', sa.Numeric(precision=18, scale=6), nullable=False),
    sa.Column('close', sa.Numeric(precision=18, scale=6), nullable=False),
    sa.Column('volume', sa.BigInteger(), nullable=False),
    sa.Column('provisional', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('close BETWEEN low AND high', name=op.f('ck_ohlc_data_close_in_range')),
    sa.CheckConstraint('high >= low', name=op.f('ck_ohlc_data_high_ge_low')),
    sa.CheckConstraint('low >= 0', name=op.f('ck_ohlc_data_low_nonnegative')),
    sa.CheckConstraint('open BETWEEN low AND high', name=op.f('ck_ohlc_data_open_in_range')),
    sa.CheckConstraint('volume >= 0', name=op.f('ck_ohlc_data_volume_nonnegative')),
    sa.ForeignKeyConstraint(['company_id'], ['companies.id'], name=op.f('fk_ohlc_data_company_id_companies'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ohlc_data')),
    sa.UniqueConstraint('company_id', 'date', name=op.f('uq_ohlc_data_company_id_date'))
    )
    op.create_index('ix_ohlc_data_date', 'ohlc_data', ['date'], unique=False)
    op.create_table('price_quotes',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('company_id', sa.BigInteger(), nullable=False),
    sa.Column('price', sa.Numeric(precision=18, scale=6), nullable=False),
    sa.Column('open', sa.Numeric(precision=18, scale=6), nullable=True),
    sa.Column('high', sa.Numeric(precision=18, scale=6), nullable=True),
    sa.Column('low', sa.Numeric(precision=18, scale=6), nullable=True),
    sa.Column('previous_close', sa.Numeric(precision=18, scale=6), nullable=True),
    sa.Column('change', sa.Numeric(precision=18, scale=6), nullable=True),
    sa.Column('change_percent', sa.Numeric(precision=12, scale=6), nullable=True),
    sa.Column('volume', sa.BigInteger(), nullable=True),
    sa.Column('latest_trading_day', sa.Date(), nullable=True),
    sa.Column('quoted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('high IS NULL OR low IS NULL OR high >= low', name=op.f('ck_price_quotes_high_ge_low')),
    sa.CheckConstraint('low IS NULL OR low >= 0', name=op.f('ck_price_quotes_low_nonnegative')),
    sa.CheckConstraint('previous_close IS NULL OR previous_close >= 0', name=op.f('ck_price_quotes_previous_close_nonnegative')),
    sa.CheckConstraint('price >= 0', name=op.f('ck_price_quotes_price_nonnegative')),
    sa.CheckConstraint('volume IS NULL OR volume >= 0', name=op.f('ck_price_quotes_volume_nonnegative')),
    sa.ForeignKeyConstraint(['company_id'], ['companies.id'], name=op.f('fk_price_quotes_company_id_companies'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_price_quotes')),
    sa.UniqueConstraint('company_id', 'quoted_at', name=op.f('uq_price_quotes_company_id_quoted_at'))
    )
    op.create_index('ix_price_quotes_quoted_at', 'price_quotes', ['quoted_at'], unique=False)
    op.create_table('watchlist',
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('company_id', sa.BigInteger(), nullable=False),
    sa.Column('added_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['company_id'], ['companies.id'], name=op.f('fk_watchlist_company_id_companies'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_watchlist_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'company_id', name=op.f('pk_watchlist'))
    )
    op.create_index('ix_watchlist_company_id', 'watchlist', ['company_id'], unique=False)
    op.create_table('alerts',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('company_id', sa.BigInteger(), nullable=True),
    sa.Column('deal_id', sa.BigInteger(), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('params', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('active', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('armed', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('cooldown_seconds', sa.Integer(), server_default=sa.text('3600'), nullable=False),
    sa.Column('one_shot', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('snoozed_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_triggered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("kind IN ('price', 'volume', 'news', 'deal')", name=op.f('ck_alerts_kind_known')),
    sa.CheckConstraint('cooldown_seconds >= 0', name=op.f('ck_alerts_cooldown_nonnegative')),
    sa.ForeignKeyConstraint(['company_id'], ['companies.id'], name=op.f('fk_alerts_company_id_companies'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['deal_id'], ['deals.id'], name=op.f('fk_alerts_deal_id_deals'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_alerts_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts'))
    )
    op.create_index('ix_alerts_company_id', 'alerts', ['company_id'], unique=False)
    op.create_index('ix_alerts_deal_id', 'alerts', ['deal_id'], unique=False)
    op.create_index('ix_alerts_kind_active', 'alerts', ['kind'], unique=False, postgresql_where=sa.text('active'))
    op.create_index('ix_alerts_user_id', 'alerts', ['user_id'], unique=False)
    op.create_table('deal_events',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('deal_id', sa.BigInteger(), nullable=False),
    sa.Column('event_type', sa.String(length=24), nullable=False),
    sa.Column('old_status', sa.String(length=24), nullable=True),
    sa.Column('new_status', sa.String(length=24), nullable=True),
    sa.Column('news_id', sa.BigInteger(), nullable=True),
    sa.Column('details', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("event_type IN ('created', 'status_change', 'value_change', 'news')", name=op.f('ck_deal_events_event_type_known')),
    sa.ForeignKeyConstraint(['deal_id'], ['deals.id'], name=op.f('fk_deal_events_deal_id_deals'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['news_id'], ['news_articles.id'], name=op.f('fk_deal_events_news_id_news_articles'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deal_events'))
    )
    op.create_index('ix_deal_events_deal_id_occurred_at', 'deal_events', ['deal_id', 'occurred_at'], unique=False)
    op.create_table('alert_history',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('alert_id', sa.BigInteger(), nullable=False),
    sa.Column('triggered_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('value', sa.Numeric(precision=18, scale=6), nullable=True),
    sa.Column('threshold', sa.Numeric(precision=18, scale=6), nullable=True),
    sa.Column('data_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('dedup_key', sa.String(length=128), nullable=False),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'], name=op.f('fk_alert_history_alert_id_alerts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_history')),
    sa.UniqueConstraint('alert_id', 'dedup_key', name=op.f('uq_alert_history_alert_id_dedup_key'))
    )
    op.create_index('ix_alert_history_triggered_at', 'alert_history', ['triggered_at'], unique=False)
    op.create_table('notification_deliveries',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('alert_history_id', sa.BigInteger(), nullable=False),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('status', sa.String(length=8), server_default=sa.text("'pending'"), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('message_id', sa.String(length=255), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("channel IN ('email', 'push', 'sms')", name=op.f('ck_notification_deliveries_channel_known')),
    sa.CheckConstraint("status IN ('pending', 'sent', 'failed', 'skipped')", name=op.f('ck_notification_deliveries_status_known')),
    sa.CheckConstraint('attempts >= 0', name=op.f('ck_notification_deliveries_attempts_nonnegative')),
    sa.ForeignKeyConstraint(['alert_history_id'], ['alert_history.id'], name=op.f('fk_notification_deliveries_alert_history_id_alert_history'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_deliveries')),
    sa.UniqueConstraint('alert_history_id', 'channel', name=op.f('uq_notification_deliveries_alert_history_id_channel'))
    )
    op.create_index('ix_notification_deliveries_status', 'notification_deliveries', ['status'], unique=False, postgresql_where=sa.text("status = 'failed'"))


def downgrade() -> None:
    op.drop_index('ix_notification_deliveries_status', table_name='notification_deliveries', postgresql_where=sa.text("status = 'failed'"))
    op.drop_table('notification_deliveries')
    op.drop_index('ix_alert_history_triggered_at', table_name='alert_history')
    op.drop_table('alert_history')
    op.drop_index('ix_deal_events_deal_id_occurred_at', table_name='deal_events')
    op.drop_table('deal_events')
    op.drop_index('ix_alerts_user_id', table_name='alerts')
    op.drop_index('ix_alerts_kind_active', table_name='alerts', postgresql_where=sa.text('active'))
    op.drop_index('ix_alerts_deal_id', table_name='alerts')
    op.drop_index('ix_alerts_company_id', table_name='alerts')
    op.drop_table('alerts')
    op.drop_index('ix_watchlist_company_id', table_name='watchlist')
    op.drop_table('watchlist')
    op.drop_index('ix_price_quotes_quoted_at', table_name='price_quotes')
    op.drop_table('price_quotes')
    op.drop_index('ix_ohlc_data_date', table_name='ohlc_data')
    op.drop_table('ohlc_data')
    op.drop_index('ix_news_company_company_id', table_name='news_company')
    op.drop_table('news_company')
    op.drop_index('ix_llm_usage_created_at', table_name='llm_usage')
    op.drop_table('llm_usage')
    op.drop_index('ix_deals_target_company_id', table_name='deals')
    op.drop_index('ix_deals_acquirer_company_id', table_name='deals')
    op.drop_table('deals')
    op.drop_table('users')
    op.drop_index('ix_news_articles_published_at', table_name='news_articles')
    op.drop_table('news_articles')
    op.drop_table('companies')
    op.drop_table('api_usage')
    op.drop_index('ix_ai_insights_kind_subject_created', table_name='ai_insights')
    op.drop_index('ix_ai_insights_input_hash', table_name='ai_insights')
    op.drop_table('ai_insights')
