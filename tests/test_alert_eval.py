"""Set-based alert evaluation on a real PostgreSQL: each type fires or not, edge re-arming,
cooldown, snooze, one-shot, expiry, the daily cap, stale data, the symbols filter,
concurrent evaluations, and what alert_history records."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from deallens.db.alert_eval import AlertKind, EvalPolicy, Firing, evaluate
from deallens.db.alerts import add_alert
from deallens.domain.alert_rules import parse_alert

NOW = dt.datetime(2026, 11, 27, 15, 4, tzinfo=dt.UTC)
CREATED = NOW - dt.timedelta(hours=1)
MINUTE = dt.timedelta(minutes=1)
COMPANIES = {
    "AAPL": "Apple Inc", "MSFT": "Microsoft Corporation", "GS": "Goldman Sachs Group Inc",
    "TSLA": "Tesla Inc", "PFE": "Pfizer Inc", "SGEN": "Seagen Inc",
}


@pytest.fixture
async def ids(db: AsyncEngine) -> dict[str, int]:
    """The companies by symbol; users 1 and 2 (daily cap 50)."""
    async with db.begin() as conn:
        rows = await conn.execute(
            text("INSERT INTO companies (symbol, name) SELECT * FROM unnest(CAST(:s AS text[]), CAST(:n AS text[])) "
                 "RETURNING symbol, id"),
            {"s": list(COMPANIES), "n": list(COMPANIES.values())},
        )
        found = {symbol: id_ for symbol, id_ in rows}
        await conn.execute(text("INSERT INTO users (id, email) VALUES (1, 'ada@x.io'), (2, 'max@x.io')"))
    return found


async def sql(db: AsyncEngine, statement: str, **params: Any) -> Any:
    async with db.begin() as conn:
        return (await conn.execute(text(statement), params)).all()


async def alert(db: AsyncEngine, **definition: Any) -> int:
    """Created as production does (params exactly as stored), at CREATED on the test's clock."""
    alert_id = await add_alert(db, parse_alert({"user_id": 1, **definition}))
    await sql(db, "UPDATE alerts SET created_at = :t WHERE id = :a RETURNING id", t=CREATED, a=alert_id)
    return alert_id


async def quote(
    db: AsyncEngine, symbol: str, price: str, *, at: dt.datetime = NOW, previous_close: str | None = None,
    volume: int | None = None,
) -> int:
    rows = await sql(
        db,
        "INSERT INTO price_quotes (company_id, price, previous_close, volume, latest_trading_day, quoted_at, source) "
        "SELECT id, :p, :pc, :v, :d, :t, 'test' FROM companies WHERE symbol = :s RETURNING id",
        s=symbol, p=Decimal(price), pc=None if previous_close is None else Decimal(previous_close), v=volume,
        d=at.date(), t=at,
    )
    return rows[0][0]


async def run(
    db: AsyncEngine, kind: AlertKind, at: dt.datetime = NOW, *, symbols: list[str] | None = None, **policy: Any
) -> list[Firing]:
    """Quotes older than 30 minutes are stale."""
    eval_policy = EvalPolicy(now=at, max_quote_age=dt.timedelta(minutes=30), **policy)
    return await evaluate(db, kind, eval_policy, symbols=symbols)


async def state(db: AsyncEngine, alert_id: int) -> tuple[bool, bool, dt.datetime | None]:
    """(armed, active, last_triggered_at)."""
    rows = await sql(db, "SELECT armed, active, last_triggered_at FROM alerts WHERE id = :a", a=alert_id)
    return tuple(rows[0])  # type: ignore[return-value]


async def fired_count(db: AsyncEngine, alert_id: int) -> int:
    return (await sql(db, "SELECT count(*) FROM alert_history WHERE alert_id = :a", a=alert_id))[0][0]


# ------------------------------------------------------------------ price


async def test_price_above_fires_once_and_records_the_firing(db: AsyncEngine, ids: dict[str, int]) -> None:
    alert_id = await alert(db, type="price_above", symbol="AAPL", threshold=230)
    quote_id = await quote(db, "AAPL", "231.52")
    [firing] = await run(db, "price")
    assert firing == Firing(
        alert_history_id=firing.alert_history_id, alert_id=alert_id, user_id=1, kind="price", alert_type="price_above",
        symbol="AAPL", value=Decimal("231.520000"), threshold=Decimal("230.000000"), data_at=NOW,
        message="AAPL rose above 230.00: 231.52 (15:04 UTC)",
    )
    [row] = await sql(db, "SELECT id, triggered_at, value, threshold, data_at, message, dedup_key FROM alert_history")
    assert tuple(row) == (
        firing.alert_history_id, NOW, firing.value, firing.threshold, NOW, firing.message, f"price:{quote_id}",
    )
    assert await state(db, alert_id) == (False, True, NOW)
    # The same quote, evaluated again later: no second firing.
    assert await run(db, "price", NOW + MINUTE) == []


@pytest.mark.parametrize(
    ("definition", "price", "fires"),
    [
        ({"type": "price_above", "threshold": 230}, "230.00", False),  # "above" is strict
        ({"type": "price_below", "threshold": 230}, "229.99", True),
        ({"type": "price_below", "threshold": 230}, "230.00", False),
        ({"type": "price_below", "threshold": "0.5"}, "0.1234", True),
    ],
)
async def test_price_thresholds(
    db: AsyncEngine, ids: dict[str, int], definition: dict[str, Any], price: str, fires: bool
) -> None:
    await alert(db, symbol="AAPL", **definition)
    await quote(db, "AAPL", price)
    firings = await run(db, "price")
    assert len(firings) == fires
    if definition["threshold"] == "0.5":
        assert firings[0].message == "AAPL fell below 0.50: 0.1234 (15:04 UTC)"


