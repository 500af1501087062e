"""A provider's 429 with Retry-After defers the activity by exactly that delay, then succeeds
(AlphaVantage's daily bars, and NewsAPI's ingestion, where a bare 429 would defer the day).

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

from deallens.contracts import IngestNewsRunResult, SymbolOutcome, SyncDailyOHLCResult
from deallens.db.demo import seed_demo
from deallens.sim import alphavantage as av_sim
from deallens.sim import newsapi as news_sim
from deallens.sim import openai as openai_sim
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


async def _retried(handle: Any) -> list[tuple[str, int, dt.timedelta]]:
    """(activity type, attempt, time from scheduled to that attempt's start) of each retried activity."""
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
    return retried


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

    retried = await _retried(handle)
    [(name, attempt, waited)] = retried
    assert name == "alphavantage.sync_daily_bars" and attempt == 2
    # The server's delay, not the retry policy's backoff (seconds) nor the 60 s default for a bare 429.
    assert dt.timedelta(seconds=RETRY_AFTER) <= waited < dt.timedelta(seconds=RETRY_AFTER + 60), (name, waited)


async def test_a_newsapi_429_with_retry_after_is_retried_then_not_a_lost_day(
    time_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, make_settings: Any
) -> None:
    """NewsAPI's bare 429 means the day's quota is gone (the run defers); with Retry-After it is
    a short limit: the ingestion activity waits exactly that long and fetches the page."""
    news = news_sim.make_app(seed=5)
    async with serve_asgi(news) as url, serve_asgi(openai_sim.make_app(seed=5)) as llm:
        settings = make_settings(
            newsapi_base_url=url, newsapi_calls_per_minute=6000, newsapi_calls_per_day=1000,
            openai_base_url=f"{llm}/v1", llm_requests_per_minute=6000,
        )
        await seed_demo(db)
        news.state.sim.faults.add("http_429", count=1, retry_after=120)
        async with running_workers(time_env.client, settings, task_queue):
            handle = await time_env.client.start_workflow(
                "IngestDealNews", {}, id="deal-news-429", task_queue=task_queue, result_type=IngestNewsRunResult
            )
            result = await handle.result()
            for kind in ("news", "deal"):
                await time_env.client.get_workflow_handle(f"alert-monitor-{kind}").terminate("test over")
    [feed] = result.feeds
    assert feed.deferred is None and result.stored > 0
    assert news.state.sim.stats.faults["http_429"] == 1
    [(name, attempt, waited)] = await _retried(handle)
    assert name == "news.ingest" and attempt == 2
    assert dt.timedelta(seconds=120) <= waited < dt.timedelta(seconds=180), waited
