"""The notification_deliveries ledger: one row per (alert firing, channel).

Recording the intent is idempotent (unique (alert_history_id, channel), ON CONFLICT DO
NOTHING), so a retried activity or a re-started workflow never duplicates a delivery. The
senders (email, push, SMS) check and update these rows around each send.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from deallens.db.claims import Ledger
from deallens.domain.redelivery import MAX_AUTO_RETRIES

# The channels a user `u` has: email unless disabled or unsubscribed, push with a webhook URL,
# SMS with a number (and only when SMS is switched on). One rule for the deliveries recorded
# (_INTENTS) and the channels a firing's summary names (_FIRING_REFS).
_CHANNELS = """(VALUES
            (1, 'email', u.email_enabled AND u.unsubscribed_at IS NULL),
            (2, 'push', u.push_webhook_url IS NOT NULL AND u.unsubscribed_at IS NULL),
            (3, 'sms', u.sms_number IS NOT NULL AND u.unsubscribed_at IS NULL AND CAST(:sms AS boolean))
        ) AS ch(position, channel, wanted)"""

_INTENTS = """
    WITH firings AS ({firings}),
    inserted AS (
        INSERT INTO notification_deliveries (alert_history_id, channel, status)
        SELECT f.id, ch.channel, 'pending'
        FROM firings f
        JOIN alerts a ON a.id = f.alert_id
        JOIN users u ON u.id = a.user_id
        CROSS JOIN LATERAL {channels}
        WHERE ch.wanted
        ON CONFLICT (alert_history_id, channel) DO NOTHING
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM firings) AS firings, (SELECT count(*) FROM inserted) AS deliveries
"""

_BY_IDS = text(
    _INTENTS.format(
        firings="SELECT id, alert_id FROM alert_history WHERE id = ANY(CAST(:ids AS bigint[]))", channels=_CHANNELS
    )
)
_BY_EVALUATION = text(
    _INTENTS.format(
        firings="SELECT h.id, h.alert_id FROM alert_history h JOIN alerts a ON a.id = h.alert_id "
        "WHERE a.kind = :kind AND h.triggered_at = :at",
        channels=_CHANNELS,
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


# What the Web UI shows of an evaluation's firings (search attributes, summaries): ids and
# symbols only. The channels by _INTENTS' rule (the plan decides; this only describes).
_FIRING_REFS = text(
    f"""
    SELECT h.id AS history_id, a.id AS alert_id, a.user_id, a.kind, a.alert_type, c.symbol,
           ARRAY(SELECT ch.channel FROM {_CHANNELS} WHERE ch.wanted ORDER BY ch.position) AS channels
    FROM alert_history h
    JOIN alerts a ON a.id = h.alert_id
    JOIN users u ON u.id = a.user_id
    LEFT JOIN companies c ON c.id = a.company_id
    WHERE h.id = ANY(CAST(:ids AS bigint[]))
    ORDER BY h.id
    """
)

_EVALUATION_LABELS = text(
    """
    SELECT
      (SELECT array_agg(symbol ORDER BY symbol) FROM (
          SELECT DISTINCT c.symbol FROM alert_history h JOIN alerts a ON a.id = h.alert_id
          JOIN companies c ON c.id = a.company_id
          WHERE a.kind = :kind AND h.triggered_at = :at ORDER BY c.symbol LIMIT :limit) s) AS symbols,
      (SELECT array_agg(alert_id ORDER BY alert_id) FROM (
          SELECT DISTINCT h.alert_id FROM alert_history h JOIN alerts a ON a.id = h.alert_id
          WHERE a.kind = :kind AND h.triggered_at = :at ORDER BY h.alert_id LIMIT :limit) i) AS alert_ids
    """
)


async def firing_refs(engine: AsyncEngine, history_ids: list[int], *, sms_enabled: bool) -> list[dict[str, Any]]:
    """Per firing: alert id, user id, kind, alert type, symbol and the user's channels."""
    if not history_ids:
        return []
    async with engine.connect() as conn:
        rows = await conn.execute(_FIRING_REFS, {"ids": history_ids, "sms": sms_enabled})
        return [dict(row._mapping) for row in rows]


async def evaluation_labels(
    engine: AsyncEngine, kind: str, triggered_at: dt.datetime, *, limit: int
) -> tuple[list[str], list[int]]:
    """(symbols, alert ids) of one evaluation's firings, each sorted and at most `limit`."""
    async with engine.connect() as conn:
        row = (await conn.execute(_EVALUATION_LABELS, {"kind": kind, "at": triggered_at, "limit": limit})).one()
    return list(row.symbols or []), list(row.alert_ids or [])


_EVALUATION_PAGE = text(
    """
    SELECT h.id FROM alert_history h JOIN alerts a ON a.id = h.alert_id
    WHERE a.kind = :kind AND h.triggered_at = :at AND h.id > :after
    ORDER BY h.id
    LIMIT :limit
    """
)