async def test_edge_triggered_rearms_on_fresh_data_finding_the_condition_false(
    db: AsyncEngine, ids: dict[str, int]
) -> None:
    alert_id = await alert(db, type="price_above", symbol="AAPL", threshold=230, cooldown_seconds=0)
    steps = [("231", 1, False), ("232", 0, False), ("229", 0, True), ("233", 1, False)]
    for minute, (price, fired, armed_after) in enumerate(steps):
        at = NOW + minute * MINUTE
        await quote(db, "AAPL", price, at=at)
        assert len(await run(db, "price", at)) == fired, price
        assert (await state(db, alert_id))[0] is armed_after, price
    assert await fired_count(db, alert_id) == 2


@pytest.mark.parametrize(("alert_cooldown", "policy_floor"), [(600, 0), (0, 600)])
async def test_cooldown_suppresses_and_stays_armed_then_fires(
    db: AsyncEngine, ids: dict[str, int], alert_cooldown: int, policy_floor: int
) -> None:
    """The effective cooldown is the larger of the alert's and the monitor's floor."""
    alert_id = await alert(db, type="price_above", symbol="AAPL", threshold=230, cooldown_seconds=alert_cooldown)
    await quote(db, "AAPL", "231")
    assert len(await run(db, "price", min_cooldown_seconds=policy_floor)) == 1
    await quote(db, "AAPL", "229", at=NOW + MINUTE)
    await run(db, "price", NOW + MINUTE, min_cooldown_seconds=policy_floor)  # re-arms
    await quote(db, "AAPL", "232", at=NOW + 2 * MINUTE)
    assert await run(db, "price", NOW + 2 * MINUTE, min_cooldown_seconds=policy_floor) == []
    assert await state(db, alert_id) == (True, True, NOW)
    # Still above once the cooldown has passed (a fresh quote): it fires now.
    later = NOW + 10 * MINUTE
    await quote(db, "AAPL", "232.5", at=later)
    [firing] = await run(db, "price", later, min_cooldown_seconds=policy_floor)
    assert firing.value == Decimal("232.5") and await state(db, alert_id) == (False, True, later)


async def test_snooze_suppresses_and_keeps_armed(db: AsyncEngine, ids: dict[str, int]) -> None:
    alert_id = await alert(db, type="price_above", symbol="AAPL", threshold=230)
    await sql(db, "UPDATE alerts SET snoozed_until = :t RETURNING id", t=NOW + 5 * MINUTE)
    await quote(db, "AAPL", "231")
    assert await run(db, "price") == []
    assert await state(db, alert_id) == (True, True, None)
    assert len(await run(db, "price", NOW + 5 * MINUTE)) == 1


async def test_one_shot_deactivates_after_firing(db: AsyncEngine, ids: dict[str, int]) -> None:
    alert_id = await alert(db, type="price_above", symbol="AAPL", threshold=230, one_shot=True)
    await quote(db, "AAPL", "231")
    assert len(await run(db, "price")) == 1
    assert await state(db, alert_id) == (False, False, NOW)


async def test_expired_never_fires_and_is_deactivated(db: AsyncEngine, ids: dict[str, int]) -> None:
    expired = await alert(db, type="price_above", symbol="AAPL", threshold=230, expires_at=NOW.isoformat())
    live = await alert(db, type="price_above", symbol="AAPL", threshold=230, expires_at=(NOW + MINUTE).isoformat())
    await quote(db, "AAPL", "231")
    assert [f.alert_id for f in await run(db, "price")] == [live]
    assert await state(db, expired) == (True, False, None)


async def test_daily_cap_counts_earlier_evaluations_and_resets_at_utc_midnight(
    db: AsyncEngine, ids: dict[str, int]
) -> None:
    await sql(db, "UPDATE users SET daily_alert_cap = 3 WHERE id = 1 RETURNING id")
    first = [await alert(db, type="price_above", symbol="AAPL", threshold=t) for t in (200, 210)]
    await alert(db, user_id=2, type="price_above", symbol="MSFT", threshold=400)  # another user: not capped
    second = [await alert(db, type="price_below", symbol="MSFT", threshold=t) for t in (500, 510)]
    await quote(db, "AAPL", "231")
    assert [f.alert_id for f in await run(db, "price", symbols=["AAPL"])] == first
    await quote(db, "MSFT", "415")
    firings = await run(db, "price", NOW + MINUTE)
    assert sorted(f.user_id for f in firings) == [1, 2]  # user 1: one more of two
    suppressed = next(a for a in second if a not in {f.alert_id for f in firings})
    assert (await state(db, suppressed))[0] is True
    # A new UTC day: the capped alert fires on fresh data.
    tomorrow = dt.datetime(2026, 11, 28, 0, 1, tzinfo=dt.UTC)
    await quote(db, "MSFT", "416", at=tomorrow)
    assert [f.alert_id for f in await run(db, "price", tomorrow)] == [suppressed]


