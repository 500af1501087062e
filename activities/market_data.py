"""Market-data activities: where a price arrives.

`AlphaVantageActivities` make provider calls and run only on the `deallens-alphavantage`
task queue, whose task-queue-wide rate limit spaces calls across every worker; each takes
one call from the daily-quota ledger before it calls. Series and fundamentals are fetched
*and stored* in the same activity, so no large payload ever enters workflow history.
The database-only activities (`MarketDataActivities`) run on the default queue.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import permanent_database_errors, to_application_error
from deallens.contracts import (
    BarsSyncResult,
    CleanupInput,
    CleanupMarketDataResult,
    FetchBulkQuotesInput,
    FetchedBulkQuotes,
    FetchedQuote,
    FetchQuoteInput,
    FundamentalsJob,
    FundamentalsSyncResult,
    BarsJob,
    MarketSessionInput,
    MarketSessionResult,
    PlanDailyBarsInput,
    PlanDailyBarsResult,
    PlanFundamentalsInput,
    PlanFundamentalsResult,
    PlanPriceSyncInput,
    PlanPriceSyncResult,
    RecordUnknownSymbolsInput,
    RecordUnknownSymbolsResult,
    StoreQuotesInput,
    StoreQuotesResult,
    SyncBarsInput,
)
from deallens.db import companies, ohlc, prices, retention, usage
from deallens.domain.budget import ledger_day
from deallens.domain.market_calendar import session_at
from deallens.observability import metrics
from deallens.providers.alphavantage import PROVIDER, AlphaVantageClient, Quote
from deallens.providers.errors import ProviderError, RateLimited

log = logging.getLogger(__name__)

T = TypeVar("T")

HEARTBEAT_EVERY_SECONDS = 10.0


def _fetched(quote: Quote, source: str, at: dt.datetime) -> FetchedQuote:
    return FetchedQuote(
        symbol=quote.symbol.upper(),
        price=quote.price,
        open=quote.open,
        high=quote.high,
        low=quote.low,
        previous_close=quote.previous_close,
        change=quote.change,
        change_percent=quote.change_percent,
        volume=quote.volume,
        latest_trading_day=quote.latest_trading_day,
        # Bulk quotes carry the provider's own timestamp; GLOBAL_QUOTE has none.
        quoted_at=quote.quoted_at.astimezone(dt.UTC) if quote.quoted_at else at,
        source=source,
    )


async def _wait_heartbeating(seconds: float) -> None:
    """Sleep until the reserved call slot, heartbeating so a long queue is not taken for a hang."""
    remaining = seconds
    while remaining > 0:
        step = min(remaining, HEARTBEAT_EVERY_SECONDS)
        await asyncio.sleep(step)
        remaining -= step
        activity.heartbeat("waiting for the call slot")


class AlphaVantageActivities:
    def __init__(
        self,
        client: AlphaVantageClient,
        engine: AsyncEngine,
        *,
        simulated: bool,
        calls_per_day: int,
        calls_per_minute: float | None = None,
    ) -> None:
        self._client = client
        self._engine = engine
        self._calls_per_day = calls_per_day
        self._calls_per_minute = calls_per_minute
        self._source = f"{PROVIDER}-sim" if simulated else PROVIDER

    async def _call(self, request: Callable[[], Awaitable[T]]) -> T:
        """One provider call: reserve it (day's quota and call slot), wait for the slot, call,
        and map failures to retry semantics."""
        day = ledger_day(dt.datetime.now(dt.UTC))
        reservation = await usage.reserve_call(
            self._engine, PROVIDER, day, self._calls_per_day, calls_per_minute=self._calls_per_minute
        )
        if reservation is None:
            metrics.provider_call(PROVIDER, "budget_exhausted")
            metrics.quota_left(PROVIDER, 0)
            raise ApplicationError(
                f"the daily budget of {self._calls_per_day} AlphaVantage calls is used up "
                "(ALPHAVANTAGE_CALLS_PER_DAY); the next run after midnight ET continues",
                type="BudgetExhausted",
                non_retryable=True,
            )
        metrics.quota_left(PROVIDER, self._calls_per_day - reservation.number)
        await _wait_heartbeating(reservation.wait_seconds)
        try:
            answer = await request()
        except RateLimited as error:
            metrics.provider_call(PROVIDER, "rate_limited")
            await usage.record_refusal(self._engine, PROVIDER, day)
            log.warning("AlphaVantage refused a call for rate reasons: %s", error.message)
            if error.daily:
                # The provider's own day is over for this key: waiting an hour inside a
                # retry would only hold a slot. Defer to the next run instead.
                raise ApplicationError(str(error), type="BudgetExhausted", non_retryable=True) from None
            raise to_application_error(error) from None
        except ProviderError as error:
            metrics.provider_call(PROVIDER, metrics.outcome_of(error))
            raise to_application_error(error) from None
        metrics.provider_call(PROVIDER, "ok")
        return answer

    @activity.defn(name="alphavantage.fetch_quote")
    async def fetch_quote(self, request: FetchQuoteInput) -> FetchedQuote:
        quote = await self._call(lambda: self._client.global_quote(request.symbol))
        return _fetched(quote, self._source, dt.datetime.now(dt.UTC).replace(microsecond=0))

    @activity.defn(name="alphavantage.fetch_bulk_quotes")
    async def fetch_bulk_quotes(self, request: FetchBulkQuotesInput) -> FetchedBulkQuotes:
        bulk = await self._call(lambda: self._client.bulk_quotes(request.symbols))
        at = dt.datetime.now(dt.UTC).replace(microsecond=0)
        return FetchedBulkQuotes(quotes=[_fetched(q, self._source, at) for q in bulk.quotes], unknown=bulk.unknown)

    @activity.defn(name="alphavantage.sync_daily_bars")
    async def sync_daily_bars(self, request: SyncBarsInput) -> BarsSyncResult:
        series = await self._call(lambda: self._client.daily_series(request.symbol, full=request.full))
        activity.heartbeat("fetched")
        rows = ohlc.session_bars(
            request.company_id,
            series.bars,
            session_date=request.session_date,
            session_closes_at=request.session_closes_at,
            now=dt.datetime.now(dt.UTC),
            source=self._source,
        )
        info = activity.info()
        # An empty (but well-formed) series stores nothing and deletes nothing.
        with permanent_database_errors():
            counts = await ohlc.upsert_bars(
                self._engine, rows, receipt=f"{info.workflow_id}/{info.workflow_run_id}/{info.activity_id}"
            )
        return BarsSyncResult(
            inserted=counts.inserted,
            updated=counts.updated,
            unchanged=counts.unchanged,
            rejected=len(series.rejected),
            latest_date=series.bars[-1].date if series.bars else None,
        )

    @activity.defn(name="alphavantage.sync_fundamentals")
    async def sync_fundamentals(self, request: FundamentalsJob) -> FundamentalsSyncResult:
        overview = await self._call(lambda: self._client.overview(request.symbol))
        fields = {
            "name": overview.name,
            "sector": overview.sector,
            "industry": overview.industry,
            "exchange": overview.exchange,
            "currency": overview.currency,
        }
        raw = json.dumps({**overview.raw, "_source": self._source}, sort_keys=True)
        with permanent_database_errors():
            name, changed = await companies.update_fundamentals(self._engine, request.company_id, fields, raw)
        return FundamentalsSyncResult(changed=changed, name=name)


class MarketDataActivities:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        calls_per_day: int,
        premium: bool,
        price_sync_max_symbols: int,
        fundamentals_max_symbols: int,
        retention_rules: list[retention.Rule],
    ) -> None:
        self._engine = engine
        self._calls_per_day = calls_per_day
        self._price_quota = prices.PriceQuota(
            calls_per_day=calls_per_day, premium=premium, max_calls=price_sync_max_symbols
        )
        self._fundamentals_max = fundamentals_max_symbols
        self._retention = retention_rules

    async def _calls_left(self) -> int:
        return await usage.calls_left(self._engine, PROVIDER, self._calls_per_day, dt.datetime.now(dt.UTC))

    @activity.defn(name="market.session")
    async def market_session(self, request: MarketSessionInput) -> MarketSessionResult:
        session = session_at(request.at)
        return MarketSessionResult(
            is_open=session.is_open,
            session_date=session.session_date,
            opens_at=session.opens_at,
            closes_at=session.closes_at,
            last_closed=session.last_closed,
        )

    @activity.defn(name="market.plan_price_sync")
    async def plan_price_sync(self, request: PlanPriceSyncInput) -> PlanPriceSyncResult:
        fetch, quarantined, deferred, per_call = await prices.plan_price_sync_at(
            self._engine, request.symbols, self._price_quota,
            at=request.at, opens_at=request.opens_at, closes_at=request.closes_at,
        )
        return PlanPriceSyncResult(fetch=fetch, quarantined=quarantined, deferred=deferred, per_call=per_call)

    @activity.defn(name="market.store_quotes")
    async def store_quotes(self, request: StoreQuotesInput) -> StoreQuotesResult:
        with permanent_database_errors():
            updated, unchanged = await prices.store_quotes(self._engine, request.quotes)
        return StoreQuotesResult(updated=updated, unchanged=unchanged)

    @activity.defn(name="market.record_unknown_symbols")
    async def record_unknown_symbols(self, request: RecordUnknownSymbolsInput) -> RecordUnknownSymbolsResult:
        quarantined = await companies.record_unknown_symbols(self._engine, request.symbols, request.reason)
        return RecordUnknownSymbolsResult(quarantined=quarantined)

    @activity.defn(name="market.plan_daily_bars")
    async def plan_daily_bars(self, request: PlanDailyBarsInput) -> PlanDailyBarsResult:
        jobs, skipped = await companies.daily_bar_jobs(
            self._engine, request.symbols, through=request.through, full=request.full, calls_left=await self._calls_left()
        )
        return PlanDailyBarsResult(
            jobs=[BarsJob(company_id=c, symbol=s, full=f) for c, s, f in jobs], skipped=skipped
        )

    @activity.defn(name="market.plan_fundamentals")
    async def plan_fundamentals(self, request: PlanFundamentalsInput) -> PlanFundamentalsResult:
        found, skipped = await companies.plan_fundamentals(
            self._engine, request.symbols, calls_left=await self._calls_left(), max_symbols=self._fundamentals_max,
            now=dt.datetime.now(dt.UTC),
        )
        return PlanFundamentalsResult(
            jobs=[FundamentalsJob(company_id=c, symbol=s) for c, s in found], skipped=skipped
        )

    @activity.defn(name="market.cleanup")
    async def cleanup(self, request: CleanupInput) -> CleanupMarketDataResult:
        def progress(table: str, removed: int) -> None:
            activity.heartbeat(table, removed)

        removed, cutoffs = await retention.apply(
            self._engine, self._retention, at=request.at, dry_run=request.dry_run, progress=progress
        )
        return CleanupMarketDataResult(dry_run=request.dry_run, removed=removed, cutoffs=cutoffs)
