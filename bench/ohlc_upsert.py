"""Benchmark: storing daily bars with `deallens.db.ohlc.upsert_bars` against a plain COPY.

    python bench/ohlc_upsert.py [--rows 1000000] [--database-url URL] [--crossover]

Creates a database named bench_ohlc_<random> on the server of --database-url (default:
$DATABASE_URL), migrates it, and drops it at the end. The bars are generated in memory
first (not timed): deterministic random walks, valid OHLC, one symbol = 6,250 weekdays
(about 24 years). --crossover instead times each write path by batch size, the
measurement behind ohlc.COPY_THRESHOLD. What each line means, and the figures measured:
bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import random
import resource
import secrets
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from deallens.config import load_settings
from deallens.db.engine import create_engine
from deallens.db.migrate import upgrade_to_head
from deallens.db.ohlc import BarRow, BarUpsertCounts, upsert_bars

BARS_PER_SYMBOL = 6_250
FIRST_DAY = dt.date(2001, 1, 1)
SOURCE = "alphavantage-sim"
COLUMNS = ("company_id", "date", "open", "high", "low", "close", "volume", "provisional", "source")
# The fresh backfill must store bars at no less than half the rate of a plain COPY.
TARGET_RATIO = 0.5
CROSSOVER_SIZES = (100, 250, 500, 1_000, 2_000, 3_000, 5_000, BARS_PER_SYMBOL)
# copy_threshold values forcing each path, whatever the batch size.
STATEMENT_ONLY = sys.maxsize
COPY_ALWAYS = 0

Scenario = Literal["new", "today", "unchanged", "corrected"]


@dataclass(frozen=True, slots=True)
class Timing:
    label: str
    rows: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds


# ------------------------------------------------------------------ data


def weekdays(first: dt.date, count: int) -> list[dt.date]:
    days: list[dt.date] = []
    day = first
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day += dt.timedelta(days=1)
    return days


def generate_bars(total: int, company_ids: list[int], seed: int = 20_260_101) -> list[BarRow]:
    """`total` bars, BARS_PER_SYMBOL per company in order: a random walk in cents with
    low < high, open and close within, so every bar passes the table's CHECKs. Prices
    are cached Decimals (few distinct values), which keeps generation fast and memory low."""
    rand = random.Random(seed).random
    days = weekdays(FIRST_DAY, BARS_PER_SYMBOL)
    prices: dict[int, Decimal] = {}

    def price(cents: int) -> Decimal:
        value = prices.get(cents)
        if value is None:
            value = prices[cents] = Decimal(cents).scaleb(-2)
        return value

    bars: list[BarRow] = []
    for company_id in company_ids:
        close = 1_000 + int(rand() * 39_000)
        for day in days[: min(BARS_PER_SYMBOL, total - len(bars))]:
            close = max(200, close + int((rand() - 0.5) * close / 20))
            low = close - int(rand() * close / 50)
            high = close + 1 + int(rand() * close / 50)
            opening = low + int(rand() * (high - low + 1))
            volume = 10_000 + int(rand() * 50_000_000)
            bars.append(
                BarRow(company_id, day, price(opening), price(high), price(low), price(close), volume, False, SOURCE)
            )
    return bars


def with_corrected_closes(bars: list[BarRow], every: int) -> tuple[list[BarRow], int]:
    """Every `every`-th bar's close moved to another value within [low, high] (a provider
    correction), so the re-sync updates exactly those; returns (bars, corrected count)."""
    corrected = 0
    out: list[BarRow] = []
    for i, bar in enumerate(bars):
        if i % every == 0:
            bar = replace(bar, close=bar.high if bar.close != bar.high else bar.low)
            corrected += 1
        out.append(bar)
    return out, corrected


def by_symbol(bars: list[BarRow]) -> Iterator[list[BarRow]]:
    """One symbol's full history per batch, as a backfill activity would send it."""
    for start in range(0, len(bars), BARS_PER_SYMBOL):
        yield bars[start : start + BARS_PER_SYMBOL]


def records(bars: list[BarRow]) -> Iterator[tuple[object, ...]]:
    return (
        (b.company_id, b.date, b.open, b.high, b.low, b.close, b.volume, b.provisional, b.source) for b in bars
    )