async def test_a_stale_quote_neither_fires_nor_rearms(db: AsyncEngine, ids: dict[str, int]) -> None:
    armed = await alert(db, type="price_above", symbol="AAPL", threshold=230)
    disarmed = await alert(db, type="price_below", symbol="MSFT", threshold=400)
    await sql(db, "UPDATE alerts SET armed = false WHERE id = :a RETURNING id", a=disarmed)
    await quote(db, "AAPL", "231", at=NOW - 31 * MINUTE)
    await quote(db, "MSFT", "415", at=NOW - 31 * MINUTE)  # condition false, but stale
    assert await run(db, "price") == []
    assert (await state(db, armed))[0] is True and (await state(db, disarmed))[0] is False
    await quote(db, "MSFT", "415", at=NOW - 30 * MINUTE)  # exactly max_quote_age old: fresh enough
    await run(db, "price")
    assert (await state(db, disarmed))[0] is True


async def test_symbols_restrict_the_evaluation(db: AsyncEngine, ids: dict[str, int]) -> None:
    aapl = await alert(db, type="price_above", symbol="AAPL", threshold=230)
    msft = await alert(db, type="price_above", symbol="MSFT", threshold=400)
    await quote(db, "AAPL", "231")
    await quote(db, "MSFT", "415")
    assert [f.alert_id for f in await run(db, "price", symbols=["msft"])] == [msft]
    assert await run(db, "price", symbols=[]) == []
    assert [f.alert_id for f in await run(db, "price")] == [aapl]


@pytest.mark.parametrize(
    ("definition", "quotes", "message"),
    [
        ({"percent": 2, "direction": "down"}, [("405.41", "415.00", 0)],
         "MSFT moved -2.31% since the previous close (2% alert)"),
        ({"percent": 2, "direction": "up"}, [("405.41", "415.00", 0)], None),
        ({"percent": "2.5"}, [("425.38", "415.00", 0)], "MSFT moved +2.50% since the previous close (2.5% alert)"),
        ({"percent": 2}, [("405.41", None, 0)], None),  # no previous close: no reference
        # Over 30 minutes: against the latest quote at or before now - 30 min (the 40-minute-old one).
        ({"percent": 2, "window_minutes": 30}, [("400", None, 40), ("420", None, 20), ("408.5", None, 0)],
         "MSFT moved +2.13% in 30 min (2% alert)"),
        ({"percent": 2, "window_minutes": 30}, [("420", None, 20), ("400", None, 0)], None),  # no quote that old
    ],
)
async def test_percent_change(
    db: AsyncEngine, ids: dict[str, int], definition: dict[str, Any], quotes: list[tuple[str, str | None, int]],
    message: str | None,
) -> None:
    await alert(db, type="percent_change", symbol="MSFT", **definition)
    for price, previous_close, minutes_ago in quotes:
        await quote(db, "MSFT", price, previous_close=previous_close, at=NOW - minutes_ago * MINUTE)
    assert [f.message for f in await run(db, "price")] == ([message] if message else [])


async def test_percent_change_window_reference_must_be_fresh(db: AsyncEngine, ids: dict[str, int]) -> None:
    """A reference from days ago is no 30-minute move: no firing, and no re-arming either."""
    alert_id = await alert(db, type="percent_change", symbol="MSFT", percent=2, window_minutes=30)
    await sql(db, "UPDATE alerts SET armed = false RETURNING id")
    await quote(db, "MSFT", "400", at=NOW - dt.timedelta(days=3))
    await quote(db, "MSFT", "401", at=NOW)
    assert await run(db, "price") == [] and (await state(db, alert_id))[0] is False


# ------------------------------------------------------------------ every data point, in order


async def history(db: AsyncEngine, alert_id: int) -> list[tuple[Decimal, str]]:
    rows = await sql(db, "SELECT value, dedup_key FROM alert_history WHERE alert_id = :a ORDER BY id", a=alert_id)
    return [(Decimal(v).normalize(), key) for v, key in rows]


async def fired_then_disarmed(db: AsyncEngine, **definition: Any) -> int:
    """An alert that fired at NOW on 210 (above 200) and is disarmed."""
    alert_id = await alert(db, type="price_above", symbol="AAPL", threshold=200, **definition)
    await quote(db, "AAPL", "210")
    assert len(await run(db, "price")) == 1
    assert (await state(db, alert_id))[0] is False
    return alert_id


async def test_a_dip_and_recovery_between_evaluations_fires(db: AsyncEngine, ids: dict[str, int]) -> None:
    """190 then 210 stored before the next evaluation: the dip re-arms, the recovery fires.
    (Against the latest quote only, the alert would see 210 twice and stay silent.)"""
    alert_id = await fired_then_disarmed(db, cooldown_seconds=0)
    await quote(db, "AAPL", "190", at=NOW + MINUTE)
    recovery = await quote(db, "AAPL", "210", at=NOW + 2 * MINUTE)
    [firing] = await run(db, "price", NOW + 3 * MINUTE)
    assert (firing.value, firing.data_at) == (Decimal("210"), NOW + 2 * MINUTE)
    assert (await history(db, alert_id))[-1] == (Decimal("210"), f"price:{recovery}")
    assert await state(db, alert_id) == (False, True, NOW + 3 * MINUTE)
    # Nothing new: nothing fires, however often it is evaluated.
    assert await run(db, "price", NOW + 4 * MINUTE) == []


async def test_points_are_taken_in_quoted_at_order_not_storage_order(db: AsyncEngine, ids: dict[str, int]) -> None:
    alert_id = await fired_then_disarmed(db, cooldown_seconds=0)
    await quote(db, "AAPL", "211", at=NOW + 2 * MINUTE)  # stored first, quoted last
    await quote(db, "AAPL", "190", at=NOW + MINUTE)
    [firing] = await run(db, "price", NOW + 3 * MINUTE)
    assert firing.data_at == NOW + 2 * MINUTE and await fired_count(db, alert_id) == 2


