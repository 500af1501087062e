"""SyncDailyOHLC, SyncFundamentals and CleanupMarketData on the time-skipping server, with
real workers, the real client against the stand-in, and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.testing import WorkflowEnvironment

from activities.alerts import monitor_id
from activities.market_data import AlphaVantageActivities
from deallens.contracts import (
    BarsSyncResult,
    CleanupMarketDataResult,
    MarketSessionInput,
    MarketSessionResult,
    SymbolOutcome,
    SyncBarsInput,
    SyncDailyOHLCResult,
    SyncFundamentalsResult,
)
from deallens.db.demo import seed_demo
from deallens.sim import alphavantage as av_sim
from deallens.sim.clock import ManualClock
from deallens.sim.serve import serve_asgi
from tests.workers import record_history, running_workers

# The stand-in's clock: Friday 2026-11-27 after the (early) close; its last bar is that day.
SIM_NOW = dt.datetime(2026, 11, 27, 22, 0, tzinfo=dt.UTC)
LAST_CLOSED = dt.date(2026, 11, 27)


@activity.defn(name="market.session")
async def weekend_session(request: MarketSessionInput) -> MarketSessionResult:
    return MarketSessionResult(
        is_open=False,
        session_date=dt.date(2026, 11, 30),
        opens_at=dt.datetime(2026, 11, 30, 14, 30, tzinfo=dt.UTC),
        closes_at=dt.datetime(2026, 11, 30, 21, 0, tzinfo=dt.UTC),
        last_closed=LAST_CLOSED,
    )


@pytest.fixture
async def sim() -> AsyncIterator[tuple[str, Any]]:
    app = av_sim.make_app(seed=21, clock=ManualClock(SIM_NOW))
    async with serve_asgi(app) as url:
        yield url, app.state.sim


@pytest.fixture
def settings(sim: tuple[str, Any], make_settings: Any) -> Any:
    return make_settings(
        alphavantage_base_url=sim[0], alphavantage_calls_per_minute=6000, alphavantage_calls_per_day=10_000
    )


async def _scalar(db: AsyncEngine, sql: str, **params: Any) -> Any:
    async with db.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar_one()


async def test_backfill_then_catch_up_then_nothing_to_do(
    time_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, sim: tuple[str, Any], settings: Any
) -> None:
    await seed_demo(db)
    async with running_workers(time_env.client, settings, task_queue, replace_activities=[weekend_session]):
        first = await time_env.client.execute_workflow(
            "SyncDailyOHLC", {"symbols": ["AAPL"]}, id="ohlc-1", task_queue=task_queue, result_type=SyncDailyOHLCResult
        )
        # No symbols: every company behind (all but AAPL) gets its bars; AAPL is up to date.
        handle = await time_env.client.start_workflow(
            "SyncDailyOHLC", {}, id="ohlc-2", task_queue=task_queue, result_type=SyncDailyOHLCResult
        )
        second = await handle.result()
        await record_history(handle, "sync_daily_ohlc_catch_up")
        third = await time_env.client.execute_workflow(
            "SyncDailyOHLC", {}, id="ohlc-3", task_queue=task_queue, result_type=SyncDailyOHLCResult
        )

    assert first.session_date == LAST_CLOSED
    [aapl] = first.symbols
    assert aapl.outcome is SymbolOutcome.UPDATED and aapl.detail is not None and aapl.detail.startswith("full history")
    bars = await _scalar(db, "SELECT count(*) FROM ohlc_data o JOIN companies c ON c.id = o.company_id WHERE c.symbol = 'AAPL'")
    assert bars == first.bars_inserted > 5000  # 2000-01-03 .. 2026-11-27, weekdays
    assert await _scalar(db, "SELECT max(date) FROM ohlc_data") == LAST_CLOSED
    assert await _scalar(db, "SELECT bool_or(provisional) FROM ohlc_data") is False

    outcomes = {r.symbol: r.outcome for r in second.symbols}
    assert outcomes.pop("AAPL") is SymbolOutcome.UNCHANGED
    assert set(outcomes.values()) == {SymbolOutcome.UPDATED} and len(outcomes) == 21
    assert all(r.outcome is SymbolOutcome.UNCHANGED for r in third.symbols)
    assert third.bars_inserted == third.bars_updated == 0
    # The third run asked the provider nothing: every company was up to date.
    assert sim[1].stats.by_endpoint["TIME_SERIES_DAILY"] == 22


async def test_missed_days_are_caught_up_with_a_compact_series(
    time_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, sim: tuple[str, Any], settings: Any
) -> None:
    await seed_demo(db)
    async with running_workers(time_env.client, settings, task_queue, replace_activities=[weekend_session]):
        await time_env.client.execute_workflow(
            "SyncDailyOHLC", {"symbols": ["MSFT"]}, id="ohlc-full", task_queue=task_queue, result_type=SyncDailyOHLCResult
        )
        # Lose the last five bars (missed days), then sync again.
        async with db.begin() as conn:
            await conn.execute(text(
                "DELETE FROM ohlc_data WHERE date > :d AND company_id = (SELECT id FROM companies WHERE symbol = 'MSFT')"
            ), {"d": LAST_CLOSED - dt.timedelta(days=7)})
        result = await time_env.client.execute_workflow(
            "SyncDailyOHLC", {"symbols": ["MSFT"]}, id="ohlc-gap", task_queue=task_queue, result_type=SyncDailyOHLCResult
        )
    [msft] = result.symbols
    assert msft.detail is not None and msft.detail.startswith("compact: 5 new")
    assert await _scalar(db, "SELECT max(date) FROM ohlc_data") == LAST_CLOSED


async def test_interrupted_sync_retried_stores_each_bar_once(
    time_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, sim: tuple[str, Any], settings: Any
) -> None:
    """The worker dies after the bars were committed but before the activity completed."""
    attempts: list[BarsSyncResult] = []

    def crashing_after_commit(real: AlphaVantageActivities) -> Any:
        @activity.defn(name="alphavantage.sync_daily_bars")
        async def sync_daily_bars(request: SyncBarsInput) -> BarsSyncResult:
            result = await real.sync_daily_bars(request)
            attempts.append(result)
            if activity.info().attempt == 1:
                raise RuntimeError("worker lost after commit")
            return result

        return sync_daily_bars

    await seed_demo(db)
    from worker import open_resources

    async with open_resources(settings) as resources:
        real = AlphaVantageActivities(resources.alphavantage, resources.engine, simulated=True, calls_per_day=10_000)
        async with running_workers(
            time_env.client, settings, task_queue, replace_activities=[weekend_session, crashing_after_commit(real)]
        ):
            result = await time_env.client.execute_workflow(
                "SyncDailyOHLC", {"symbols": ["KO"]}, id="ohlc-crash", task_queue=task_queue, result_type=SyncDailyOHLCResult
            )
        signalled = await _new_data_symbols(time_env.client.get_workflow_handle(monitor_id("volume")))
    first, second = attempts
    # The retry stores nothing itself (every bar unchanged) and reports what the first stored.
    assert first.inserted > 5000 and second.unchanged == first.inserted
    assert (second.inserted, second.updated) == (first.inserted, first.updated)
    [ko] = result.symbols
    assert ko.outcome is SymbolOutcome.UPDATED and result.bars_inserted == first.inserted
    assert ko.detail is not None and ko.detail.startswith(f"full history: {first.inserted} new")
    # ... and the volume monitor heard of it, as after any sync that stored bars.
    assert signalled == [["KO"]]
    stored = await _scalar(db, "SELECT count(*) FROM ohlc_data")
    distinct = await _scalar(db, "SELECT count(DISTINCT (company_id, date)) FROM ohlc_data")
    assert stored == distinct == first.inserted


async def _new_data_symbols(handle: Any) -> list[Any]:
    """The symbols of each `new_data` signal in the monitor's history."""
    signals = []
    async for event in handle.fetch_history_events():
        if event.HasField("workflow_execution_signaled_event_attributes"):
            attributes = event.workflow_execution_signaled_event_attributes
            if attributes.signal_name == "new_data":
                signals.append(json.loads(attributes.input.payloads[0].data)["symbols"])
    return signals