# ------------------------------------------------------------------ database


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def on_server(server_url: str, statement: str) -> None:
    admin = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def bench_database(server_url: str) -> AsyncIterator[tuple[str, AsyncEngine]]:
    """(URL, engine) of a new database bench_ohlc_<random> migrated to head, dropped after."""
    name = f"bench_ohlc_{secrets.token_hex(4)}"
    await on_server(server_url, f'CREATE DATABASE "{name}"')
    url = with_database(server_url, name)
    engine = create_engine(url, pool_size=2)
    try:
        await upgrade_to_head(engine)
        yield url, engine
    finally:
        await engine.dispose()
        await on_server(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def create_companies(engine: AsyncEngine, count: int) -> list[int]:
    async with engine.begin() as conn:
        result = await conn.execute(
            text(
                "INSERT INTO companies (symbol, name) "
                "SELECT 'B' || g, 'Bench ' || g FROM generate_series(1, :n) g RETURNING id"
            ),
            {"n": count},
        )
        return sorted(result.scalars())


# ------------------------------------------------------------------ timed runs


async def checkpoint(url: str) -> None:
    """Write out dirty buffers before a timed run, so that it does not pay for the previous
    run's writes: without this, checkpoints forced by WAL volume moved rates by ~30%.
    Needs superuser or pg_checkpoint; without either, the runs are only noisier."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute("CHECKPOINT")
    except asyncpg.InsufficientPrivilegeError:
        print("  (no privilege to CHECKPOINT before this run: expect noisier figures)", file=sys.stderr)
    finally:
        await conn.close()


async def timed(url: str, label: str, rows: int, run: Callable[[], Awaitable[object]]) -> Timing:
    await checkpoint(url)
    started = time.perf_counter()
    await run()
    timing = Timing(label, rows, time.perf_counter() - started)
    print(f"  ... {label}: {timing.seconds:.1f} s", file=sys.stderr, flush=True)
    return timing


async def copy_into_new_table(url: str, label: str, definition: str, bars: list[BarRow]) -> Timing:
    """One plain COPY of `bars` into a new, empty table (created untimed)."""
    table = f"copy_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(f"CREATE TABLE {table} {definition}")
        return await timed(
            url, label, len(bars), lambda: conn.copy_records_to_table(table, records=records(bars), columns=COLUMNS)
        )
    finally:
        await conn.close()


async def upsert_by_symbol(
    url: str, engine: AsyncEngine, label: str, bars: list[BarRow], expected: BarUpsertCounts
) -> Timing:
    """`upsert_bars` one symbol at a time; the summed counts must be `expected`."""
    counts: list[BarUpsertCounts] = []

    async def run() -> None:
        for batch in by_symbol(bars):
            counts.append(await upsert_bars(engine, batch))

    timing = await timed(url, label, len(bars), run)
    total = BarUpsertCounts(
        inserted=sum(c.inserted for c in counts),
        updated=sum(c.updated for c in counts),
        unchanged=sum(c.unchanged for c in counts),
    )
    if total != expected:
        raise SystemExit(f"{label}: expected {expected}, got {total}")
    return timing


def report(baseline: Timing, references: list[Timing], project: list[tuple[str, Timing]]) -> None:
    """The table, peak RSS and the verdict on the target (project[0] is the fresh backfill)."""
    lines = [("1", baseline), *(("ref", t) for t in references), *project]
    print(f"{'run':<56} {'rows':>9} {'seconds':>8} {'rows/s':>8} {'vs 1':>5}")
    for number, timing in lines:
        print(
            f"{number + '. ' + timing.label:<56} {timing.rows:>9,} {timing.seconds:>8.2f} "
            f"{timing.rows_per_second:>8,.0f} {timing.rows_per_second / baseline.rows_per_second:>5.0%}"
        )
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")
    ratio = project[0][1].rows_per_second / baseline.rows_per_second
    verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
    print(f"target: fresh backfill >= {TARGET_RATIO:.0%} of COPY: {verdict} ({ratio:.0%})")


async def bench(server_url: str, rows: int) -> None:
    async with bench_database(server_url) as (url, engine):
        company_ids = await create_companies(engine, -(-rows // BARS_PER_SYMBOL))
        started = time.perf_counter()
        bars = generate_bars(rows, company_ids)
        corrected, n_corrected = with_corrected_closes(bars, every=10)
        print(
            f"generated {len(bars):,} bars for {len(company_ids)} symbols in "
            f"{time.perf_counter() - started:.1f} s (not timed)",
            flush=True,
        )
        # LIKE ... INCLUDING ALL brings indexes, CHECKs, defaults and identity but not foreign
        # keys: the baseline adds ohlc_data's own, so it enforces all that ohlc_data does.
        baseline = await copy_into_new_table(
            url, "COPY, same definition as ohlc_data",
            "(LIKE ohlc_data INCLUDING ALL, FOREIGN KEY (company_id) REFERENCES companies (id) ON DELETE CASCADE)",
            bars,
        )
        # References on a quarter of the bars, to keep the run short: a bare table's rate
        # does not depend on its size, and smaller indexes only flatter the other one.
        sample = bars[: len(bars) // 4]
        references = [
            await copy_into_new_table(
                url, "COPY, LIKE ohlc_data INCLUDING ALL (no FK)", "(LIKE ohlc_data INCLUDING ALL)", sample
            ),
            await copy_into_new_table(
                url, "COPY, bare table (no index, CHECK or FK)",
                "(LIKE ohlc_data INCLUDING DEFAULTS INCLUDING IDENTITY)", sample,
            ),
        ]
        n = len(bars)
        fresh = await upsert_by_symbol(url, engine, "upsert_bars, fresh backfill", bars, BarUpsertCounts(n, 0, 0))
        unchanged = await upsert_by_symbol(
            url, engine, "upsert_bars, re-sync, unchanged", bars, BarUpsertCounts(0, 0, n)
        )
        updates = await upsert_by_symbol(
            url, engine, f"upsert_bars, re-sync, {n_corrected / n:.0%} closes corrected", corrected,
            BarUpsertCounts(0, n_corrected, n - n_corrected),
        )
        report(baseline, references, [("2", fresh), ("3", unchanged), ("3", updates)])


async def median_ms(
    run: Callable[[], Awaitable[object]], repeats: int, prepare: Callable[[], Awaitable[object]]
) -> float:
    """Median wall time of `run` in ms, `prepare` (untimed) setting up each repetition."""
    times = []
    for _ in range(repeats):
        await prepare()
        started = time.perf_counter()
        await run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def crossover(server_url: str, rows: int) -> None:
    """Per batch size, the median time of a batch through the single statement and through
    COPY (direct for a new symbol, staged otherwise), on top of `rows` stored bars."""
    scenarios: tuple[Scenario, ...] = ("new", "today", "unchanged", "corrected")
    async with bench_database(server_url) as (url, engine):
        stored_symbols = -(-rows // BARS_PER_SYMBOL)
        company_ids = iter(await create_companies(engine, stored_symbols + 4_000))
        for batch in by_symbol(generate_bars(rows, [next(company_ids) for _ in range(stored_symbols)])):
            await upsert_bars(engine, batch)
        async with engine.begin() as conn:
            await conn.execute(text("ANALYZE ohlc_data"))
        print(f"{rows:,} bars stored; median ms per batch, statement / COPY (speed-up of COPY)")
        headers = ("new symbol", "today stored", "re-sync unchanged", "re-sync 10% corr.")
        print(f"{'bars':>6}  " + "  ".join(f"{header:>21}" for header in headers))
        for size in CROSSOVER_SIZES:
            await checkpoint(url)
            repeats = max(3, min(15, 20_000 // size))
            cells = []
            for scenario in scenarios:
                statement_ms, copy_ms = [
                    await time_scenario(engine, scenario, size, threshold, repeats, company_ids)
                    for threshold in (STATEMENT_ONLY, COPY_ALWAYS)
                ]
                cells.append(f"{statement_ms:6.1f} / {copy_ms:6.1f} ({statement_ms / copy_ms:.2f}x)")
            print(f"{size:>6}  " + "  ".join(f"{cell:>21}" for cell in cells), flush=True)


async def time_scenario(
    engine: AsyncEngine, scenario: Scenario, size: int, threshold: int, repeats: int, company_ids: Iterator[int]
) -> float:
    """One scenario, each repetition on a symbol of its own. new: a symbol's first `size`
    bars; today: the same, but today's (the last) bar was stored provisional by the intraday
    sync; unchanged / corrected: the stored bars again, as they are or with 10% of the
    closes corrected."""
    batch: list[BarRow] = []

    async def prepare() -> None:
        nonlocal batch
        batch = generate_bars(size, [next(company_ids)])
        if scenario == "today":
            await upsert_bars(engine, [replace(batch[-1], provisional=True, close=batch[-1].low)])
        elif scenario in ("unchanged", "corrected"):
            await upsert_bars(engine, batch)
            if scenario == "corrected":
                batch = with_corrected_closes(batch, every=10)[0]

    return await median_ms(lambda: upsert_bars(engine, batch, copy_threshold=threshold), repeats, prepare)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="bars to store (default: 1,000,000)")
    parser.add_argument(
        "--database-url", default=os.environ.get("DATABASE_URL"),
        help="a server to create the benchmark database on (default: $DATABASE_URL)",
    )
    parser.add_argument("--crossover", action="store_true", help="time each write path by batch size instead")
    args = parser.parse_args()
    if not args.database_url:
        parser.error("no --database-url and DATABASE_URL is not set")
    server_url = load_settings(database_url=args.database_url, _env_file=None).database_url
    asyncio.run(crossover(server_url, args.rows) if args.crossover else bench(server_url, args.rows))


if __name__ == "__main__":
    main()
