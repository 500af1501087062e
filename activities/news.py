"""News activities: where an article arrives.

`NewsApiActivities.ingest` runs only on the `deallens-newsapi` queue (task-queue-wide rate
limit): it fetches a feed's pages *and stores them* in one activity, so no article list ever
enters workflow history; the result is counts, the id range inserted and the tickers linked.
Each request first takes one call from the api_usage ledger (the same atomic reservation as
AlphaVantage's, under provider "newsapi"); a used-up quota, or NewsAPI's own rateLimited,
defers the rest of the run instead of retrying. `NewsActivities.plan_companies` (default
queue) picks the companies a run fetches.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
from collections.abc import AsyncIterator
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from activities.errors import permanent_database_errors, to_application_error
from deallens.contracts import (
    ArticleRange,
    IngestNewsInput,
    IngestNewsResult,
    PlanCompanyNewsInput,
    PlanCompanyNewsResult,
)
from deallens.db import news, usage
from deallens.domain.news import pacing
from deallens.domain.news.articles import CleanArticle, Skipped, clean_article
from deallens.domain.news.linking import CompanyLinker
from deallens.domain.news.queries import DEAL_QUERY, MARKET_QUERY, company_query
from deallens.observability import metrics
from deallens.providers.errors import ProviderError, RateLimited
from deallens.providers.newsapi import MAX_PAGE_SIZE, PROVIDER, MaximumResultsReached, NewsApiClient, NewsPage

log = logging.getLogger(__name__)

HEARTBEAT_EVERY_SECONDS = 10.0
# Each fetch reaches this far behind the last one: NewsAPI indexes some articles after their
# publication time, and what is asked twice is a duplicate by canonical URL, not a new row.
FETCH_OVERLAP = dt.timedelta(hours=1)
# No fetch asks further back than this (NEWS_FIRST_FETCH_DAYS's upper bound): NewsAPI refuses
# a `from` beyond the plan's month of history with a permanent parameterInvalid, and a failed
# fetch never moves its cursor, so a cursor that old (the stack stopped for weeks, a company
# the rotation reaches rarely) would fail every run after it.
MAX_LOOKBACK = dt.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class _Query:
    endpoint: str  # "everything" or "top_headlines"
    q: str | None


def _ingest_key() -> str:
    """The same for every attempt of this activity execution, different for every other."""
    info = activity.info()
    key = f"{info.workflow_id}/{info.workflow_run_id}/{info.activity_id}"
    return key if len(key) <= 200 else hashlib.sha256(key.encode()).hexdigest()


@contextlib.asynccontextmanager
async def _heartbeating(detail: str) -> AsyncIterator[None]:
    """Heartbeat while a long step runs (waiting for the story lock, a large batch)."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_EVERY_SECONDS)
            activity.heartbeat(detail)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


def _ledger_day(at: dt.datetime) -> dt.date:
    """NewsAPI counts requests per 24 hours; the ledger's day is the UTC date."""
    return at.astimezone(dt.UTC).date()


