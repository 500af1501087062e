"""alerts.evaluate as an activity: a retry after a lost completion reports the same firings."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import ActivityEnvironment

from activities.alerts import AlertActivities
from deallens.contracts import EvaluateAlertsInput
from deallens.db.alerts import add_alert
from deallens.db.demo import seed_demo
from deallens.domain.alert_rules import parse_alert


async def test_a_retried_evaluation_returns_the_firings_of_the_first_attempt(db: AsyncEngine) -> None:
    await seed_demo(db)
    alert_id = await add_alert(db, parse_alert({"user_id": 1, "type": "price_above", "symbol": "AAPL", "threshold": 100}))
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    async with db.begin() as conn:
        await conn.execute(text(
            "INSERT INTO price_quotes (company_id, price, quoted_at, source) SELECT id, 150, :at, 'test' "
            "FROM companies WHERE symbol = 'AAPL'"
        ), {"at": now - dt.timedelta(minutes=1)})
    activities = AlertActivities(db, max_quote_age=dt.timedelta(minutes=15))
    request = EvaluateAlertsInput(kind="price", at=now, symbols=["AAPL"])
    env = ActivityEnvironment()
    first = await env.run(activities.evaluate, request)
    # The worker died before reporting: Temporal retries the same input.
    second = await env.run(activities.evaluate, request)
    assert first.fired == second.fired == 1
    assert first.history_ids == second.history_ids
    async with db.connect() as conn:
        stored = (await conn.execute(text("SELECT count(*) FROM alert_history WHERE alert_id = :a"), {"a": alert_id})).scalar_one()
    assert stored == 1
