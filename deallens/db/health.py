"""The database half of `starter.py health`: newest rows per data type, parked and stuck
deliveries, provider calls used today. Read-only, a handful of indexed aggregates.

Stuck here is sharper than `notifications failed` (26 hours without a sender): a pending row
whose claim lapsed more than `margin` ago has lost its sender (the worker died mid-send and
no retry took the row back within the lease), so health flags it within minutes. A pending row
that was never claimed is waiting for its workflow (quiet hours hold one up to a day), so it
only counts as stuck after the ledger's own STUCK_AFTER.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from deallens.db.notifications import STUCK_AFTER
from deallens.domain.redelivery import MAX_AUTO_RETRIES


@dataclass(frozen=True, slots=True)
class Newest:
    quote_at: dt.datetime | None
    bar_date: dt.date | None
    article_at: dt.datetime | None
    insight_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class DeliveryCounts:
    parked: int  # status failed and its automatic retries used up: waiting for a person
    stuck: int  # pending, nobody sending it (see the module docstring)
    retrying: int = 0  # status failed, RetryParkedDeliveries will try it again (deallens/domain/redelivery.py)


_NEWEST = text(
    """
    SELECT (SELECT max(quoted_at) FROM price_quotes) AS quote_at,
           (SELECT max(date) FROM ohlc_data WHERE NOT provisional) AS bar_date,
           (SELECT max(created_at) FROM news_articles) AS article_at,
           (SELECT max(created_at) FROM ai_insights) AS insight_at
    """
)


def _stuck(alias: str) -> str:
    return (
        f"{alias}.status = 'pending' AND ("
        f"({alias}.claimed_until IS NOT NULL AND {alias}.claimed_until < now() - CAST(:margin AS interval)) "
        f"OR ({alias}.claimed_until IS NULL AND {alias}.updated_at < now() - CAST(:unclaimed AS interval)))"
    )


_DELIVERIES = text(
    f"""
    SELECT (SELECT count(*) FROM notification_deliveries WHERE status = 'failed' AND auto_retries >= :max_auto)
         + (SELECT count(*) FROM digest_deliveries WHERE status = 'failed' AND auto_retries >= :max_auto) AS parked,
           (SELECT count(*) FROM notification_deliveries WHERE status = 'failed' AND auto_retries < :max_auto)
         + (SELECT count(*) FROM digest_deliveries WHERE status = 'failed' AND auto_retries < :max_auto) AS retrying,
           (SELECT count(*) FROM notification_deliveries d WHERE {_stuck("d")})
         + (SELECT count(*) FROM digest_deliveries g WHERE {_stuck("g")}) AS stuck
    """
)

_CALLS_TODAY = text(
    "SELECT provider, calls FROM api_usage WHERE (provider, day) IN "
    "(SELECT * FROM unnest(CAST(:providers AS text[]), CAST(:days AS date[])))"
)


async def newest(engine: AsyncEngine) -> Newest:
    async with engine.connect() as conn:
        row = (await conn.execute(_NEWEST)).one()
    return Newest(quote_at=row.quote_at, bar_date=row.bar_date, article_at=row.article_at, insight_at=row.insight_at)


async def deliveries(engine: AsyncEngine, *, margin: dt.timedelta) -> DeliveryCounts:
    """`margin`: past the lease's end (lease plus this since the claim) a pending row is stuck."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(_DELIVERIES, {"margin": margin, "unclaimed": STUCK_AFTER, "max_auto": MAX_AUTO_RETRIES})
        ).one()
    return DeliveryCounts(parked=row.parked, stuck=row.stuck, retrying=row.retrying)


async def calls_today(engine: AsyncEngine, days: Mapping[str, dt.date]) -> dict[str, int]:
    """Provider -> calls counted on the api_usage ledger on that provider's current day in
    `days` (AlphaVantage's is New York's date, NewsAPI's the UTC date: one day for all would
    show yesterday's NewsAPI count from midnight UTC until New York's midnight)."""
    providers = list(days)
    params = {"providers": providers, "days": [days[p] for p in providers]}
    async with engine.connect() as conn:
        return {row.provider: row.calls for row in await conn.execute(_CALLS_TODAY, params)}
