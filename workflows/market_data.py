"""Market-data workflows: SyncCompanyPrices, SyncDailyOHLC, SyncFundamentals, CleanupMarketData.

Each decides what to do and records every symbol's outcome; activities do the I/O. One
provider activity is one provider call, so the `deallens-alphavantage` queue's rate limit is
the provider's call budget, and a failing symbol never holds up the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.alerts import AlertActivities
    from activities.market_data import AlphaVantageActivities, MarketDataActivities
    from deallens.contracts import (
        CleanupInput,
        CleanupMarketDataInput,
        CleanupMarketDataResult,
        FetchBulkQuotesInput,
        FetchedQuote,
        FetchQuoteInput,
        OHLCProgress,
        PlanDailyBarsInput,
        PlanFundamentalsInput,
        PlanPriceSyncInput,
        RecordUnknownSymbolsInput,
        SignalMonitorsInput,
        StoreQuotesInput,
        SymbolOutcome,
        SymbolResult,
        SyncBarsInput,
        SyncCompanyPricesInput,
        SyncCompanyPricesResult,
        SyncDailyOHLCInput,
        SyncDailyOHLCResult,
        SyncFundamentalsInput,
        SyncFundamentalsResult,
    )
    from workflows import queues, search_attributes
    from workflows.inputs import validated
    from workflows.policies import BEST_EFFORT_RETRY, DB_RETRY, DB_TIMEOUT
    from workflows.shared import market_session

T = TypeVar("T")
A = TypeVar("A")
R = TypeVar("R")

CLEANUP_TIMEOUT = timedelta(minutes=30)
CLEANUP_HEARTBEAT = timedelta(minutes=2)

# Provider calls: capped exponential backoff; unknown symbols, configuration errors and an
# exhausted daily budget are permanent. Rate limits override the interval with the
# provider's own delay (ApplicationError.next_retry_delay).
PROVIDER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=5,
    non_retryable_error_types=["UnknownSymbol", "ProviderConfigError", "BudgetExhausted"],
)
# A call may first wait for its slot (calls are spaced 60 s / calls-per-minute apart across
# all workers), heartbeating meanwhile; a full 20-year series is a few MB and ~6,500 rows.
PROVIDER_CALL_TIMEOUT = timedelta(minutes=10)
PROVIDER_HEARTBEAT = timedelta(minutes=1)
# Includes the time spent queued behind the task queue's rate limit.
PROVIDER_SCHEDULE_TIMEOUT = timedelta(minutes=60)

UNKNOWN_REASON = "the provider does not know this symbol"


def _failure(symbol: str, error: BaseException) -> SymbolResult:
    """The outcome of a provider activity that failed (after its retries)."""
    if not isinstance(error, ActivityError):
        raise error  # a bug, not a provider failure: fail the workflow task visibly
    cause = error.cause
    error_type = cause.type if isinstance(cause, ApplicationError) else None
    message = cause.message if isinstance(cause, ApplicationError) else str(cause or error)
    outcome = {
        "UnknownSymbol": SymbolOutcome.UNKNOWN,
        "BudgetExhausted": SymbolOutcome.DEFERRED,
    }.get(error_type or "", SymbolOutcome.FAILED)
    return SymbolResult(symbol=symbol, outcome=outcome, detail=message)


async def _settle(calls: Sequence[Awaitable[T]]) -> list[T | BaseException]:
    return list(await asyncio.gather(*calls, return_exceptions=True))


def _provider_queue() -> str:
    return queues.provider_queue(workflow.info().task_queue, queues.ALPHAVANTAGE_SUFFIX)


def _provider_call(method: Callable[[Any, A], Awaitable[R]], argument: A, summary: str) -> Awaitable[R]:
    """One AlphaVantage activity (one provider call) with the provider queue's options."""
    return workflow.execute_activity_method(
        method,
        argument,
        task_queue=_provider_queue(),
        start_to_close_timeout=PROVIDER_CALL_TIMEOUT,
        schedule_to_close_timeout=PROVIDER_SCHEDULE_TIMEOUT,
        heartbeat_timeout=PROVIDER_HEARTBEAT,
        retry_policy=PROVIDER_RETRY,
        summary=summary,
    )


