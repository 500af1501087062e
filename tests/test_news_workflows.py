"""IngestMarketNews, IngestCompanyNews and IngestDealNews end to end: the time-skipping
server, the real workers, the real NewsAPI client against the stand-in over HTTP, the real
sentiment and deal activities, PostgreSQL; monitors signalled."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from deallens.contracts import IngestNewsRunResult
from deallens.db.demo import seed_demo
from deallens.sim import newsapi as news_sim
from deallens.sim import openai as openai_sim
from deallens.sim.faults import SimController
from deallens.sim.serve import serve_asgi
from tests.workers import record_history, running_workers


@pytest.fixture
async def sim() -> AsyncIterator[tuple[str, SimController]]:
    # The system clock: the stand-in publishes today's and the last days' stories as they happen.
    app = news_sim.make_app(seed=5)
    async with serve_asgi(app) as url:
        yield url, app.state.sim


@pytest.fixture
async def llm_url() -> AsyncIterator[str]:
    """The OpenAI stand-in: sentiment (and deal extraction) go through the real gateway."""
    async with serve_asgi(openai_sim.make_app(seed=5)) as url:
        yield f"{url}/v1"


@pytest.fixture
def news_settings(make_settings: Any, llm_url: str) -> Any:
    def _make(url: str, **overrides: Any) -> Any:
        options = dict(
            newsapi_base_url=url, newsapi_calls_per_minute=6000, newsapi_calls_per_day=1000,
            openai_base_url=llm_url, llm_requests_per_minute=6000,
        )
        return make_settings(**{**options, **overrides})

    return _make


@pytest.fixture
def settings(sim: tuple[str, Any], news_settings: Any) -> Any:
    return news_settings(sim[0])


async def scalar(db: AsyncEngine, sql: str, **params: Any) -> Any:
    async with db.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar_one()


async def ingest(env: WorkflowEnvironment, kind: str, task_queue: str, workflow_id: str, raw: Any = None) -> IngestNewsRunResult:
    return await env.client.execute_workflow(
        kind, raw if raw is not None else {}, id=workflow_id, task_queue=task_queue, result_type=IngestNewsRunResult
    )


async def test_deal_news_end_to_end_then_nothing_new(
    time_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, settings: Any
) -> None:
    await seed_demo(db)
    async with running_workers(time_env.client, settings, task_queue):
        handle = await time_env.client.start_workflow(
            "IngestDealNews", {}, id="deal-news-1", task_queue=task_queue, result_type=IngestNewsRunResult
        )
        first = await handle.result()
        await record_history(handle, "ingest_deal_news")
        [feed] = first.feeds
        assert first.failed == {} and feed.requests == 1 and feed.deferred is None
        assert first.stored == feed.stored > 0 and feed.fetched == feed.stored + feed.duplicates + sum(feed.skipped.values())
        assert feed.new_stories + feed.joined_stories == feed.stored and feed.joined_stories > 0
        stored = await scalar(db, "SELECT count(*) FROM news_articles")
        assert stored == first.stored
        assert await scalar(db, "SELECT count(*) FROM news_articles WHERE story_id IS NULL") == 0
        assert await scalar(db, "SELECT count(*) FROM news_stories") == feed.new_stories
        assert await scalar(db, "SELECT count(*) FROM news_company") == feed.links > 0
        # Sentiment: every inserted article scored, once.
        assert first.sentiment is not None and first.sentiment.scored == first.stored
        assert await scalar(db, "SELECT count(*) FROM news_articles WHERE sentiment_label IS NULL") == 0
        assert first.articles is not None and first.articles.last_id - first.articles.first_id + 1 == first.stored
        # The news monitor was signal-with-started with the linked tickers.
        assert "news" in first.signalled and feed.symbols
        for kind in ("news", "deal"):
            monitor = await time_env.client.get_workflow_handle(f"alert-monitor-{kind}").describe()
            assert monitor.status is WorkflowExecutionStatus.RUNNING
        # Deal tracking ran over the same articles; the deal monitor got the deals' tickers.
        assert first.deals is not None and first.deals.checked > 0 and first.deals.created > 0
        assert "deal" in first.signalled and first.deals.symbols
        assert await scalar(db, "SELECT count(*) FROM deals") == first.deals.created

        second = await ingest(time_env, "IngestDealNews", task_queue, "deal-news-2")
        assert second.stored == 0 and second.articles is None and second.sentiment is None
        assert await scalar(db, "SELECT count(*) FROM news_articles") == stored
        assert await scalar(db, "SELECT fetched_at IS NOT NULL FROM news_feeds WHERE name = 'deal'")
        for kind in ("news", "deal"):
            await time_env.client.get_workflow_handle(f"alert-monitor-{kind}").terminate("test over")


async def test_company_news_by_ids_and_rotation(
    time_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, settings: Any, sim: tuple[str, SimController]
) -> None:
    await seed_demo(db)
    apple = await scalar(db, "SELECT id FROM companies WHERE symbol = 'AAPL'")
    async with running_workers(time_env.client, settings, task_queue):
        handle = await time_env.client.start_workflow(
            "IngestCompanyNews", {"company_ids": [apple, 999_999]}, id="company-news-1", task_queue=task_queue,
            result_type=IngestNewsRunResult,
        )
        result = await handle.result()
        await record_history(handle, "ingest_company_news")
        assert result.unknown_company_ids == [999_999] and [f.company_id for f in result.feeds] == [apple]
        assert result.stored > 0
        assert await scalar(db, "SELECT news_fetched_at IS NOT NULL FROM companies WHERE id = :id", id=apple)
        # Every stored article links Apple (the query asked for its name, not the bare ticker).
        unlinked = await scalar(
            db,
            "SELECT count(*) FROM news_articles n WHERE NOT EXISTS "
            "(SELECT 1 FROM news_company nc WHERE nc.news_id = n.id AND nc.company_id = :id)",
            id=apple,
        )
        assert unlinked == 0
        # No ids: the rotation picks the most watched companies not fetched recently.
        rotated = await ingest(time_env, "IngestCompanyNews", task_queue, "company-news-2")
        assert len(rotated.feeds) == settings.news_company_max_companies
        assert apple not in [f.company_id for f in rotated.feeds]
        await time_env.client.get_workflow_handle("alert-monitor-news").terminate("test over")


async def test_market_news_skips_bad_input_and_defers_on_the_quota(
    time_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, news_settings: Any, sim: tuple[str, SimController]
) -> None:
    await seed_demo(db)
    url, controller = sim
    settings = news_settings(url, newsapi_calls_per_day=3, newsapi_pace_daily_quota=False)
    controller.faults.add("bad_articles", count=1, match="/v2/top-headlines")
    async with running_workers(time_env.client, settings, task_queue):
        handle = await time_env.client.start_workflow(
            "IngestMarketNews", {}, id="market-news-1", task_queue=task_queue, result_type=IngestNewsRunResult
        )
        first = await handle.result()
        await record_history(handle, "ingest_market_news")
        [feed] = first.feeds
        assert feed.requests == 2 and feed.deferred is None
        assert feed.skipped == {
            "no_url": 1, "no_title": 1, "bad_date": 1, "too_large": 1, "invalid_text": 1, "html_in_title": 1,
            "bad_url": 1, "removed": 1, "not_an_object": 1,
        }
        assert feed.stored > 0
        assert await scalar(db, "SELECT count(*) FROM news_articles WHERE url LIKE '%broken.example.com%'") == 0
        # One request is left of the day's three: the second run takes it, then defers.
        second = await ingest(time_env, "IngestMarketNews", task_queue, "market-news-2")
        assert second.feeds[0].requests == 1 and "NEWSAPI_CALLS_PER_DAY" in (second.feeds[0].deferred or "")
        third = await ingest(time_env, "IngestMarketNews", task_queue, "market-news-3")
        assert third.feeds[0].requests == 0 and third.feeds[0].deferred and third.failed == {}
        assert await scalar(db, "SELECT calls FROM api_usage WHERE provider = 'newsapi'") == 3
        await time_env.client.get_workflow_handle("alert-monitor-news").terminate("test over")


@pytest.mark.parametrize(
    ("kind", "failed", "deferred"),
    [
        ("api_key_invalid", "ProviderConfigError: newsapi: apiKeyInvalid", None),
        ("parameters_incompatible", "InvalidRequest: newsapi: parametersIncompatible: parameter sources", None),
        ("rate_limited", None, "rateLimited"),
    ],
)
async def test_provider_refusals_fail_once_or_defer(
    time_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, settings: Any, sim: tuple[str, SimController],
    kind: str, failed: str | None, deferred: str | None,
) -> None:
    await seed_demo(db)
    _, controller = sim
    controller.faults.add(kind)
    async with running_workers(time_env.client, settings, task_queue):
        result = await ingest(time_env, "IngestDealNews", task_queue, f"deal-{kind}")
    # Permanent: one request, no retry loop; the run completes and says why.
    assert controller.stats.total_requests == 1
    if failed:
        assert result.failed["deal"].startswith(failed) and result.feeds == []
    else:
        assert result.failed == {} and deferred in (result.feeds[0].deferred or "")
    assert await scalar(db, "SELECT count(*) FROM news_articles") == 0


async def test_server_errors_are_retried(
    time_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, settings: Any, sim: tuple[str, SimController]
) -> None:
    await seed_demo(db)
    _, controller = sim
    controller.faults.add("http_500", count=2)
    async with running_workers(time_env.client, settings, task_queue):
        result = await ingest(time_env, "IngestDealNews", task_queue, "deal-5xx")
        await time_env.client.get_workflow_handle("alert-monitor-news").terminate("test over")
    assert result.failed == {} and result.stored > 0
    assert controller.stats.faults == {"http_500": 2} and controller.stats.total_requests == 3


async def test_overlapping_runs_never_store_an_article_twice(
    time_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, settings: Any
) -> None:
    await seed_demo(db)
    async with running_workers(time_env.client, settings, task_queue):
        results = await asyncio.gather(
            *(ingest(time_env, kind, task_queue, f"overlap-{i}") for i, kind in enumerate(["IngestDealNews", "IngestMarketNews"] * 2))
        )
        await time_env.client.get_workflow_handle("alert-monitor-news").terminate("test over")
    assert sum(r.stored for r in results) == await scalar(db, "SELECT count(*) FROM news_articles")
    assert await scalar(db, "SELECT count(*) - count(DISTINCT canonical_url) FROM news_articles") == 0
    assert await scalar(db, "SELECT count(*) FROM news_articles WHERE story_id IS NULL") == 0


async def test_the_daily_quota_is_paced_over_the_day(
    time_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, news_settings: Any, sim: tuple[str, SimController]
) -> None:
    import datetime as dt
    import math

    await seed_demo(db)
    now = dt.datetime.now(dt.UTC)
    elapsed = (now - now.replace(hour=0, minute=0, second=0, microsecond=0)).total_seconds()
    # The deal feed's third of 24 calls, due by the next hour.
    due = max(1, math.ceil(8 * min(1.0, (elapsed + 3600) / 86_400)))
    async with db.begin() as conn:
        await conn.execute(
            text("INSERT INTO api_usage (provider, day, calls) VALUES ('newsapi', :day, :calls), ('newsapi:deal', :day, :calls)"),
            {"day": now.date(), "calls": due},
        )
    settings = news_settings(sim[0], newsapi_calls_per_day=24)
    async with running_workers(time_env.client, settings, task_queue):
        result = await ingest(time_env, "IngestDealNews", task_queue, "deal-paced")
    [feed] = result.feeds
    assert feed.requests == 0 and "paced" in (feed.deferred or "") and sim[1].stats.total_requests == 0


async def test_a_night_of_company_runs_leaves_the_market_feed_its_share(
    time_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, news_settings: Any, sim: tuple[str, SimController]
) -> None:
    import datetime as dt

    # The company runs (every 30 minutes all night) have spent all the pace allowed so far:
    # as one pool, a market run (two queries at once) then got nothing, all day long.
    await seed_demo(db)
    per_day = 1000
    now = dt.datetime.now(dt.UTC)
    elapsed = (now - now.replace(hour=0, minute=0, second=0, microsecond=0)).total_seconds()
    spent = math.ceil(per_day * min(1.0, (elapsed + 3600) / 86_400))
    async with db.begin() as conn:
        await conn.execute(
            text("INSERT INTO api_usage (provider, day, calls) VALUES ('newsapi', :day, :calls), ('newsapi:company', :day, :calls)"),
            {"day": now.date(), "calls": spent},
        )
    settings = news_settings(sim[0], newsapi_calls_per_day=per_day)
    async with running_workers(time_env.client, settings, task_queue):
        market = await ingest(time_env, "IngestMarketNews", task_queue, "market-share")
        [feed] = market.feeds
        assert feed.requests == 2 and feed.deferred is None and feed.stored > 0
        company = await ingest(time_env, "IngestCompanyNews", task_queue, "company-over-share")
        await time_env.client.get_workflow_handle("alert-monitor-news").terminate("test over")
    assert await scalar(db, "SELECT calls FROM api_usage WHERE provider = 'newsapi:market'") == 2
    assert all(f.requests == 0 and "paced" in (f.deferred or "") for f in company.feeds) and company.feeds
    assert await scalar(db, "SELECT calls FROM api_usage WHERE provider = 'newsapi'") == spent + 2


async def test_paging_stops_at_the_plan_s_result_cap_and_keeps_what_came(
    time_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, news_settings: Any, sim: tuple[str, SimController]
) -> None:
    await seed_demo(db)
    # A paid plan's cap configured against the Developer-plan stand-in: page 2 is refused.
    settings = news_settings(sim[0], newsapi_max_results=300, news_deal_max_requests=3, news_first_fetch_days=30)
    async with running_workers(time_env.client, settings, task_queue):
        result = await ingest(time_env, "IngestDealNews", task_queue, "deal-paging")
        await time_env.client.get_workflow_handle("alert-monitor-news").terminate("test over")
    [feed] = result.feeds
    assert result.failed == {} and feed.requests == 2 and feed.stopped == "the plan's result cap"
    assert feed.fetched == 100 and feed.stored > 0
    assert sim[1].stats.by_endpoint["/v2/everything"] == 2


async def test_a_cursor_older_than_the_plan_s_history_asks_from_its_oldest_day(
    time_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, settings: Any, sim: tuple[str, SimController]
) -> None:
    # A company last fetched 40 days ago (the stack stopped for weeks, or a rotation too long
    # for the quota): NewsAPI refuses a `from` beyond the plan's month of history with a
    # permanent parameterInvalid, and a failed fetch never moves the cursor, so every run
    # would fail on it again (and the rotation, least recently fetched first, picks it first).
    await seed_demo(db)
    apple = await scalar(db, "SELECT id FROM companies WHERE symbol = 'AAPL'")
    async with db.begin() as conn:
        await conn.execute(
            text("UPDATE companies SET news_fetched_at = now() - interval '40 days' WHERE id = :id"), {"id": apple}
        )
    async with running_workers(time_env.client, settings, task_queue):
        result = await ingest(time_env, "IngestCompanyNews", task_queue, "company-news-stale", {"company_ids": [apple]})
        await time_env.client.get_workflow_handle("alert-monitor-news").terminate("test over")
    assert result.failed == {} and result.stored > 0
    assert await scalar(db, "SELECT news_fetched_at > now() - interval '1 hour' FROM companies WHERE id = :id", id=apple)
    assert sim[1].stats.by_endpoint["/v2/everything"] == 1


async def test_articles_an_earlier_run_left_unscored_are_scored_and_tracked_by_the_next(
    time_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, settings: Any
) -> None:
    # A run stored its articles, then stopped before scoring and deal tracking (`make run`
    # stopped with Ctrl-C, a laptop asleep past the run's 30-minute timeout): later runs' ranges
    # start after those ids, so nothing would ever score or read them.
    await seed_demo(db)
    async with db.begin() as conn:
        stranded = (await conn.execute(text(
            "INSERT INTO news_articles (url, canonical_url, title, description, category, published_at, source, created_at) "
            "VALUES ('https://news.example/pfizer-seagen', 'https://news.example/pfizer-seagen', "
            "'Pfizer agrees to acquire Seagen for $43 billion', 'Pfizer Inc said it will buy Seagen Inc.', 'deal', "
            "now() - interval '3 hours', 'newsapi-sim', now() - interval '2 hours') RETURNING id"
        ))).scalar_one()
    async with running_workers(time_env.client, settings, task_queue):
        result = await ingest(time_env, "IngestDealNews", task_queue, "deal-after-stranded")
        for kind in ("news", "deal"):
            await time_env.client.get_workflow_handle(f"alert-monitor-{kind}").terminate("test over")
    assert result.failed == {} and result.articles is not None and result.articles.first_id > stranded
    assert await scalar(db, "SELECT sentiment_score IS NOT NULL FROM news_articles WHERE id = :id", id=stranded)
    assert await scalar(db, "SELECT count(*) FROM deal_article_checks WHERE news_id = :id", id=stranded) == 1
    # What the run itself stored is all scored too, each once.
    assert await scalar(db, "SELECT count(*) FROM news_articles WHERE sentiment_score IS NULL") == 0
