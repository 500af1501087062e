"""AlertMonitor of each kind through one whole run, as the replay guard needs it recorded:
a closed-market sleep (price and volume), a `new_data` evaluation that fires and starts the
firing's SendAlertNotification (which sends its email), an interval-driven evaluation, and
the continue-as-new that ends the run. On the time-skipping server, with the market clock
pinned to open an hour after the test starts."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.alerts import monitor_id
from deallens.contracts import AlertMonitorInput, MarketSessionInput, MarketSessionResult, NotificationResult
from deallens.db.alerts import add_alert
from deallens.domain.alert_rules import parse_alert
from tests.smtp_sink import Sink, smtp_sink
from tests.workers import record_history, running_workers

# An alert of each kind, and the data that makes it fire.
DEFINITIONS = {
    "price": {"type": "price_above", "symbol": "AAPL", "threshold": 100},
    "volume": {"type": "volume_above", "symbol": "AAPL", "threshold": 1_000_000},
    "news": {"type": "news_mention", "symbol": "PFE"},
    "deal": {"type": "deal_new", "symbol": "SGEN"},
}


@pytest.fixture
def sink() -> Any:
    with smtp_sink() as sink:
        yield sink


def market_opening_at(opens_at: dt.datetime) -> Any:
    """The market session as seen at `request.at`: closed until `opens_at`, then open."""

    @activity.defn(name="market.session")
    async def session(request: MarketSessionInput) -> MarketSessionResult:
        is_open = request.at >= opens_at
        return MarketSessionResult(
            is_open=is_open,
            session_date=opens_at.date(),
            opens_at=opens_at,
            closes_at=opens_at + dt.timedelta(hours=6, minutes=30),
            last_closed=opens_at.date() - dt.timedelta(days=1),
        )

    return session


async def seed(db: AsyncEngine, kind: str, at: dt.datetime) -> int:
    """The companies, a user, the alert, then its data (newer than the alert): the alert id."""
    async with db.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO companies (symbol, name) VALUES ('AAPL', 'Apple Inc'), ('PFE', 'Pfizer Inc'), "
                "('SGEN', 'Seagen Inc')"
            )
        )
        await conn.execute(text("INSERT INTO users (email, name) VALUES ('ada@example.com', 'Ada')"))
    alert_id = await add_alert(db, parse_alert({"user_id": 1, **DEFINITIONS[kind]}))
    async with db.begin() as conn:
        await conn.execute(text("UPDATE alerts SET created_at = :t WHERE id = :a"), {"t": at - dt.timedelta(minutes=5), "a": alert_id})
        if kind in ("price", "volume"):
            await conn.execute(
                text(
                    "INSERT INTO price_quotes (company_id, price, volume, latest_trading_day, quoted_at, source) "
                    "SELECT id, 150, 5000000, :d, :t, 'test' FROM companies WHERE symbol = 'AAPL'"
                ),
                {"d": at.date(), "t": at - dt.timedelta(minutes=1)},
            )
        elif kind == "news":
            news_id = (
                await conn.execute(
                    text(
                        "INSERT INTO news_articles (url, canonical_url, title, published_at, source) "
                        "VALUES ('https://n.example/pfe', 'https://n.example/pfe', 'Pfizer to buy a biotech', :t, 'test') "
                        "RETURNING id"
                    ),
                    {"t": at - dt.timedelta(minutes=1)},
                )
            ).scalar_one()
            await conn.execute(
                text("INSERT INTO news_company (news_id, company_id) SELECT :n, id FROM companies WHERE symbol = 'PFE'"),
                {"n": news_id},
            )
        else:
            await conn.execute(
                text(
                    "INSERT INTO deals (title, acquirer_company_id, target_company_id, status, value_usd, source, created_at) "
                    "SELECT 'Pfizer / Seagen', a.id, t.id, 'announced', 43000000000, 'test', :t "
                    "FROM companies a, companies t WHERE a.symbol = 'PFE' AND t.symbol = 'SGEN'"
                ),
                {"t": at - dt.timedelta(minutes=1)},
            )
    return alert_id


async def eventually(check: Any, seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("kind", list(DEFINITIONS))
async def test_a_monitor_run_sleeps_fires_notifies_and_continues_as_new(
    kind: str, db: AsyncEngine, time_env: WorkflowEnvironment, make_settings: Any, sink: Sink, task_queue: str
) -> None:
    client = time_env.client
    now = await time_env.get_current_time()
    opens_at = now + dt.timedelta(hours=1)
    alert_id = await seed(db, kind, now)
    settings = make_settings(
        smtp_host="127.0.0.1", smtp_port=sink.port, smtp_tls="none", alert_max_quote_age_seconds=7 * 86_400
    )

    async def fired() -> int | None:
        async with db.connect() as conn:
            return (
                await conn.execute(text("SELECT min(id) FROM alert_history WHERE alert_id = :a"), {"a": alert_id})
            ).scalar_one()

    async with running_workers(client, settings, task_queue, replace_activities=[market_opening_at(opens_at)]):
        handle = await client.start_workflow(
            "AlertMonitor", AlertMonitorInput(kind=kind, evaluations_per_run=2), id=monitor_id(kind), task_queue=task_queue
        )
        try:
            await handle.signal("new_data", {"symbols": [DEFINITIONS[kind]["symbol"]]})
            history_id = await eventually(fired)
            assert history_id is not None, f"the {kind} alert did not fire"
            notify = client.get_workflow_handle(f"notify-{history_id}", result_type=NotificationResult)

            async def started() -> bool:
                try:
                    return bool(await notify.describe())
                except RPCError:
                    return False  # the firing is stored a moment before its notification starts

            assert await eventually(started)
            assert (await notify.result()).counts.sent == 1
            # Past the open (price, volume) or the polling interval (news, deal): the timer's
            # evaluation is the run's second, and the run continues as new.
            await time_env.sleep(dt.timedelta(hours=2))

            async def continued() -> bool:
                return (await client.get_workflow_handle(monitor_id(kind)).describe()).run_id != handle.first_execution_run_id

            assert await eventually(continued), "the monitor did not continue as new"
            first_run = client.get_workflow_handle(monitor_id(kind), run_id=handle.first_execution_run_id)
            history = await first_run.fetch_history()
            await record_history(first_run, f"alert_monitor_{kind}")
        finally:
            await client.get_workflow_handle(monitor_id(kind)).terminate("test over")

    events = [e.event_type for e in history.events]
    timers = [e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta() for e in history.events
              if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]
    assert events.count(EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED) == 1
    assert events.count(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED) == 1
    assert events[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    if kind in ("price", "volume"):
        # Closed: the first sleep lasts until the open, not the 2- or 5-minute interval.
        assert timers and timers[0] > dt.timedelta(minutes=50)
    else:
        assert timers and timers[0] == dt.timedelta(minutes=5)
    assert [m["To"].addresses[0].addr_spec for m in sink.messages] == ["ada@example.com"]
