"""SyncCompanyPrices end to end on the time-skipping server: real workers, the real
AlphaVantage client against the stand-in over HTTP, and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from deallens.contracts import (
    MarketSessionInput,
    MarketSessionResult,
    SymbolOutcome,
    SyncCompanyPricesInput,
    SyncCompanyPricesResult,
)
from deallens.db.demo import seed_demo
from deallens.sim import alphavantage as av_sim
from deallens.sim.serve import serve_asgi
from tests.workers import record_history, running_workers

SESSION_DAY = dt.date(2026, 11, 27)


def market(is_open: bool) -> Any:
    @activity.defn(name="market.session")
    async def pinned_session(request: MarketSessionInput) -> MarketSessionResult:
        return MarketSessionResult(
            is_open=is_open,
            session_date=SESSION_DAY,
            opens_at=dt.datetime(2026, 11, 30, 14, 30, tzinfo=dt.UTC),
            closes_at=dt.datetime(2026, 11, 30, 21, 0, tzinfo=dt.UTC),
            last_closed=SESSION_DAY,
        )

    return pinned_session


@pytest.fixture
async def sim() -> AsyncIterator[tuple[str, Any]]:
    app = av_sim.make_app(seed=3)
    async with serve_asgi(app) as url:
        yield url, app.state.sim


@pytest.fixture
async def seeded(db: AsyncEngine) -> AsyncEngine:
    await seed_demo(db)
    return db


async def _run(env: WorkflowEnvironment, task_queue: str, request: SyncCompanyPricesInput, wf_id: str) -> Any:
    return await env.client.start_workflow(
        "SyncCompanyPrices", request, id=wf_id, task_queue=task_queue, result_type=SyncCompanyPricesResult
    )


async def _stored(engine: AsyncEngine) -> list[tuple[str, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT c.symbol, q.source FROM price_quotes q JOIN companies c ON c.id = q.company_id ORDER BY 1")
        )
        return [tuple(r) for r in rows]


async def test_known_symbols_stored_unknown_one_fails_alone(
    time_env: WorkflowEnvironment, task_queue: str, seeded: AsyncEngine, sim: tuple[str, Any], make_settings: Any
) -> None:
    settings = make_settings(alphavantage_base_url=sim[0], alphavantage_calls_per_minute=600)
    async with running_workers(time_env.client, settings, task_queue, replace_activities=[market(True)]):
        handle = await _run(time_env, task_queue, SyncCompanyPricesInput(symbols=["aapl", "ZZZZ", "MSFT"]), "sync-mixed")
        result: SyncCompanyPricesResult = await handle.result()
        history = await record_history(handle, "sync_company_prices_mixed")

    outcomes = {r.symbol: r.outcome for r in result.symbols}
    assert outcomes == {"AAPL": SymbolOutcome.UPDATED, "ZZZZ": SymbolOutcome.UNKNOWN, "MSFT": SymbolOutcome.UPDATED}
    assert [r.symbol for r in result.symbols] == ["AAPL", "ZZZZ", "MSFT"]
    unknown = next(r for r in result.symbols if r.symbol == "ZZZZ")
    assert unknown.detail is not None and "unknown symbol 'ZZZZ'" in unknown.detail
    assert result.stored == 2 and result.simulated
    assert await _stored(seeded) == [("AAPL", "alphavantage-sim"), ("MSFT", "alphavantage-sim")]
    # The unknown symbol was asked once: non-retryable, no wasted calls.
    assert sim[1].stats.by_endpoint["GLOBAL_QUOTE"] == 3
    assert '"UnknownSymbol"' in history and '"nonRetryable": true' in history


async def test_transient_provider_failures_are_retried(
    time_env: WorkflowEnvironment, task_queue: str, seeded: AsyncEngine, sim: tuple[str, Any], make_settings: Any
) -> None:
    sim[1].faults.add("http_503", count=2, match="GLOBAL_QUOTE")
    sim[1].faults.add("malformed_json", count=1, match="GLOBAL_QUOTE")
    settings = make_settings(alphavantage_base_url=sim[0], alphavantage_calls_per_minute=600)
    async with running_workers(time_env.client, settings, task_queue, replace_activities=[market(True)]):
        handle = await _run(time_env, task_queue, SyncCompanyPricesInput(symbols=["IBM"]), "sync-retry")
        result = await handle.result()
    assert [(r.symbol, r.outcome) for r in result.symbols] == [("IBM", SymbolOutcome.UPDATED)]
    assert sim[1].stats.by_endpoint["GLOBAL_QUOTE"] == 4
    assert await _stored(seeded) == [("IBM", "alphavantage-sim")]


async def test_provider_rate_limit_waits_for_the_providers_delay(
    time_env: WorkflowEnvironment, task_queue: str, seeded: AsyncEngine, sim: tuple[str, Any], make_settings: Any
) -> None:
    sim[1].faults.add("note", count=1, match="GLOBAL_QUOTE")
    settings = make_settings(alphavantage_base_url=sim[0], alphavantage_calls_per_minute=600)
    async with running_workers(time_env.client, settings, task_queue, replace_activities=[market(True)]):
        handle = await _run(time_env, task_queue, SyncCompanyPricesInput(symbols=["KO"]), "sync-rate-limited")
        result = await handle.result()
        history = await handle.fetch_history()
    assert result.symbols[0].outcome is SymbolOutcome.UPDATED
    # The retry was scheduled with the provider's 60 s, not the policy's 2 s backoff.
    started = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED]
    fetch = next(e for e in started if e.activity_task_started_event_attributes.attempt == 2)
    assert fetch.activity_task_started_event_attributes.attempt == 2
    assert sim[1].stats.faults["note"] == 1


async def test_closed_market_does_nothing_unless_forced(
    time_env: WorkflowEnvironment, task_queue: str, seeded: AsyncEngine, sim: tuple[str, Any], make_settings: Any
) -> None:
    settings = make_settings(alphavantage_base_url=sim[0], alphavantage_calls_per_minute=600)
    async with running_workers(time_env.client, settings, task_queue, replace_activities=[market(False)]):
        handle = await _run(time_env, task_queue, SyncCompanyPricesInput(symbols=["AAPL"]), "sync-closed")
        skipped = await handle.result()
        await record_history(handle, "sync_company_prices_closed")
        forced = await (
            await _run(time_env, task_queue, SyncCompanyPricesInput(symbols=["AAPL"], force=True), "sync-forced")
        ).result()
    assert not skipped.market_open and skipped.symbols == []
    assert skipped.skipped_reason is not None and "force=true" in skipped.skipped_reason
    assert sim[1].stats.total_requests == 1
    assert [r.outcome for r in forced.symbols] == [SymbolOutcome.UPDATED]


async def test_no_symbols_refreshes_tracked_companies_by_priority(
    time_env: WorkflowEnvironment, task_queue: str, seeded: AsyncEngine, sim: tuple[str, Any], make_settings: Any
) -> None:
    settings = make_settings(
        alphavantage_base_url=sim[0], alphavantage_calls_per_minute=600, alphavantage_calls_per_day=10_000,
        price_sync_max_symbols=4
    )
    async with running_workers(time_env.client, settings, task_queue, replace_activities=[market(True)]):
        handle = await _run(time_env, task_queue, SyncCompanyPricesInput(), "sync-priority")
        result = await handle.result()
        await record_history(handle, "sync_company_prices_priority")
    assert result.count(SymbolOutcome.UPDATED) == 4
    assert result.count(SymbolOutcome.DEFERRED) == 22 - 4
    assert result.symbols[0].symbol == "AAPL"  # on two watchlists
    assert sim[1].stats.by_endpoint["GLOBAL_QUOTE"] == 4


async def test_unknown_field_is_rejected_too(
    time_env: WorkflowEnvironment, task_queue: str, seeded: AsyncEngine, sim: tuple[str, Any], make_settings: Any
) -> None:
    settings = make_settings(alphavantage_base_url=sim[0])
    async with running_workers(time_env.client, settings, task_queue, replace_activities=[market(True)]):
        handle = await time_env.client.start_workflow(
            "SyncCompanyPrices", {"symbol": ["AAPL"]}, id="sync-typo", task_queue=task_queue
        )
        with pytest.raises(WorkflowFailureError) as raised:
            await handle.result()
    assert isinstance(raised.value.cause, ApplicationError)
    assert raised.value.cause.message == "invalid input: symbol: Extra inputs are not permitted"


async def test_bad_input_fails_naming_the_field(
    time_env: WorkflowEnvironment, task_queue: str, seeded: AsyncEngine, sim: tuple[str, Any], make_settings: Any
) -> None:
    settings = make_settings(alphavantage_base_url=sim[0])
    async with running_workers(time_env.client, settings, task_queue, replace_activities=[market(True)]):
        handle = await time_env.client.start_workflow(
            "SyncCompanyPrices", {"symbols": ["AAPL", "not a symbol!"]}, id="sync-bad", task_queue=task_queue
        )
        with pytest.raises(WorkflowFailureError) as raised:
            await handle.result()
    cause = raised.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "InvalidInput" and cause.non_retryable
    assert cause.message.startswith("invalid input: symbols: 'not a symbol!' is not a ticker symbol")
    assert sim[1].stats.total_requests == 0


async def test_premium_key_refreshes_many_symbols_per_call(
    time_env: WorkflowEnvironment, task_queue: str, seeded: AsyncEngine, make_settings: Any
) -> None:
    app = av_sim.make_app(seed=3, premium=True)
    async with serve_asgi(app) as url:
        settings = make_settings(
            alphavantage_base_url=url, alphavantage_premium=True, alphavantage_calls_per_minute=600,
            alphavantage_calls_per_day=10_000,
        )
        async with running_workers(time_env.client, settings, task_queue, replace_activities=[market(True)]):
            result = await (
                await _run(time_env, task_queue, SyncCompanyPricesInput(symbols=["AAPL", "MSFT", "KO", "QQQQ"]), "bulk")
            ).result()
    assert {r.symbol: r.outcome for r in result.symbols} == {
        "AAPL": SymbolOutcome.UPDATED, "MSFT": SymbolOutcome.UPDATED, "KO": SymbolOutcome.UPDATED,
        "QQQQ": SymbolOutcome.UNKNOWN,
    }
    assert app.state.sim.stats.by_endpoint == {"REALTIME_BULK_QUOTES": 1}
    assert len(await _stored(seeded)) == 3


@pytest.mark.parametrize("raw", ["AAPL", ["AAPL"], 3])
async def test_input_that_is_not_an_object_fails_the_workflow(
    time_env: WorkflowEnvironment, task_queue: str, seeded: AsyncEngine, sim: tuple[str, Any], make_settings: Any, raw: Any
) -> None:
    settings = make_settings(alphavantage_base_url=sim[0])
    async with running_workers(time_env.client, settings, task_queue, replace_activities=[market(True)]):
        handle = await time_env.client.start_workflow("SyncCompanyPrices", raw, id="sync-not-object", task_queue=task_queue)
        with pytest.raises(WorkflowFailureError) as raised:
            await handle.result()
    cause = raised.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "InvalidInput"
    assert cause.message.startswith("invalid input: expected a JSON object")
