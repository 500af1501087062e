"""News workflows: IngestMarketNews, IngestCompanyNews, IngestDealNews.

Each run: `news.ingest` on the `deallens-newsapi` queue fetches and stores its feed (one
activity per feed or company, so a failing company never holds up the others, and no article
list enters history) → `news.score_sentiment` and `deals.track` on the `deallens-llm` queue
over the id range the run inserted → signal-with-start of the news monitor (the tickers
linked) and the deal monitor (the tickers of new or changed deals) with `new_data`.
The downstream activities are called by name: they belong to the sentiment and deal
modules, registered on the LLM queue by worker.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.alerts import AlertActivities
    from activities.news import NewsActivities, NewsApiActivities
    from deallens.contracts import (
        ArticleRange,
        IngestCompanyNewsInput,
        IngestDealNewsInput,
        IngestMarketNewsInput,
        IngestNewsInput,
        IngestNewsResult,
        IngestNewsRunResult,
        NewsKind,
        PlanCompanyNewsInput,
        ScoreSentimentResult,
        SignalMonitorsInput,
        TrackDealsResult,
    )
    from workflows import queues, search_attributes
    from workflows.inputs import validated
    from workflows.policies import BEST_EFFORT_RETRY, DB_RETRY, DB_TIMEOUT, LLM_HEARTBEAT, LLM_RETRY, LLM_TIMEOUT

# NewsAPI requests: 5xx and timeouts retried with backoff; key and parameter errors are
# permanent (the activity raises them non-retryable by type); a used-up quota is not an
# error at all (the activity reports it as `deferred`).
NEWSAPI_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=5,
    non_retryable_error_types=["ProviderConfigError", "InvalidRequest", "PermanentDatabaseError"],
)
# A few pages, then linking and a store under the story lock.
INGEST_TIMEOUT = timedelta(minutes=5)
INGEST_HEARTBEAT = timedelta(minutes=1)
INGEST_SCHEDULE_TIMEOUT = timedelta(minutes=30)
# Scoring and deal tracking: LLM calls (or their offline fallbacks) over one run's articles;
# the LLM queue's policy and timeouts (workflows/policies.py).
LLM_SCHEDULE_TIMEOUT = timedelta(minutes=60)

SCORE_SENTIMENT = "news.score_sentiment"
TRACK_DEALS = "deals.track"


def _failure_text(error: BaseException) -> str:
    if not isinstance(error, ActivityError):
        raise error  # a bug, not a provider failure: fail the workflow task visibly
    cause = error.cause
    if isinstance(cause, ApplicationError):
        return f"{cause.type}: {cause.message}" if cause.type else cause.message
    return str(cause or error)


def _union(ranges: Sequence[ArticleRange | None]) -> ArticleRange | None:
    """One range covering every run's inserts (the scorers skip what is already done in it)."""
    present = [r for r in ranges if r is not None]
    if not present:
        return None
    return ArticleRange(first_id=min(r.first_id for r in present), last_id=max(r.last_id for r in present))


async def _ingest(request: IngestNewsInput) -> IngestNewsResult:
    return await workflow.execute_activity_method(
        NewsApiActivities.ingest,
        request,
        task_queue=queues.provider_queue(workflow.info().task_queue, queues.NEWSAPI_SUFFIX),
        start_to_close_timeout=INGEST_TIMEOUT,
        schedule_to_close_timeout=INGEST_SCHEDULE_TIMEOUT,
        heartbeat_timeout=INGEST_HEARTBEAT,
        retry_policy=NEWSAPI_RETRY,
        summary=f"NewsAPI: {request.kind} news" + (f" of company {request.company_id}" if request.company_id else ""),
    )


async def _llm_step(name: str, articles: ArticleRange, result_type: type[Any]) -> Any:
    return await workflow.execute_activity(
        name,
        articles,
        result_type=result_type,
        task_queue=queues.provider_queue(workflow.info().task_queue, queues.LLM_SUFFIX),
        start_to_close_timeout=LLM_TIMEOUT,
        schedule_to_close_timeout=LLM_SCHEDULE_TIMEOUT,
        heartbeat_timeout=LLM_HEARTBEAT,
        retry_policy=LLM_RETRY,
        summary=f"{name}: articles {articles.first_id}-{articles.last_id}",
    )