async def test_empty_series_never_deletes_history(
    time_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, sim: tuple[str, Any], settings: Any
) -> None:
    await seed_demo(db)
    async with running_workers(time_env.client, settings, task_queue, replace_activities=[weekend_session]):
        await time_env.client.execute_workflow(
            "SyncDailyOHLC", {"symbols": ["IBM"]}, id="ohlc-ibm", task_queue=task_queue, result_type=SyncDailyOHLCResult
        )
        before = await _scalar(db, "SELECT count(*) FROM ohlc_data")
        sim[1].faults.add("empty", count=1, match="TIME_SERIES_DAILY")
        result = await time_env.client.execute_workflow(
            "SyncDailyOHLC", {"symbols": ["IBM"]}, id="ohlc-empty", task_queue=task_queue, result_type=SyncDailyOHLCResult
        )
    # The stand-in's "empty" TIME_SERIES_DAILY is a bare {}: malformed, retried, then unchanged.
    assert result.symbols[0].outcome is SymbolOutcome.UNCHANGED
    assert await _scalar(db, "SELECT count(*) FROM ohlc_data") == before


async def test_unknown_company_is_quarantined_after_repeated_failures(
    time_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, sim: tuple[str, Any], settings: Any
) -> None:
    async with db.begin() as conn:
        await conn.execute(text("INSERT INTO companies (symbol, name) VALUES ('ZZZZ', 'Gone Corp'), ('KO', 'Coca-Cola')"))
    async with running_workers(time_env.client, settings, task_queue, replace_activities=[weekend_session]):
        results = [
            await time_env.client.execute_workflow(
                "SyncDailyOHLC", {"symbols": ["ZZZZ"]}, id=f"ohlc-zzzz-{n}", task_queue=task_queue,
                result_type=SyncDailyOHLCResult,
            )
            for n in range(4)
        ]
    assert [r.symbols[0].outcome for r in results] == [SymbolOutcome.UNKNOWN] * 3 + [SymbolOutcome.QUARANTINED]
    assert results[2].symbols[0].detail is not None and results[2].symbols[0].detail.endswith("now quarantined")
    assert sim[1].stats.by_endpoint["TIME_SERIES_DAILY"] == 3


