"""Storing daily bars: idempotent upserts (no write for an unchanged bar), provisional vs
final precedence, exact counts, the statement and COPY paths agreeing, the fresh-backfill
fast path, in-batch duplicates, atomic failure and retry, latest bar dates."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import asdict, replace
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy.exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from deallens.db import ohlc
from deallens.db.ohlc import BarRow, BarUpsertCounts, WritePath

MONDAY = dt.date(2026, 11, 2)
# copy_threshold values forcing each path: every batch below it goes through the statement.
STATEMENT = 10**9
COPY = 0

both_paths = pytest.mark.parametrize("threshold", [STATEMENT, COPY], ids=["statement", "copy"])

WritePaths = Callable[[], list[WritePath]]


async def create_companies(engine: AsyncEngine, *symbols: str) -> list[int]:
    async with engine.begin() as conn:
        result = await conn.execute(
            text(
                "INSERT INTO companies (symbol, name) "
                "SELECT s, s FROM unnest(CAST(:symbols AS text[])) s RETURNING id"
            ),
            {"symbols": list(symbols)},
        )
        return list(result.scalars())


def bar(company_id: int, day: dt.date, close: str = "10", *, provisional: bool = False, volume: int = 1000) -> BarRow:
    c = Decimal(close)
    return BarRow(
        company_id=company_id, date=day, open=c, high=c + 1, low=c - 1, close=c, volume=volume,
        provisional=provisional, source="alphavantage-sim",
    )


def history(company_id: int, days: int, first: dt.date = MONDAY) -> list[BarRow]:
    """Consecutive daily bars with distinct, valid values."""
    return [bar(company_id, first + dt.timedelta(days=i), f"{100 + i}.25", volume=1000 + i) for i in range(days)]


def invalid(row: BarRow) -> BarRow:
    """The bar with a negative low: violates ck_ohlc_data_low_nonnegative (and no other CHECK)."""
    return replace(row, low=Decimal(-1))


async def stored(engine: AsyncEngine) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        result = await conn.execute(
            text(
                "SELECT company_id, date, open, high, low, close, volume, provisional, source "
                "FROM ohlc_data ORDER BY company_id, date"
            )
        )
        return [tuple(row) for row in result]


async def row_versions(engine: AsyncEngine) -> list[tuple[Any, ...]]:
    """Per row: id, xmin (its version), xmax (set by an update or a row lock), updated_at."""
    async with engine.connect() as conn:
        result = await conn.execute(text("SELECT id, xmin::text, xmax::text, updated_at FROM ohlc_data ORDER BY id"))
        return [tuple(row) for row in result]


async def one_bar(engine: AsyncEngine, company_id: int, day: dt.date) -> Any:
    async with engine.connect() as conn:
        return (
            await conn.execute(
                text("SELECT close, provisional, updated_at FROM ohlc_data WHERE company_id = :c AND date = :d"),
                {"c": company_id, "d": day},
            )
        ).one()


@pytest.fixture
def write_paths(caplog: pytest.LogCaptureFixture) -> WritePaths:
    """The paths the test's upsert_bars calls took so far, in order (from their log records)."""
    caplog.set_level(logging.DEBUG, logger="deallens.db.ohlc")
    return lambda: [record.write_path for record in caplog.records if hasattr(record, "write_path")]


@both_paths
async def test_the_same_batch_again_is_unchanged_and_writes_nothing(db: AsyncEngine, threshold: int) -> None:
    (company,) = await create_companies(db, "AAPL")
    batch = [*history(company, 20), bar(company, MONDAY + dt.timedelta(days=20), provisional=True)]
    assert await ohlc.upsert_bars(db, batch, copy_threshold=threshold) == BarUpsertCounts(21, 0, 0)
    before = await row_versions(db)
    assert await ohlc.upsert_bars(db, batch, copy_threshold=threshold) == BarUpsertCounts(0, 0, 21)
    # Same xmin: no new row version; same xmax: not even row-locked; updated_at untouched.
    assert await row_versions(db) == before


async def test_a_provisional_bar_yields_to_a_final_one_and_to_a_fresher_provisional(db: AsyncEngine) -> None:
    (company,) = await create_companies(db, "AAPL")
    await ohlc.upsert_bars(db, [bar(company, MONDAY, "10", provisional=True)])
    first = await one_bar(db, company, MONDAY)
    assert await ohlc.upsert_bars(db, [bar(company, MONDAY, "11", provisional=True)]) == BarUpsertCounts(0, 1, 0)
    assert await ohlc.upsert_bars(db, [bar(company, MONDAY, "12")]) == BarUpsertCounts(0, 1, 0)
    final = await one_bar(db, company, MONDAY)
    assert (final.close, final.provisional) == (Decimal("12"), False)
    assert final.updated_at > first.updated_at


