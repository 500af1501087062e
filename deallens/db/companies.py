"""Which companies a sync works on: tracked companies, priorities, quarantine, fundamentals."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from deallens.contracts import SymbolOutcome, SymbolResult
from deallens.domain.budget import fundamentals_allowance

# After this many "unknown symbol" answers in a row a company is skipped by syncs.
QUARANTINE_AFTER_FAILURES = 3

_RESOLVE = text(
    """
    SELECT id, symbol, quarantined_at, quarantine_reason
    FROM companies WHERE symbol = ANY(CAST(:symbols AS text[]))
    """
)

_RECORD_UNKNOWN = text(
    """
    UPDATE companies
    SET consecutive_failures = consecutive_failures + 1,
        quarantined_at = CASE
            WHEN consecutive_failures + 1 >= :threshold AND quarantined_at IS NULL THEN now()
            ELSE quarantined_at END,
        quarantine_reason = CASE
            WHEN consecutive_failures + 1 >= :threshold THEN :reason ELSE quarantine_reason END
    WHERE symbol = ANY(CAST(:symbols AS text[]))
    RETURNING symbol, quarantined_at IS NOT NULL AS quarantined
    """
)

_STALEST_FUNDAMENTALS = text(
    """
    SELECT c.id, c.symbol
    FROM companies c
    WHERE c.quarantined_at IS NULL
      AND (c.fundamentals_updated_at IS NULL OR c.fundamentals_updated_at < :fresh_after)
    ORDER BY c.fundamentals_updated_at ASC NULLS FIRST,
             (SELECT count(*) FROM watchlist w WHERE w.company_id = c.id) DESC, c.symbol
    LIMIT :limit
    """
)

_UPDATE_FUNDAMENTALS = text(
    """
    WITH old AS (SELECT fundamentals FROM companies WHERE id = :id)
    UPDATE companies c SET
        name = CASE WHEN c.name = c.symbol THEN coalesce(CAST(:name AS text), c.name) ELSE c.name END,
        sector = coalesce(CAST(:sector AS text), c.sector),
        industry = coalesce(CAST(:industry AS text), c.industry),
        exchange = coalesce(CAST(:exchange AS text), c.exchange),
        currency = coalesce(CAST(:currency AS text), c.currency),
        fundamentals = CAST(:fundamentals AS jsonb),
        fundamentals_updated_at = now(),
        consecutive_failures = 0
    FROM old
    WHERE c.id = :id
    RETURNING c.name, old.fundamentals IS DISTINCT FROM CAST(:fundamentals AS jsonb) AS changed
    """
)


def quarantined_result(symbol: str, since: dt.datetime, reason: str | None) -> SymbolResult:
    return SymbolResult(
        symbol=symbol,
        outcome=SymbolOutcome.QUARANTINED,
        detail=f"quarantined since {since:%Y-%m-%d}: {reason}",
    )


async def resolve(
    engine: AsyncEngine, symbols: list[str]
) -> tuple[list[tuple[int, str]], list[SymbolResult]]:
    """Given symbols → ([(company_id, symbol)] to work on, skipped ones with their outcome)."""
    async with engine.connect() as conn:
        rows = {row.symbol: row for row in await conn.execute(_RESOLVE, {"symbols": symbols})}
    found: list[tuple[int, str]] = []
    skipped: list[SymbolResult] = []
    for symbol in symbols:
        row = rows.get(symbol)
        if row is None:
            skipped.append(
                SymbolResult(
                    symbol=symbol,
                    outcome=SymbolOutcome.UNTRACKED,
                    detail="not a tracked company: SyncCompanyPrices with this symbol starts tracking it",
                )
            )
        elif row.quarantined_at is not None:
            skipped.append(quarantined_result(symbol, row.quarantined_at, row.quarantine_reason))
        else:
            found.append((row.id, symbol))
    return found, skipped


async def record_unknown_symbols(engine: AsyncEngine, symbols: list[str], reason: str) -> list[str]:
    """Count an "unknown symbol" answer against each company; returns those now quarantined."""
    if not symbols:
        return []
    async with engine.begin() as conn:
        rows = (
            await conn.execute(
                _RECORD_UNKNOWN,
                {"symbols": symbols, "reason": reason, "threshold": QUARANTINE_AFTER_FAILURES},
            )
        ).all()
    return [row.symbol for row in rows if row.quarantined]


async def stalest_fundamentals(engine: AsyncEngine, limit: int, fresh_after: dt.datetime) -> list[tuple[int, str]]:
    """Companies whose fundamentals are oldest (never fetched first), not refreshed since `fresh_after`."""
    async with engine.connect() as conn:
        rows = await conn.execute(_STALEST_FUNDAMENTALS, {"limit": limit, "fresh_after": fresh_after})
        return [(row.id, row.symbol) for row in rows]


async def update_fundamentals(engine: AsyncEngine, company_id: int, fields: dict[str, Any], raw_json: str) -> tuple[str, bool]:
    """Store an OVERVIEW; a placeholder name (the symbol) is replaced by the real one. → (name, changed)."""
    params = {
        "id": company_id,
        "name": fields.get("name"),
        "sector": fields.get("sector"),
        "industry": fields.get("industry"),
        "exchange": fields.get("exchange"),
        "currency": fields.get("currency"),
        "fundamentals": raw_json,
    }
    async with engine.begin() as conn:
        row = (await conn.execute(_UPDATE_FUNDAMENTALS, params)).one()
    return row.name, bool(row.changed)


# The newest FINAL bar decides how far behind a company is: a provisional bar (today's,
# from a quote) says nothing about the history before it.
_BAR_CANDIDATES = text(
    """
    SELECT c.id, c.symbol, f.date AS latest,
           EXISTS (SELECT 1 FROM ohlc_data p WHERE p.company_id = c.id AND p.provisional AND p.date <= :through)
               AS provisional
    FROM companies c
    LEFT JOIN LATERAL (
        SELECT o.date FROM ohlc_data o WHERE o.company_id = c.id AND NOT o.provisional ORDER BY o.date DESC LIMIT 1
    ) f ON true
    WHERE c.quarantined_at IS NULL AND (CAST(:symbols AS text[]) IS NULL OR c.symbol = ANY(CAST(:symbols AS text[])))
    ORDER BY c.symbol
    """
)

_TRACKED = text("SELECT count(*) FROM companies WHERE quarantined_at IS NULL")


# Fundamentals fetched within this long count as fresh for the daily refresh.
FUNDAMENTALS_FRESH_FOR = dt.timedelta(hours=20)


async def plan_fundamentals(
    engine: AsyncEngine, symbols: list[str], *, calls_left: int, max_symbols: int, now: dt.datetime
) -> tuple[list[tuple[int, str]], list[SymbolResult]]:
    """Given symbols are all refreshed (unknown ones skipped); without symbols the stalest
    companies, as many as `fundamentals_allowance` leaves (deallens/domain/budget.py)."""
    if symbols:
        return await resolve(engine, symbols)
    limit = fundamentals_allowance(calls_left=calls_left, tracked=await tracked_count(engine), max_symbols=max_symbols)
    return await stalest_fundamentals(engine, limit, now - FUNDAMENTALS_FRESH_FOR), []


async def tracked_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(_TRACKED)).scalar_one()

DEFERRED_FOR_BUDGET = "deferred: the day's AlphaVantage budget is used up"

# A compact series holds the latest 100 sessions (about 145 calendar days): a gap longer
# than that needs the full history to catch up without holes.
COMPACT_REACH = dt.timedelta(days=140)


async def daily_bar_jobs(
    engine: AsyncEngine, symbols: list[str], *, through: dt.date, full: bool, calls_left: int
) -> tuple[list[tuple[int, str, bool]], list[SymbolResult]]:
    """([(company_id, symbol, full)] that need bars through `through`, the rest with outcomes).

    Given symbols are always fetched; without symbols only companies that are behind are.
    No more jobs than the day's calls left: the rest are deferred to the next run.
    """
    skipped: list[SymbolResult] = []
    if symbols:
        found, skipped = await resolve(engine, symbols)
        wanted: list[str] | None = [symbol for _, symbol in found]
    else:
        wanted = None
    async with engine.connect() as conn:
        rows = (await conn.execute(_BAR_CANDIDATES, {"symbols": wanted, "through": through})).all()
    jobs: list[tuple[int, str, bool]] = []
    for row in rows:
        behind = row.latest is None or row.latest < through or row.provisional
        if not (behind or symbols or full):
            skipped.append(
                SymbolResult(symbol=row.symbol, outcome=SymbolOutcome.UNCHANGED, detail=f"up to date through {row.latest}")
            )
            continue
        if len(jobs) >= calls_left:
            skipped.append(SymbolResult(symbol=row.symbol, outcome=SymbolOutcome.DEFERRED, detail=DEFERRED_FOR_BUDGET))
            continue
        needs_full = full or row.latest is None or through - row.latest > COMPACT_REACH
        jobs.append((row.id, row.symbol, needs_full))
    return jobs, skipped