async def test_a_dip_after_the_firing_leaves_the_alert_armed(db: AsyncEngine, ids: dict[str, int]) -> None:
    """Armed, 210 then 190 in one evaluation: fires on 210, and the dip re-arms it, so the
    next crossing fires (as the backtest would)."""
    alert_id = await alert(db, type="price_above", symbol="AAPL", threshold=200, cooldown_seconds=0)
    await run(db, "price")  # evaluated once (no quote yet): from now on it reads every quote
    await quote(db, "AAPL", "210", at=NOW + MINUTE)
    await quote(db, "AAPL", "190", at=NOW + 2 * MINUTE)
    [firing] = await run(db, "price", NOW + 3 * MINUTE)
    assert firing.value == Decimal("210") and (await state(db, alert_id))[0] is True
    await quote(db, "AAPL", "205", at=NOW + 4 * MINUTE)
    assert [f.value for f in await run(db, "price", NOW + 5 * MINUTE)] == [Decimal("205")]


@pytest.mark.parametrize(("cooldown", "fired"), [(0, ["210", "215"]), (600, ["210"])])
async def test_two_crossings_in_one_evaluation(
    db: AsyncEngine, ids: dict[str, int], cooldown: int, fired: list[str]
) -> None:
    """The firings of one evaluation share its time: the second crossing is within any
    cooldown of the first; with cooldown 0 it fires too. Either way the alert ends disarmed
    (the last point holds) and the daily cap counts each firing."""
    alert_id = await alert(db, type="price_above", symbol="AAPL", threshold=200, cooldown_seconds=cooldown)
    await run(db, "price")
    for minute, price in enumerate(["210", "190", "215"], start=1):
        await quote(db, "AAPL", price, at=NOW + minute * MINUTE)
    firings = await run(db, "price", NOW + 5 * MINUTE)
    assert [f.value for f in firings] == [Decimal(p) for p in fired]
    armed, _, _ = await state(db, alert_id)
    assert armed is (cooldown > 0)  # suppressed by the cooldown, 215 leaves it armed


async def test_a_sequence_under_the_daily_cap(db: AsyncEngine, ids: dict[str, int]) -> None:
    await sql(db, "UPDATE users SET daily_alert_cap = 1 WHERE id = 1 RETURNING id")
    alert_id = await alert(db, type="price_above", symbol="AAPL", threshold=200, cooldown_seconds=0)
    await run(db, "price")
    for minute, price in enumerate(["210", "190", "215"], start=1):
        await quote(db, "AAPL", price, at=NOW + minute * MINUTE)
    assert [f.value for f in await run(db, "price", NOW + 5 * MINUTE)] == [Decimal("210")]
    assert await fired_count(db, alert_id) == 1


async def test_stale_points_in_a_sequence_neither_rearm_nor_fire(db: AsyncEngine, ids: dict[str, int]) -> None:
    alert_id = await fired_then_disarmed(db, cooldown_seconds=0)
    await quote(db, "AAPL", "190", at=NOW + MINUTE)  # 40 minutes old at the next evaluation
    await quote(db, "AAPL", "210", at=NOW + 35 * MINUTE)
    assert await run(db, "price", NOW + 41 * MINUTE) == []
    assert (await state(db, alert_id))[0] is False


async def test_a_new_alert_reads_only_the_newest_quote(db: AsyncEngine, ids: dict[str, int]) -> None:
    """Quotes older than the alert must not fire it; the newest, stored before it, does."""
    await quote(db, "AAPL", "150", at=NOW - 3 * MINUTE)
    await quote(db, "AAPL", "210", at=NOW - 2 * MINUTE)
    await quote(db, "AAPL", "190", at=NOW - MINUTE)
    below = await alert(db, type="price_above", symbol="AAPL", threshold=200)
    assert await run(db, "price") == []
    assert (await state(db, below))[0] is True
    above = await alert(db, type="price_above", symbol="AAPL", threshold=180)
    [firing] = await run(db, "price", NOW + MINUTE)
    assert (firing.alert_id, firing.value) == (above, Decimal("190"))
    [[evaluated]] = await sql(db, "SELECT count(*) FROM alerts WHERE evaluated_at IS NULL")
    assert evaluated == 0


async def test_a_changed_definition_reads_only_the_newest_quote(db: AsyncEngine, ids: dict[str, int]) -> None:
    """Changing the threshold resets evaluated_at (a trigger): the new definition is judged on
    the newest quote, not on the dip its old definition already saw."""
    alert_id = await alert(db, type="price_above", symbol="AAPL", threshold=300, cooldown_seconds=0)
    await run(db, "price")
    await quote(db, "AAPL", "190", at=NOW + MINUTE)
    await quote(db, "AAPL", "210", at=NOW + 2 * MINUTE)
    await sql(
        db, "UPDATE alerts SET params = jsonb_set(params, '{threshold}', '\"200\"'), armed = false "
        "WHERE id = :a RETURNING id", a=alert_id,
    )
    [[evaluated_at]] = await sql(db, "SELECT evaluated_at FROM alerts WHERE id = :a", a=alert_id)
    assert evaluated_at is None
    # Disarmed, and only 210 is read: the dip before the change does not re-arm it.
    assert await run(db, "price", NOW + 3 * MINUTE) == []
    # Evaluation's own updates (armed, last_triggered_at) leave evaluated_at alone.
    await quote(db, "AAPL", "199", at=NOW + 4 * MINUTE)
    await quote(db, "AAPL", "201", at=NOW + 5 * MINUTE)
    assert len(await run(db, "price", NOW + 6 * MINUTE)) == 1
    [[evaluated_at]] = await sql(db, "SELECT evaluated_at FROM alerts WHERE id = :a", a=alert_id)
    assert evaluated_at == NOW + 3 * MINUTE