async def test_a_final_bar_never_yields_to_a_provisional_one(db: AsyncEngine) -> None:
    (company,) = await create_companies(db, "AAPL")
    await ohlc.upsert_bars(db, [bar(company, MONDAY, "10")])
    before = await row_versions(db)
    assert await ohlc.upsert_bars(db, [bar(company, MONDAY, "11", provisional=True)]) == BarUpsertCounts(0, 0, 1)
    assert await row_versions(db) == before
    assert (await one_bar(db, company, MONDAY)).close == Decimal("10")


async def test_a_final_bar_is_corrected_by_a_differing_final_one(db: AsyncEngine) -> None:
    (company,) = await create_companies(db, "AAPL")
    await ohlc.upsert_bars(db, [bar(company, MONDAY, "10")])
    assert await ohlc.upsert_bars(db, [bar(company, MONDAY, "10", volume=1001)]) == BarUpsertCounts(0, 1, 0)
    assert await ohlc.upsert_bars(db, [bar(company, MONDAY, "10.5", volume=1001)]) == BarUpsertCounts(0, 1, 0)
    assert await ohlc.upsert_bars(db, [bar(company, MONDAY, "10.5", volume=1001)]) == BarUpsertCounts(0, 0, 1)
    assert (await one_bar(db, company, MONDAY)).close == Decimal("10.5")


@both_paths
async def test_a_mixed_batch_is_counted_exactly(db: AsyncEngine, threshold: int) -> None:
    aapl, msft = await create_companies(db, "AAPL", "MSFT")
    day = [MONDAY + dt.timedelta(days=i) for i in range(4)]
    already = [bar(aapl, day[0]), bar(aapl, day[1], provisional=True), bar(aapl, day[2]), bar(msft, day[0], "50")]
    await ohlc.upsert_bars(db, already)
    batch = [
        bar(aapl, day[0], "10"),  # identical final: unchanged
        bar(aapl, day[1], "10"),  # final over provisional (same prices): updated
        bar(aapl, day[2], "11", provisional=True),  # provisional over final: unchanged
        bar(aapl, day[3], "12"),  # new: inserted
        bar(msft, day[0], "51"),  # corrected final: updated
        bar(msft, day[1], "52", provisional=True),  # new: inserted
    ]
    assert await ohlc.upsert_bars(db, batch, copy_threshold=threshold) == BarUpsertCounts(2, 2, 2)
    assert [(r[0], r[1], r[5], r[7]) for r in await stored(db)] == [
        (aapl, day[0], Decimal("10"), False),
        (aapl, day[1], Decimal("10"), False),
        (aapl, day[2], Decimal("10"), False),
        (aapl, day[3], Decimal("12"), False),
        (msft, day[0], Decimal("51"), False),
        (msft, day[1], Decimal("52"), True),
    ]


async def test_the_statement_and_copy_paths_store_the_same(db: AsyncEngine, write_paths: WritePaths) -> None:
    aapl, msft = await create_companies(db, "AAPL", "MSFT")
    backfill = [*history(aapl, 30), *history(msft, 30)]
    resync = [
        *(replace(b, close=b.low) for b in backfill[::3]),  # corrections
        *(replace(b, provisional=True, close=b.high) for b in backfill[1::3]),  # ignored: final stored
        *history(aapl, 5, MONDAY + dt.timedelta(days=30)),  # new days
    ]
    outcomes = []
    for threshold in (STATEMENT, COPY):
        async with db.begin() as conn:
            await conn.execute(text("TRUNCATE ohlc_data"))
        counts = [await ohlc.upsert_bars(db, batch, copy_threshold=threshold) for batch in (backfill, resync)]
        outcomes.append((counts, await stored(db)))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == [BarUpsertCounts(60, 0, 0), BarUpsertCounts(5, 20, 20)]
    assert write_paths() == [WritePath.STATEMENT, WritePath.STATEMENT, WritePath.DIRECT_COPY, WritePath.STAGED_COPY]


