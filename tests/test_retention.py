"""Retention: what goes, what stays (the latest quote of each company), and dry runs."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from deallens.db import retention

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
RULES = retention.rules(price_quotes_days=30, ohlc_days=0, news_days=365, alert_history_days=365, usage_days=400)


async def _seed(db: AsyncEngine) -> None:
    async with db.begin() as conn:
        await conn.execute(text("INSERT INTO companies (symbol, name) VALUES ('AAPL', 'Apple'), ('KO', 'Coca-Cola')"))
        # AAPL: three old quotes and a fresh one. KO: only old quotes; its latest must stay.
        await conn.execute(text(
            """
            INSERT INTO price_quotes (company_id, price, quoted_at, source)
            SELECT c.id, 100, q.at, 'test' FROM companies c
            JOIN (VALUES ('AAPL', CAST(:old1 AS timestamptz)), ('AAPL', :old2), ('AAPL', :old3), ('AAPL', :fresh),
                         ('KO', :old1), ('KO', :old2)) AS q(symbol, at) ON q.symbol = c.symbol
            """
        ), {
            "old1": NOW - dt.timedelta(days=90), "old2": NOW - dt.timedelta(days=60),
            "old3": NOW - dt.timedelta(days=31), "fresh": NOW - dt.timedelta(days=1),
        })
        await conn.execute(text(
            "INSERT INTO ohlc_data (company_id, date, open, high, low, close, volume, source) "
            "SELECT id, DATE '2001-01-02', 1, 1, 1, 1, 1, 'test' FROM companies"
        ))
        await conn.execute(text(
            "INSERT INTO news_articles (url, canonical_url, title, published_at, source) VALUES "
            "('u1', 'u1', 'old', :old, 'test'), ('u2', 'u2', 'new', :new, 'test')"
        ), {"old": NOW - dt.timedelta(days=400), "new": NOW - dt.timedelta(days=2)})
        await conn.execute(text(
            "INSERT INTO api_usage (provider, day, calls) VALUES ('alphavantage', :old, 3), ('alphavantage', :new, 4)"
        ), {"old": (NOW - dt.timedelta(days=500)).date(), "new": NOW.date()})
        await conn.execute(text(
            "INSERT INTO bar_sync_receipts (activity_key, inserted, updated, created_at) VALUES "
            "('wf/run/old', 5, 0, :old), ('wf/run/new', 5, 0, :new)"
        ), {"old": NOW - dt.timedelta(days=500), "new": NOW - dt.timedelta(hours=1)})
        # The digest ledger: an old sent row goes; an old pending one (still to send) and a new one stay.
        user = (await conn.execute(text("INSERT INTO users (email) VALUES ('r@example.com') RETURNING id"))).scalar_one()
        await conn.execute(text(
            "INSERT INTO digest_deliveries (user_id, kind, period, status) VALUES "
            "(:u, 'daily', :old, 'sent'), (:u, 'weekly', :old, 'pending'), (:u, 'daily', :new, 'sent')"
        ), {"u": user, "old": (NOW - dt.timedelta(days=400)).date(), "new": NOW.date()})


async def _counts(db: AsyncEngine) -> dict[str, int]:
    async with db.connect() as conn:
        return {
            table: (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
            for table in ("price_quotes", "ohlc_data", "news_articles", "api_usage", "digest_deliveries", "bar_sync_receipts")
        }


async def test_dry_run_counts_and_changes_nothing(db: AsyncEngine) -> None:
    await _seed(db)
    before = await _counts(db)
    removed, cutoffs = await retention.apply(db, RULES, at=NOW, dry_run=True)
    assert removed == {
        "price_quotes": 4, "news_articles": 1, "alert_history": 0, "digest_deliveries": 1, "api_usage": 1,
        "bar_sync_receipts": 1, "llm_usage": 0,
    }
    assert cutoffs["price_quotes"] == NOW - dt.timedelta(days=30)
    assert "ohlc_data" not in removed  # 0 days = keep forever
    assert await _counts(db) == before


async def test_cleanup_removes_old_rows_but_keeps_each_latest_quote(db: AsyncEngine) -> None:
    await _seed(db)
    seen: list[tuple[str, int]] = []
    removed, _ = await retention.apply(db, RULES, at=NOW, dry_run=False, progress=lambda t, n: seen.append((t, n)))
    assert removed["price_quotes"] == 4 and removed["news_articles"] == 1 and removed["api_usage"] == 1
    assert ("price_quotes", 4) in seen
    assert await _counts(db) == {
        "price_quotes": 2, "ohlc_data": 2, "news_articles": 1, "api_usage": 1, "digest_deliveries": 2,
        "bar_sync_receipts": 1,
    }
    async with db.connect() as conn:
        kept = (await conn.execute(text(
            "SELECT c.symbol, q.quoted_at FROM price_quotes q JOIN companies c ON c.id = q.company_id ORDER BY 1"
        ))).all()
    assert [(s, NOW - at) for s, at in kept] == [("AAPL", dt.timedelta(days=1)), ("KO", dt.timedelta(days=60))]
    # Running again finds nothing more.
    again, _ = await retention.apply(db, RULES, at=NOW, dry_run=False)
    assert set(again.values()) == {0}


async def test_large_deletes_go_in_batches(db: AsyncEngine) -> None:
    async with db.begin() as conn:
        await conn.execute(text("INSERT INTO companies (symbol, name) VALUES ('AAPL', 'Apple')"))
        await conn.execute(text(
            "INSERT INTO price_quotes (company_id, price, quoted_at, source) "
            "SELECT 1, 100, CAST(:start AS timestamptz) + make_interval(mins => n), 'test' FROM generate_series(1, 12001) n"
        ), {"start": NOW - dt.timedelta(days=200)})
    seen: list[int] = []
    removed, _ = await retention.apply(
        db, RULES[:1], at=NOW, dry_run=False, progress=lambda table, n: seen.append(n)
    )
    assert removed == {"price_quotes": 12000}
    assert seen == [retention.BATCH, 2 * retention.BATCH, 12000]


async def test_news_retention_removes_emptied_stories_and_re_leads_the_rest(db: AsyncEngine) -> None:
    """A story whose articles all went goes with them; a story that keeps some is led by the
    first one left, with its count and span from what remains (same transaction)."""
    old, newer, new = NOW - dt.timedelta(days=400), NOW - dt.timedelta(days=399), NOW - dt.timedelta(days=2)
    async with db.begin() as conn:
        await conn.execute(text(
            "INSERT INTO news_stories (id, first_published_at, last_published_at, articles) VALUES "
            "(1, :old, :newer, 2), (2, :old, :new, 2), (3, :new, :new, 1)"
        ), {"old": old, "newer": newer, "new": new})
        ids = (await conn.execute(text(
            "INSERT INTO news_articles (url, canonical_url, title, published_at, source, story_id) VALUES "
            "('a1', 'a1', 'gone 1', :old, 'test', 1), ('a2', 'a2', 'gone 2', :newer, 'test', 1), "
            "('b1', 'b1', 'gone', :old, 'test', 2), ('b2', 'b2', 'kept', :new, 'test', 2), "
            "('c1', 'c1', 'kept', :new, 'test', 3) RETURNING id"
        ), {"old": old, "newer": newer, "new": new})).scalars().all()
        await conn.execute(text(
            "UPDATE news_stories s SET lead_article_id = (SELECT min(id) FROM news_articles a WHERE a.story_id = s.id)"
        ))
    rules = retention.rules(price_quotes_days=0, ohlc_days=0, news_days=365, alert_history_days=0, usage_days=0)
    removed, _ = await retention.apply(db, rules, at=NOW, dry_run=False)
    assert removed == {"news_articles": 3}
    async with db.connect() as conn:
        stories = (await conn.execute(text(
            "SELECT id, articles, lead_article_id, first_published_at FROM news_stories ORDER BY id"
        ))).all()
    assert [tuple(s) for s in stories] == [(2, 1, ids[3], new), (3, 1, ids[4], new)]