async def test_a_percent_window_is_measured_at_each_point(db: AsyncEngine, ids: dict[str, int]) -> None:
    """Over 10 minutes: 100 -> 103 at +10 is +3%, even though at the evaluation (+20) the
    move since +10 is nothing."""
    alert_id = await alert(db, type="percent_change", symbol="MSFT", percent=2, window_minutes=10)
    await quote(db, "MSFT", "100", at=NOW)
    await run(db, "price", NOW)
    await quote(db, "MSFT", "103", at=NOW + 10 * MINUTE)
    await quote(db, "MSFT", "103.1", at=NOW + 20 * MINUTE)
    [firing] = await run(db, "price", NOW + 20 * MINUTE)
    assert firing.alert_id == alert_id and firing.data_at == NOW + 10 * MINUTE
    assert firing.message == "MSFT moved +3.00% in 10 min (2% alert)"


async def test_volume_sees_every_quote_too(db: AsyncEngine, ids: dict[str, int]) -> None:
    alert_id = await alert(db, type="volume_above", symbol="TSLA", threshold=1_000_000, cooldown_seconds=0)
    await quote(db, "TSLA", "250", volume=2_000_000)
    assert len(await run(db, "volume")) == 1
    await quote(db, "TSLA", "251", at=NOW + MINUTE, volume=500_000)  # a new session's first quote
    await quote(db, "TSLA", "252", at=NOW + 2 * MINUTE, volume=1_500_000)
    [firing] = await run(db, "volume", NOW + 3 * MINUTE)
    assert firing.value == Decimal(1_500_000) and await fired_count(db, alert_id) == 2


async def test_cursors_are_per_kind(db: AsyncEngine, ids: dict[str, int]) -> None:
    """A price evaluation reading a quote does not hide it from the volume evaluation."""
    await alert(db, type="price_above", symbol="TSLA", threshold=200)
    volume = await alert(db, type="volume_above", symbol="TSLA", threshold=1_000_000)
    await run(db, "price")
    await run(db, "volume")
    await quote(db, "TSLA", "250", at=NOW + MINUTE, volume=2_000_000)
    assert len(await run(db, "price", NOW + 2 * MINUTE)) == 1
    assert [f.alert_id for f in await run(db, "volume", NOW + 2 * MINUTE)] == [volume]


# ------------------------------------------------------------------ volume


async def bars(db: AsyncEngine, symbol: str, count: int, volume: int, *, provisional_today: int | None = None) -> None:
    """`count` final daily bars before NOW's day, and optionally today's provisional bar."""
    await sql(
        db,
        "INSERT INTO ohlc_data (company_id, date, open, high, low, close, volume, provisional, source) "
        "SELECT c.id, CAST(:today AS date) - g, 10, 10, 10, 10, :v, false, 'test' "
        "FROM companies c, generate_series(1, :n) g WHERE c.symbol = :s RETURNING id",
        s=symbol, n=count, v=volume, today=NOW.date(),
    )
    if provisional_today is not None:
        await sql(
            db,
            "INSERT INTO ohlc_data (company_id, date, open, high, low, close, volume, provisional, source) "
            "SELECT id, :today, 10, 10, 10, 10, :v, true, 'test' FROM companies WHERE symbol = :s RETURNING id",
            s=symbol, v=provisional_today, today=NOW.date(),
        )


async def test_volume_spike_against_the_20_day_average(db: AsyncEngine, ids: dict[str, int]) -> None:
    alert_id = await alert(db, type="volume_spike", symbol="GS", multiple=2)
    # 20 bars of 10M, older ones of 1M that would lower the average if counted, today's provisional ignored.
    await bars(db, "GS", 30, 1_000_000)
    await sql(
        db, "UPDATE ohlc_data SET volume = 10000000 WHERE date >= CAST(:d AS date) - 20 RETURNING id", d=NOW.date()
    )
    await bars(db, "GS", 0, 0, provisional_today=900_000_000)
    quote_id = await quote(db, "GS", "500", volume=26_000_000)
    [firing] = await run(db, "volume")
    assert (firing.value, firing.threshold) == (Decimal(26_000_000), Decimal(20_000_000))
    assert firing.message == "GS volume 26.0M is 2.6x its 20-day average (2x alert)"
    [key] = (await sql(db, "SELECT dedup_key FROM alert_history WHERE alert_id = :a", a=alert_id))[0]
    assert key == f"volume:{quote_id}"


async def test_volume_spike_needs_five_bars(db: AsyncEngine, ids: dict[str, int]) -> None:
    await alert(db, type="volume_spike", symbol="GS", multiple=2)
    await bars(db, "GS", 4, 1_000_000)
    await quote(db, "GS", "500", volume=26_000_000)
    assert await run(db, "volume") == []
    await sql(db, "INSERT INTO ohlc_data (company_id, date, open, high, low, close, volume, source) "
                  "SELECT id, CAST(:d AS date) - 5, 1, 1, 1, 1, 1000000, 'test' FROM companies WHERE symbol = 'GS' "
                  "RETURNING id", d=NOW.date())
    assert len(await run(db, "volume", NOW + MINUTE)) == 1


