"""Storing quotes: one statement per batch, idempotent, unchanged quotes skipped, planning
by priority, quarantine after repeated unknown-symbol answers."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from deallens.contracts import FetchedQuote, SymbolOutcome
from deallens.db import companies, prices
from deallens.db.demo import seed_demo

NOW = dt.datetime(2026, 11, 27, 15, 0, tzinfo=dt.UTC)


def budget(max_symbols: int, *, calls_per_day: int = 10_000, used_today: int = 0) -> prices.PriceBudget:
    """At the close: the whole paced share is available."""
    return prices.PriceBudget(
        calls_per_day=calls_per_day, used_today=used_today, at=NOW, opens_at=NOW - dt.timedelta(hours=6),
        closes_at=NOW, max_symbols=max_symbols,
    )


def quote(symbol: str, price: str, *, at: dt.datetime = NOW, volume: int = 1000) -> FetchedQuote:
    p = Decimal(price)
    return FetchedQuote(
        symbol=symbol, price=p, open=p, high=p + 1, low=p - 1, previous_close=p, change=Decimal(0),
        change_percent=Decimal(0), volume=volume, latest_trading_day=at.date(), quoted_at=at, source="test",
    )


async def _count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT count(*) FROM price_quotes"))).scalar_one()


async def test_store_is_idempotent_and_skips_unchanged(db: AsyncEngine) -> None:
    await seed_demo(db)
    batch = [quote("AAPL", "230.10"), quote("MSFT", "415.00")]
    assert await prices.store_quotes(db, batch) == (["AAPL", "MSFT"], [])
    # A retried activity sends the same batch again: nothing new is stored, and the quotes
    # still count as stored by this batch (so the retry signals the monitors too).
    assert await prices.store_quotes(db, batch) == (["AAPL", "MSFT"], [])
    # A later identical quote is "unchanged"; a moved price is stored.
    later = NOW + dt.timedelta(minutes=1)
    updated, unchanged = await prices.store_quotes(db, [quote("AAPL", "230.10", at=later), quote("MSFT", "416.00", at=later)])
    assert (updated, unchanged) == (["MSFT"], ["AAPL"])
    assert await _count(db) == 3


async def test_a_symbol_the_provider_knows_becomes_tracked(db: AsyncEngine) -> None:
    assert await prices.store_quotes(db, [quote("BA", "180.00")]) == (["BA"], [])
    async with db.connect() as conn:
        row = (await conn.execute(text("SELECT symbol, name FROM companies"))).one()
    assert tuple(row) == ("BA", "BA")


async def test_plan_by_watchlists_then_staleness(db: AsyncEngine) -> None:
    await seed_demo(db)
    fetch, quarantined, deferred = await prices.plan_price_sync(db, [], budget(3))
    # AAPL is on two demo watchlists: first. Then never-quoted companies by symbol.
    assert fetch[0] == "AAPL" and len(fetch) == 3
    assert quarantined == [] and len(deferred) == 22 - 3
    assert all(d.outcome is SymbolOutcome.DEFERRED for d in deferred)
    # Within the same watchlist count, the stalest quote goes first (never quoted: first of all).
    await prices.store_quotes(db, [quote("AAPL", "230"), quote("AMZN", "186")])
    fetch, _, _ = await prices.plan_price_sync(db, [], budget(30))
    assert fetch[0] == "AAPL"
    one_watchlist = fetch[1:18]  # the 17 companies on exactly one demo watchlist
    assert one_watchlist[-1] == "AMZN" and "MSFT" in one_watchlist[:-1]


async def test_daily_quota_bounds_the_run(db: AsyncEngine) -> None:
    await seed_demo(db)
    # Free tier: 25 a day, 22 held back for the post-close OHLC sync, 1 already used.
    fetch, _, deferred = await prices.plan_price_sync(db, [], budget(5, calls_per_day=25, used_today=1))
    assert fetch == ["AAPL", "AMZN"]
    assert deferred[0].detail is not None and "1 of 25 daily calls used" in deferred[0].detail


async def test_repeated_unknown_symbol_quarantines(db: AsyncEngine) -> None:
    await seed_demo(db)
    for attempt in range(1, companies.QUARANTINE_AFTER_FAILURES + 1):
        quarantined = await companies.record_unknown_symbols(db, ["KO"], "unknown")
        assert quarantined == (["KO"] if attempt == companies.QUARANTINE_AFTER_FAILURES else [])
    fetch, skipped, _ = await prices.plan_price_sync(db, ["KO", "AAPL"], budget(5))
    assert fetch == ["AAPL"]
    assert [s.symbol for s in skipped] == ["KO"] and skipped[0].outcome is SymbolOutcome.QUARANTINED
    fetch, _, deferred = await prices.plan_price_sync(db, [], budget(100))
    assert "KO" not in fetch and not deferred


async def test_a_good_quote_resets_the_failure_count(db: AsyncEngine) -> None:
    await seed_demo(db)
    await companies.record_unknown_symbols(db, ["KO"], "unknown")
    await prices.store_quotes(db, [quote("KO", "70")])
    async with db.connect() as conn:
        failures = (await conn.execute(text("SELECT consecutive_failures FROM companies WHERE symbol = 'KO'"))).scalar_one()
    assert failures == 0


async def test_a_quote_is_the_days_provisional_bar_until_the_final_one(db: AsyncEngine) -> None:
    from deallens.db import ohlc

    await seed_demo(db)
    await prices.store_quotes(db, [quote("AAPL", "230.10")])
    later = NOW + dt.timedelta(minutes=5)
    await prices.store_quotes(db, [quote("AAPL", "231.00", at=later, volume=2000)])

    async def bar() -> tuple[object, ...]:
        async with db.connect() as conn:
            return tuple((await conn.execute(text(
                "SELECT close, volume, provisional FROM ohlc_data o JOIN companies c ON c.id = o.company_id "
                "WHERE c.symbol = 'AAPL'"
            ))).one())

    assert await bar() == (Decimal("231.00"), 2000, True)
    async with db.connect() as conn:
        company_id = (await conn.execute(text("SELECT id FROM companies WHERE symbol = 'AAPL'"))).scalar_one()
    final = ohlc.BarRow(
        company_id=company_id, date=NOW.date(), open=Decimal("230"), high=Decimal("232"), low=Decimal("229"),
        close=Decimal("231.50"), volume=5000, provisional=False, source="test",
    )
    await ohlc.upsert_bars(db, [final])
    # A quote after the final bar (e.g. a forced after-hours sync) does not overwrite it.
    await prices.store_quotes(db, [quote("AAPL", "229.00", at=later + dt.timedelta(hours=2))])
    assert await bar() == (Decimal("231.50"), 5000, False)


async def test_a_batch_tracking_a_symbol_another_transaction_is_tracking(db: AsyncEngine) -> None:
    """Another batch inserts the same new company and commits while this one runs: this
    one waits for it and uses its row (it must not fail on a NULL company_id)."""
    import asyncio

    holder = await db.connect()
    transaction = await holder.begin()
    await holder.execute(text("INSERT INTO companies (symbol, name) VALUES ('INTC', 'INTC')"))
    store = asyncio.ensure_future(prices.store_quotes(db, [quote("INTC", "20.00")]))
    await asyncio.sleep(0.5)  # the store is now waiting on the uncommitted company row
    assert not store.done()
    await transaction.commit()
    await holder.close()
    assert await store == (["INTC"], [])
    async with db.connect() as conn:
        counts = (await conn.execute(text(
            "SELECT (SELECT count(*) FROM companies WHERE symbol = 'INTC'), (SELECT count(*) FROM price_quotes)"
        ))).one()
    assert tuple(counts) == (1, 1)