def _label_symbols(symbols: Sequence[str]) -> None:
    """List the symbols this run works on in its search attributes (`DealLensSymbols = "AAPL"`).

    Known only after the plan (a scheduled run picks them), hence an upsert, behind a patch:
    runs recorded before it issued no such command."""
    if symbols and workflow.patched(search_attributes.UPSERT_PATCH):
        workflow.upsert_search_attributes(search_attributes.updates(symbols=symbols))


def _few(symbols: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(symbols[:limit])
    return shown + (f" and {len(symbols) - limit} more" if len(symbols) > limit else "")


async def _record_unknown(results: dict[str, SymbolResult]) -> None:
    """Count unknown-symbol answers towards quarantine, and say so where it now applies."""
    unknown = [s for s, r in results.items() if r.outcome is SymbolOutcome.UNKNOWN]
    if not unknown:
        return
    recorded = await workflow.execute_activity_method(
        MarketDataActivities.record_unknown_symbols,
        RecordUnknownSymbolsInput(symbols=unknown, reason=UNKNOWN_REASON),
        start_to_close_timeout=DB_TIMEOUT,
        retry_policy=DB_RETRY,
        summary=f"count unknown symbols towards quarantine: {_few(unknown)}",
    )
    for symbol in recorded.quarantined:
        results[symbol] = results[symbol].model_copy(update={"detail": f"{results[symbol].detail}; now quarantined"})


async def _signal_monitors(kinds: list[str], symbols: list[str]) -> None:
    """Signal-with-start `new_data` to the alert monitors, best effort: they poll anyway."""
    if not symbols:
        return
    try:
        await workflow.execute_activity_method(
            AlertActivities.signal_monitors,
            SignalMonitorsInput(kinds=kinds, symbols=symbols, task_queue=workflow.info().task_queue),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=BEST_EFFORT_RETRY,
            summary=f"wake the {' and '.join(kinds)} alert monitors for {_few(symbols)}",
        )
    except ActivityError as error:
        workflow.logger.warning("could not signal the alert monitors; they will catch up by polling: %s", error)


def _ordered(results: dict[str, SymbolResult], *orders: Sequence[str]) -> list[SymbolResult]:
    seen = dict.fromkeys(s for order in orders for s in order)
    return [results[s] for s in seen if s in results]


@workflow.defn(name="SyncCompanyPrices")
class SyncCompanyPrices:
    """Latest quotes. Without symbols: tracked companies by priority within the paced budget."""

    @workflow.run
    async def run(self, raw: Any = None) -> SyncCompanyPricesResult:
        request = validated(SyncCompanyPricesInput, raw)
        session = await market_session()
        if not session.is_open and not request.force:
            return SyncCompanyPricesResult(
                market_open=False,
                skipped_reason=f"market closed; next session opens {session.opens_at.isoformat()} "
                "(pass force=true to sync anyway)",
            )

        plan = await workflow.execute_activity_method(
            MarketDataActivities.plan_price_sync,
            PlanPriceSyncInput(
                symbols=request.symbols, at=workflow.now(), opens_at=session.opens_at, closes_at=session.closes_at
            ),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
            summary="plan the symbols to fetch within the paced quota",
        )
        _label_symbols([*plan.fetch, *(r.symbol for r in plan.quarantined), *(r.symbol for r in plan.deferred)])
        results: dict[str, SymbolResult] = {r.symbol: r for r in [*plan.quarantined, *plan.deferred]}
        quotes: list[FetchedQuote] = []
        if plan.per_call == 1:
            fetched = await _settle([self._fetch(symbol) for symbol in plan.fetch])
            for symbol, outcome in zip(plan.fetch, fetched, strict=True):
                if isinstance(outcome, FetchedQuote):
                    quotes.append(outcome)
                else:
                    results[symbol] = _failure(symbol, outcome)
        else:
            chunks = [plan.fetch[i : i + plan.per_call] for i in range(0, len(plan.fetch), plan.per_call)]
            fetched_chunks = await _settle([self._fetch_bulk(chunk) for chunk in chunks])
            for chunk, outcome in zip(chunks, fetched_chunks, strict=True):
                if isinstance(outcome, BaseException):
                    results.update({s: _failure(s, outcome) for s in chunk})
                    continue
                quotes.extend(outcome.quotes)
                for symbol in outcome.unknown:
                    results[symbol] = SymbolResult(
                        symbol=symbol, outcome=SymbolOutcome.UNKNOWN, detail="absent from the bulk quotes"
                    )

        stored = await workflow.execute_activity_method(
            MarketDataActivities.store_quotes,
            StoreQuotesInput(quotes=quotes),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
            summary=f"store {len(quotes)} quote(s)",
        )
        by_symbol = {q.symbol: q for q in quotes}
        for symbol in stored.updated:
            results[symbol] = SymbolResult(symbol=symbol, outcome=SymbolOutcome.UPDATED, price=by_symbol[symbol].price)
        for symbol in stored.unchanged:
            results[symbol] = SymbolResult(symbol=symbol, outcome=SymbolOutcome.UNCHANGED, price=by_symbol[symbol].price)
        await _record_unknown(results)

        await _signal_monitors(["price", "volume"], stored.updated)
        return SyncCompanyPricesResult(
            market_open=session.is_open,
            symbols=_ordered(results, request.symbols, plan.fetch, [r.symbol for r in plan.deferred]),
            stored=len(stored.updated),
            simulated=any(q.source.endswith("-sim") for q in quotes),
        )

    async def _fetch(self, symbol: str) -> FetchedQuote:
        return await _provider_call(AlphaVantageActivities.fetch_quote, FetchQuoteInput(symbol=symbol), f"quote {symbol}")

    async def _fetch_bulk(self, symbols: list[str]) -> Any:
        return await _provider_call(
            AlphaVantageActivities.fetch_bulk_quotes, FetchBulkQuotesInput(symbols=symbols), f"bulk quotes {_few(symbols)}"
        )


@workflow.defn(name="SyncDailyOHLC")
class SyncDailyOHLC:
    """Daily bars through the last closed session; catches up every company that is behind."""

    def __init__(self) -> None:
        # For the `progress` query (`starter.py backfill ohlc` draws its bar from it). A query
        # reads state and adds nothing to history, so old histories replay unchanged.
        self._planned = self._done = self._failed = self._skipped = 0

    @workflow.query(name="progress")
    def progress(self) -> OHLCProgress:
        return OHLCProgress(planned=self._planned, done=self._done, failed=self._failed, skipped=self._skipped)

    async def _counted(self, call: Awaitable[R]) -> R:
        try:
            return await call
        except BaseException:
            self._failed += 1
            raise
        finally:
            self._done += 1

    @workflow.run
    async def run(self, raw: Any = None) -> SyncDailyOHLCResult:
        request = validated(SyncDailyOHLCInput, raw)
        session = await market_session()
        # Catch up through the last closed session (its bar is final). A compact series
        # fetched during a session also carries today's bar, stored as provisional.
        through = session.last_closed
        plan = await workflow.execute_activity_method(
            MarketDataActivities.plan_daily_bars,
            PlanDailyBarsInput(symbols=request.symbols, full=request.full, through=through),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
            summary=f"plan the companies behind {through}",
        )
        _label_symbols([*(j.symbol for j in plan.jobs), *(r.symbol for r in plan.skipped)])
        results: dict[str, SymbolResult] = {r.symbol: r for r in plan.skipped}
        self._planned, self._skipped = len(plan.jobs), len(plan.skipped)
        synced = await _settle(
            [
                self._counted(_provider_call(
                    AlphaVantageActivities.sync_daily_bars,
                    SyncBarsInput(
                        company_id=job.company_id,
                        symbol=job.symbol,
                        full=job.full,
                        session_date=session.session_date,
                        session_closes_at=session.closes_at,
                    ),
                    f"daily bars {job.symbol} ({'full' if job.full else 'compact'})",
                ))
                for job in plan.jobs
            ]
        )
        inserted = updated = 0
        for job, outcome in zip(plan.jobs, synced, strict=True):
            if isinstance(outcome, BaseException):
                results[job.symbol] = _failure(job.symbol, outcome)
                continue
            inserted += outcome.inserted
            updated += outcome.updated
            changed = outcome.inserted + outcome.updated
            detail = (
                f"{'full history' if job.full else 'compact'}: {outcome.inserted} new, {outcome.updated} updated, "
                f"{outcome.unchanged} unchanged bars through {outcome.latest_date}"
            )
            if outcome.rejected:
                detail += f"; {outcome.rejected} impossible bar(s) rejected"
            results[job.symbol] = SymbolResult(
                symbol=job.symbol,
                outcome=SymbolOutcome.UPDATED if changed else SymbolOutcome.UNCHANGED,
                detail=detail,
            )
        await _record_unknown(results)
        # Fresh final bars matter to volume alerts (the 20-day average).
        await _signal_monitors(["volume"], [j.symbol for j in plan.jobs if results[j.symbol].outcome is SymbolOutcome.UPDATED])
        return SyncDailyOHLCResult(
            session_date=through,
            symbols=_ordered(results, request.symbols, [j.symbol for j in plan.jobs], sorted(results)),
            bars_inserted=inserted,
            bars_updated=updated,
        )


@workflow.defn(name="SyncFundamentals")
class SyncFundamentals:
    """Company overview fields; without symbols the stalest companies, a few a day."""

    @workflow.run
    async def run(self, raw: Any = None) -> SyncFundamentalsResult:
        request = validated(SyncFundamentalsInput, raw)
        plan = await workflow.execute_activity_method(
            MarketDataActivities.plan_fundamentals,
            PlanFundamentalsInput(symbols=request.symbols),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
            summary="plan the stalest companies",
        )
        _label_symbols([*(j.symbol for j in plan.jobs), *(r.symbol for r in plan.skipped)])
        results: dict[str, SymbolResult] = {r.symbol: r for r in plan.skipped}
        synced = await _settle(
            [
                _provider_call(AlphaVantageActivities.sync_fundamentals, job, f"fundamentals {job.symbol}")
                for job in plan.jobs
            ]
        )
        for job, outcome in zip(plan.jobs, synced, strict=True):
            if isinstance(outcome, BaseException):
                results[job.symbol] = _failure(job.symbol, outcome)
            else:
                results[job.symbol] = SymbolResult(
                    symbol=job.symbol,
                    outcome=SymbolOutcome.UPDATED if outcome.changed else SymbolOutcome.UNCHANGED,
                    detail=outcome.name,
                )
        await _record_unknown(results)
        return SyncFundamentalsResult(symbols=_ordered(results, request.symbols, [j.symbol for j in plan.jobs]))


@workflow.defn(name="CleanupMarketData")
class CleanupMarketData:
    """Retention per table (see Settings.retention_*); `dry_run` counts and changes nothing."""

    @workflow.run
    async def run(self, raw: Any = None) -> CleanupMarketDataResult:
        request = validated(CleanupMarketDataInput, raw)
        return await workflow.execute_activity_method(
            MarketDataActivities.cleanup,
            CleanupInput(dry_run=request.dry_run, at=workflow.now()),
            start_to_close_timeout=CLEANUP_TIMEOUT,
            heartbeat_timeout=CLEANUP_HEARTBEAT,
            retry_policy=DB_RETRY,
            summary="retention: delete rows past their age" + (" (dry run)" if request.dry_run else ""),
        )
