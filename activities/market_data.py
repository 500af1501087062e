"""Market-data activities: where a price arrives.

`AlphaVantageActivities` make provider calls and run only on the `deallens-alphavantage`
task queue, whose task-queue-wide rate limit spaces calls across every worker. The database
activities (`MarketDataActivities`) run on the default queue.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from activities.errors import to_application_error
from deallens.contracts import (
    FetchedQuote,
    FetchQuoteInput,
    MarketSessionInput,
    MarketSessionResult,
    PlanPriceSyncInput,
    PlanPriceSyncResult,
    RecordUnknownSymbolsInput,
    RecordUnknownSymbolsResult,
    StoreQuotesInput,
    StoreQuotesResult,
)
from deallens.db import prices
from deallens.domain.market_calendar import session_at
from deallens.providers.alphavantage import PROVIDER, AlphaVantageClient
from deallens.providers.errors import ProviderError


class AlphaVantageActivities:
    def __init__(self, client: AlphaVantageClient, *, simulated: bool) -> None:
        self._client = client
        self._source = f"{PROVIDER}-sim" if simulated else PROVIDER

    @activity.defn(name="alphavantage.fetch_quote")
    async def fetch_quote(self, request: FetchQuoteInput) -> FetchedQuote:
        try:
            quote = await self._client.global_quote(request.symbol)
        except ProviderError as error:
            raise to_application_error(error) from None
        return FetchedQuote(
            symbol=request.symbol,
            price=quote.price,
            open=quote.open,
            high=quote.high,
            low=quote.low,
            previous_close=quote.previous_close,
            change=quote.change,
            change_percent=quote.change_percent,
            volume=quote.volume,
            latest_trading_day=quote.latest_trading_day,
            quoted_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
            source=self._source,
        )


class MarketDataActivities:
    def __init__(self, engine: AsyncEngine, *, price_sync_max_symbols: int) -> None:
        self._engine = engine
        self._max_symbols = price_sync_max_symbols

    @activity.defn(name="market.session")
    async def market_session(self, request: MarketSessionInput) -> MarketSessionResult:
        session = session_at(request.at)
        return MarketSessionResult(
            is_open=session.is_open,
            session_date=session.session_date,
            opens_at=session.opens_at,
            closes_at=session.closes_at,
        )

    @activity.defn(name="market.plan_price_sync")
    async def plan_price_sync(self, request: PlanPriceSyncInput) -> PlanPriceSyncResult:
        limit = request.limit or self._max_symbols
        fetch, quarantined, deferred = await prices.plan_price_sync(self._engine, request.symbols, limit)
        return PlanPriceSyncResult(fetch=fetch, quarantined=quarantined, deferred=deferred)

    @activity.defn(name="market.store_quotes")
    async def store_quotes(self, request: StoreQuotesInput) -> StoreQuotesResult:
        updated, unchanged = await prices.store_quotes(self._engine, request.quotes)
        return StoreQuotesResult(updated=updated, unchanged=unchanged)

    @activity.defn(name="market.record_unknown_symbols")
    async def record_unknown_symbols(self, request: RecordUnknownSymbolsInput) -> RecordUnknownSymbolsResult:
        quarantined = await prices.record_unknown_symbols(self._engine, request.symbols, request.reason)
        return RecordUnknownSymbolsResult(quarantined=quarantined)