async def evaluation_firings_page(
    engine: AsyncEngine, kind: str, triggered_at: dt.datetime, *, after_id: int, limit: int
) -> tuple[list[int], bool]:
    """(up to `limit` firings of one evaluation after `after_id`, whether more follow)."""
    async with engine.connect() as conn:
        params = {"kind": kind, "at": triggered_at, "after": after_id, "limit": limit + 1}
        ids = list((await conn.execute(_EVALUATION_PAGE, params)).scalars())
    return ids[:limit], len(ids) > limit


# ------------------------------------------------------------------ the senders' side


_USER_COLUMNS = """
    u.id AS user_id, u.email, u.name AS user_name, u.timezone, u.email_enabled, u.unsubscribed_at,
    u.push_webhook_url, u.push_webhook_secret, u.push_format, u.sms_number,
    u.quiet_hours_start, u.quiet_hours_end, u.unsubscribe_token
"""

_PLAN = text(
    f"""
    SELECT d.alert_history_id, d.channel, d.status, COALESCE((a.params->>'urgent')::boolean, false) AS urgent,
           {_USER_COLUMNS}
    FROM notification_deliveries d
    JOIN alert_history h ON h.id = d.alert_history_id
    JOIN alerts a ON a.id = h.alert_id
    JOIN users u ON u.id = a.user_id
    WHERE d.alert_history_id = ANY(CAST(:ids AS bigint[]))
    ORDER BY d.alert_history_id, d.channel
    """
)

_PENDING = text(
    f"""
    SELECT d.alert_history_id, d.channel, d.attempts,
           h.message, h.value, h.threshold, h.triggered_at,
           a.kind, a.params, a.name AS alert_name, c.symbol, c.name AS company_name,
           {_USER_COLUMNS}
    FROM notification_deliveries d
    JOIN alert_history h ON h.id = d.alert_history_id
    JOIN alerts a ON a.id = h.alert_id
    JOIN users u ON u.id = a.user_id
    LEFT JOIN companies c ON c.id = a.company_id
    WHERE d.alert_history_id = ANY(CAST(:ids AS bigint[])) AND d.channel = :channel AND d.status = 'pending'
    -- The ones that failed before go last: a few bad recipients never starve the rest.
    ORDER BY d.attempts, d.alert_history_id
    """
)


async def pending_plan(engine: AsyncEngine, history_ids: list[int]) -> list[Any]:
    """Every (firing, channel) row with its status and what quiet hours need: the ledger read before planning."""
    async with engine.connect() as conn:
        return list((await conn.execute(_PLAN, {"ids": history_ids})).mappings())


async def pending_deliveries(engine: AsyncEngine, history_ids: list[int], channel: str) -> list[Any]:
    """The rows of this channel still to send, with everything the message needs."""
    async with engine.connect() as conn:
        return list((await conn.execute(_PENDING, {"ids": history_ids, "channel": channel})).mappings())


LEDGER = Ledger("notification_deliveries", ("alert_history_id", "channel"))


def key(history_id: int, channel: str) -> dict[str, object]:
    return {"alert_history_id": history_id, "channel": channel}


