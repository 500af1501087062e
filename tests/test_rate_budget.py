"""The provider's rate limits hold with two workers: the task-queue-wide limit spaces calls
across both, and the daily ledger stops both at the quota. Real dev server, real time.

The stand-in's clock runs TIME_SCALE times faster than real time, so its per-minute window
lasts 60/TIME_SCALE real seconds and the test shows minutes of steady load in seconds; the
workers are given the same limit in real time (calls per minute * TIME_SCALE).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from deallens.contracts import SymbolOutcome, SyncCompanyPricesResult
from deallens.db import usage
from deallens.db.demo import seed_demo
from deallens.domain.budget import ledger_day
from deallens.domain.universe import DEMO_SYMBOLS
from deallens.sim import alphavantage as av_sim
from deallens.sim.serve import serve_asgi
from tests.conftest import dev_server_address
from tests.workers import running_workers

TIME_SCALE = 10
CALLS_PER_MINUTE = 10
SYMBOLS = sorted(DEMO_SYMBOLS)  # 22 calls: more than two of the stand-in's minute windows


def fast_clock() -> Any:
    start = dt.datetime.now(dt.UTC)
    return lambda: start + (dt.datetime.now(dt.UTC) - start) * TIME_SCALE


@pytest.fixture
async def limited_sim() -> AsyncIterator[tuple[str, Any]]:
    app = av_sim.make_app(seed=9, clock=fast_clock(), calls_per_minute=CALLS_PER_MINUTE)
    async with serve_asgi(app) as url:
        yield url, app.state.sim


@contextlib.asynccontextmanager
async def two_workers(env: WorkflowEnvironment, task_queue: str, settings: Any) -> AsyncIterator[None]:
    """Two independent worker sets (own client connection, pool and HTTP client each), as on two machines."""
    other_client = await type(env.client).connect(
        dev_server_address(env.client), namespace=env.client.namespace, data_converter=env.client.data_converter
    )
    async with running_workers(env.client, settings, task_queue), running_workers(other_client, settings, task_queue):
        yield


async def test_two_workers_stay_within_the_providers_minute_limit(
    dev_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, limited_sim: tuple[str, Any], make_settings: Any
) -> None:
    await seed_demo(db)
    settings = make_settings(
        alphavantage_base_url=limited_sim[0],
        alphavantage_calls_per_minute=CALLS_PER_MINUTE * TIME_SCALE,
        alphavantage_calls_per_day=10_000,
    )
    async with two_workers(dev_env, task_queue, settings):
        result = await dev_env.client.execute_workflow(
            "SyncCompanyPrices", {"symbols": SYMBOLS, "force": True}, id=f"rate-{task_queue}",
            task_queue=task_queue, result_type=SyncCompanyPricesResult,
        )
    stats = limited_sim[1].stats
    assert stats.rate_limit_refusals == 0, stats.as_dict()
    assert stats.by_endpoint["GLOBAL_QUOTE"] == len(SYMBOLS)
    assert result.count(SymbolOutcome.UPDATED) == len(SYMBOLS)
    assert await usage.usage(db, "alphavantage", ledger_day(dt.datetime.now(dt.UTC))) == (len(SYMBOLS), 0)


async def test_without_the_queue_limit_the_provider_would_refuse(
    dev_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, limited_sim: tuple[str, Any], make_settings: Any
) -> None:
    """The control: the same load unthrottled is refused, so the test above can fail."""
    await seed_demo(db)
    settings = make_settings(
        alphavantage_base_url=limited_sim[0], alphavantage_calls_per_minute=10_000, alphavantage_calls_per_day=10_000
    )
    stats = limited_sim[1].stats
    async with two_workers(dev_env, task_queue, settings):
        handle = await dev_env.client.start_workflow(
            "SyncCompanyPrices", {"symbols": SYMBOLS, "force": True}, id=f"unthrottled-{task_queue}",
            task_queue=task_queue,
        )
        # Every call is made within a few seconds; refused ones would be retried after the
        # provider's 60 s, so stop there.
        for _ in range(300):
            if stats.total_requests == len(SYMBOLS):
                break
            await asyncio.sleep(0.1)
        await handle.terminate("control experiment done")
    assert stats.total_requests == len(SYMBOLS)
    assert stats.rate_limit_refusals > 0
    # Every refusal was recorded in the ledger for operators to see.
    _, refused = await usage.usage(db, "alphavantage", ledger_day(dt.datetime.now(dt.UTC)))
    assert refused == stats.rate_limit_refusals


async def test_daily_quota_stops_both_workers_and_defers_the_rest(
    dev_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, make_settings: Any
) -> None:
    app = av_sim.make_app(seed=9, calls_per_day=8)
    async with serve_asgi(app) as url:
        settings = make_settings(
            alphavantage_base_url=url, alphavantage_calls_per_minute=10_000, alphavantage_calls_per_day=8
        )
        await seed_demo(db)
        async with two_workers(dev_env, task_queue, settings):
            result = await dev_env.client.execute_workflow(
                "SyncCompanyPrices", {"symbols": SYMBOLS, "force": True}, id=f"quota-{task_queue}",
                task_queue=task_queue, result_type=SyncCompanyPricesResult,
            )
    assert result.count(SymbolOutcome.UPDATED) == 8
    assert result.count(SymbolOutcome.DEFERRED) == len(SYMBOLS) - 8
    deferred = next(r for r in result.symbols if r.outcome is SymbolOutcome.DEFERRED)
    assert deferred.detail is not None and "daily budget of 8 AlphaVantage calls is used up" in deferred.detail
    assert app.state.sim.stats.by_endpoint["GLOBAL_QUOTE"] == 8
    assert app.state.sim.stats.rate_limit_refusals == 0
