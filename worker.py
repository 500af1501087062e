"""python worker.py [--queue NAME]: run the DealLens workers (all task queues by default).

One Worker per task queue: `deallens` runs the workflows and the database activities;
`deallens-alphavantage` runs provider calls under a task-queue-wide rate limit (set the same
ALPHAVANTAGE_CALLS_PER_MINUTE on every worker: the server applies the latest value it sees).
The worker refuses to start when the database is behind the migrations.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.activity import _Definition
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker

from activities.alerts import AlertActivities
from activities.errors import DatabaseOutages, log_expected_failures_on_one_line
from activities.log_context import activity_log_context
from activities.market_data import AlphaVantageActivities, MarketDataActivities
from activities.news import NewsActivities, NewsApiActivities
from activities.notifications import NotificationActivities, NotifyConfig, sms_provider_from
from activities.llm_batch import LLMBatchActivities
from activities.news_sentiment import SentimentActivities
from activities.deals import DealActivities
from activities.insights import InsightActivities
from activities.redelivery import RedeliveryActivities
from deallens.config import ConfigError, Settings, configure_logging, load_settings
from deallens.db import retention
from deallens.db.engine import create_engine, database_problem
from deallens.db.migrate import DatabaseBehindError, ensure_up_to_date
from deallens.llm.gateway import LLMGateway, gateway_from_settings
from deallens.llm.prices import PriceTableError
from deallens.notify.push import WebhookSender
from deallens.observability.endpoint import metrics_endpoint
from deallens.observability.tracing import WORKER_SERVICE, setup_tracing, shutdown_tracing
from deallens.providers.alphavantage import AlphaVantageClient
from deallens.providers.newsapi import NewsApiClient
from temporal_client import connect, worker_runtime
from workflows import queues, search_attributes
from workflows.alerts import AlertMonitor
from workflows.notifications import (
    SendAlertNotification,
    SendAlertNotificationBatch,
    SendDailyDigest,
    SendWeeklySummary,
)
from workflows.market_data import CleanupMarketData, SyncCompanyPrices, SyncDailyOHLC, SyncFundamentals
from workflows.news import IngestCompanyNews, IngestDealNews, IngestMarketNews
from workflows.insights import GenerateCompanyInsights, GenerateDealInsights, GenerateMarketSummary
from workflows.redelivery import RetryParkedDeliveries

log = logging.getLogger("deallens.worker")

WORKFLOWS = [
    SyncCompanyPrices,
    SyncDailyOHLC,
    SyncFundamentals,
    CleanupMarketData,
    AlertMonitor,
    SendAlertNotification,
    SendAlertNotificationBatch,
    SendDailyDigest,
    SendWeeklySummary,
    IngestMarketNews,
    IngestCompanyNews,
    IngestDealNews,
    GenerateCompanyInsights,
    GenerateDealInsights,
    GenerateMarketSummary,
    RetryParkedDeliveries,
]


@dataclass
class Resources:
    """What activities hold: built once per process, closed on shutdown."""

    engine: AsyncEngine
    alphavantage: AlphaVantageClient
    # Webhooks and the SMS provider: one pooled client, no redirects (a signed POST must not wander).
    http: httpx.AsyncClient
    # Every OpenAI call (deallens/llm/gateway.py): budget, usage ledger, validation.
    llm: LLMGateway
    newsapi: NewsApiClient | None = None


@contextlib.asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    if settings.database_url is None:
        raise ConfigError(
            "DATABASE_URL: not set; export postgresql+asyncpg://user@host:5432/db, or use `make run`"
        )
    engine = create_engine(settings.database_url, pool_size=min(settings.worker_concurrency, 20))
    alphavantage = AlphaVantageClient(
        base_url=settings.alphavantage_base_url,
        api_key=settings.alphavantage_api_key,
        timeout=settings.alphavantage_timeout_seconds,
        max_body_bytes=settings.alphavantage_max_body_bytes,
        deadline_seconds=settings.alphavantage_deadline_seconds,
    )
    http = httpx.AsyncClient(timeout=httpx.Timeout(10.0), follow_redirects=False)
    newsapi = NewsApiClient(
        base_url=settings.newsapi_base_url,
        api_key=settings.news_api_key,
        timeout=settings.newsapi_timeout_seconds,
        max_body_bytes=settings.newsapi_max_body_bytes,
        deadline_seconds=settings.newsapi_deadline_seconds,
    )
    try:
        llm = gateway_from_settings(settings, engine)
    except PriceTableError as error:
        await newsapi.aclose()
        await http.aclose()
        await alphavantage.aclose()
        await engine.dispose()
        raise ConfigError(str(error)) from None
    try:
        yield Resources(engine=engine, alphavantage=alphavantage, http=http, llm=llm, newsapi=newsapi)
    finally:
        await llm.aclose()
        await newsapi.aclose()
        await http.aclose()
        await alphavantage.aclose()
        await engine.dispose()


def activity_name(fn: Callable[..., Any]) -> str:
    definition = _Definition.from_callable(fn)
    if definition is None or definition.name is None:
        raise ValueError(f"{fn!r} is not an @activity.defn")
    return definition.name


def build_workers(
    client: Client,
    settings: Settings,
    resources: Resources,
    *,
    task_queue: str = queues.DEFAULT,
    only: str | None = None,
    replace_activities: Sequence[Callable[..., Any]] = (),
) -> list[Worker]:
    """The workers for `task_queue` and its provider queues (or just the queue named `only`).

    `replace_activities` swaps registered activities for others of the same activity name
    (tests pin the market clock this way; the SDK's own tests do the same).
    """
    market = MarketDataActivities(
        resources.engine,
        calls_per_day=settings.alphavantage_calls_per_day,
        premium=settings.alphavantage_premium,
        price_sync_max_symbols=settings.price_sync_max_symbols,
        fundamentals_max_symbols=settings.fundamentals_max_symbols,
        retention_rules=retention.rules(
            price_quotes_days=settings.retention_price_quotes_days,
            ohlc_days=settings.retention_ohlc_days,
            news_days=settings.retention_news_days,
            alert_history_days=settings.retention_alert_history_days,
            usage_days=settings.retention_usage_days,
        ),
    )
    alphavantage = AlphaVantageActivities(
        resources.alphavantage,
        resources.engine,
        simulated=settings.alphavantage_simulated,
        calls_per_day=settings.alphavantage_calls_per_day,
        calls_per_minute=settings.alphavantage_calls_per_minute,
    )
    alerts = AlertActivities(
        resources.engine,
        max_quote_age=timedelta(seconds=settings.alert_max_quote_age_seconds),
        sms_enabled=settings.sms_enabled,
    )
    notify = NotificationActivities(
        resources.engine,
        NotifyConfig.from_settings(settings),
        webhooks=WebhookSender(resources.http, allow_private_hosts=settings.push_allow_private_hosts),
        sms=sms_provider_from(settings, resources.http),
    )
    assert resources.newsapi is not None
    newsapi = NewsApiActivities(
        resources.newsapi,
        resources.engine,
        simulated=settings.newsapi_simulated,
        calls_per_day=settings.newsapi_calls_per_day,
        max_results=settings.newsapi_max_results,
        first_fetch=timedelta(days=settings.news_first_fetch_days),
        max_requests={"market": settings.news_market_max_requests, "deal": settings.news_deal_max_requests},
        pace=settings.newsapi_pace_daily_quota,
    )
    news = NewsActivities(resources.engine, company_max=settings.news_company_max_companies)
    sentiment = SentimentActivities(resources.engine, resources.llm, batch_size=settings.sentiment_batch_size)
    deals = DealActivities(resources.engine, resources.llm, batch_size=settings.deals_batch_size)
    insights = InsightActivities(resources.engine, resources.llm)
    llm_batch = LLMBatchActivities(resources.llm)
    redelivery = RedeliveryActivities(resources.engine)
    av_queue = queues.provider_queue(task_queue, queues.ALPHAVANTAGE_SUFFIX)
    newsapi_queue = queues.provider_queue(task_queue, queues.NEWSAPI_SUFFIX)
    llm_queue = queues.provider_queue(task_queue, queues.LLM_SUFFIX)
    specs = {
        task_queue: dict(
            workflows=WORKFLOWS,
            activities=[
                market.market_session,
                market.plan_price_sync,
                market.store_quotes,
                market.record_unknown_symbols,
                market.plan_daily_bars,
                market.plan_fundamentals,
                market.cleanup,
                alerts.evaluate,
                alerts.signal_monitors,
                notify.plan_alerts,
                notify.send_email,
                notify.send_push,
                notify.send_sms,
                notify.park,
                notify.plan_digests,
                notify.plan_due_digests,
                notify.page_digests,
                notify.send_digest_batch,
                notify.park_digests,
                redelivery.requeue_parked,
                news.plan_companies,
                insights.plan_companies,
                insights.prepare_company_batch,
                insights.store_batch,
            ],
            max_concurrent_activities=settings.worker_concurrency,
            # The server does not rate-limit eager activities: keep every start going through it.
            disable_eager_activity_execution=True,
        ),
        av_queue: dict(
            activities=[
                alphavantage.fetch_quote,
                alphavantage.fetch_bulk_quotes,
                alphavantage.sync_daily_bars,
                alphavantage.sync_fundamentals,
            ],
            max_task_queue_activities_per_second=settings.alphavantage_calls_per_minute / 60,
            max_concurrent_activities=max(1, min(settings.worker_concurrency, 10)),
        ),
        # One news.ingest is one feed (a few requests); the server spaces them across workers.
        newsapi_queue: dict(
            activities=[newsapi.ingest],
            max_task_queue_activities_per_second=settings.newsapi_calls_per_minute / 60,
            max_concurrent_activities=max(1, min(settings.worker_concurrency, 4)),
        ),
        # Every OpenAI call. Each activity makes at least one call, so the queue's rate limit
        # bounds the requests per minute from above; the gateway's shared call slot
        # (api_rate_slots) spaces the calls of multi-call activities exactly.
        llm_queue: dict(
            activities=[
                sentiment.score_sentiment,
                deals.track,
                insights.analyse_companies,
                insights.analyse_deals,
                insights.market_summary,
                # The Batch API steps: a few calls each, far under the rate limit.
                llm_batch.submit,
                llm_batch.poll,
                llm_batch.collect,
            ],
            max_task_queue_activities_per_second=settings.llm_requests_per_minute / 60,
            max_concurrent_activities=max(1, min(settings.worker_concurrency, 10)),
        ),
    }
    if replace_activities:
        by_name = {activity_name(fn): fn for fn in replace_activities}
        for options in specs.values():
            options["activities"] = [by_name.pop(activity_name(fn), fn) for fn in options["activities"]]  # type: ignore[union-attr]
        if by_name:
            raise ValueError(f"no registered activity to replace named {', '.join(by_name)}")
    if only is not None:
        if only not in specs:
            known = ", ".join(specs)
            raise ConfigError(f"--queue: {only!r} has no activities or workflows yet (known: {known})")
        specs = {only: specs[only]}
    return [
        Worker(
            client, task_queue=name, graceful_shutdown_timeout=timedelta(seconds=10),
            interceptors=[DatabaseOutages()], **options,  # type: ignore[arg-type]
        )
        for name, options in specs.items()
    ]


async def _search_attributes_registered(client: Client) -> None:
    """The workflows set DealLensSymbols & co.; a server that lacks them refuses the starts and
    upserts (a stalled workflow task). Register them (idempotent), or refuse to start with why."""
    try:
        added = await search_attributes.ensure_registered(client)
    except RPCError as error:
        raise ConfigError(
            f"Temporal namespace {client.namespace}: cannot check or register the search attributes "
            f"{', '.join(k.name for k in search_attributes.ALL)} ({error.message}); create them "
            "(`temporal operator search-attribute create`, or tcld on Temporal Cloud) and start again"
        ) from None
    if added:
        log.warning("registered the search attributes %s on namespace %s", ", ".join(added), client.namespace)


def _banner(settings: Settings, names: Sequence[str]) -> str:
    def provider(name: str, simulated: bool, url: str) -> str:
        return f"{name}: SIMULATED by the local stand-in at {url}" if simulated else f"{name}: real ({url})"

    lines = [
        f"DealLens worker on {settings.temporal_address} namespace {settings.temporal_namespace}",
        f"  task queues: {', '.join(names)}",
        "  " + provider("AlphaVantage", settings.alphavantage_simulated, settings.alphavantage_base_url),
        "  " + provider("NewsAPI", settings.newsapi_simulated, settings.newsapi_base_url),
        "  " + provider("OpenAI", settings.openai_simulated, settings.openai_base_url),
    ]
    if settings.email_enabled:
        lines.append(f"  email: SMTP {settings.smtp_host}:{settings.smtp_port} ({settings.smtp_tls})")
    else:
        lines.append(f"  !! {settings.email_off_reason}: alert emails and digests are skipped !!")
    if settings.alphavantage_simulated:
        lines.append("  !! market data is SIMULATED: stored rows say source='alphavantage-sim' !!")
    return "\n".join(lines)


async def run(settings: Settings, only: str | None) -> None:
    settings.check_providers()
    settings.check_notifications()
    async with open_resources(settings) as resources, contextlib.AsyncExitStack() as observing:
        await ensure_up_to_date(resources.engine)
        runtime, sdk = worker_runtime(settings) if settings.metrics_bind else (None, None)
        try:
            client = await connect(settings, runtime=runtime)
        except RuntimeError as error:
            raise ConfigError(f"TEMPORAL_ADDRESS: cannot reach Temporal at {settings.temporal_address}: {error}") from None
        await _search_attributes_registered(client)
        workers = build_workers(client, settings, resources, only=only)
        banner = _banner(settings, [w.task_queue for w in workers])
        if sdk is not None:
            endpoint = await observing.enter_async_context(metrics_endpoint(settings, resources.engine, sdk))
            banner += f"\n  metrics: http://{endpoint.host}:{endpoint.port}/metrics"
        log.warning(banner)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        async with contextlib.AsyncExitStack() as stack:
            for worker in workers:
                await stack.enter_async_context(worker)
            await stop.wait()
            log.warning("shutting down: finishing running activities (up to 10 s)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python worker.py", description="Run the DealLens Temporal workers.")
    parser.add_argument(
        "--queue", help=f"run only this task queue: {queues.DEFAULT}, {queues.ALPHAVANTAGE} or {queues.LLM} (default: all)"
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(
            settings.log_level, settings.log_format, secrets=settings.secret_values(), context=activity_log_context
        )
        log_expected_failures_on_one_line()
        # Before the engine and HTTP clients exist: the instrumentations wrap their constructors.
        setup_tracing(WORKER_SERVICE)
        asyncio.run(run(settings, args.queue))
    except (ConfigError, DatabaseBehindError) as error:
        print(f"worker: {error}", file=sys.stderr)
        return 2
    except (OSError, DBAPIError, ArgumentError, ValueError) as error:
        print(f"worker: cannot use the database: {database_problem(error)}", file=sys.stderr)
        return 2
    finally:
        shutdown_tracing()  # flushes the spans still batched
    return 0


if __name__ == "__main__":
    from temporal_client import exit_skipping_teardown

    exit_skipping_teardown(main())
