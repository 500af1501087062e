"""Where daily bars arrive in the database: idempotent, set-based upserts of OHLC bars.

A retried activity must store each bar once, and a re-sync of unchanged history must cost
no writes: an identical bar is filtered out before the INSERT, so it is neither rewritten
nor even row-locked (no dead tuple, no WAL for ohlc_data, `updated_at`, `xmin` and `xmax`
untouched; ON CONFLICT alone would lock each one, ~60 bytes of WAL a bar).
Which stored bar an incoming one may overwrite is one rule (`_overwrites`), used both by
that filter and by ON CONFLICT ... DO UPDATE WHERE, which stays authoritative when another
transaction writes the same bar concurrently.

Three write paths, one transaction per call:

- small batches: one INSERT ... SELECT FROM unnest(typed arrays) ... ON CONFLICT statement;
- large batches: binary COPY into a temporary table (ON COMMIT DROP), then the same
  statement reading from it;
- large batches none of whose keys is stored yet (a fresh backfill): COPY straight into
  ohlc_data, skipping the staging table and the conflict handling (about 1.5x faster than
  either of the others for one symbol's full history).

`python bench/ohlc_upsert.py --crossover` measures them by batch size; bench/README.md
has the figures behind COPY_THRESHOLD.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import asyncpg
from sqlalchemy import exc, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from deallens.providers.alphavantage import DailyBar

log = logging.getLogger(__name__)

# From this many distinct bars on, a batch goes through COPY. Measured (bench/README.md,
# three runs): re-syncing 100-500 bars, the single statement is up to 1.6x faster (no
# temporary table, fewer round trips); from 1,000 to 3,000 bars the two are even within the
# noise; from 5,000 on the staged COPY is up to 1.7x faster. A fresh backfill's direct COPY
# is ~1.4x faster from 1,000 bars and ~1.5x at 6,250 (one symbol's full history), which
# tips the even range towards its lower half.
COPY_THRESHOLD = 2_000

_COLUMNS = ("company_id", "date", "open", "high", "low", "close", "volume", "provisional", "source")
_VALUES = ("open", "high", "low", "close", "volume", "provisional")
_STAGING_TABLE = "ohlc_incoming"


@dataclass(frozen=True, slots=True)
class BarRow:
    """One daily bar as a provider reported it, validated by the caller."""

    company_id: int
    date: dt.date
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int
    provisional: bool  # today's bar during the session
    source: str  # "alphavantage" or "alphavantage-sim"


@dataclass(frozen=True, slots=True)
class BarUpsertCounts:
    """What a call did with its rows; the three always add up to the rows passed in."""

    inserted: int
    updated: int
    unchanged: int


class WritePath(enum.Enum):
    """How a batch reached ohlc_data (logged, so a slow backfill can be explained)."""

    STATEMENT = "statement"
    STAGED_COPY = "staged-copy"
    DIRECT_COPY = "direct-copy"


def _overwrites(stored: str, incoming: str) -> str:
    """SQL: may the incoming bar replace the stored one? A provisional bar yields to any
    bar; a final bar only to a final one (a provider correction); and never for equal values."""
    stored_values = ", ".join(f"{stored}.{c}" for c in _VALUES)
    incoming_values = ", ".join(f"{incoming}.{c}" for c in _VALUES)
    return (
        f"({stored}.provisional OR NOT {incoming}.provisional)"
        f" AND ({stored_values}) IS DISTINCT FROM ({incoming_values})"
    )


def _upsert_sql(incoming: str) -> str:
    """The one upsert, reading the incoming bars from `incoming` (a query returning _COLUMNS).

    The bars that would not be written are dropped first, by one index probe each: the
    LATERAL ... LIMIT 1 keeps the planner from turning NOT EXISTS into a hash anti-join
    over the whole table, which it does for batches of a few thousand bars. Counting
    inside the statement keeps a million-row batch from returning a million rows; a row
    returned by RETURNING was written, and xmax = 0 tells an insert from an update.
    """
    columns = ", ".join(_COLUMNS)
    incoming_columns = ", ".join(f"incoming.{c}" for c in _COLUMNS)
    assignments = ", ".join(f"{c} = EXCLUDED.{c}" for c in (*_VALUES, "source"))
    return f"""
        WITH written AS (
            INSERT INTO ohlc_data AS stored ({columns})
            SELECT {incoming_columns} FROM ({incoming}) AS incoming
            LEFT JOIN LATERAL (
                SELECT true AS kept FROM ohlc_data same
                WHERE same.company_id = incoming.company_id AND same.date = incoming.date
                  AND NOT ({_overwrites("same", "incoming")})
                LIMIT 1
            ) unchanged ON true
            WHERE unchanged.kept IS NULL
            ON CONFLICT (company_id, date) DO UPDATE
            SET {assignments}, updated_at = now()
            WHERE {_overwrites("stored", "EXCLUDED")}
            RETURNING stored.xmax = 0 AS inserted
        )
        SELECT count(*) FILTER (WHERE inserted) AS inserted,
               count(*) FILTER (WHERE NOT inserted) AS updated
        FROM written
    """


# Casting to numeric(18,6)[] rounds like the columns do, so that a bar with more decimals
# than stored compares equal to its stored self in the filter (the staging table's columns
# do the same); EXCLUDED is rounded too, but by then the row would be locked for nothing.
_UPSERT_FROM_ARRAYS = text(
    _upsert_sql(
        """
        SELECT * FROM unnest(
            CAST(:company_ids AS bigint[]), CAST(:dates AS date[]),
            CAST(:opens AS numeric(18,6)[]), CAST(:highs AS numeric(18,6)[]),
            CAST(:lows AS numeric(18,6)[]), CAST(:closes AS numeric(18,6)[]),
            CAST(:volumes AS bigint[]), CAST(:provisionals AS boolean[]), CAST(:sources AS text[])
        ) AS i(company_id, date, open, high, low, close, volume, provisional, source)
        """
    )
)

_UPSERT_FROM_STAGING = text(_upsert_sql(f"SELECT * FROM {_STAGING_TABLE}"))

_CREATE_STAGING = text(
    f"""
    CREATE TEMPORARY TABLE {_STAGING_TABLE} (
        company_id bigint NOT NULL, date date NOT NULL,
        open numeric(18,6) NOT NULL, high numeric(18,6) NOT NULL,
        low numeric(18,6) NOT NULL, close numeric(18,6) NOT NULL,
        volume bigint NOT NULL, provisional boolean NOT NULL, source varchar(32) NOT NULL
    ) ON COMMIT DROP
    """
)

# Every incoming key lies within its company's [first, last] dates, so no stored bar in
# those ranges means no incoming key is stored: one index probe per company, not per bar.
_ANY_KEY_STORED = text(
    """
    SELECT EXISTS (
        SELECT 1
        FROM unnest(CAST(:company_ids AS bigint[]), CAST(:firsts AS date[]), CAST(:lasts AS date[]))
             AS span(company_id, first, last)
        JOIN LATERAL (
            SELECT 1 FROM ohlc_data o
            WHERE o.company_id = span.company_id AND o.date BETWEEN span.first AND span.last
            LIMIT 1
        ) stored ON true
    )
    """
)

# What one activity has stored over its attempts, added up in the transaction that stores
# the bars: either both commit or neither does.
_ADD_TO_RECEIPT = text(
    """
    INSERT INTO bar_sync_receipts AS r (activity_key, inserted, updated)
    VALUES (:key, :inserted, :updated)
    ON CONFLICT (activity_key) DO UPDATE
    SET inserted = r.inserted + EXCLUDED.inserted, updated = r.updated + EXCLUDED.updated
    RETURNING inserted, updated
    """
)
_READ_RECEIPT = text("SELECT inserted, updated FROM bar_sync_receipts WHERE activity_key = :key")


async def upsert_bars(
    engine: AsyncEngine, rows: Sequence[BarRow], *, copy_threshold: int = COPY_THRESHOLD, receipt: str | None = None
) -> BarUpsertCounts:
    """Store a batch of bars in one transaction (all or nothing); idempotent.

    Within the batch, the last bar given for a (company_id, date) wins; the ones it
    supersedes count as unchanged. A bar violating a CHECK raises `sqlalchemy.exc.IntegrityError`
    and stores nothing of the batch.

    `receipt` names the caller's unit of work across its retries (a Temporal activity's
    workflow, run and activity id): the counts are then what every attempt of it stored, so a
    retry after an attempt that committed but never reported says "inserted", not
    "unchanged" (the retry itself finds every bar unchanged). `unchanged` is the rest of
    this call's rows.
    """
    if not rows:
        if receipt is not None:
            async with engine.connect() as conn:
                stored = (await conn.execute(_READ_RECEIPT, {"key": receipt})).one_or_none()
            if stored is not None:
                return BarUpsertCounts(inserted=stored.inserted, updated=stored.updated, unchanged=0)
        return BarUpsertCounts(inserted=0, updated=0, unchanged=0)
    bars = _last_bar_per_key(rows)
    async with engine.begin() as conn:
        if len(bars) < copy_threshold:
            path = WritePath.STATEMENT
            inserted, updated = await _upsert_from_arrays(conn, bars)
        elif await _any_key_stored(conn, bars):
            path = WritePath.STAGED_COPY
            inserted, updated = await _upsert_via_staging(conn, bars)
        else:
            path, inserted, updated = await _copy_as_fresh(conn, bars)
        unchanged = len(rows) - inserted - updated
        if receipt is not None:
            total = (await conn.execute(
                _ADD_TO_RECEIPT, {"key": receipt, "inserted": inserted, "updated": updated}
            )).one()
            inserted, updated = total.inserted, total.updated
    counts = BarUpsertCounts(inserted=inserted, updated=updated, unchanged=unchanged)
    log.debug(
        "stored %d bars via %s: %d inserted, %d updated, %d unchanged",
        len(rows), path.value, counts.inserted, counts.updated, counts.unchanged,
        extra={"write_path": path},
    )
    return counts


def session_bars(
    company_id: int,
    bars: Sequence[DailyBar],
    *,
    session_date: dt.date,
    session_closes_at: dt.datetime,
    now: dt.datetime,
    source: str,
) -> list[BarRow]:
    """A provider's daily series as rows to store. The bar of the session still running
    (`session_date` before `session_closes_at`) is provisional: the post-close sync replaces
    it with the final one, and a provisional bar never overwrites a final one."""
    running = now < session_closes_at
    return [
        BarRow(
            company_id=company_id,
            date=bar.date,
            open=bar.open,
            high=bar.high,
            low=bar.low,
            close=bar.close,
            volume=bar.volume,
            provisional=running and bar.date == session_date,
            source=source,
        )
        for bar in bars
    ]


def _last_bar_per_key(rows: Sequence[BarRow]) -> list[BarRow]:
    """One bar per key (ON CONFLICT cannot touch a row twice in one statement), in key
    order, so concurrent batches lock the rows they share in the same order (no deadlock)."""
    by_key = {(row.company_id, row.date): row for row in rows}
    return [by_key[key] for key in sorted(by_key)]


async def _upsert_from_arrays(conn: AsyncConnection, bars: list[BarRow]) -> tuple[int, int]:
    params = {
        "company_ids": [b.company_id for b in bars],
        "dates": [b.date for b in bars],
        "opens": [b.open for b in bars],
        "highs": [b.high for b in bars],
        "lows": [b.low for b in bars],
        "closes": [b.close for b in bars],
        "volumes": [b.volume for b in bars],
        "provisionals": [b.provisional for b in bars],
        "sources": [b.source for b in bars],
    }
    row = (await conn.execute(_UPSERT_FROM_ARRAYS, params)).one()
    return row.inserted, row.updated


async def _upsert_via_staging(conn: AsyncConnection, bars: list[BarRow]) -> tuple[int, int]:
    await conn.execute(_CREATE_STAGING)
    await _copy(conn, _STAGING_TABLE, bars)
    row = (await conn.execute(_UPSERT_FROM_STAGING)).one()
    return row.inserted, row.updated


async def _copy_as_fresh(conn: AsyncConnection, bars: list[BarRow]) -> tuple[WritePath, int, int]:
    """COPY straight into ohlc_data, none of whose keys was stored at the check.

    A concurrent writer may store some of them in between (a timed-out activity attempt
    still running beside its retry): the COPY then fails on the unique key, and the batch
    goes through the staged upsert instead of failing. The savepoint costs two round trips.
    """
    try:
        async with conn.begin_nested():
            await _copy(conn, "ohlc_data", bars)
    except exc.IntegrityError as error:
        if not isinstance(error.orig, asyncpg.UniqueViolationError):
            raise
        inserted, updated = await _upsert_via_staging(conn, bars)
        return WritePath.STAGED_COPY, inserted, updated
    return WritePath.DIRECT_COPY, len(bars), 0


async def _any_key_stored(conn: AsyncConnection, bars: list[BarRow]) -> bool:
    """Whether some stored bar may share a key with `bars` (sorted by key)."""
    firsts: dict[int, dt.date] = {}
    lasts: dict[int, dt.date] = {}
    for bar in bars:
        firsts.setdefault(bar.company_id, bar.date)
        lasts[bar.company_id] = bar.date
    params = {"company_ids": list(firsts), "firsts": list(firsts.values()), "lasts": list(lasts.values())}
    return bool((await conn.execute(_ANY_KEY_STORED, params)).scalar_one())


async def _copy(conn: AsyncConnection, table: str, bars: list[BarRow]) -> None:
    """Binary COPY of `bars` into `table` on the connection's open transaction.

    SQLAlchemy's asyncpg adapter sends BEGIN lazily, with the first statement; a COPY sent
    before that would commit on its own, so the caller must have executed one already.
    asyncpg's errors are raised as SQLAlchemy's, like those of every other path.
    """
    driver: asyncpg.Connection = (await conn.get_raw_connection()).driver_connection
    if not driver.is_in_transaction():
        raise RuntimeError("COPY outside a transaction: execute a statement on the connection first")
    records = (
        (b.company_id, b.date, b.open, b.high, b.low, b.close, b.volume, b.provisional, b.source) for b in bars
    )
    try:
        await driver.copy_records_to_table(table, records=records, columns=_COLUMNS)
    except asyncpg.IntegrityConstraintViolationError as error:
        raise exc.IntegrityError(f"COPY {table}", None, error) from error
    except asyncpg.DataError as error:
        raise exc.DataError(f"COPY {table}", None, error) from error


@dataclass(frozen=True, slots=True)
class Coverage:
    symbol: str
    bars: int
    first: dt.date | None
    last: dt.date | None


_COVERAGE = text(
    """
    SELECT c.symbol, count(o.date) AS bars, min(o.date) AS first, max(o.date) AS last
    FROM companies c
    LEFT JOIN ohlc_data o ON o.company_id = c.id AND o.date BETWEEN :start AND :end
    WHERE CAST(:symbols AS text[]) IS NULL OR c.symbol = ANY(CAST(:symbols AS text[]))
    GROUP BY c.symbol ORDER BY c.symbol
    """
)


async def coverage(engine: AsyncEngine, symbols: list[str] | None, start: dt.date, end: dt.date) -> list[Coverage]:
    """Daily bars stored per company between `start` and `end` (inclusive): what a backfill
    of that range left behind (`starter.py backfill ohlc` reports it)."""
    async with engine.connect() as conn:
        rows = await conn.execute(_COVERAGE, {"symbols": symbols or None, "start": start, "end": end})
        return [Coverage(r.symbol, r.bars, r.first, r.last) for r in rows]
