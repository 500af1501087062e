"""ai_insights as a cache: look up by cache key, store once, and the reports over llm_usage.

The cache key (`input_hash`) is sha256(model, prompt version, context JSON)
(deallens/domain/insights/context.py); its unique index (migration 0011) makes a store
`INSERT ... ON CONFLICT DO NOTHING`, so a retried activity, two workers racing on the same
subject, or a batch result collected twice leave one row.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True, slots=True)
class StoredInsight:
    id: int
    kind: str
    subject_id: int | None
    recommendation: str | None
    model: str
    source: str
    input_hash: str | None
    content: dict[str, Any]


_BY_HASH = text(
    """
    SELECT id, kind, subject_id, recommendation, model, source, input_hash, content
      FROM ai_insights WHERE input_hash = ANY(CAST(:hashes AS text[]))
    """
)
_LATEST_ANY = text(
    """
    SELECT DISTINCT ON (subject_id) id, kind, subject_id, recommendation, model, source, input_hash, content
      FROM ai_insights
     WHERE kind = :kind AND coalesce(subject_id, 0) = ANY(CAST(:subjects AS bigint[]))
     ORDER BY subject_id, created_at DESC, id DESC
    """
)
_INSERT = text(
    """
    INSERT INTO ai_insights (kind, subject_id, content, recommendation, model, input_hash, source)
    VALUES (:kind, :subject_id, CAST(:content AS json), :recommendation, :model, :input_hash, :source)
    ON CONFLICT (input_hash) WHERE input_hash IS NOT NULL DO NOTHING
    RETURNING id
    """
)
_REPLACE = text(
    """
    INSERT INTO ai_insights (kind, subject_id, content, recommendation, model, input_hash, source)
    VALUES (:kind, :subject_id, CAST(:content AS json), :recommendation, :model, :input_hash, :source)
    ON CONFLICT (input_hash) WHERE input_hash IS NOT NULL DO UPDATE
       SET content = excluded.content, recommendation = excluded.recommendation, model = excluded.model,
           source = excluded.source, created_at = now()
    RETURNING id
    """
)
_ID_BY_HASH = text("SELECT id FROM ai_insights WHERE input_hash = :input_hash")
_LINK_USAGE = text("UPDATE llm_usage SET insight_id = :insight_id WHERE id = ANY(CAST(:ids AS bigint[])) AND insight_id IS NULL")
_WATCHLISTED = text(
    """
    SELECT DISTINCT w.company_id FROM watchlist w JOIN companies c ON c.id = w.company_id
     WHERE c.quarantined_at IS NULL ORDER BY w.company_id
    """
)
_EXISTING_COMPANIES = text("SELECT id FROM companies WHERE id = ANY(CAST(:ids AS bigint[]))")


def _stored(row: Any) -> StoredInsight:
    content = row.content if isinstance(row.content, dict) else json.loads(row.content)
    return StoredInsight(id=row.id, kind=row.kind, subject_id=row.subject_id, recommendation=row.recommendation,
                         model=row.model, source=row.source, input_hash=row.input_hash, content=content)


async def by_hash(conn: AsyncConnection, hashes: Sequence[str]) -> dict[str, StoredInsight]:
    rows = await conn.execute(_BY_HASH, {"hashes": list(hashes)})
    return {row.input_hash: _stored(row) for row in rows}


async def latest(conn: AsyncConnection, kind: str, subject_ids: Sequence[int | None]) -> dict[int | None, StoredInsight]:
    """The newest insight per subject (the market summary's subject is None, stored as 0 here)."""
    rows = await conn.execute(_LATEST_ANY, {"kind": kind, "subjects": [s or 0 for s in subject_ids]})
    return {row.subject_id: _stored(row) for row in rows}


async def store(
    conn: AsyncConnection,
    *,
    kind: str,
    subject_id: int | None,
    content: dict[str, Any],
    recommendation: str | None,
    model: str,
    source: str,
    input_hash: str,
    usage_ids: Sequence[int] = (),
    replace: bool = False,
) -> tuple[int, bool]:
    """(insight id, whether this call wrote it): a row with the same cache key is kept as it is,
    unless `replace` (a forced re-analysis), which overwrites it."""
    inserted = (await conn.execute(_REPLACE if replace else _INSERT, {
        "kind": kind, "subject_id": subject_id, "content": json.dumps(content, separators=(",", ":"), default=str),
        "recommendation": recommendation, "model": model, "input_hash": input_hash, "source": source,
    })).scalar_one_or_none()
    insight_id = inserted if inserted is not None else (await conn.execute(_ID_BY_HASH, {"input_hash": input_hash})).scalar_one()
    if usage_ids:
        await conn.execute(_LINK_USAGE, {"insight_id": insight_id, "ids": list(usage_ids)})
    return insight_id, inserted is not None


async def watchlisted_company_ids(conn: AsyncConnection) -> list[int]:
    return list((await conn.execute(_WATCHLISTED)).scalars())


async def existing_company_ids(conn: AsyncConnection, ids: Sequence[int]) -> set[int]:
    return set((await conn.execute(_EXISTING_COMPANIES, {"ids": list(ids)})).scalars())


# ------------------------------------------------------------------------------ costs report

_SPEND = text(
    """
    SELECT day, model, coalesce(workflow, '-') AS workflow, count(*) AS calls,
           count(*) FILTER (WHERE status = 'ok') AS ok,
           sum(prompt_tokens) AS prompt_tokens, sum(cached_tokens) AS cached_tokens,
           sum(completion_tokens) AS completion_tokens, sum(cost_usd) AS cost_usd
      FROM llm_usage WHERE day > CAST(:today AS date) - CAST(:days AS integer)
     GROUP BY day, model, coalesce(workflow, '-')
     ORDER BY day DESC, cost_usd DESC, model, workflow
    """
)
_CACHE = text(
    """
    SELECT coalesce(sum(hits), 0) AS hits, coalesce(sum(misses), 0) AS misses, coalesce(sum(fallbacks), 0) AS fallbacks
      FROM insight_cache_stats WHERE day > CAST(:today AS date) - CAST(:days AS integer)
    """
)
_COUNT_CACHE = text(
    """
    INSERT INTO insight_cache_stats AS s (day, kind, hits, misses, fallbacks) VALUES (:day, :kind, :hits, :misses, :fallbacks)
    ON CONFLICT (day, kind) DO UPDATE
       SET hits = s.hits + excluded.hits, misses = s.misses + excluded.misses, fallbacks = s.fallbacks + excluded.fallbacks
    """
)


async def count_cache(conn: AsyncConnection, day: dt.date, kind: str, *, hits: int, misses: int, fallbacks: int) -> None:
    """Add a run's cache hits (reused insights), misses (analysed anew) and fallbacks (rules) to the day's counts."""
    if hits or misses or fallbacks:
        await conn.execute(_COUNT_CACHE, {"day": day, "kind": kind, "hits": hits, "misses": misses, "fallbacks": fallbacks})


async def cache_counts(conn: AsyncConnection, today: dt.date, days: int) -> tuple[int, int, int]:
    """(hits, misses, fallbacks) over the last `days` days."""
    row = (await conn.execute(_CACHE, {"today": today, "days": days})).one()
    return int(row.hits), int(row.misses), int(row.fallbacks)


@dataclass(frozen=True, slots=True)
class SpendRow:
    day: dt.date
    model: str
    workflow: str
    calls: int
    ok: int
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    cost_usd: Decimal


async def spend(conn: AsyncConnection, today: dt.date, days: int) -> list[SpendRow]:
    rows = await conn.execute(_SPEND, {"today": today, "days": days})
    return [SpendRow(day=r.day, model=r.model, workflow=r.workflow, calls=r.calls, ok=r.ok,
                     prompt_tokens=int(r.prompt_tokens or 0), cached_tokens=int(r.cached_tokens or 0),
                     completion_tokens=int(r.completion_tokens or 0), cost_usd=Decimal(r.cost_usd or 0))
            for r in rows]
