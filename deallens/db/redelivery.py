"""Automatic re-queueing of parked deliveries (the policy is deallens/domain/redelivery.py).

One statement per ledger takes the parked rows whose next automatic retry has come, sets them
back to pending and counts the retry, in the same transaction: two overlapping runs cannot
re-queue one row twice, and a row a person re-queued in between is no longer `failed`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from deallens.domain.redelivery import MAX_AUTO_RETRIES, delay_seconds

# `updated_at` of a failed row is when it was parked (park() sets it, nothing else touches a
# failed row). The delay is indexed by how many automatic retries it already had.
def _due(alias: str) -> str:
    return (
        f"{alias}.status = 'failed' AND {alias}.auto_retries < :max "
        f"AND {alias}.updated_at <= now() - make_interval(secs => (CAST(:delays AS int[]))[{alias}.auto_retries + 1])"
    )


# Not while another channel of the firing is still pending: its notify-<id> is still running
# (a channel held by quiet hours, one still retrying), so a start would find it running and a
# row re-queued under it would stay pending with nobody to send it (that run planned its
# channels at its start). The next run re-queues the firing once every channel has settled.
_REQUEUE_ALERTS = text(
    f"""
    WITH due AS (
        SELECT DISTINCT n.alert_history_id FROM notification_deliveries n
        WHERE {_due("n")}
          AND NOT EXISTS (
              SELECT 1 FROM notification_deliveries o
              WHERE o.alert_history_id = n.alert_history_id AND o.status = 'pending'
          )
        ORDER BY n.alert_history_id
        LIMIT :limit
    )
    UPDATE notification_deliveries d
    SET status = 'pending', auto_retries = d.auto_retries + 1, updated_at = now()
    FROM due
    WHERE d.alert_history_id = due.alert_history_id AND {_due("d")}
    RETURNING d.alert_history_id
    """
)

_REQUEUE_DIGESTS = text(
    f"""
    WITH due AS (
        SELECT g0.id FROM digest_deliveries g0
        WHERE {_due("g0")}
        ORDER BY g0.kind, g0.period, g0.user_id
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE digest_deliveries g
    SET status = 'pending', auto_retries = g.auto_retries + 1, updated_at = now()
    FROM due
    WHERE g.id = due.id AND {_due("g")}
    RETURNING g.kind, g.period, g.user_id
    """
)

_WAITING = text(
    """
    SELECT count(*) AS rows, min(updated_at + make_interval(secs => (CAST(:delays AS int[]))[auto_retries + 1])) AS next_at
    FROM (
        SELECT updated_at, auto_retries FROM notification_deliveries WHERE status = 'failed' AND auto_retries < :max
        UNION ALL
        SELECT updated_at, auto_retries FROM digest_deliveries WHERE status = 'failed' AND auto_retries < :max
    ) waiting
    """
)


@dataclass(frozen=True)
class Requeued:
    alert_history_ids: list[int]
    # (kind, period) -> user ids, each group one digest run.
    digests: dict[tuple[str, dt.date], list[int]]


def _params(limit: int) -> dict[str, Any]:
    return {"max": MAX_AUTO_RETRIES, "delays": delay_seconds(), "limit": limit}


async def requeue_due(engine: AsyncEngine, limit: int) -> Requeued:
    """Parked rows whose automatic retry is due -> pending: at most `limit` firings (all their
    parked channels) and `limit` digests."""
    if limit < 1:
        raise ValueError(f"limit: {limit} must be at least 1")
    async with engine.begin() as conn:
        alerts = sorted(set((await conn.execute(_REQUEUE_ALERTS, _params(limit))).scalars()))
        digests: dict[tuple[str, dt.date], list[int]] = {}
        for row in await conn.execute(_REQUEUE_DIGESTS, _params(limit)):
            digests.setdefault((row.kind, row.period), []).append(row.user_id)
    return Requeued(alerts, {key: sorted(users) for key, users in sorted(digests.items())})


@dataclass(frozen=True)
class Waiting:
    rows: int
    next_at: dt.datetime | None


async def waiting_for_auto_retry(engine: AsyncEngine) -> Waiting:
    """Parked rows that will still be re-queued automatically, and when the next one goes."""
    async with engine.connect() as conn:
        row = (await conn.execute(_WAITING, {"max": MAX_AUTO_RETRIES, "delays": delay_seconds()})).one()
    return Waiting(int(row.rows), row.next_at)
