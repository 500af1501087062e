"""A provider's 429 with Retry-After defers the activity by exactly that delay, then succeeds.

On the time-skipping server with the real workers, the real AlphaVantage client and its
stand-in: the first TIME_SERIES_DAILY answers 429 with "Retry-After: 300"; the activity's
ApplicationError carries next_retry_delay=300 s, the server waits that long (skipped) and the
second attempt stores the bars. The history shows it: the attempt that succeeded is the
second, and it started 300 s (not the policy's 1 s) after the first was scheduled.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from deallens.contracts import SymbolOutcome, SyncDailyOHLCResult
from deallens.db.demo import seed_demo
from deallens.sim import alphavantage as av_sim
from deallens.sim.clock import ManualClock
from deallens.sim.serve import serve_asgi
from tests.test_market_sync import SIM_NOW, weekend_session
from tests.workers import running_workers

RETRY_AFTER = 300


@pytest.fixture
async def sim() -> AsyncIterator[tuple[str, Any]]:
    app = av_sim.make_app(seed=21, clock=ManualClock(SIM_NOW))
    async with serve_asgi(app) as url:
        yield url, app.state.sim


async def test_a_429_with_retry_after_defers_then_succeeds(
    time_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, sim: tuple[str, Any], make_settings: Any
) -> None:
    settings = make_settings(
        alphavantage_base_url=sim[0], alphavantage_calls_per_minute=6000, alphavantage_calls_per_day=10_000
    )
    await seed_demo(db)
    sim[1].faults.add("http_429", count=1, match="TIME_SERIES_DAILY", retry_after=RETRY_AFTER)
    async with running_workers(time_env.client, settings, task_queue, replace_activities=[weekend_session]):
        handle = await time_env.client.start_workflow(
            "SyncDailyOHLC", {"symbols": ["IBM"]}, id="ohlc-429", task_queue=task_queue, result_type=SyncDailyOHLCResult
        )
        result = await handle.result()

    [ibm] = result.symbols
    assert ibm.outcome is SymbolOutcome.UPDATED and result.bars_inserted > 5000
    assert sim[1].stats.faults["http_429"] == 1 and sim[1].stats.by_endpoint["TIME_SERIES_DAILY"] == 2
    async with db.connect() as conn:
        stored = (await conn.execute(text(
            "SELECT count(*) FROM ohlc_data o JOIN companies c ON c.id = o.company_id WHERE c.symbol = 'IBM'"
        ))).scalar_one()
    assert stored == result.bars_inserted  # each bar once, after the deferred attempt

    scheduled: dict[int, tuple[str, dt.datetime]] = {}
    retried = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = (attrs.activity_type.name, event.event_time.ToDatetime(dt.UTC))
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attrs = event.activity_task_started_event_attributes
            name, at = scheduled[attrs.scheduled_event_id]
            if attrs.attempt > 1:
                retried.append((name, attrs.attempt, event.event_time.ToDatetime(dt.UTC) - at))
    [(name, attempt, waited)] = retried
    assert name == "alphavantage.sync_daily_bars" and attempt == 2
    # The server's delay, not the retry policy's backoff (seconds) nor the 60 s default for a bare 429.
    assert dt.timedelta(seconds=RETRY_AFTER) <= waited < dt.timedelta(seconds=RETRY_AFTER + 60), (name, waited)