async def _signal(kind: str, symbols: list[str]) -> bool:
    """Signal-with-start `new_data`, best effort: the monitors poll anyway."""
    if not symbols:
        return False
    try:
        await workflow.execute_activity_method(
            AlertActivities.signal_monitors,
            SignalMonitorsInput(kinds=[kind], symbols=symbols, task_queue=workflow.info().task_queue),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=BEST_EFFORT_RETRY,
            summary=f"wake the {kind} alert monitor for {', '.join(symbols[:8])}" + (" and more" if len(symbols) > 8 else ""),
        )
    except ActivityError as error:
        workflow.logger.warning("could not signal the %s monitor; it will catch up by polling: %s", kind, error)
        return False
    return True


async def _finish(
    kind: NewsKind, requests: Sequence[IngestNewsInput], *, failed: dict[str, str], unknown: list[int]
) -> IngestNewsRunResult:
    """Fetch-and-store every feed, then score, track deals and wake the monitors."""
    outcomes = await asyncio.gather(*(_ingest(r) for r in requests), return_exceptions=True)
    feeds: list[IngestNewsResult] = []
    for request, outcome in zip(requests, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            failed[str(request.company_id) if request.company_id is not None else request.kind] = _failure_text(outcome)
        else:
            feeds.append(outcome)
    articles = _union([f.articles for f in feeds])
    sentiment: ScoreSentimentResult | None = None
    deals: TrackDealsResult | None = None
    if articles is not None:
        try:
            sentiment = await _llm_step(SCORE_SENTIMENT, articles, ScoreSentimentResult)
        except ActivityError as error:
            failed[SCORE_SENTIMENT] = _failure_text(error)
        try:
            deals = await _llm_step(TRACK_DEALS, articles, TrackDealsResult)
        except ActivityError as error:
            failed[TRACK_DEALS] = _failure_text(error)
    linked = sorted({s for f in feeds for s in f.symbols})
    signalled = [k for k, symbols in (("news", linked), ("deal", deals.symbols if deals else [])) if await _signal(k, symbols)]
    return IngestNewsRunResult(
        kind=kind,
        feeds=feeds,
        failed=failed,
        unknown_company_ids=unknown,
        stored=sum(f.stored for f in feeds),
        articles=articles,
        sentiment=sentiment,
        deals=deals,
        signalled=signalled,
    )


@workflow.defn(name="IngestMarketNews")
class IngestMarketNews:
    """Business top headlines and market queries since the feed's last fetch."""

    @workflow.run
    async def run(self, raw: Any = None) -> IngestNewsRunResult:
        validated(IngestMarketNewsInput, raw)
        return await _finish("market", [IngestNewsInput(kind="market")], failed={}, unknown=[])


@workflow.defn(name="IngestDealNews")
class IngestDealNews:
    """M&A news (merger, acquisition, takeover, buyout, tender offer, ...) since the feed's last fetch."""

    @workflow.run
    async def run(self, raw: Any = None) -> IngestNewsRunResult:
        validated(IngestDealNewsInput, raw)
        return await _finish("deal", [IngestNewsInput(kind="deal")], failed={}, unknown=[])


@workflow.defn(name="IngestCompanyNews")
class IngestCompanyNews:
    """The companies given, or tracked companies by priority; each since its own last fetch."""

    @workflow.run
    async def run(self, raw: Any = None) -> IngestNewsRunResult:
        request = validated(IngestCompanyNewsInput, raw)
        plan = await workflow.execute_activity_method(
            NewsActivities.plan_companies,
            PlanCompanyNewsInput(company_ids=request.company_ids),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
            summary="plan the companies whose news to fetch",
        )
        if plan.company_ids and workflow.patched(search_attributes.UPSERT_PATCH):
            # DealLensCompanyIds: which companies' news this run fetched (known after the plan).
            workflow.upsert_search_attributes(search_attributes.updates(company_ids=plan.company_ids))
        requests = [IngestNewsInput(kind="company", company_id=c) for c in plan.company_ids]
        return await _finish("company", requests, failed={}, unknown=plan.unknown_ids)