@pytest.mark.parametrize(("volume", "fires"), [(152_300_000, True), (150_000_000, True), (149_999_999, False)])
async def test_volume_above(db: AsyncEngine, ids: dict[str, int], volume: int, fires: bool) -> None:
    await alert(db, type="volume_above", symbol="TSLA", threshold=150_000_000)
    await quote(db, "TSLA", "250", volume=volume)
    firings = await run(db, "volume")
    assert len(firings) == fires
    if volume == 152_300_000:
        assert firings[0].message == "TSLA volume 152.3M is above 150.0M (15:04 UTC)"


async def test_an_observation_too_large_to_record_is_recorded_as_null(db: AsyncEngine, ids: dict[str, int]) -> None:
    """alert_history.value is numeric(18,6): a bogus provider volume must not fail the evaluation."""
    await alert(db, type="volume_above", symbol="TSLA", threshold=150_000_000)
    await quote(db, "TSLA", "250", volume=2_000_000_000_000)
    [firing] = await run(db, "volume")
    assert firing.value is None and firing.message == "TSLA volume 2.0T is above 150.0M (15:04 UTC)"


# ------------------------------------------------------------------ news


async def article(
    db: AsyncEngine, title: str, *, at: dt.datetime, symbol: str | None = "PFE", description: str | None = None,
    score: str | None = None,
) -> int:
    [(news_id,)] = await sql(
        db,
        "INSERT INTO news_articles (url, canonical_url, title, description, published_at, sentiment_score, source) "
        "VALUES (:u, :u, :t, :d, :at, :s, 'test') RETURNING id",
        u=f"https://news.example/{title[:40]}/{at.isoformat()}", t=title, d=description, at=at,
        s=None if score is None else Decimal(score),
    )
    if symbol is not None:
        await sql(db, "INSERT INTO news_company (news_id, company_id) SELECT :n, id FROM companies WHERE symbol = :s "
                      "RETURNING news_id", n=news_id, s=symbol)
    return news_id


async def test_news_mention_fires_for_the_newest_matching_article(db: AsyncEngine, ids: dict[str, int]) -> None:
    alert_id = await alert(db, type="news_mention", symbol="PFE", keywords=["acquire", "merger"], cooldown_seconds=0)
    await article(db, "Pfizer merger talk before the alert", at=CREATED - MINUTE)
    await article(db, "Pfizer earnings beat", at=NOW - 3 * MINUTE)
    await article(db, "Merger Monday", at=NOW - 4 * MINUTE, symbol=None)  # not linked to Pfizer
    await article(db, "Pfizer in MERGER talks", at=NOW - 5 * MINUTE)
    newest = await article(db, "Pfizer deal", description="Pfizer to acquire Seagen", at=NOW - 2 * MINUTE)
    [firing] = await run(db, "news")
    assert firing.message == "New Pfizer Inc article mentioning 'acquire': Pfizer deal"
    assert (firing.data_at, firing.value, firing.symbol) == (NOW - 2 * MINUTE, None, "PFE")
    [key] = (await sql(db, "SELECT dedup_key FROM alert_history WHERE alert_id = :a", a=alert_id))[0]
    assert key == f"news:{newest}"
    # Published before the last firing: nothing new. A later article fires (event alerts stay armed).
    assert await run(db, "news", NOW + MINUTE) == []
    await article(db, "Seagen merger closes", at=NOW + 2 * MINUTE)
    [later] = await run(db, "news", NOW + 3 * MINUTE)
    assert later.message == "New Pfizer Inc article mentioning 'merger': Seagen merger closes"
    assert await state(db, alert_id) == (True, True, NOW + 3 * MINUTE)


async def test_news_mention_without_keywords_takes_any_article(db: AsyncEngine, ids: dict[str, int]) -> None:
    await alert(db, type="news_mention", symbol="PFE")
    await article(db, "Pfizer earnings beat", at=NOW - MINUTE)
    assert [f.message for f in await run(db, "news")] == ["New Pfizer Inc article: Pfizer earnings beat"]


async def test_messages_are_one_line_and_clipped(db: AsyncEngine, ids: dict[str, int]) -> None:
    await alert(db, type="news_mention", symbol="PFE", keywords=["merger"])
    title = "Pfizer\r\nmerger\u2028talks\x1b[31m \x85" + "x" * 300
    await article(db, title, at=NOW - MINUTE)
    [firing] = await run(db, "news")
    assert firing.message.startswith("New Pfizer Inc article mentioning 'merger': Pfizer merger talks [31m ")
    assert not any(ch in firing.message for ch in "\r\n\u2028\x1b\x85")
    assert firing.message.endswith("x…") and len(firing.message) < 260


async def test_news_sentiment_is_edge_triggered(db: AsyncEngine, ids: dict[str, int]) -> None:
    alert_id = await alert(
        db, type="news_sentiment", symbol="PFE", threshold=-0.3, direction="below", cooldown_seconds=0
    )
    await article(db, "older than the window", at=NOW - dt.timedelta(hours=25), score="0.9")
    await article(db, "unscored", at=NOW - 3 * MINUTE)
    assert await run(db, "news") == []  # nothing scored in the window: no data
    await article(db, "bad", at=NOW - 3 * MINUTE, score="-0.5")
    newest = await article(db, "worse", at=NOW - 2 * MINUTE, score="-0.4")
    [firing] = await run(db, "news")
    assert (firing.value, firing.threshold, firing.data_at) == (Decimal("-0.45"), Decimal("-0.3"), NOW - 2 * MINUTE)
    assert firing.message == "PFE news sentiment -0.45 is below -0.30 (2 scored articles)"
    assert (await sql(db, "SELECT dedup_key FROM alert_history"))[0][0] == f"sentiment:{newest}"
    await article(db, "great", at=NOW - MINUTE, score="0.9")  # mean 0.0: re-arms
    assert await run(db, "news", NOW + MINUTE) == [] and (await state(db, alert_id))[0] is True