class NewsApiActivities:
    def __init__(
        self,
        client: NewsApiClient,
        engine: AsyncEngine,
        *,
        simulated: bool,
        calls_per_day: int,
        max_results: int = 100,
        first_fetch: dt.timedelta = dt.timedelta(days=3),
        max_requests: dict[str, int] | None = None,
        pace: bool = False,
    ) -> None:
        self._client = client
        self._engine = engine
        self._calls_per_day = calls_per_day
        self._max_results = max_results
        self._first_fetch = first_fetch
        # Requests one run of a feed may spend (a company's fetch is one query).
        self._max_requests = {"market": 2, "deal": 1, "company": 1, **(max_requests or {})}
        self._source = f"{PROVIDER}-sim" if simulated else PROVIDER
        self._pace = pace
        self._stories = news.StoryCache()
        self._linker: CompanyLinker | None = None
        self._linker_version: tuple[object, ...] | None = None

    async def _current_linker(self) -> CompanyLinker:
        """The linker over every company, rebuilt only when companies change (building it for
        thousands of companies costs far more than one batch's linking)."""
        version = await news.link_targets_version(self._engine)
        if self._linker is None or version != self._linker_version:
            self._linker = CompanyLinker(await news.link_targets(self._engine))
            self._linker_version = version
        return self._linker

    async def _ahead_of_pace(self, now: dt.datetime, kind: str, need: int) -> bool:
        """Whether the feed's calls today already reach its share of the quota due by the next
        hour, counting the `need` calls the rest of the run asks at least (pacing.py).

        A soft check beside the atomic reservation (which alone enforces the hard cap)."""
        used, _ = await usage.usage(self._engine, pacing.ledger_name(kind), _ledger_day(now))
        return not pacing.may_spend(self._calls_per_day, now, used_by_feed=used, need=need)

    async def _plan(self, request: IngestNewsInput, now: dt.datetime) -> tuple[list[_Query], dt.datetime, news.FetchMark] | None:
        if request.kind == "company":
            assert request.company_id is not None
            target = await news.company(self._engine, request.company_id)
            if target is None:
                return None
            since = target.news_fetched_at - FETCH_OVERLAP if target.news_fetched_at else now - self._first_fetch
            since = max(since, now - MAX_LOOKBACK)
            return [_Query("everything", company_query(target.name, target.aliases))], since, news.FetchMark(
                at=now, company_id=target.id
            )
        fetched_at = await news.feed_fetched_at(self._engine, request.kind)
        since = max(fetched_at - FETCH_OVERLAP if fetched_at else now - self._first_fetch, now - MAX_LOOKBACK)
        mark = news.FetchMark(at=now, feed=request.kind)
        if request.kind == "market":
            return [_Query("top_headlines", None), _Query("everything", MARKET_QUERY)], since, mark
        return [_Query("everything", DEAL_QUERY)], since, mark

    async def _page(self, query: _Query, page: int, page_size: int, since: dt.datetime, until: dt.datetime) -> NewsPage:
        if query.endpoint == "top_headlines":
            return await self._client.top_headlines(page=page, page_size=page_size)
        assert query.q is not None
        return await self._client.everything(q=query.q, since=since, until=until, page=page, page_size=page_size)

    @activity.defn(name="news.ingest")
    async def ingest(self, request: IngestNewsInput) -> IngestNewsResult:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        result: dict[str, Any] = {"kind": request.kind, "company_id": request.company_id}
        plan = await self._plan(request, now)
        if plan is None:
            return IngestNewsResult(**result, deferred="the company no longer exists")
        queries, since, mark = plan
        raw: list[Any] = []
        requests = 0
        deferred: str | None = None
        stopped: str | None = None
        page_size = min(MAX_PAGE_SIZE, self._max_results)
        allowance = request.max_requests or self._max_requests[request.kind]
        for position, query in enumerate(queries):
            page, got = 1, 0
            while deferred is None:
                if requests >= allowance:
                    stopped = stopped or "the run's request allowance"
                    break
                # This request and the first page of each query after it: a market run that
                # cannot afford both queries waits for a later run rather than spend one.
                need = min(len(queries) - position, allowance - requests)
                if self._pace and await self._ahead_of_pace(now, request.kind, need):
                    deferred = f"paced: the rest of the {request.kind} feed's share of today's NewsAPI quota is for later today"
                    break
                reservation = await usage.reserve_call(
                    self._engine, PROVIDER, _ledger_day(now), self._calls_per_day, tally=pacing.ledger_name(request.kind)
                )
                if reservation is None:
                    metrics.provider_call(PROVIDER, "budget_exhausted")
                    metrics.quota_left(PROVIDER, 0)
                    deferred = f"the daily quota of {self._calls_per_day} NewsAPI requests is used up (NEWSAPI_CALLS_PER_DAY)"
                    break
                requests += 1
                metrics.quota_left(PROVIDER, self._calls_per_day - reservation.number)
                try:
                    answer = await self._page(query, page, page_size, since, now)
                except MaximumResultsReached:
                    metrics.provider_call(PROVIDER, "result_cap")
                    stopped = "the plan's result cap"
                    break
                except RateLimited as error:
                    metrics.provider_call(PROVIDER, "rate_limited")
                    await usage.record_refusal(self._engine, PROVIDER, _ledger_day(now))
                    if error.daily:
                        deferred = "NewsAPI says the plan's daily requests are used up (rateLimited)"
                        break
                    raise to_application_error(error) from None
                except ProviderError as error:
                    metrics.provider_call(PROVIDER, metrics.outcome_of(error))
                    raise to_application_error(error) from None
                metrics.provider_call(PROVIDER, "ok")
                activity.heartbeat(f"{query.endpoint} page {page}")
                raw.extend(answer.articles)
                got += len(answer.articles)
                if got >= answer.total_results or len(answer.articles) < page_size:
                    break
                if page * page_size >= self._max_results:
                    stopped = "the plan's result cap"
                    break
                page += 1
        clean: list[CleanArticle] = []
        skipped: Counter[str] = Counter()
        stripped = 0
        for item in raw:
            try:
                article, had_markup = clean_article(item, now=now)
            except Skipped as skip:
                skipped[skip.reason.value] += 1
                continue
            clean.append(article)
            stripped += had_markup
        # The fetch state moves on only when every query was asked: a deferred run asks again.
        complete = deferred is None
        with permanent_database_errors():
            linker = await self._current_linker()
            async with _heartbeating("storing"):
                outcome = await news.store_articles(
                    self._engine,
                    clean,
                    category=request.kind,
                    source=self._source,
                    linker=linker,
                    mark=mark if complete else None,
                    ingest_key=_ingest_key(),
                    cache=self._stories,
                )
        if skipped:
            log.info("news %s: skipped bad articles %s", request.kind, dict(skipped))
        return IngestNewsResult(
            **result,
            requests=requests,
            fetched=len(raw),
            stored=outcome.stored,
            duplicates=outcome.duplicates,
            skipped=dict(skipped),
            html_stripped=stripped,
            new_stories=outcome.new_stories,
            joined_stories=outcome.joined_stories,
            links=outcome.links,
            articles=(
                ArticleRange(first_id=outcome.first_id, last_id=outcome.last_id)
                if outcome.first_id is not None and outcome.last_id is not None
                else None
            ),
            symbols=outcome.symbols,
            deferred=deferred,
            stopped=stopped,
        )


class NewsActivities:
    def __init__(self, engine: AsyncEngine, *, company_max: int) -> None:
        self._engine = engine
        self._company_max = company_max

    @activity.defn(name="news.plan_companies")
    async def plan_companies(self, request: PlanCompanyNewsInput) -> PlanCompanyNewsResult:
        ids, unknown = await news.plan_companies(self._engine, request.company_ids, self._company_max)
        return PlanCompanyNewsResult(company_ids=ids, unknown_ids=unknown)
