"""The insight workflows on the real workers (time-skipping server, the OpenAI stand-in over HTTP):
watchlisted companies analysed then reused with zero calls, deals, the market summary on a trading
day and skipped on a holiday, bad input in one line; replay histories recorded here."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from deallens.contracts import GenerateInsightsResult
from deallens.sim.openai import make_app
from deallens.sim.serve import serve_asgi
from tests.insight_data import add_bars, add_companies, seed_universe, trading_days
from tests.workers import record_history, running_workers
from workflows import search_attributes


@pytest.fixture(scope="module")
async def llm_url() -> AsyncIterator[str]:
    async with serve_asgi(make_app(seed=3)) as url:
        yield f"{url}/v1"


@pytest.fixture
def settings(make_settings: Any, llm_url: str) -> Any:
    # No OPENAI_API_KEY: the simulated LLM, labelled "-sim" (as `make run` does).
    return make_settings(openai_base_url=llm_url, llm_requests_per_minute=6000)


async def scalar(db: AsyncEngine, sql: str, **params: Any) -> Any:
    async with db.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar_one()


async def run(env: WorkflowEnvironment, kind: str, task_queue: str, workflow_id: str, raw: Any) -> GenerateInsightsResult:
    return await env.client.execute_workflow(
        kind, raw, id=workflow_id, task_queue=task_queue, result_type=GenerateInsightsResult
    )


async def _watch(db: AsyncEngine, company_ids: list[int]) -> None:
    async with db.begin() as conn:
        user = (await conn.execute(text("INSERT INTO users (email) VALUES ('pm@example.com') RETURNING id"))).scalar_one()
        await conn.execute(text("INSERT INTO watchlist (user_id, company_id) SELECT :u, unnest(CAST(:c AS bigint[]))"),
                           {"u": user, "c": company_ids})


async def test_company_insights_for_the_watchlist_then_all_cached(
    time_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, settings: Any
) -> None:
    today = (await time_env.get_current_time()).date()
    ids = await seed_universe(db, 5, end=today)
    await _watch(db, ids[:3])
    # Nothing here waits on a timer: keep the clock from skipping ahead between the runs.
    with time_env.auto_time_skipping_disabled():
        async with running_workers(time_env.client, settings, task_queue):
            handle = await time_env.client.start_workflow(
                "GenerateCompanyInsights", {}, id=f"ci-{task_queue}", task_queue=task_queue, result_type=GenerateInsightsResult
            )
            first = await handle.result()
            await record_history(handle, "generate_company_insights")
            # Searchable by company: DealLensCompanyIds lists the companies the run analysed.
            described = await handle.describe()
            assert described.typed_search_attributes.get(search_attributes.COMPANY_IDS) == sorted(map(str, ids[:3]))
            second = await run(time_env, "GenerateCompanyInsights", task_queue, f"ci2-{task_queue}", {})
            unknown = await run(time_env, "GenerateCompanyInsights", task_queue, f"ci3-{task_queue}",
                                {"company_ids": [ids[4], 999999]})
    assert (first.requested, first.analysed, first.reused, first.llm_calls, first.failed) == (3, 3, 0, 3, {})
    assert (second.analysed, second.reused, second.llm_calls) == (0, 3, 0), second
    assert (unknown.analysed, unknown.unknown_ids) == (1, [999999])
    assert await scalar(db, "SELECT count(*) FROM llm_usage") == 4
    assert await scalar(db, "SELECT count(DISTINCT source) FROM ai_insights") == 1
    assert await scalar(db, "SELECT min(source) FROM ai_insights") == "gpt-4o-mini-sim"
    assert await scalar(db, "SELECT min(content->>'generated_by') FROM ai_insights") == "llm-simulated"


async def test_deal_insights_and_the_market_summary(
    time_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, settings: Any
) -> None:
    day = dt.date(2026, 11, 27)  # a Friday, NYSE's early close after Thanksgiving
    acquirer, target = await add_companies(db, ["ACQR", "TRGT"])
    await add_bars(db, target, trading_days(day, 40), [40 + (i % 3) for i in range(40)])
    await add_bars(db, acquirer, trading_days(day, 40), [90 - (i % 4) for i in range(40)])
    async with db.begin() as conn:
        deal_id = (await conn.execute(text(
            "INSERT INTO deals (title, acquirer_company_id, target_company_id, status, price_per_share,"
            " consideration, expected_close_on, source) VALUES ('Acqr to buy Trgt', :a, :t, 'announced', 48,"
            " 'cash', :close, 'test') RETURNING id"), {"a": acquirer, "t": target, "close": day + dt.timedelta(days=200)},
        )).scalar_one()
    with time_env.auto_time_skipping_disabled():
        async with running_workers(time_env.client, settings, task_queue):
            handle = await time_env.client.start_workflow(
                "GenerateDealInsights", {}, id=f"di-{task_queue}", task_queue=task_queue, result_type=GenerateInsightsResult
            )
            deals = await handle.result()
            await record_history(handle, "generate_deal_insights")
            handle = await time_env.client.start_workflow(
                "GenerateMarketSummary", {"date": day.isoformat()}, id=f"ms-{task_queue}", task_queue=task_queue,
                result_type=GenerateInsightsResult,
            )
            summary = await handle.result()
            await record_history(handle, "generate_market_summary")
            holiday = await run(time_env, "GenerateMarketSummary", task_queue, f"ms2-{task_queue}", {"date": "2026-11-26"})
            with pytest.raises(WorkflowFailureError) as caught:
                await run(time_env, "GenerateDealInsights", task_queue, f"bad-{task_queue}", {"deal_ids": ["x"]})
    assert (deals.analysed, deals.llm_calls) == (1, 1)
    assert (summary.analysed, summary.skipped) == (1, None)
    assert holiday.analysed == 0 and holiday.skipped == "2026-11-26 is not a NYSE trading day"
    cause = caught.value.cause
    assert "invalid input: deal_ids.0" in str(cause) and "\n" not in str(cause)
    spread = await scalar(db, "SELECT content->'context'->'figures'->>'spread_pct' FROM ai_insights WHERE kind = 'deal'")
    close = 40 + (39 % 3)
    assert float(spread) == round((48 / close - 1) * 100, 2)
    assert await scalar(db, "SELECT subject_id FROM ai_insights WHERE kind = 'deal'") == deal_id
    headline = await scalar(db, "SELECT content->'analysis'->>'headline' FROM ai_insights WHERE kind = 'market_summary'")
    assert headline.startswith("Tracked stocks close")


async def test_batch_path_waits_hours_on_timers_and_stores_each_insight_once(
    time_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, make_settings: Any
) -> None:
    import asyncio

    from deallens.sim.clock import ManualClock
    from tests.test_llm_batch_workflow import clock_following

    start = await time_env.get_current_time()
    ids = await seed_universe(db, 3, end=start.date())
    clock = ManualClock(start)
    app = make_app(seed=21, clock=clock, batch_delay=dt.timedelta(hours=3))
    async with serve_asgi(app) as url:
        settings = make_settings(openai_api_key="sk-test", openai_base_url=f"{url}/v1", llm_requests_per_minute=6000)
        async with running_workers(time_env.client, settings, task_queue), clock_following(time_env, clock):
            handle = await time_env.client.start_workflow(
                "GenerateCompanyInsights", {"company_ids": ids, "batch": True}, id=f"cb-{task_queue}",
                task_queue=task_queue, result_type=GenerateInsightsResult,
            )
            result = await asyncio.wait_for(handle.result(), timeout=120)
        await record_history(handle, "generate_company_insights_batch")
        # Unchanged data: a second batch run would send nothing (the test server's clock has run
        # far ahead by now, so this asks the preparation step directly, at the data's date).
        from deallens.db import insight_context
        from deallens.llm import insight_runs
        from deallens.llm.gateway import gateway_from_settings

        gateway = gateway_from_settings(settings, db)
        async with db.connect() as conn:
            found = await insight_context.company_contexts(conn, ids, start.date())
        again = await insight_runs.prepare_batch(db, gateway, list(found.values()), workflow=None, force=False)
        await gateway.aclose()
    assert (result.analysed, result.fallback, result.llm_calls) == (3, 0, 3)
    assert await time_env.get_current_time() - start >= dt.timedelta(hours=3)
    assert app.state.sim.stats.by_endpoint["/v1/batches"] == 1
    assert again == (None, 0, 3)
    assert await scalar(db, "SELECT count(*) FROM ai_insights") == 3
    assert await scalar(db, "SELECT count(*) FROM ai_insights WHERE content->>'via' = 'batch' AND source = 'gpt-4o-mini'") == 3
    assert await scalar(db, "SELECT count(*) FROM llm_usage WHERE status = 'ok' AND insight_id IS NOT NULL") == 3
