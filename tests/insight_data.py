"""Seed data for the insight tests and bench/insights.py: companies with deterministic bars."""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


def trading_days(end: dt.date, count: int) -> list[dt.date]:
    """`count` weekdays ending at `end` (holidays do not matter to the indicators)."""
    days: list[dt.date] = []
    day = end
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day -= dt.timedelta(days=1)
    return days[::-1]


def random_walk(seed: int, count: int, *, start: float = 100.0, drift: float = 0.0005) -> list[float]:
    rng = random.Random(seed)
    closes, price = [], start
    for _ in range(count):
        price *= math.exp(rng.gauss(drift, 0.015))
        closes.append(round(price, 4))
    return closes


async def add_companies(engine: AsyncEngine, symbols: Sequence[str], *, sector: str = "Technology") -> list[int]:
    async with engine.begin() as conn:
        ids = (await conn.execute(
            text(
                "INSERT INTO companies (symbol, name, sector, fundamentals) "
                "SELECT s, s || ' Corp', :sector, CAST(:fundamentals AS json) FROM unnest(CAST(:symbols AS text[])) AS s "
                "RETURNING id"
            ),
            {"symbols": list(symbols), "sector": sector,
             "fundamentals": '{"pe_ratio": "24.5", "eps": "6.1", "beta": "1.1", "market_cap": "150000000000"}'},
        )).scalars().all()
    return list(ids)


async def add_bars(engine: AsyncEngine, company_id: int, days: Sequence[dt.date], closes: Sequence[float],
                   *, volume: int = 1_000_000) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO ohlc_data (company_id, date, open, high, low, close, volume, source) "
                "SELECT :cid, d, c, c * 1.01, c * 0.99, c, :volume + (extract(doy FROM d)::int % 7) * 10000, 'test' "
                "FROM unnest(CAST(:days AS date[]), CAST(:closes AS numeric[])) AS x(d, c) "
                "ON CONFLICT (company_id, date) DO UPDATE SET close = excluded.close, open = excluded.open, "
                "high = excluded.high, low = excluded.low"
            ),
            {"cid": company_id, "days": list(days), "closes": list(closes), "volume": volume},
        )


async def seed_universe(engine: AsyncEngine, count: int, *, end: dt.date, bars: int = 300, prefix: str = "T") -> list[int]:
    ids = await add_companies(engine, [f"{prefix}{i:04d}" for i in range(count)])
    days = trading_days(end, bars)
    for offset, company_id in enumerate(ids):
        await add_bars(engine, company_id, days, random_walk(offset, bars, drift=(offset % 5 - 2) * 0.001))
    return ids


async def seed_universe_sql(engine: AsyncEngine, count: int, *, end: dt.date, bars: int) -> list[int]:
    """Many companies quickly (the benchmark): bars generated in SQL, one statement."""
    ids = await add_companies(engine, [f"B{i:05d}" for i in range(count)])
    async with engine.begin() as conn:
        await conn.execute(
            text(
                """
                INSERT INTO ohlc_data (company_id, date, open, high, low, close, volume, source)
                SELECT c.id, d.day, p.close, p.close * 1.01, p.close * 0.99, p.close, 1000000 + (c.id * 7919 + d.n) % 500000, 'bench'
                  FROM unnest(CAST(:ids AS bigint[])) AS c(id)
                 CROSS JOIN LATERAL (
                       SELECT (CAST(:end AS date) - (CAST(:bars AS int) - n)) AS day, n
                         FROM generate_series(1, CAST(:bars AS int)) AS n) d
                 CROSS JOIN LATERAL (
                       SELECT round((100 + 20 * sin((d.n + c.id) / 15.0) + d.n * ((c.id % 5) - 2) * 0.02)::numeric, 4)
                              AS close) p
                """
            ),
            {"ids": ids, "end": end, "bars": bars},
        )
    return ids