async def test_the_direct_copy_is_taken_only_when_no_key_is_stored(db: AsyncEngine, write_paths: WritePaths) -> None:
    aapl, msft = await create_companies(db, "AAPL", "MSFT")
    recent = history(aapl, 10, MONDAY)
    older = history(aapl, 10, MONDAY - dt.timedelta(days=10))
    # One symbol's history, large enough for COPY at the default threshold: straight in.
    backfill = history(msft, ohlc.COPY_THRESHOLD)
    assert await ohlc.upsert_bars(db, backfill) == BarUpsertCounts(ohlc.COPY_THRESHOLD, 0, 0)
    assert await ohlc.upsert_bars(db, recent, copy_threshold=COPY) == BarUpsertCounts(10, 0, 0)
    # Older history than stored: no stored bar within its dates, so straight in too.
    assert await ohlc.upsert_bars(db, older, copy_threshold=COPY) == BarUpsertCounts(10, 0, 0)
    # Some keys stored (one of them now corrected): through the staging table.
    new_days = [bar(aapl, MONDAY + dt.timedelta(days=d)) for d in (10, 11, 12)]
    overlapping = [*recent[8:], *new_days, replace(recent[0], close=recent[0].low)]
    assert await ohlc.upsert_bars(db, overlapping, copy_threshold=COPY) == BarUpsertCounts(3, 1, 2)
    # A gap inside the stored range is enough to rule the direct COPY out (cheap, conservative).
    gap = [bar(aapl, MONDAY + dt.timedelta(days=100)), bar(aapl, MONDAY - dt.timedelta(days=100))]
    assert await ohlc.upsert_bars(db, gap, copy_threshold=COPY) == BarUpsertCounts(2, 0, 0)
    direct, staged = WritePath.DIRECT_COPY, WritePath.STAGED_COPY
    assert write_paths() == [direct, direct, direct, staged, staged]
    assert len(await stored(db)) == ohlc.COPY_THRESHOLD + 10 + 10 + 3 + 2


async def test_a_concurrent_writer_of_a_key_sends_the_direct_copy_through_staging(
    db: AsyncEngine, write_paths: WritePaths
) -> None:
    (company,) = await create_companies(db, "AAPL")
    batch = history(company, 50)
    taken = batch[10]
    async with db.connect() as other:
        # Uncommitted, so the check sees no stored key; the COPY then waits on this row.
        await other.execute(
            text(
                "INSERT INTO ohlc_data (company_id, date, open, high, low, close, volume, provisional, source) "
                "VALUES (:company_id, :date, :open, :high, :low, :close, :volume, :provisional, :source)"
            ),
            asdict(taken),
        )
        upsert = asyncio.create_task(ohlc.upsert_bars(db, batch, copy_threshold=COPY))
        await wait_for_a_lock_wait(db)
        await other.commit()
        assert await upsert == BarUpsertCounts(49, 0, 1)
    assert write_paths() == [WritePath.STAGED_COPY]
    assert len(await stored(db)) == 50


async def wait_for_a_lock_wait(engine: AsyncEngine) -> None:
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    async with asyncio.timeout(10), engine.connect() as conn:
        while not (await conn.execute(query)).scalar_one():
            await asyncio.sleep(0.02)


@both_paths
async def test_within_a_batch_the_last_bar_of_a_key_wins(db: AsyncEngine, threshold: int) -> None:
    (company,) = await create_companies(db, "AAPL")
    batch = [bar(company, MONDAY, "10"), bar(company, MONDAY + dt.timedelta(days=1)), bar(company, MONDAY, "11")]
    assert await ohlc.upsert_bars(db, batch, copy_threshold=threshold) == BarUpsertCounts(2, 0, 1)
    assert (await one_bar(db, company, MONDAY)).close == Decimal("11")
    batch = [bar(company, MONDAY, "12"), bar(company, MONDAY, "13")]
    assert await ohlc.upsert_bars(db, batch, copy_threshold=threshold) == BarUpsertCounts(0, 1, 1)
    assert (await one_bar(db, company, MONDAY)).close == Decimal("13")


@both_paths
async def test_prices_are_stored_at_the_column_scale_and_then_compare_equal(db: AsyncEngine, threshold: int) -> None:
    (company,) = await create_companies(db, "AAPL")
    precise = replace(bar(company, MONDAY, "10"), close=Decimal("10.1234567"))
    assert await ohlc.upsert_bars(db, [precise], copy_threshold=threshold) == BarUpsertCounts(1, 0, 0)
    assert (await one_bar(db, company, MONDAY)).close == Decimal("10.123457")
    before = await row_versions(db)
    assert await ohlc.upsert_bars(db, [precise], copy_threshold=threshold) == BarUpsertCounts(0, 0, 1)
    assert await row_versions(db) == before


