"""What the worker's gauges show, read in a few cheap statements: freshness, parked deliveries,
quota used, active alerts.

Run by the worker every METRICS_REFRESH_SECONDS while METRICS_BIND is set (never on scrape:
a scrape must not wait on the database). Each lookup is an index probe: max(quoted_at),
max(date) and max(published_at) have their own indexes; the newest insight is the highest id
(ids grow with creation); parked rows are the partial `status = 'failed'` indexes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

# A daily bar is complete at the close: its lag counts from 16:00 New York time that day.
_GAUGES = text(
    """
    SELECT
      extract(epoch FROM now() - (SELECT max(quoted_at) FROM price_quotes)) AS quote,
      extract(epoch FROM now() - (
        SELECT (max(date) + time '16:00') AT TIME ZONE 'America/New_York' FROM ohlc_data)) AS bar,
      extract(epoch FROM now() - (SELECT max(published_at) FROM news_articles)) AS article,
      extract(epoch FROM now() - (SELECT created_at FROM ai_insights ORDER BY id DESC LIMIT 1)) AS insight,
      (SELECT count(*) FROM notification_deliveries WHERE status = 'failed' AND channel = 'email') AS parked_email,
      (SELECT count(*) FROM notification_deliveries WHERE status = 'failed' AND channel = 'push') AS parked_push,
      (SELECT count(*) FROM notification_deliveries WHERE status = 'failed' AND channel = 'sms') AS parked_sms,
      (SELECT count(*) FROM digest_deliveries WHERE status = 'failed') AS parked_digest
    """
)

# Counted over the partial index ix_alerts_kind_active: the alerts each kind evaluates (a price
# evaluation reads only the armed ones a new quote reached, and the rest: deallens/db/alert_eval.py).
_ACTIVE = text("SELECT kind, count(*) FROM alerts WHERE active GROUP BY kind")

_USED = text("SELECT provider, day, calls FROM api_usage WHERE (provider, day) IN (SELECT * FROM unnest(CAST(:providers AS text[]), CAST(:days AS date[])))")

DATA_TYPES = ("quote", "bar", "article", "insight")
PARKED_KINDS = ("email", "push", "sms", "digest")


@dataclass(frozen=True)
class OpsGauges:
    freshness_seconds: dict[str, float | None]  # data type -> seconds since its newest row (None: no row)
    parked: dict[str, int]  # alert channel or "digest" -> deliveries parked as failed
    calls_used: dict[str, int]  # provider -> calls counted on its current ledger day
    active_alerts: dict[str, int]  # alert kind -> active alerts (each evaluation of the kind reads them)


async def read(engine: AsyncEngine, ledger_days: Mapping[str, dt.date]) -> OpsGauges:
    """The gauges now; `ledger_days` names each provider's current ledger day."""
    providers = list(ledger_days)
    async with engine.connect() as conn:
        row = (await conn.execute(_GAUGES)).one()._mapping
        active = {str(kind): int(count) for kind, count in await conn.execute(_ACTIVE)}
        used = {p: 0 for p in providers}
        if providers:
            for provider, _day, calls in await conn.execute(
                _USED, {"providers": providers, "days": [ledger_days[p] for p in providers]}
            ):
                used[provider] = int(calls)
    return OpsGauges(
        freshness_seconds={t: (None if row[t] is None else float(row[t])) for t in DATA_TYPES},
        parked={k: int(row[f"parked_{k}"]) for k in PARKED_KINDS},
        calls_used=used,
        active_alerts=active,
    )