async def skip(engine: AsyncEngine, history_id: int, channel: str, reason: str) -> None:
    """The user opted out after the intent was recorded: nothing to send, say why."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE notification_deliveries SET status = 'skipped', error = :error, updated_at = now() "
                "WHERE alert_history_id = :id AND channel = :channel AND status = 'pending'"
            ),
            {"id": history_id, "channel": channel, "error": reason},
        )


async def park(engine: AsyncEngine, history_ids: list[int], channel: str, error: str) -> int:
    """Retries ran out: what is still pending (and not being sent) becomes failed."""
    return await LEDGER.park(
        engine,
        "alert_history_id = ANY(CAST(:ids AS bigint[])) AND channel = :channel",
        {"ids": history_ids, "channel": channel},
        error,
    )


# ------------------------------------------------------------------ failed deliveries (the CLI)


# Pending this long with nobody sending it: its workflow is gone (timed out, terminated, or a
# park that never ran). Quiet hours hold a row at most a day, and its workflow is running.
STUCK_AFTER = dt.timedelta(hours=26)



def _needs_retry(alias: str) -> str:
    """Failed, or pending with nobody sending it for longer than STUCK_AFTER."""
    return (
        f"({alias}.status = 'failed' OR ({alias}.status = 'pending' "
        f"AND {alias}.updated_at < now() - CAST(:stuck AS interval) "
        f"AND ({alias}.claimed_until IS NULL OR {alias}.claimed_until < now())))"
    )


def _for_a_person(alias: str) -> str:
    """Not still waiting for an automatic retry (RetryParkedDeliveries), unless all are asked for."""
    return f"(:include_waiting OR NOT ({alias}.status = 'failed' AND {alias}.auto_retries < :max_auto))"


_FAILED = text(
    f"""
    SELECT 'alert' AS what, d.alert_history_id AS ref, d.channel, d.status, u.email, d.attempts, d.error,
           d.updated_at, NULL::text AS kind, NULL::date AS period, d.auto_retries
    FROM notification_deliveries d
    JOIN alert_history h ON h.id = d.alert_history_id
    JOIN alerts a ON a.id = h.alert_id
    JOIN users u ON u.id = a.user_id
    WHERE {_needs_retry("d")} AND {_for_a_person("d")}
    UNION ALL
    SELECT 'digest', g.user_id, 'email', g.status, u.email, g.attempts, g.error, g.updated_at, g.kind, g.period,
           g.auto_retries
    FROM digest_deliveries g JOIN users u ON u.id = g.user_id
    WHERE {_needs_retry("g")} AND {_for_a_person("g")}
    ORDER BY updated_at DESC
    LIMIT :limit
    """
)


async def failed(engine: AsyncEngine, limit: int = 200, *, include_waiting: bool = False) -> list[Any]:
    """What needs a person: parked deliveries whose automatic retries are used up, and stuck ones.
    `include_waiting` adds the parked ones that RetryParkedDeliveries will still try again."""
    params = {"limit": limit, "stuck": STUCK_AFTER, "include_waiting": include_waiting, "max_auto": MAX_AUTO_RETRIES}
    async with engine.connect() as conn:
        return list((await conn.execute(_FAILED, params)).mappings())


_CANDIDATE_ALERTS = text(
    f"""
    SELECT DISTINCT d.alert_history_id FROM notification_deliveries d
    WHERE {_needs_retry("d")}
      AND (CAST(:ids AS bigint[]) IS NULL OR d.alert_history_id = ANY(CAST(:ids AS bigint[])))
    ORDER BY d.alert_history_id
    """
)
_CANDIDATE_DIGESTS = text(
    f"""
    SELECT g.kind, g.period, g.user_id FROM digest_deliveries g
    WHERE {_needs_retry("g")}
    ORDER BY g.kind, g.period, g.user_id
    """
)


async def retry_candidates(
    engine: AsyncEngine, history_ids: list[int] | None = None
) -> tuple[list[int], dict[tuple[str, dt.date], list[int]]]:
    """What `notifications retry` would re-send: failed rows, and pending ones stuck without a sender."""
    async with engine.connect() as conn:
        alerts = list((await conn.execute(_CANDIDATE_ALERTS, {"ids": history_ids, "stuck": STUCK_AFTER})).scalars())
        groups: dict[tuple[str, dt.date], list[int]] = {}
        if history_ids is None:
            for row in await conn.execute(_CANDIDATE_DIGESTS, {"stuck": STUCK_AFTER}):
                groups.setdefault((row.kind, row.period), []).append(row.user_id)
    return alerts, groups


async def requeue_alerts(engine: AsyncEngine, history_ids: list[int]) -> int:
    """Failed -> pending (error kept until the next attempt writes its own)."""
    async with engine.begin() as conn:
        result = await conn.execute(
            text(
                "UPDATE notification_deliveries SET status = 'pending', updated_at = now() "
                "WHERE status = 'failed' AND alert_history_id = ANY(CAST(:ids AS bigint[]))"
            ),
            {"ids": history_ids},
        )
    return result.rowcount


async def requeue_digests(engine: AsyncEngine, kind: str, period: dt.date, user_ids: list[int]) -> int:
    async with engine.begin() as conn:
        result = await conn.execute(
            text(
                "UPDATE digest_deliveries SET status = 'pending', updated_at = now() "
                "WHERE status = 'failed' AND kind = :kind AND period = :period "
                "AND user_id = ANY(CAST(:user_ids AS bigint[]))"
            ),
            {"kind": kind, "period": period, "user_ids": user_ids},
        )
    return result.rowcount


# ------------------------------------------------------------------ unsubscribe

UNSUBSCRIBE_LISTS = {
    # list -> (the change, what the user is told)
    "alerts": ("email_enabled = false", "alert emails"),
    "daily": ("digest_opt_in = false", "the daily digest"),
    "weekly": ("weekly_opt_in = false", "the weekly summary"),
    "all": ("unsubscribed_at = COALESCE(unsubscribed_at, now())", "all DealLens emails and notifications"),
}


async def unsubscribe(engine: AsyncEngine, token: str, list_name: str) -> str | None:
    """Apply an unsubscribe link; the user's email, or None for an unknown token.

    Idempotent: a second click changes nothing and still says the user is unsubscribed.
    """
    if list_name not in UNSUBSCRIBE_LISTS:
        raise ValueError(f"list: {list_name!r} is not one of {', '.join(UNSUBSCRIBE_LISTS)}")
    change = UNSUBSCRIBE_LISTS[list_name][0]
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                text(f"UPDATE users SET {change} WHERE unsubscribe_token = :token RETURNING email"),
                {"token": token},
            )
        ).first()
    return row.email if row else None


async def token_owner(engine: AsyncEngine, token: str) -> str | None:
    async with engine.connect() as conn:
        row = (await conn.execute(text("SELECT email FROM users WHERE unsubscribe_token = :t"), {"t": token})).first()
    return row.email if row else None
