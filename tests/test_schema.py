"""The migration builds the contract's schema, the models agree with it, and the constraints
that keep market data clean hold in the database itself."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from deallens.db.engine import create_engine
from deallens.db.migrate import DatabaseBehindError, ensure_up_to_date, head_revision, upgrade_to_head
from deallens.db.models import Base
from tests.conftest import ROOT, fresh_database

CONTRACT_TABLES = {
    "companies", "ohlc_data", "price_quotes", "news_articles", "news_company", "ai_insights", "alerts",
    "alert_history", "users", "watchlist", "deals", "deal_events", "api_usage", "llm_usage",
    "notification_deliveries",
}

# Columns that outside tools read (DESIGN.md, "Tables").
CONTRACT_COLUMNS = {
    "companies": {"id", "symbol", "name"},
    "price_quotes": {"company_id", "price", "volume", "change_percent", "quoted_at", "source"},
    "ohlc_data": {"company_id", "date", "open", "high", "low", "close", "volume", "source"},
    "news_articles": {"id", "url", "canonical_url", "title", "published_at", "sentiment_score", "sentiment_source"},
    "ai_insights": {"id", "kind", "subject_id", "content", "model", "created_at"},
    "alerts": {"id", "user_id", "company_id", "kind", "params", "active"},
    "alert_history": {"id", "alert_id", "triggered_at", "value", "message"},
    "notification_deliveries": {"alert_history_id", "channel", "status", "sent_at"},
    "users": {"id", "email"},
    "watchlist": {"user_id", "company_id"},
}


async def test_migration_builds_the_contract_schema(engine: AsyncEngine) -> None:
    def _inspect(conn: Connection) -> dict[str, set[str]]:
        inspector = inspect(conn)
        return {t: {c["name"] for c in inspector.get_columns(t)} for t in inspector.get_table_names()}

    async with engine.connect() as conn:
        columns = await conn.run_sync(_inspect)
    assert CONTRACT_TABLES <= set(columns)
    for table, expected in CONTRACT_COLUMNS.items():
        assert expected <= columns[table], table


async def test_models_and_migrations_agree(engine: AsyncEngine) -> None:
    """A model change without a migration (or the reverse) fails here."""

    def _diff(conn: Connection) -> list[object]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    async with engine.connect() as conn:
        assert await conn.run_sync(_diff) == []


async def test_behind_database_is_refused_then_migrated(server_url: str) -> None:
    async with fresh_database(server_url, migrate=False) as url:
        engine = create_engine(url, pool_size=1)
        try:
            with pytest.raises(DatabaseBehindError, match="run `python starter.py migrate` first"):
                await ensure_up_to_date(engine)
            assert await upgrade_to_head(engine) == head_revision()
            await ensure_up_to_date(engine)
            # Migrating again is a no-op.
            assert await upgrade_to_head(engine) == head_revision()
        finally:
            await engine.dispose()


async def test_worker_refuses_to_start_on_a_database_behind_migrations(server_url: str) -> None:
    async with fresh_database(server_url, migrate=False) as url:
        result = subprocess.run(
            [sys.executable, "worker.py"],
            cwd=ROOT,
            env={
                "PATH": "/usr/bin:/bin",
                "HOME": "/tmp",
                "DATABASE_URL": url,
                "ALPHAVANTAGE_BASE_URL": "http://127.0.0.1:9",
                "NEWSAPI_BASE_URL": "http://127.0.0.1:9",
                "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert "the database is at migration none (empty) but this code needs" in result.stderr
    assert "Traceback" not in result.stderr


async def _company(conn: object, symbol: str = "AAPL") -> int:
    return (
        await conn.execute(  # type: ignore[attr-defined]
            text("INSERT INTO companies (symbol, name) VALUES (:s, :n) RETURNING id"), {"s": symbol, "n": symbol}
        )
    ).scalar_one()


_BAR = text(
    "INSERT INTO ohlc_data (company_id, date, open, high, low, close, volume, source) "
    "VALUES (:c, :d, :o, :h, :l, :cl, :v, 'test')"
)


@pytest.mark.parametrize(
    ("bar", "constraint"),
    [
        # high < low breaks the range checks too; PostgreSQL names whichever it checks first.
        ({"o": 10, "h": 9, "l": 11, "cl": 10, "v": 1}, "high_ge_low|open_in_range|close_in_range"),
        ({"o": 12, "h": 11, "l": 9, "cl": 10, "v": 1}, "open_in_range"),
        ({"o": 10, "h": 11, "l": 9, "cl": 8, "v": 1}, "close_in_range"),
        ({"o": 0, "h": 1, "l": -1, "cl": 0, "v": 1}, "low_nonnegative"),
        ({"o": 10, "h": 11, "l": 9, "cl": 10, "v": -5}, "volume_nonnegative"),
    ],
)
async def test_impossible_bars_are_rejected(db: AsyncEngine, bar: dict[str, int], constraint: str) -> None:
    async with db.connect() as conn:
        company = await _company(conn)
        with pytest.raises(IntegrityError, match=constraint):
            await conn.execute(_BAR, {"c": company, "d": dt.date(2026, 11, 27), **bar})


async def test_one_bar_per_company_and_day(db: AsyncEngine) -> None:
    async with db.connect() as conn:
        company = await _company(conn)
        row = {"c": company, "d": dt.date(2026, 11, 27), "o": 10, "h": 11, "l": 9, "cl": 10, "v": 1}
        await conn.execute(_BAR, row)
        with pytest.raises(IntegrityError, match="uq_ohlc_data_company_id_date"):
            await conn.execute(_BAR, row)


async def test_contract_uniques_and_cascades(db: AsyncEngine) -> None:
    async with db.begin() as conn:
        company = await _company(conn)
        user = (await conn.execute(text("INSERT INTO users (email) VALUES ('a@b.c') RETURNING id"))).scalar_one()
        alert = (
            await conn.execute(
                text("INSERT INTO alerts (user_id, company_id, kind, params) VALUES (:u, :c, 'price', '{}') RETURNING id"),
                {"u": user, "c": company},
            )
        ).scalar_one()
        history = (
            await conn.execute(
                text("INSERT INTO alert_history (alert_id, message, dedup_key) VALUES (:a, 'm', 'k') RETURNING id"),
                {"a": alert},
            )
        ).scalar_one()
        await conn.execute(
            text("INSERT INTO notification_deliveries (alert_history_id, channel) VALUES (:h, 'email')"), {"h": history}
        )
    async with db.connect() as conn:
        with pytest.raises(IntegrityError, match="uq_notification_deliveries_alert_history_id_channel"):
            await conn.execute(
                text("INSERT INTO notification_deliveries (alert_history_id, channel) VALUES (:h, 'email')"),
                {"h": history},
            )
    async with db.connect() as conn:
        with pytest.raises(IntegrityError, match="uq_alert_history_alert_id_dedup_key"):
            await conn.execute(
                text("INSERT INTO alert_history (alert_id, message, dedup_key) VALUES (:a, 'again', 'k')"), {"a": alert}
            )
    async with db.connect() as conn:
        with pytest.raises(IntegrityError, match="uq_news_articles_canonical_url"):
            for _ in range(2):
                await conn.execute(
                    text(
                        "INSERT INTO news_articles (url, canonical_url, title, published_at, source) "
                        "VALUES ('https://x/a?utm=1', 'https://x/a', 't', now(), 'test')"
                    )
                )
    # Deleting the user takes their alerts, firings and deliveries; the company stays.
    async with db.begin() as conn:
        await conn.execute(text("DELETE FROM users WHERE id = :u"), {"u": user})
        remaining = (
            await conn.execute(
                text("SELECT (SELECT count(*) FROM alerts) + (SELECT count(*) FROM alert_history) "
                     "+ (SELECT count(*) FROM notification_deliveries)")
            )
        ).scalar_one()
        assert remaining == 0
        assert (await conn.execute(text("SELECT count(*) FROM companies"))).scalar_one() == 1


async def test_deal_survives_deleting_a_company_it_names(db: AsyncEngine) -> None:
    async with db.begin() as conn:
        company = await _company(conn, "PFE")
        deal = (
            await conn.execute(
                text(
                    "INSERT INTO deals (title, target_company_id, target_name, value_usd, source) "
                    "VALUES ('PFE acquired', :c, 'Pfizer Inc', :v, 'test') RETURNING id"
                ),
                {"c": company, "v": Decimal("43000000000")},
            )
        ).scalar_one()
        await conn.execute(text("DELETE FROM companies WHERE id = :c"), {"c": company})
        row = (await conn.execute(text("SELECT target_company_id, target_name FROM deals WHERE id = :d"), {"d": deal})).one()
    assert row.target_company_id is None and row.target_name == "Pfizer Inc"


async def test_symbols_are_upper_case(db: AsyncEngine) -> None:
    async with db.connect() as conn:
        with pytest.raises(IntegrityError, match="symbol_upper"):
            await _company(conn, "aapl")


async def test_alerts_carry_on_across_the_cursor_migration(server_url: str) -> None:
    """Existing alerts come out of the migration that adds quote cursors as evaluated, with
    each company's newest quote read: the first evaluation after it neither marks every
    alert nor replays old quotes."""
    from alembic import command
    from alembic.script import ScriptDirectory

    from deallens.db.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    [cursors] = [r for r in script.walk_revisions() if r.path.endswith("_alert_sequences.py")]
    before = cursors.down_revision

    def _upgrade(connection: Connection, revision: str) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with fresh_database(server_url, migrate=False) as url:
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(_upgrade, before)
                for statement in (
                    "INSERT INTO companies (id, symbol, name) VALUES (1, 'AAPL', 'Apple'), (2, 'MSFT', 'Microsoft')",
                    "INSERT INTO users (id, email) VALUES (1, 'ada@x.io')",
                    "INSERT INTO alerts (user_id, company_id, kind, params) "
                    "VALUES (1, 1, 'price', '{\"type\": \"price_above\", \"threshold\": \"200\"}')",
                    "INSERT INTO price_quotes (company_id, price, quoted_at, source) VALUES "
                    "(1, 190, '2026-11-27 15:00Z', 'test'), (1, 210, '2026-11-27 15:01Z', 'test')",
                ):
                    await conn.execute(text(statement))
            await upgrade_to_head(engine)
            async with engine.connect() as conn:
                alert = (await conn.execute(text("SELECT evaluated_at, alert_type, level FROM alerts"))).one()
                cursors_rows = (await conn.execute(text(
                    "SELECT kind, company_id, through_at FROM alert_cursors ORDER BY kind"
                ))).all()
        finally:
            await engine.dispose()
    assert alert.evaluated_at is not None and (alert.alert_type, alert.level) == ("price_above", Decimal(200))
    at = dt.datetime(2026, 11, 27, 15, 1, tzinfo=dt.UTC)
    assert [tuple(r) for r in cursors_rows] == [("price", 1, at), ("volume", 1, at)]