# ------------------------------------------------------------------ deals


async def deal(db: AsyncEngine, *, created_at: dt.datetime, value: str | None = "43000000000") -> int:
    """Pfizer to acquire Seagen, recorded at `created_at`."""
    [(deal_id,)] = await sql(
        db,
        "INSERT INTO deals (title, acquirer_company_id, target_company_id, status, value_usd, source, created_at) "
        "SELECT 'Pfizer / Seagen', a.id, t.id, 'announced', :v, 'test', :c FROM companies a, companies t "
        "WHERE a.symbol = 'PFE' AND t.symbol = 'SGEN' RETURNING id",
        v=None if value is None else Decimal(value), c=created_at,
    )
    return deal_id


async def status_change(db: AsyncEngine, deal_id: int, at: dt.datetime, event_type: str = "status_change") -> int:
    [(event_id,)] = await sql(
        db,
        "INSERT INTO deal_events (deal_id, event_type, old_status, new_status, occurred_at, created_at) "
        "VALUES (:d, :e, 'announced', 'completed', :at, :at) RETURNING id",
        d=deal_id, e=event_type, at=at,
    )
    return event_id


async def test_deal_new_by_company_and_by_watchlist(db: AsyncEngine, ids: dict[str, int]) -> None:
    by_company = await alert(db, type="deal_new", symbol="SGEN")
    by_watchlist = await alert(db, type="deal_new", user_id=2)
    unwatched = await alert(db, type="deal_new", symbol="AAPL")
    await sql(db, "INSERT INTO watchlist (user_id, company_id) VALUES (2, :c) RETURNING user_id", c=ids["PFE"])
    await deal(db, created_at=CREATED - MINUTE)  # before the alerts: not new to them
    deal_id = await deal(db, created_at=NOW - MINUTE)
    firings = await run(db, "deal")
    assert sorted(f.alert_id for f in firings) == [by_company, by_watchlist]
    assert {f.message for f in firings} == {"New deal: Pfizer Inc to acquire Seagen Inc ($43.0B)"}
    assert {f.data_at for f in firings} == {NOW - MINUTE}
    keys = await sql(db, "SELECT DISTINCT dedup_key FROM alert_history")
    assert keys == [(f"deal:{deal_id}",)] and await fired_count(db, unwatched) == 0
    assert await run(db, "deal", NOW + dt.timedelta(hours=2)) == []


async def test_deal_new_fires_once_per_deal(db: AsyncEngine, ids: dict[str, int]) -> None:
    alert_id = await alert(db, type="deal_new", symbol="PFE")
    await deal(db, created_at=NOW - 2 * MINUTE, value=None)
    await deal(db, created_at=NOW - MINUTE)
    firings = await run(db, "deal")
    assert [f.message for f in firings] == [
        "New deal: Pfizer Inc to acquire Seagen Inc", "New deal: Pfizer Inc to acquire Seagen Inc ($43.0B)",
    ]
    assert await state(db, alert_id) == (True, True, NOW)


async def test_deal_new_of_a_deal_first_reported_closed_says_so(db: AsyncEngine, ids: dict[str, int]) -> None:
    # A first fetch reaches days back: the first article about a pair may report its end
    # ("... terminate merger agreement"), and "to acquire" alone would tell the opposite.
    await alert(db, type="deal_new", symbol="PFE")
    terminated = await deal(db, created_at=NOW - 2 * MINUTE)
    completed = await deal(db, created_at=NOW - MINUTE, value=None)
    announced = await deal(db, created_at=NOW - MINUTE)
    for deal_id, status in ((terminated, "terminated"), (completed, "completed"), (announced, "announced")):
        await sql(
            db,
            "INSERT INTO deal_events (deal_id, event_type, new_status, occurred_at) VALUES (:d, 'created', :s, :at) RETURNING id",
            d=deal_id, s=status, at=NOW - 2 * MINUTE,
        )
    # Completed since it was created announced: the status change is the other alert's news.
    await sql(db, "UPDATE deals SET status = 'completed' WHERE id = :d RETURNING id", d=announced)
    firings = await run(db, "deal")
    assert sorted(f.message for f in firings) == [
        "New deal: Pfizer Inc to acquire Seagen Inc ($43.0B)",
        "New deal: Pfizer Inc to acquire Seagen Inc ($43.0B), already terminated",
        "New deal: Pfizer Inc to acquire Seagen Inc, already completed",
    ]


