"""The price evaluation's pruning (migration 0020: armed alerts read only when a point reaches
their level) decides exactly what the unpruned statement decides.

The same data, many alerts whose levels sit on, just inside and just outside the range of
each company's points (strict "above"/"below", a move exactly equal to its percent), armed
and disarmed, new and evaluated, windowed and not, each evaluated by the production
statement and by the same statement with every active alert as a candidate: the firings,
the alerts' states and the cursors must be the same, round after round.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from deallens.db import alert_eval
from deallens.db.alerts import add_alert
from deallens.domain.alert_rules import parse_alert

NOW = dt.datetime(2026, 11, 27, 15, 4, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)
SYMBOLS = ["AAPL", "MSFT", "GS", "TSLA", "PFE"]
PREVIOUS_CLOSE = Decimal("100")
# Every move from 100 is a whole percent, so that a percent equal to a move is a real boundary.
PRICES = [Decimal(p) for p in ("94", "97", "98", "100", "102", "103", "105", "108")]

# Every active price alert a candidate: the statement before migration 0020's pruning.
_UNPRUNED = alert_eval._statement(
    dataclasses.replace(
        alert_eval._PRICE, candidates=None, observations=alert_eval._POINTS + alert_eval._PRICE.observations
    )
)


def _definition(rng: random.Random, symbol: str) -> dict[str, Any]:
    kind = rng.choice(["price_above", "price_below", "percent_change", "percent_change"])
    if kind != "percent_change":
        threshold = rng.choice(PRICES) + rng.choice([Decimal("0"), Decimal("-0.01"), Decimal("0.01")])
        return {"type": kind, "symbol": symbol, "threshold": str(threshold)}
    definition: dict[str, Any] = {
        "type": kind, "symbol": symbol, "percent": str(rng.choice([1, 2, 3, 5, 6, 8, Decimal("4.99"), Decimal("5.01")])),
    }
    if rng.random() < 0.5:
        definition["direction"] = rng.choice(["up", "down"])
    if rng.random() < 0.2:
        definition["window_minutes"] = rng.choice([1, 2])
    return definition


async def _seed(db: AsyncEngine, rng: random.Random) -> None:
    async with db.begin() as conn:
        await conn.execute(
            text("INSERT INTO companies (symbol, name) SELECT s, s || ' Inc' FROM unnest(CAST(:s AS text[])) s"),
            {"s": SYMBOLS},
        )
        await conn.execute(text("INSERT INTO users (id, email, daily_alert_cap) VALUES (1, 'ada@x.io', 10000)"))
    for symbol in SYMBOLS:
        for _ in range(40):
            definition = _definition(rng, symbol)
            if rng.random() < 0.5:
                definition["cooldown_seconds"] = 0
            await add_alert(db, parse_alert({"user_id": 1, **definition}))
    async with db.begin() as conn:
        # Some disarmed, some already evaluated, some fired a while ago.
        for alert_id in (await conn.execute(text("SELECT id FROM alerts ORDER BY id"))).scalars().all():
            await conn.execute(
                text(
                    "UPDATE alerts SET armed = :armed, evaluated_at = :evaluated, last_triggered_at = :fired "
                    "WHERE id = :id"
                ),
                {
                    "id": alert_id,
                    "armed": rng.random() < 0.7,
                    "evaluated": NOW - dt.timedelta(hours=2) if rng.random() < 0.8 else None,
                    "fired": NOW - dt.timedelta(hours=3) if rng.random() < 0.3 else None,
                },
            )


async def _quotes(db: AsyncEngine, rng: random.Random, start: dt.datetime) -> None:
    """1-4 quotes per company (some none), a minute apart from `start`."""
    async with db.begin() as conn:
        for symbol in SYMBOLS:
            for n in range(rng.choice([0, 1, 2, 3, 4])):
                await conn.execute(
                    text(
                        "INSERT INTO price_quotes (company_id, price, previous_close, latest_trading_day, quoted_at, source) "
                        "SELECT id, :p, :pc, :d, :t, 'test' FROM companies WHERE symbol = :s"
                    ),
                    {"s": symbol, "p": rng.choice(PRICES), "pc": PREVIOUS_CLOSE, "d": start.date(), "t": start + n * MINUTE},
                )


async def _outcome(db: AsyncEngine, statement: Any, params: dict[str, Any], *, keep: bool) -> tuple[Any, ...]:
    """What one evaluation fires and leaves behind; rolled back unless `keep`."""
    async with db.connect() as conn:
        transaction = await conn.begin()
        await conn.execute(alert_eval._PLANNING, {"kind": "price"})
        fired = sorted(
            (r.alert_id, r.data_at, r.value, r.threshold, r.message) for r in (await conn.execute(statement, params))
        )
        alerts = (await conn.execute(
            text("SELECT id, armed, active, last_triggered_at, evaluated_at FROM alerts ORDER BY id")
        )).all()
        cursors = (await conn.execute(
            text("SELECT kind, company_id, through_at FROM alert_cursors ORDER BY kind, company_id")
        )).all()
        await (transaction.commit() if keep else transaction.rollback())
    return fired, [tuple(a) for a in alerts], [tuple(c) for c in cursors]


def _params(at: dt.datetime) -> dict[str, Any]:
    return {
        "kind": "price", "now": at, "day_start": at.replace(hour=0, minute=0, second=0, microsecond=0),
        "max_quote_age": dt.timedelta(minutes=30), "min_cooldown_seconds": 0,
        "news_sentiment_window": dt.timedelta(hours=24), "symbols": None,
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_pruned_price_evaluation_decides_what_the_unpruned_one_does(db: AsyncEngine, seed: int) -> None:
    rng = random.Random(seed)
    await _seed(db, rng)
    total_fired = 0
    for round_ in range(4):
        start = NOW + round_ * 10 * MINUTE
        await _quotes(db, rng, start)
        params = _params(start + 5 * MINUTE)
        unpruned = await _outcome(db, _UNPRUNED, params, keep=False)
        pruned = await _outcome(db, alert_eval._STATEMENTS["price"], params, keep=True)
        assert pruned == unpruned, f"round {round_}"
        total_fired += len(pruned[0])
    # The comparison means something: alerts fired (and re-armed, and were passed over).
    assert total_fired > 10
