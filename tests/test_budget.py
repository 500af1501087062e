"""The daily-quota ledger and the paced price-sync allowance."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from deallens.db import usage
from deallens.db.engine import create_engine
from deallens.domain import budget
from deallens.domain.budget import ledger_day, price_sync_allowance

DAY = dt.date(2026, 11, 30)


async def test_two_workers_never_both_take_the_last_call(db: AsyncEngine, database_url: str) -> None:
    """60 concurrent reservations from two independent pools against a limit of 25."""
    other = create_engine(database_url, pool_size=10)
    try:
        attempts = [usage.reserve_call(engine, "alphavantage", DAY, 25) for engine in (db, other) for _ in range(30)]
        granted = [r.number for r in await asyncio.gather(*attempts) if r is not None]
    finally:
        await other.dispose()
    assert sorted(granted) == list(range(1, 26))
    assert await usage.usage(db, "alphavantage", DAY) == (25, 0)
    assert await usage.reserve_call(db, "alphavantage", DAY, 25) is None
    # Another day, another provider: separate budgets.
    assert await usage.reserve_call(db, "alphavantage", DAY + dt.timedelta(days=1), 25) == usage.Reservation(1, 0.0)
    assert await usage.reserve_call(db, "newsapi", DAY, 25) == usage.Reservation(1, 0.0)


async def test_call_slots_space_calls_exactly_across_workers(db: AsyncEngine, database_url: str) -> None:
    """Concurrent callers from two pools get slots one interval apart, in the database's time."""
    other = create_engine(database_url, pool_size=5)
    try:
        reservations = await asyncio.gather(
            # Ten-second slots: the callers' own scheduling (tens of ms, more on a loaded machine)
            # is small beside them, so the spacing asserted is the ledger's, not the clock's.
            *(usage.reserve_call(engine, "alphavantage", DAY, 100, calls_per_minute=6) for engine in (db, other) for _ in range(5))
        )
    finally:
        await other.dispose()
    waits = sorted(r.wait_seconds for r in reservations if r is not None)
    interval = 60 / 6 + usage.JITTER_MARGIN_SECONDS
    assert waits[0] < interval
    # Each later caller waits at least one more interval (less the time spent reserving).
    gaps = [b - a for a, b in zip(waits, waits[1:])]
    assert all(gap > interval * 0.7 for gap in gaps), gaps
    assert waits[-1] > interval * 8
    # An exhausted day takes no slot.
    assert await usage.reserve_call(db, "alphavantage", DAY, 10, calls_per_minute=6) is None


async def test_refusals_are_counted_apart(db: AsyncEngine) -> None:
    await usage.record_refusal(db, "alphavantage", DAY)
    assert await usage.usage(db, "alphavantage", DAY) == (0, 1)
    assert await usage.reserve_call(db, "alphavantage", DAY, 5) == usage.Reservation(1, 0.0)
    assert await usage.usage(db, "alphavantage", DAY) == (1, 1)


OPEN = dt.datetime(2026, 11, 30, 14, 30, tzinfo=dt.UTC)
CLOSE = dt.datetime(2026, 11, 30, 21, 0, tzinfo=dt.UTC)


def allowance(at: dt.datetime, used: int, *, per_day: int = 100, held_back: int = 20, max_symbols: int = 50) -> int:
    return price_sync_allowance(
        calls_per_day=per_day, used_today=used, held_back=held_back, opens_at=OPEN, closes_at=CLOSE, at=at,
        max_symbols=max_symbols,
    )


@pytest.mark.parametrize(
    ("minutes", "used", "expected"),
    [
        (1, 0, 1),  # the first run may spend a call
        (195, 0, 40),  # half the session: half of the 80-call share
        (195, 35, 5),
        (195, 40, 0),
        (195, 70, 0),  # used ahead of pace (e.g. forced runs): nothing until the pace catches up
        (390, 60, 20),  # at the close the whole share is available
    ],
)
def test_share_is_paced_over_the_session(minutes: int, used: int, expected: int) -> None:
    assert allowance(OPEN + dt.timedelta(minutes=minutes), used) == expected


def test_allowance_is_capped_per_run_and_never_negative() -> None:
    assert allowance(CLOSE, 0, max_symbols=5) == 5
    assert allowance(CLOSE, 0, per_day=25, held_back=22) == 3  # free tier, 22 tracked companies
    assert allowance(CLOSE, 0, per_day=25, held_back=30) == 0


def test_forced_run_outside_the_session_may_use_the_share() -> None:
    assert allowance(OPEN - dt.timedelta(hours=3), 10) == allowance(CLOSE, 10) == 50


def test_ledger_day_is_new_york_date() -> None:
    # 02:00 UTC on Dec 1 is still Nov 30 in New York.
    assert ledger_day(dt.datetime(2026, 12, 1, 2, 0, tzinfo=dt.UTC)) == dt.date(2026, 11, 30)
    assert ledger_day(dt.datetime(2026, 12, 1, 5, 30, tzinfo=dt.UTC)) == dt.date(2026, 12, 1)


def test_calls_left_is_never_negative() -> None:
    assert budget.calls_left(calls_per_day=25, used_today=20) == 5
    assert budget.calls_left(calls_per_day=25, used_today=27) == 0  # refused calls count too


def test_a_premium_call_fetches_a_bulk_of_symbols() -> None:
    assert budget.symbols_per_price_call(premium=True, bulk_max=100) == 100
    assert budget.symbols_per_price_call(premium=False, bulk_max=100) == 1


@pytest.mark.parametrize(
    ("calls_left", "tracked", "max_symbols", "expected"),
    [(25, 22, 5, 3), (100, 22, 5, 5), (20, 22, 5, 0), (0, 0, 5, 0)],
)
def test_fundamentals_get_what_the_ohlc_sync_leaves(calls_left: int, tracked: int, max_symbols: int, expected: int) -> None:
    """The free tier with the 22 demo companies: 3 calls a day for fundamentals."""
    assert budget.fundamentals_allowance(calls_left=calls_left, tracked=tracked, max_symbols=max_symbols) == expected


async def test_calls_left_reads_the_ledger_day_of_new_york(db: AsyncEngine) -> None:
    for _ in range(3):
        await usage.reserve_call(db, "alphavantage", DAY, 25)
    # 03:00 UTC on the 1st is still the 30th in New York.
    assert await usage.calls_left(db, "alphavantage", 25, dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)) == 22
    assert await usage.calls_left(db, "alphavantage", 25, dt.datetime(2026, 12, 1, 6, 0, tzinfo=dt.UTC)) == 25