async def test_deal_status_change_by_deal_company_and_watchlist(db: AsyncEngine, ids: dict[str, int]) -> None:
    deal_id = await deal(db, created_at=CREATED - dt.timedelta(days=1))
    other = await deal(db, created_at=CREATED - dt.timedelta(days=1))
    by_deal = await alert(db, type="deal_status_change", deal_id=deal_id)
    by_company = await alert(db, type="deal_status_change", symbol="PFE")
    by_watchlist = await alert(db, type="deal_status_change", user_id=2)
    await sql(db, "INSERT INTO watchlist (user_id, company_id) VALUES (2, :c) RETURNING user_id", c=ids["SGEN"])
    await status_change(db, deal_id, CREATED - MINUTE)  # before the alerts
    await status_change(db, deal_id, NOW - MINUTE, event_type="value_change")
    event_id = await status_change(db, deal_id, NOW - MINUTE)
    firings = await run(db, "deal")
    assert sorted(f.alert_id for f in firings) == [by_deal, by_company, by_watchlist]
    assert {f.message for f in firings} == {
        "Deal status changed: announced → completed (Pfizer Inc to acquire Seagen Inc)"
    }
    assert (await sql(db, "SELECT DISTINCT dedup_key FROM alert_history")) == [(f"deal_event:{event_id}",)]
    # A change of another deal: not the deal-id alert's business.
    await status_change(db, other, NOW + MINUTE)
    firings = await run(db, "deal", NOW + dt.timedelta(hours=2))
    assert sorted(f.alert_id for f in firings) == [by_company, by_watchlist]


async def test_deal_symbols_are_the_companies_a_deal_names(db: AsyncEngine, ids: dict[str, int]) -> None:
    await alert(db, type="deal_new", user_id=2)
    await sql(db, "INSERT INTO watchlist (user_id, company_id) VALUES (2, :c) RETURNING user_id", c=ids["PFE"])
    await deal(db, created_at=NOW - MINUTE)
    assert await run(db, "deal", symbols=["AAPL"]) == []
    assert len(await run(db, "deal", symbols=["SGEN"])) == 1


# ------------------------------------------------------------------ concurrency


async def _waiting_on_locks(db: AsyncEngine, count: int) -> None:
    for _ in range(500):
        rows = await sql(
            db,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        if rows[0][0] >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"fewer than {count} evaluations waiting on the alert's row lock")


async def test_overlapping_evaluations_on_newer_data_fire_once(db: AsyncEngine, ids: dict[str, int]) -> None:
    """The second evaluation sees a newer quote (another data point) and waits on the alert's
    row lock behind the first: the re-check on the locked, now disarmed row drops it."""
    alert_id = await alert(db, type="price_above", symbol="AAPL", threshold=230, cooldown_seconds=0)
    await quote(db, "AAPL", "231")
    async with db.connect() as blocker:  # a user's edit holding the row, say
        await blocker.execute(text("SELECT id FROM alerts WHERE id = :a FOR UPDATE"), {"a": alert_id})
        first = asyncio.ensure_future(run(db, "price"))
        await _waiting_on_locks(db, 1)
        await quote(db, "AAPL", "232", at=NOW + MINUTE)
        second = asyncio.ensure_future(run(db, "price", NOW + MINUTE))
        await _waiting_on_locks(db, 2)
        await blocker.rollback()
        firings = [*await first, *await second]
    assert [f.value for f in firings] == [Decimal("231")]
    assert await fired_count(db, alert_id) == 1 and await state(db, alert_id) == (False, True, NOW)


async def test_overlapping_evaluations_of_one_event_fire_once(db: AsyncEngine, ids: dict[str, int]) -> None:
    """An event alert stays armed and, with cooldown 0, passes the re-check: the second
    evaluation's insert of the same (alert_id, dedup_key) is a no-op and updates nothing."""
    alert_id = await alert(db, type="deal_new", symbol="PFE", cooldown_seconds=0)
    await deal(db, created_at=NOW - MINUTE)
    async with db.connect() as blocker:
        await blocker.execute(text("SELECT id FROM alerts WHERE id = :a FOR UPDATE"), {"a": alert_id})
        first = asyncio.ensure_future(run(db, "deal"))
        await _waiting_on_locks(db, 1)
        second = asyncio.ensure_future(run(db, "deal", NOW + MINUTE))
        await _waiting_on_locks(db, 2)
        await blocker.rollback()
        assert len(await first) == 1 and await second == []
    assert await fired_count(db, alert_id) == 1
    assert (await state(db, alert_id))[2] == NOW  # the second evaluation updated nothing


async def test_no_rearming_of_an_alert_fired_after_the_snapshot(db: AsyncEngine, ids: dict[str, int]) -> None:
    """The evaluation sees the alert disarmed and the condition false; before its re-arming
    UPDATE gets the row, another evaluation fires the alert again (here: the blocker). The
    re-arming must not undo that firing's disarming."""
    alert_id = await alert(db, type="price_above", symbol="AAPL", threshold=230, cooldown_seconds=0)
    await sql(db, "UPDATE alerts SET armed = false, last_triggered_at = :t RETURNING id", t=NOW - 5 * MINUTE)
    await quote(db, "AAPL", "229")
    async with db.connect() as other:
        await other.execute(text("UPDATE alerts SET last_triggered_at = :t WHERE id = :a"), {"t": NOW, "a": alert_id})
        evaluation = asyncio.ensure_future(run(db, "price"))
        await _waiting_on_locks(db, 1)
        await other.commit()
        assert await evaluation == []
    assert await state(db, alert_id) == (False, True, NOW)


async def test_an_unknown_kind_is_refused(db: AsyncEngine) -> None:
    with pytest.raises(ValueError, match="unknown alert kind 'prices'"):
        await evaluate(db, "prices", EvalPolicy(now=NOW, max_quote_age=MINUTE))  # type: ignore[arg-type]


async def test_policy_needs_an_aware_clock() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        EvalPolicy(now=dt.datetime(2026, 11, 27, 15, 4), max_quote_age=dt.timedelta(minutes=5))
