"""Retention: delete what is older than each table's horizon, in small batches.

Batches of a few thousand rows keep locks and WAL bursts short on a live database, and let
the activity heartbeat between them (so a cancelled or crashed cleanup resumes cleanly: a
batch is its own transaction, and what is left is simply found again next time).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

BATCH = 5000


@dataclass(frozen=True, slots=True)
class Rule:
    table: str
    column: str
    days: int
    # A further condition a row must meet to go, whatever its age.
    only_if: str = "true"
    # What the deleted rows leave behind, tidied in the batch's own transaction: a statement
    # run with :ids, the deleted rows' `returning` column (so a crash between the two cannot
    # leave the leftovers unfindable).
    returning: str | None = None
    cleanup: str | None = None


# A story whose articles have all gone goes too; one that keeps some gets its count, span and
# lead (the first published article left) from what remains.
_STORIES_AFTER_NEWS = """
WITH touched AS (SELECT DISTINCT id FROM unnest(CAST(:ids AS bigint[])) AS t(id) WHERE id IS NOT NULL),
gone AS (
    DELETE FROM news_stories s USING touched
     WHERE s.id = touched.id AND NOT EXISTS (SELECT 1 FROM news_articles a WHERE a.story_id = s.id)
)
UPDATE news_stories s SET
    articles = x.n, first_published_at = x.first_at, last_published_at = x.last_at, lead_article_id = x.lead
FROM (
    SELECT a.story_id, count(*) AS n, min(a.published_at) AS first_at, max(a.published_at) AS last_at,
           (array_agg(a.id ORDER BY a.published_at, a.id))[1] AS lead
    FROM news_articles a JOIN touched ON touched.id = a.story_id
    GROUP BY a.story_id
) x
WHERE s.id = x.story_id
"""


def rules(
    *, price_quotes_days: int, ohlc_days: int, news_days: int, alert_history_days: int, usage_days: int
) -> list[Rule]:
    every = [
        # The latest quote per company stays: alerts and digests read it.
        Rule(
            "price_quotes", "quoted_at", price_quotes_days,
            only_if="EXISTS (SELECT 1 FROM price_quotes newer WHERE newer.company_id = price_quotes.company_id "
            "AND newer.quoted_at > price_quotes.quoted_at)",
        ),
        Rule("ohlc_data", "date", ohlc_days),
        Rule("news_articles", "published_at", news_days, returning="story_id", cleanup=_STORIES_AFTER_NEWS),
        Rule("alert_history", "triggered_at", alert_history_days),
        # The digest ledger lives as long as alert history (alert deliveries go with their firing).
        Rule("digest_deliveries", "period", alert_history_days, only_if="status <> 'pending'"),
        Rule("api_usage", "day", usage_days),
        # A receipt matters only while its activity may still be retried (an hour); kept with
        # the usage ledger, which says what those syncs cost.
        Rule("bar_sync_receipts", "created_at", usage_days),
        Rule("llm_usage", "created_at", usage_days),
    ]
    return [rule for rule in every if rule.days > 0]


def _where(rule: Rule) -> str:
    # Table and column names come from the fixed list above, never from input.
    return f"{rule.column} < :cutoff AND ({rule.only_if})"


async def apply(
    engine: AsyncEngine,
    selected: list[Rule],
    *,
    at: dt.datetime,
    dry_run: bool,
    progress: Callable[[str, int], Awaitable[None] | None] = lambda table, removed: None,
) -> tuple[dict[str, int], dict[str, dt.datetime]]:
    """(rows removed — or that would be — per table, cut-off per table)."""
    removed: dict[str, int] = {}
    cutoffs: dict[str, dt.datetime] = {}
    for rule in selected:
        cutoff = at - dt.timedelta(days=rule.days)
        cutoffs[rule.table] = cutoff
        params = {"cutoff": cutoff.date() if rule.column in {"date", "day"} else cutoff}
        if dry_run:
            async with engine.connect() as conn:
                count = await conn.execute(text(f"SELECT count(*) FROM {rule.table} WHERE {_where(rule)}"), params)
                removed[rule.table] = count.scalar_one()
            outcome = progress(rule.table, removed[rule.table])
            if outcome is not None:
                await outcome
            continue
        total = 0
        statement = text(
            f"DELETE FROM {rule.table} WHERE ctid IN "
            f"(SELECT ctid FROM {rule.table} WHERE {_where(rule)} LIMIT {BATCH})"
            + (f" RETURNING {rule.returning}" if rule.returning else "")
        )
        while True:
            async with engine.begin() as conn:
                result = await conn.execute(statement, params)
                if rule.returning and rule.cleanup:
                    returned = [row[0] for row in result]
                    deleted = len(returned)
                    if returned:
                        await conn.execute(text(rule.cleanup), {"ids": returned})
                else:
                    deleted = result.rowcount
            total += deleted
            outcome = progress(rule.table, total)
            if outcome is not None:
                await outcome
            if deleted < BATCH:
                break
        removed[rule.table] = total
    return removed, cutoffs