@pytest.mark.parametrize("stored_first", [False, True], ids=["fresh", "existing"])
@both_paths
async def test_a_bar_violating_a_check_stores_nothing_of_its_batch(
    db: AsyncEngine, threshold: int, stored_first: bool
) -> None:
    (company,) = await create_companies(db, "AAPL")
    if stored_first:
        await ohlc.upsert_bars(db, history(company, 3))
    before = await stored(db)
    corrected = [replace(b, close=b.low) for b in history(company, 9)]
    batch = [*corrected, invalid(bar(company, MONDAY + dt.timedelta(days=9)))]
    with pytest.raises(sqlalchemy.exc.IntegrityError, match="ck_ohlc_data_low_nonnegative"):
        await ohlc.upsert_bars(db, batch, copy_threshold=threshold)
    assert await stored(db) == before


@both_paths
async def test_a_retry_after_an_interrupted_batch_stores_each_bar_once(db: AsyncEngine, threshold: int) -> None:
    (company,) = await create_companies(db, "AAPL")
    clean = history(company, 40)
    # The first attempt dies on its last bar, after the others were written: rolled back.
    interrupted = [*clean, invalid(bar(company, MONDAY + dt.timedelta(days=40)))]
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        await ohlc.upsert_bars(db, interrupted, copy_threshold=threshold)
    assert await ohlc.upsert_bars(db, clean, copy_threshold=threshold) == BarUpsertCounts(40, 0, 0)
    assert await ohlc.upsert_bars(db, clean, copy_threshold=threshold) == BarUpsertCounts(0, 0, 40)
    assert [row[1] for row in await stored(db)] == [b.date for b in clean]


async def test_nothing_to_store(db: AsyncEngine) -> None:
    assert await ohlc.upsert_bars(db, []) == BarUpsertCounts(0, 0, 0)


@both_paths
async def test_a_receipt_reports_every_attempt_of_one_unit_of_work(db: AsyncEngine, threshold: int) -> None:
    """A retry whose predecessor committed finds every bar unchanged, yet reports the
    predecessor's inserts; a failed attempt adds nothing; other keys count apart."""
    [company] = await create_companies(db, "AAPL")
    bars = history(company, 30)
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        await ohlc.upsert_bars(db, [*bars, invalid(bar(company, MONDAY - dt.timedelta(days=1)))],
                               copy_threshold=threshold, receipt="wf/run/1")
    first = await ohlc.upsert_bars(db, bars, copy_threshold=threshold, receipt="wf/run/1")
    assert first == BarUpsertCounts(inserted=30, updated=0, unchanged=0)
    retry = await ohlc.upsert_bars(db, bars, copy_threshold=threshold, receipt="wf/run/1")
    assert retry == BarUpsertCounts(inserted=30, updated=0, unchanged=30)
    corrected = [replace(bars[0], close=bars[0].close + Decimal("0.5")), *bars[1:]]
    assert await ohlc.upsert_bars(db, corrected, copy_threshold=threshold, receipt="wf/run/1") == BarUpsertCounts(
        inserted=30, updated=1, unchanged=29
    )
    assert await ohlc.upsert_bars(db, [], receipt="wf/run/1") == BarUpsertCounts(inserted=30, updated=1, unchanged=0)
    # Another activity (the next day's sync), and no receipt at all: this call's own counts.
    assert await ohlc.upsert_bars(db, bars, copy_threshold=threshold, receipt="wf/run/2") == BarUpsertCounts(
        inserted=0, updated=1, unchanged=29
    )
    assert await ohlc.upsert_bars(db, bars, copy_threshold=threshold) == BarUpsertCounts(
        inserted=0, updated=0, unchanged=30
    )


def test_the_running_sessions_bar_is_provisional_until_the_close() -> None:
    from deallens.providers.alphavantage import DailyBar

    friday, thursday = dt.date(2026, 11, 27), dt.date(2026, 11, 26)
    closes = dt.datetime(2026, 11, 27, 18, 0, tzinfo=dt.UTC)  # an early close
    series = [
        DailyBar(date=day, open=Decimal(10), high=Decimal(11), low=Decimal(9), close=Decimal(10), volume=5)
        for day in (thursday, friday)
    ]

    def provisional(now: dt.datetime) -> list[bool]:
        rows = ohlc.session_bars(7, series, session_date=friday, session_closes_at=closes, now=now, source="x")
        assert {(r.company_id, r.source) for r in rows} == {(7, "x")}
        return [r.provisional for r in rows]

    assert provisional(closes - dt.timedelta(seconds=1)) == [False, True]
    assert provisional(closes) == [False, False]
