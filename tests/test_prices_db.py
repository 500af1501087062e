"""Storing quotes: one statement per batch, idempotent, unchanged quotes skipped, planning
by priority, quarantine after repeated unknown-symbol answers."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from deallens.contracts import FetchedQuote, SymbolOutcome
from deallens.db import prices
from deallens.db.demo import seed_demo

NOW = dt.datetime(2026, 11, 27, 15, 0, tzinfo=dt.UTC)


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
    # A retried activity sends the same batch again: nothing new is stored.
    assert await prices.store_quotes(db, batch) == ([], ["AAPL", "MSFT"])
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
    fetch, quarantined, deferred = await prices.plan_price_sync(db, [], limit=3)
    # AAPL is on two demo watchlists: first. Then never-quoted companies by symbol.
    assert fetch[0] == "AAPL" and len(fetch) == 3
    assert quarantined == [] and len(deferred) == 22 - 3
    assert all(d.outcome is SymbolOutcome.DEFERRED for d in deferred)
    # Within the same watchlist count, the stalest quote goes first (never quoted: first of all).
    await prices.store_quotes(db, [quote("AAPL", "230"), quote("AMZN", "186")])
    fetch, _, _ = await prices.plan_price_sync(db, [], limit=30)
    assert fetch[0] == "AAPL"
    one_watchlist = fetch[1:18]  # the 17 companies on exactly one demo watchlist
    assert one_watchlist[-1] == "AMZN" and "MSFT" in one_watchlist[:-1]


async def test_repeated_unknown_symbol_quarantines(db: AsyncEngine) -> None:
    await seed_demo(db)
    for attempt in range(1, prices.QUARANTINE_AFTER_FAILURES + 1):
        quarantined = await prices.record_unknown_symbols(db, ["KO"], "unknown")
        assert quarantined == (["KO"] if attempt == prices.QUARANTINE_AFTER_FAILURES else [])
    fetch, skipped, _ = await prices.plan_price_sync(db, ["KO", "AAPL"], limit=5)
    assert fetch == ["AAPL"]
    assert [s.symbol for s in skipped] == ["KO"] and skipped[0].outcome is SymbolOutcome.QUARANTINED
    fetch, _, deferred = await prices.plan_price_sync(db, [], limit=100)
    assert "KO" not in fetch and not deferred


async def test_a_good_quote_resets_the_failure_count(db: AsyncEngine) -> None:
    await seed_demo(db)
    await prices.record_unknown_symbols(db, ["KO"], "unknown")
    await prices.store_quotes(db, [quote("KO", "70")])
    async with db.connect() as conn:
        failures = (await conn.execute(text("SELECT consecutive_failures FROM companies WHERE symbol = 'KO'"))).scalar_one()
    assert failures == 0