async def test_fundamentals_stalest_first_and_placeholder_names_replaced(
    time_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, sim: tuple[str, Any], settings: Any
) -> None:
    await seed_demo(db)
    async with db.begin() as conn:
        # A company first seen through a quote has its symbol as its name.
        await conn.execute(text("INSERT INTO companies (symbol, name) VALUES ('BA', 'BA')"))
        await conn.execute(text("UPDATE companies SET fundamentals_updated_at = now() - interval '3 days' WHERE symbol <> 'BA'"))
        await conn.execute(text("UPDATE companies SET fundamentals_updated_at = now() - interval '9 days' WHERE symbol = 'KO'"))
    async with running_workers(time_env.client, settings, task_queue, replace_activities=[weekend_session]):
        handle = await time_env.client.start_workflow(
            "SyncFundamentals", {}, id="fund-1", task_queue=task_queue, result_type=SyncFundamentalsResult
        )
        first = await handle.result()
        await record_history(handle, "sync_fundamentals")
        explicit = await time_env.client.execute_workflow(
            "SyncFundamentals", {"symbols": ["NOPE", "MSFT"]}, id="fund-2", task_queue=task_queue,
            result_type=SyncFundamentalsResult,
        )
    # Never fetched (BA) first, then the oldest (KO), then by watchlists: 5 in all (the default).
    assert [r.symbol for r in first.symbols][:2] == ["BA", "KO"] and len(first.symbols) == 5
    assert all(r.outcome is SymbolOutcome.UPDATED for r in first.symbols)
    assert await _scalar(db, "SELECT name FROM companies WHERE symbol = 'BA'") != "BA"
    fundamentals = await _scalar(db, "SELECT fundamentals FROM companies WHERE symbol = 'KO'")
    assert fundamentals["Symbol"] == "KO" and fundamentals["_source"] == "alphavantage-sim"
    assert {r.symbol: r.outcome for r in explicit.symbols} == {
        "NOPE": SymbolOutcome.UNTRACKED, "MSFT": SymbolOutcome.UPDATED,
    }


async def test_cleanup_dry_run_then_for_real(
    dev_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, settings: Any
) -> None:
    """On the dev server: the time-skipping server may leap years ahead between two
    workflows (its clock jumps to pending timeouts), and retention depends on the clock."""
    time_env = dev_env
    async with db.begin() as conn:
        await conn.execute(text("INSERT INTO companies (symbol, name) VALUES ('AAPL', 'Apple')"))
        await conn.execute(text(
            "INSERT INTO price_quotes (company_id, price, quoted_at, source) "
            "SELECT 1, 100, now() - make_interval(days => n), 'test' FROM generate_series(0, 99) n"
        ))
    async with running_workers(time_env.client, settings, task_queue):
        dry = await time_env.client.execute_workflow(
            "CleanupMarketData", {"dry_run": True}, id="cleanup-dry", task_queue=task_queue,
            result_type=CleanupMarketDataResult,
        )
        assert await _scalar(db, "SELECT count(*) FROM price_quotes") == 100
        handle = await time_env.client.start_workflow(
            "CleanupMarketData", {}, id="cleanup", task_queue=task_queue, result_type=CleanupMarketDataResult
        )
        done = await handle.result()
        await record_history(handle, "cleanup_market_data")
    # Quotes 30..99 days old (the workflow's clock is a little later than the inserts').
    assert dry.dry_run and dry.removed["price_quotes"] == 70
    assert not done.dry_run and done.removed == dry.removed
    assert await _scalar(db, "SELECT count(*) FROM price_quotes") == 30
