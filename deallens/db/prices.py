"""Where a price arrives in the database: planning a price sync and storing quotes
(each quote also updates the day's provisional bar in ohlc_data).

Every write is one set-based statement per batch (arrays unnested server-side), never a row
at a time, and idempotent: a retried activity stores each quote once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from deallens.contracts import FetchedQuote, SymbolOutcome, SymbolResult
from deallens.db import ohlc, usage
from deallens.db.companies import quarantined_result
from deallens.domain.budget import ledger_day, price_sync_allowance, symbols_per_price_call
from deallens.providers.alphavantage import BULK_QUOTES_MAX_SYMBOLS, PROVIDER

# Tracked companies by priority: most watchlists first, then the stalest quote.
_BY_PRIORITY = text(
    """
    SELECT c.symbol
    FROM companies c
    LEFT JOIN LATERAL (SELECT count(*) AS n FROM watchlist w WHERE w.company_id = c.id) w ON true
    LEFT JOIN LATERAL (
        SELECT q.quoted_at FROM price_quotes q WHERE q.company_id = c.id ORDER BY q.quoted_at DESC LIMIT 1
    ) q ON true
    WHERE c.quarantined_at IS NULL
    ORDER BY w.n DESC, q.quoted_at ASC NULLS FIRST, c.symbol
    """
)

_QUARANTINED = text(
    """
    SELECT symbol, quarantine_reason, quarantined_at
    FROM companies
    WHERE symbol = ANY(CAST(:symbols AS text[])) AND quarantined_at IS NOT NULL
    """
)

# One statement: track symbols not seen before, skip quotes identical to the latest stored
# one, insert the rest. ON CONFLICT makes a retry of the same batch a no-op.
_STORE_QUOTES = text(
    """
    WITH incoming AS (
        SELECT * FROM unnest(
            CAST(:symbols AS text[]), CAST(:prices AS numeric[]), CAST(:opens AS numeric[]),
            CAST(:highs AS numeric[]), CAST(:lows AS numeric[]), CAST(:previous_closes AS numeric[]),
            CAST(:changes AS numeric[]), CAST(:change_percents AS numeric[]), CAST(:volumes AS bigint[]),
            CAST(:trading_days AS date[]), CAST(:quoted_ats AS timestamptz[]), CAST(:sources AS text[])
        ) AS i(symbol, price, open, high, low, previous_close, change, change_percent, volume,
               latest_trading_day, quoted_at, source)
    ),
    tracked AS (
        -- Symbols not seen before. DO UPDATE (not DO NOTHING) so that when another batch
        -- tracks the same new symbol concurrently, this one waits and gets its id back.
        INSERT INTO companies (symbol, name)
        SELECT i.symbol, i.symbol FROM incoming i
        WHERE NOT EXISTS (SELECT 1 FROM companies c WHERE c.symbol = i.symbol)
        ON CONFLICT (symbol) DO UPDATE SET symbol = EXCLUDED.symbol
        RETURNING id, symbol
    ),
    resolved AS (
        SELECT coalesce(c.id, t.id) AS company_id, i.*
        FROM incoming i
        LEFT JOIN companies c ON c.symbol = i.symbol
        LEFT JOIN tracked t ON t.symbol = i.symbol
    ),
    latest AS (
        SELECT DISTINCT ON (q.company_id) q.company_id, q.price, q.volume, q.latest_trading_day
        FROM price_quotes q
        WHERE q.company_id IN (SELECT company_id FROM resolved)
        ORDER BY q.company_id, q.quoted_at DESC
    ),
    inserted AS (
        INSERT INTO price_quotes (company_id, price, open, high, low, previous_close, change,
                                  change_percent, volume, latest_trading_day, quoted_at, source)
        SELECT r.company_id, r.price, r.open, r.high, r.low, r.previous_close, r.change,
               r.change_percent, r.volume, r.latest_trading_day, r.quoted_at, r.source
        FROM resolved r
        LEFT JOIN latest l ON l.company_id = r.company_id
        WHERE l.company_id IS NULL
           OR (l.price, l.volume, l.latest_trading_day) IS DISTINCT FROM (r.price, r.volume, r.latest_trading_day)
        ON CONFLICT (company_id, quoted_at) DO NOTHING
        RETURNING company_id
    ),
    reset AS (
        UPDATE companies SET consecutive_failures = 0
        WHERE id IN (SELECT company_id FROM resolved) AND consecutive_failures > 0
    )
    -- "Stored" also when an earlier attempt of this very batch stored it (same quoted_at):
    -- a retried activity must report (and signal) what the first attempt wrote.
    SELECT r.symbol, r.company_id,
           EXISTS (SELECT 1 FROM inserted x WHERE x.company_id = r.company_id)
           OR EXISTS (SELECT 1 FROM price_quotes q WHERE q.company_id = r.company_id AND q.quoted_at = r.quoted_at)
           AS stored
    FROM resolved r
    """
)


@dataclass(frozen=True, slots=True)
class PriceBudget:
    """What the daily quota allows a run without explicit symbols (see deallens/domain/budget.py)."""

    calls_per_day: int
    used_today: int
    at: dt.datetime
    opens_at: dt.datetime
    closes_at: dt.datetime
    max_symbols: int


async def plan_price_sync(
    engine: AsyncEngine, symbols: list[str], budget: PriceBudget
) -> tuple[list[str], list[SymbolResult], list[SymbolResult]]:
    """(to fetch, quarantined, deferred). Given symbols are all fetched unless quarantined;
    otherwise tracked companies by priority, as many as the paced budget allows now."""
    async with engine.connect() as conn:
        if symbols:
            rows = (await conn.execute(_QUARANTINED, {"symbols": symbols})).all()
            skipped = {row.symbol: quarantined_result(row.symbol, row.quarantined_at, row.quarantine_reason) for row in rows}
            return [s for s in symbols if s not in skipped], list(skipped.values()), []
        ranked = list((await conn.execute(_BY_PRIORITY)).scalars())
    allowance = price_sync_allowance(
        calls_per_day=budget.calls_per_day,
        used_today=budget.used_today,
        # The post-close OHLC sync needs about one call per tracked company.
        held_back=len(ranked),
        opens_at=budget.opens_at,
        closes_at=budget.closes_at,
        at=budget.at,
        max_symbols=budget.max_symbols,
    )
    # The reason in full once, then short: with thousands of companies the result must stay small.
    reason = (
        f"over this run's budget: {allowance} call(s) now; {budget.used_today} of "
        f"{budget.calls_per_day} daily calls used, the rest paced over the session"
    )
    deferred = [
        SymbolResult(symbol=s, outcome=SymbolOutcome.DEFERRED, detail=reason if i == 0 else "over this run's budget")
        for i, s in enumerate(ranked[allowance:])
    ]
    return ranked[:allowance], [], deferred


@dataclass(frozen=True, slots=True)
class PriceQuota:
    """The settings a price sync's budget comes from (ALPHAVANTAGE_CALLS_PER_DAY,
    ALPHAVANTAGE_PREMIUM, PRICE_SYNC_MAX_SYMBOLS)."""

    calls_per_day: int
    premium: bool
    max_calls: int  # calls (bulk calls with a premium key) one run may spend


async def plan_price_sync_at(
    engine: AsyncEngine,
    symbols: list[str],
    quota: PriceQuota,
    *,
    at: dt.datetime,
    opens_at: dt.datetime,
    closes_at: dt.datetime,
) -> tuple[list[str], list[SymbolResult], list[SymbolResult], int]:
    """`plan_price_sync` with the budget read from the ledger at `at`; also returns how many
    symbols one call fetches."""
    used, _ = await usage.usage(engine, PROVIDER, ledger_day(at))
    per_call = symbols_per_price_call(premium=quota.premium, bulk_max=BULK_QUOTES_MAX_SYMBOLS)
    budget = PriceBudget(
        calls_per_day=quota.calls_per_day, used_today=used, at=at, opens_at=opens_at, closes_at=closes_at,
        max_symbols=quota.max_calls * per_call,
    )
    fetch, quarantined, deferred = await plan_price_sync(engine, symbols, budget)
    return fetch, quarantined, deferred, per_call


async def store_quotes(engine: AsyncEngine, quotes: list[FetchedQuote]) -> tuple[list[str], list[str]]:
    """Store a batch of quotes in one statement; returns (updated, unchanged) symbols."""
    if not quotes:
        return [], []
    params = {
        "symbols": [q.symbol for q in quotes],
        "prices": [q.price for q in quotes],
        "opens": [q.open for q in quotes],
        "highs": [q.high for q in quotes],
        "lows": [q.low for q in quotes],
        "previous_closes": [q.previous_close for q in quotes],
        "changes": [q.change for q in quotes],
        "change_percents": [q.change_percent for q in quotes],
        "volumes": [q.volume for q in quotes],
        "trading_days": [q.latest_trading_day for q in quotes],
        "quoted_ats": [q.quoted_at for q in quotes],
        "sources": [q.source for q in quotes],
    }
    async with engine.begin() as conn:
        rows = (await conn.execute(_STORE_QUOTES, params)).all()
    # The quote is also the day's bar so far: store it as provisional (the post-close daily
    # sync overwrites it with the final bar; a final bar is never overwritten by it).
    company_ids = {row.symbol: row.company_id for row in rows}
    await ohlc.upsert_bars(
        engine,
        [
            ohlc.BarRow(
                company_id=company_ids[q.symbol], date=q.latest_trading_day, open=q.open, high=q.high, low=q.low,
                close=q.price, volume=q.volume, provisional=True, source=q.source,
            )
            for q in quotes
            if q.latest_trading_day is not None
            and q.symbol in company_ids
            and q.low <= min(q.open, q.price)
            and max(q.open, q.price) <= q.high
        ],
    )
    updated = [row.symbol for row in rows if row.stored]
    unchanged = [row.symbol for row in rows if not row.stored]
    return updated, unchanged
