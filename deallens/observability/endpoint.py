"""The worker's /metrics endpoint while it runs: the registry, the HTTP server, the refresh tick.

The tick (every METRICS_REFRESH_SECONDS) drains the SDK's metric buffer, so it never fills
between scrapes, and re-reads the database gauges (deallens/db/ops_gauges.py) outside any
trace; a scrape itself never waits on the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator
from typing import get_args

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from deallens.config import ConfigError, Settings
from deallens.contracts import AlertKindName
from deallens.db import llm_budget, ops_gauges
from deallens.db.engine import database_problem
from deallens.domain.budget import ledger_day
from deallens.observability import metrics
from deallens.observability.tracing import untraced

log = logging.getLogger("deallens.metrics")


async def refresh_gauges(engine: AsyncEngine, settings: Settings) -> None:
    """The database-backed gauges: freshness lag per data type, parked deliveries, quota left
    (calls per provider, dollars for the LLM), active alerts per kind."""
    now = dt.datetime.now(dt.UTC)
    # Each provider's ledger day as its activities count it (NewsAPI: the UTC date).
    days = {"alphavantage": ledger_day(now), "newsapi": now.date()}
    limits = {"alphavantage": settings.alphavantage_calls_per_day, "newsapi": settings.newsapi_calls_per_day}
    gauges = await ops_gauges.read(engine, days)
    for data_type, seconds in gauges.freshness_seconds.items():
        metrics.freshness_lag(data_type, seconds)
    for what, count in gauges.parked.items():
        metrics.parked(what, count)
    for provider, used in gauges.calls_used.items():
        metrics.quota_left(provider, limits[provider] - used)
    metrics.active_alerts(gauges.active_alerts, get_args(AlertKindName))
    # The LLM is budgeted in dollars per UTC day (deallens/llm/gateway.py), not in calls.
    spent, _ = await llm_budget.committed(engine, now.date())
    metrics.llm_budget_left(float(settings.llm_daily_budget_usd - spent))


async def _tick(engine: AsyncEngine, settings: Settings, sdk: metrics.SdkMetrics) -> None:
    failing = False
    while True:
        sdk.pump()
        try:
            with untraced():
                await refresh_gauges(engine, settings)
            failing = False
        except (OSError, DBAPIError) as error:
            if not failing:  # once per outage, not every tick
                log.warning("metrics: cannot read the database gauges: %s", database_problem(error))
            failing = True
        await asyncio.sleep(settings.metrics_refresh_seconds)


@contextlib.asynccontextmanager
async def metrics_endpoint(
    settings: Settings, engine: AsyncEngine, sdk: metrics.SdkMetrics
) -> AsyncIterator[metrics.Endpoint]:
    """Serve /metrics on settings.metrics_bind with the project's and the SDK's metrics."""
    assert settings.metrics_bind is not None
    registry = metrics.enable()
    registry.register(sdk)
    try:
        try:
            endpoint = metrics.serve(settings.metrics_bind, registry)
        except OSError as error:
            raise ConfigError(f"METRICS_BIND: cannot listen on {settings.metrics_bind}: {error}") from None
        tick = asyncio.create_task(_tick(engine, settings, sdk))
        try:
            yield endpoint
        finally:
            tick.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tick
            endpoint.close()
    finally:
        registry.unregister(sdk)
