"""Rows for the notification tests: users, a small market with daily bars, fired alerts."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


async def make_users(engine: AsyncEngine, count: int, *, start: int = 1, **columns: Any) -> list[int]:
    """`count` users user<i>@example.com, with the same extra columns each; their ids."""
    names = ", ".join(columns)
    values = ", ".join(f":{name}" for name in columns)
    sql = text(
        f"INSERT INTO users (email, name{', ' + names if names else ''}) "
        f"SELECT 'user' || i || '@example.com', 'User ' || i{', ' + values if values else ''} "
        "FROM generate_series(CAST(:a AS int), CAST(:b AS int)) AS i ORDER BY i RETURNING id"
    )
    async with engine.begin() as conn:
        return list((await conn.execute(sql, {"a": start, "b": start + count - 1, **columns})).scalars())


async def seed_market(engine: AsyncEngine, symbols: list[str], *, until: dt.date, days: int = 40) -> dict[str, int]:
    """Companies with `days` weekday bars ending at `until`, each rising 1% a day (the last falls)."""
    async with engine.begin() as conn:
        ids = {}
        for n, symbol in enumerate(symbols):
            ids[symbol] = (
                await conn.execute(
                    text("INSERT INTO companies (symbol, name) VALUES (:s, :n) RETURNING id"),
                    {"s": symbol, "n": f"{symbol} Corp"},
                )
            ).scalar_one()
            await conn.execute(
                text(
                    """
                    INSERT INTO ohlc_data (company_id, date, open, high, low, close, volume, source)
                    SELECT :c, d, round(p, 4), round(p * 1.01, 4), round(p * 0.99, 4), round(p, 4), 1000000, 'test'
                    FROM (
                        SELECT d::date AS d, (100 + CAST(:n AS int) * 10) * power(1.01, row_number() OVER (ORDER BY d)) AS p
                        FROM generate_series(CAST(:until AS timestamp) - make_interval(days => CAST(:days AS int)), CAST(:until AS timestamp), interval '1 day') AS d
                        WHERE extract(isodow FROM d) < 6
                    ) s
                    """
                ),
                {"c": ids[symbol], "n": n, "until": until, "days": days},
            )
    return ids


async def watch(engine: AsyncEngine, user_ids: list[int], company_ids: list[int]) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO watchlist (user_id, company_id) "
                "SELECT u, c FROM unnest(CAST(:u AS bigint[])) u, unnest(CAST(:c AS bigint[])) c"
            ),
            {"u": user_ids, "c": company_ids},
        )


async def fire(
    engine: AsyncEngine,
    user_id: int,
    company_id: int | None,
    *,
    urgent: bool = False,
    name: str | None = None,
    message: str = "AAPL rose above 200.00 (now 201.50)",
    at: dt.datetime | None = None,
) -> int:
    """An alert and one firing of it; the alert_history id."""
    params = {"type": "price_above", "threshold": "200", "urgent": urgent}
    async with engine.begin() as conn:
        alert_id = (
            await conn.execute(
                text(
                    "INSERT INTO alerts (user_id, company_id, kind, params, name) "
                    "VALUES (:u, :c, 'price', CAST(:p AS jsonb), :n) RETURNING id"
                ),
                {"u": user_id, "c": company_id, "p": json.dumps(params), "n": name},
            )
        ).scalar_one()
        return (
            await conn.execute(
                text(
                    "INSERT INTO alert_history (alert_id, triggered_at, value, threshold, message, dedup_key) "
                    "VALUES (:a, :at, 201.5, 200, :m, :key) RETURNING id"
                ),
                {"a": alert_id, "at": at or dt.datetime.now(dt.UTC), "m": message, "key": f"k{alert_id}"},
            )
        ).scalar_one()


async def deliveries(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        return list(
            await conn.execute(
                text(
                    "SELECT alert_history_id, channel, status, attempts, message_id, error "
                    "FROM notification_deliveries ORDER BY alert_history_id, channel"
                )
            )
        )


async def digest_ledger(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        return list(
            await conn.execute(
                text("SELECT user_id, kind, period, status, attempts, message_id, error FROM digest_deliveries ORDER BY user_id")
            )
        )
