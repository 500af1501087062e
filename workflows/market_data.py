"""Market-data workflows: SyncCompanyPrices (latest quotes).

The workflow decides what to fetch and records every symbol's outcome; activities do the
I/O. One fetch activity is one provider call, so the `deallens-alphavantage` queue's rate
limit is the provider's call budget, and a failing symbol never holds up the others.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.market_data import AlphaVantageActivities, MarketDataActivities
    from deallens.contracts import (
        FetchedQuote,
        FetchQuoteInput,
        MarketSessionInput,
        PlanPriceSyncInput,
        RecordUnknownSymbolsInput,
        StoreQuotesInput,
        SymbolOutcome,
        SymbolResult,
        SyncCompanyPricesInput,
        SyncCompanyPricesResult,
    )
    from workflows import queues
    from workflows.inputs import validated

# Database activities: quick, retried with backoff for as long as a short outage lasts.
DB_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
DB_TIMEOUT = timedelta(seconds=60)

# Provider calls: capped exponential backoff; unknown symbols and configuration errors are
# permanent. Rate limits override the interval with the provider's own delay.
PROVIDER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=5,
    non_retryable_error_types=["UnknownSymbol", "ProviderConfigError"],
)
PROVIDER_CALL_TIMEOUT = timedelta(seconds=30)
# Includes the time spent queued behind the task queue's rate limit.
PROVIDER_SCHEDULE_TIMEOUT = timedelta(minutes=30)


def _failure_type(error: ActivityError) -> tuple[str | None, str]:
    cause = error.cause
    if isinstance(cause, ApplicationError):
        return cause.type, cause.message
    return None, str(cause or error)


@workflow.defn(name="SyncCompanyPrices")
class SyncCompanyPrices:
    @workflow.run
    async def run(self, raw: dict[str, Any] | None = None) -> SyncCompanyPricesResult:
        request = validated(SyncCompanyPricesInput, raw)
        session = await workflow.execute_activity_method(
            MarketDataActivities.market_session,
            MarketSessionInput(at=workflow.now()),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        if not session.is_open and not request.force:
            return SyncCompanyPricesResult(
                market_open=False,
                skipped_reason=f"market closed; next session opens {session.opens_at.isoformat()} "
                "(pass force=true to sync anyway)",
            )

        plan = await workflow.execute_activity_method(
            MarketDataActivities.plan_price_sync,
            PlanPriceSyncInput(symbols=request.symbols),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        fetched = await asyncio.gather(
            *(self._fetch(symbol) for symbol in plan.fetch), return_exceptions=True
        )

        results: dict[str, SymbolResult] = {r.symbol: r for r in [*plan.quarantined, *plan.deferred]}
        quotes: list[FetchedQuote] = []
        unknown: list[str] = []
        for symbol, outcome in zip(plan.fetch, fetched, strict=True):
            if isinstance(outcome, FetchedQuote):
                quotes.append(outcome)
            elif isinstance(outcome, ActivityError):
                error_type, message = _failure_type(outcome)
                if error_type == "UnknownSymbol":
                    unknown.append(symbol)
                    results[symbol] = SymbolResult(symbol=symbol, outcome=SymbolOutcome.UNKNOWN, detail=message)
                else:
                    results[symbol] = SymbolResult(symbol=symbol, outcome=SymbolOutcome.FAILED, detail=message)
            else:
                raise outcome  # a bug, not a provider failure: fail the workflow task visibly

        stored = await workflow.execute_activity_method(
            MarketDataActivities.store_quotes,
            StoreQuotesInput(quotes=quotes),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        by_symbol = {q.symbol: q for q in quotes}
        for symbol in stored.updated:
            results[symbol] = SymbolResult(symbol=symbol, outcome=SymbolOutcome.UPDATED, price=by_symbol[symbol].price)
        for symbol in stored.unchanged:
            results[symbol] = SymbolResult(
                symbol=symbol, outcome=SymbolOutcome.UNCHANGED, price=by_symbol[symbol].price
            )

        if unknown:
            recorded = await workflow.execute_activity_method(
                MarketDataActivities.record_unknown_symbols,
                RecordUnknownSymbolsInput(symbols=unknown, reason="the provider does not know this symbol"),
                start_to_close_timeout=DB_TIMEOUT,
                retry_policy=DB_RETRY,
            )
            for symbol in recorded.quarantined:
                results[symbol] = results[symbol].model_copy(
                    update={"detail": f"{results[symbol].detail}; now quarantined"}
                )

        # Seam for the alert monitors (alerts work): signal `new_data` with stored.updated.
        order = [*request.symbols, *plan.fetch, *(r.symbol for r in plan.deferred)]
        ordered = [results[s] for s in dict.fromkeys(order) if s in results]
        return SyncCompanyPricesResult(
            market_open=session.is_open,
            symbols=ordered,
            stored=len(stored.updated),
            simulated=any(q.source.endswith("-sim") for q in quotes),
        )

    async def _fetch(self, symbol: str) -> FetchedQuote:
        return await workflow.execute_activity_method(
            AlphaVantageActivities.fetch_quote,
            FetchQuoteInput(symbol=symbol),
            task_queue=queues.provider_queue(workflow.info().task_queue, queues.ALPHAVANTAGE_SUFFIX),
            start_to_close_timeout=PROVIDER_CALL_TIMEOUT,
            schedule_to_close_timeout=PROVIDER_SCHEDULE_TIMEOUT,
            retry_policy=PROVIDER_RETRY,
        )
