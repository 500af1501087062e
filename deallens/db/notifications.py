"""The notification_deliveries ledger: one row per (alert firing, channel).

Recording the intent is idempotent (unique (alert_history_id, channel), ON CONFLICT DO
NOTHING), so a retried activity or a re-started workflow never duplicates a delivery. The
senders (email, push, SMS) check and update these rows around each send.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

# The channels a user has: email unless disabled or unsubscribed, push with a webhook URL,
# SMS with a number (and only when SMS is switched on).
_INTENTS = """
    WITH firings AS ({firings}),
    inserted AS (
        INSERT INTO notification_deliveries (alert_history_id, channel, status)
        SELECT f.id, ch.channel, 'pending'
        FROM firings f
        JOIN alerts a ON a.id = f.alert_id
        JOIN users u ON u.id = a.user_id
        CROSS JOIN LATERAL (VALUES
            ('email', u.email_enabled AND u.unsubscribed_at IS NULL),
            ('push', u.push_webhook_url IS NOT NULL AND u.unsubscribed_at IS NULL),
            ('sms', u.sms_number IS NOT NULL AND u.unsubscribed_at IS NULL AND CAST(:sms AS boolean))
        ) AS ch(channel, wanted)
        WHERE ch.wanted
        ON CONFLICT (alert_history_id, channel) DO NOTHING
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM firings) AS firings, (SELECT count(*) FROM inserted) AS deliveries
"""

_BY_IDS = text(_INTENTS.format(firings="SELECT id, alert_id FROM alert_history WHERE id = ANY(CAST(:ids AS bigint[]))"))
_BY_EVALUATION = text(
    _INTENTS.format(
        firings="SELECT h.id, h.alert_id FROM alert_history h JOIN alerts a ON a.id = h.alert_id "
        "WHERE a.kind = :kind AND h.triggered_at = :at"
    )
)


async def record_intents(engine: AsyncEngine, history_ids: list[int], *, sms_enabled: bool) -> tuple[int, int]:
    """(firings found, delivery rows created) for these alert_history ids."""
    async with engine.begin() as conn:
        row = (await conn.execute(_BY_IDS, {"ids": history_ids, "sms": sms_enabled})).one()
    return row.firings, row.deliveries


async def record_intents_for_evaluation(
    engine: AsyncEngine, kind: str, triggered_at: dt.datetime, *, sms_enabled: bool
) -> tuple[int, int]:
    """The same for every firing of one evaluation (a burst), in one statement."""
    async with engine.begin() as conn:
        row = (await conn.execute(_BY_EVALUATION, {"kind": kind, "at": triggered_at, "sms": sms_enabled})).one()
    return row.firings, row.deliveries


_EVALUATION_FIRINGS = text(
    """
    SELECT h.id FROM alert_history h JOIN alerts a ON a.id = h.alert_id
    WHERE a.kind = :kind AND h.triggered_at = :at
    ORDER BY h.id
    """
)


async def evaluation_firings(engine: AsyncEngine, kind: str, triggered_at: dt.datetime) -> list[int]:
    """Every firing of one evaluation (kind, triggered_at), whichever attempt inserted it."""
    async with engine.connect() as conn:
        return list((await conn.execute(_EVALUATION_FIRINGS, {"kind": kind, "at": triggered_at})).scalars())
