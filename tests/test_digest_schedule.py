"""Digests at each user's local hour: which users an hourly run picks (DST, odd offsets, bad
zones, a zone changed between two runs), the skip of a day with nothing new, and the hourly
SendDailyDigest through the real workers and a real SMTP server."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from deallens.contracts import DigestInput, DigestResult
from deallens.db import digests
from tests.notify_data import digest_ledger, fire, make_users, seed_market, watch
from tests.smtp_sink import Sink, smtp_sink
from tests.workers import record_history, running_workers

HOUR = dt.timedelta(hours=1)


@pytest.fixture
def sink() -> Any:
    with smtp_sink() as sink:
        yield sink


@pytest.fixture
def settings(make_settings: Any, sink: Sink) -> Any:
    return make_settings(smtp_host="127.0.0.1", smtp_port=sink.port, smtp_tls="none", public_base_url="http://127.0.0.1:9")


async def user(engine: AsyncEngine, n: int, zone: str, hour: int | None = None) -> int:
    (user_id,) = await make_users(engine, 1, start=n, timezone=zone)
    if hour is not None:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE users SET digest_hour = :h WHERE id = :u"), {"h": hour, "u": user_id})
    return user_id


async def run_hourly(
    engine: AsyncEngine, kind: digests.DigestKind, start: dt.datetime, end: dt.datetime, *, between: Any = None
) -> dict[tuple[int, dt.date], dt.datetime]:
    """What an hourly schedule's runs from `start` to `end` plan: (user, period) -> the run's time."""
    planned: dict[tuple[int, dt.date], dt.datetime] = {}
    at = start
    while at < end:
        await digests.plan_due(engine, kind, at=at, period=None, user_ids=None, default_hour=7, weekly_hour=18)
        for row in await digest_ledger(engine):
            key = (row.user_id, row.period)
            assert planned.setdefault(key, at) <= at
        if between is not None:
            await between(at)
        at += HOUR
    return planned


def local_send_times(period: dt.date, hour: int, zone: str) -> tuple[dt.datetime, dt.datetime]:
    """Both readings of a local time (they differ only in a DST gap or overlap), in UTC."""
    naive = dt.datetime.combine(period, dt.time(hour))
    tz = ZoneInfo(zone)
    times = [naive.replace(tzinfo=tz, fold=fold).astimezone(dt.UTC) for fold in (0, 1)]
    return min(times), max(times)


async def test_hourly_runs_pick_each_user_at_their_local_hour_across_both_dst_changes(db: AsyncEngine) -> None:
    users = {
        await user(db, 1, "America/New_York"): ("America/New_York", 7),
        # 02:00 does not exist on 8 March in New York, 01:00 happens twice on 1 November.
        await user(db, 2, "America/New_York", 2): ("America/New_York", 2),
        await user(db, 3, "America/New_York", 1): ("America/New_York", 1),
        await user(db, 4, "Asia/Tokyo", 22): ("Asia/Tokyo", 22),
        await user(db, 5, "Asia/Kolkata"): ("Asia/Kolkata", 7),  # +05:30: the run after 07:00 is 07:30
        await user(db, 6, "Europe/Berlin", 0): ("Europe/Berlin", 0),  # DST changes a week apart from New York's
        await user(db, 7, "Mars/Olympus_Mons"): ("UTC", 7),  # not a zone: UTC, not a failed run
    }
    # New York's changes (8 March, 1 November) and Berlin's autumn one (25 October), a day either side.
    spans = ((dt.date(2026, 3, 7), dt.date(2026, 3, 9)), (dt.date(2026, 10, 25), dt.date(2026, 10, 25)),
             (dt.date(2026, 10, 31), dt.date(2026, 11, 2)))
    for first, last in spans:
        # From before the earliest send time of `first` (Berlin's midnight) to after the latest of `last`.
        start = dt.datetime.combine(first - dt.timedelta(days=1), dt.time(22), tzinfo=dt.UTC)
        end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
        planned = await run_hourly(db, "daily", start, end)
        for user_id, (zone, hour) in users.items():
            day = first
            while day <= last:
                earliest, latest = local_send_times(day, hour, zone)
                at = planned.get((user_id, day))
                # Every local date once, at the first hourly run at or after the local time.
                assert at is not None, f"user {user_id} ({zone} {hour}:00) got no digest for {day}"
                assert earliest <= at < latest + HOUR, (user_id, zone, day, at)
                day += dt.timedelta(days=1)
    rows = await digest_ledger(db)
    assert len(rows) == len({(r.user_id, r.period) for r in rows})
    # The window of a digest is its user's day: from yesterday's local send time to today's.
    async with db.connect() as conn:
        windows = list(
            await conn.execute(
                text(
                    "SELECT window_start, window_end FROM digest_deliveries "
                    "WHERE user_id = :u AND period IN ('2026-03-08', '2026-03-09') ORDER BY period"
                ),
                {"u": next(iter(users))},
            )
        )
    assert [(w.window_start.astimezone(dt.UTC).hour, w.window_end.astimezone(dt.UTC).hour) for w in windows] == [
        (12, 11),  # 7 March 07:00 EST -> 8 March 07:00 EDT: a 23-hour day
        (11, 11),
    ]


async def test_a_user_who_changes_time_zone_never_gets_two_digests_for_one_date(db: AsyncEngine) -> None:
    traveller = await user(db, 1, "Asia/Tokyo")
    homebody = await user(db, 2, "America/Los_Angeles")

    async def fly_west(at: dt.datetime) -> None:
        # Tokyo's 07:00 on 2 December has been sent (22:00 UTC on the 1st); Los Angeles
        # reaches 2 December 07:00 seventeen hours later.
        if at == dt.datetime(2026, 12, 1, 22, tzinfo=dt.UTC):
            async with db.begin() as conn:
                await conn.execute(text("UPDATE users SET timezone = 'America/Los_Angeles' WHERE id = :u"), {"u": traveller})

    planned = await run_hourly(
        db, "daily", dt.datetime(2026, 11, 30, 20, tzinfo=dt.UTC), dt.datetime(2026, 12, 4, tzinfo=dt.UTC), between=fly_west
    )
    mine = {period: at for (user_id, period), at in planned.items() if user_id == traveller}
    assert mine == {
        dt.date(2026, 12, 1): dt.datetime(2026, 11, 30, 22, tzinfo=dt.UTC),  # Tokyo
        dt.date(2026, 12, 2): dt.datetime(2026, 12, 1, 22, tzinfo=dt.UTC),  # Tokyo, then the flight
        dt.date(2026, 12, 3): dt.datetime(2026, 12, 3, 15, tzinfo=dt.UTC),  # Los Angeles
    }
    theirs = {period for (user_id, period) in planned if user_id == homebody}
    # 30 November 12:00 in Los Angeles when the runs start: still within the catch-up grace.
    assert theirs == {dt.date(2026, 11, 30), dt.date(2026, 12, 1), dt.date(2026, 12, 2), dt.date(2026, 12, 3)}


async def test_the_weekly_summary_goes_on_each_users_sunday_evening(db: AsyncEngine) -> None:
    zones = {await user(db, n, zone): zone for n, zone in enumerate(
        ["America/New_York", "Asia/Tokyo", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Europe/London"], start=1
    )}
    planned = await run_hourly(
        db, "weekly", dt.datetime(2026, 11, 28, tzinfo=dt.UTC), dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    )
    assert sorted(planned) == sorted((u, dt.date(2026, 11, 29)) for u in zones)
    for (user_id, _), at in planned.items():
        local = at.astimezone(ZoneInfo(zones[user_id]))
        assert (local.date(), local.hour, local.weekday()) == (dt.date(2026, 11, 29), 18, 6)
    # The weekly schedule runs on Sundays and Mondays UTC only; every Sunday 18:00 falls there.
    assert {at.weekday() for at in planned.values()} <= {6, 0}


async def test_a_day_without_a_new_session_is_skipped_unless_alerts_or_news_came(
    db: AsyncEngine, time_env: WorkflowEnvironment, settings: Any, sink: Sink, task_queue: str
) -> None:
    quiet, alerted, in_the_news = await make_users(db, 3)
    ids = await seed_market(db, ["AAPL", "MSFT"], until=dt.date(2026, 11, 27))
    await watch(db, [quiet, alerted], [ids["AAPL"]])
    await watch(db, [in_the_news], [ids["MSFT"]])
    # Sunday 29 November, 07:00 UTC: the window (Saturday 07:00 on) holds no session close
    # (Friday's early close was 18:00 UTC on the 27th).
    await fire(db, alerted, ids["AAPL"], name="weekend deal rumour", at=dt.datetime(2026, 11, 29, 3, tzinfo=dt.UTC))
    async with db.begin() as conn:
        news_id = (
            await conn.execute(
                text(
                    "INSERT INTO news_articles (url, canonical_url, title, published_at, source, sentiment_score) "
                    "VALUES ('https://n.example/1', 'https://n.example/1', 'MSFT weekend headline', :at, 'test', 0.6) "
                    "RETURNING id"
                ),
                {"at": dt.datetime(2026, 11, 28, 20, tzinfo=dt.UTC)},
            )
        ).scalar_one()
        await conn.execute(
            text("INSERT INTO news_company (news_id, company_id) VALUES (:n, :c)"), {"n": news_id, "c": ids["MSFT"]}
        )
    async with running_workers(time_env.client, settings, task_queue):

        async def daily(day: dt.date) -> DigestResult:
            return await time_env.client.execute_workflow(
                "SendDailyDigest", DigestInput(date=day), id=f"daily-{day}-{secrets.token_hex(3)}",
                task_queue=task_queue, result_type=DigestResult,
            )

        sunday = await daily(dt.date(2026, 11, 29))
        monday = await daily(dt.date(2026, 11, 30))  # nothing new since Sunday 07:00 either
        tuesday = await daily(dt.date(2026, 12, 1))  # Monday's session closed in the window

    assert (sunday.counts.sent, sunday.counts.skipped) == (2, 1)
    assert (monday.counts.sent, monday.counts.skipped) == (0, 3)
    assert (tuesday.counts.sent, tuesday.counts.skipped) == (3, 0)
    assert [len(sink.to(f"user{n}@example.com")) for n in (1, 2, 3)] == [1, 2, 2]
    body = sink.to("user3@example.com")[0].get_body(("plain",)).get_content()
    assert "MSFT weekend headline" in body
    async with db.connect() as conn:
        reasons = set(
            (await conn.execute(text("SELECT error FROM digest_deliveries WHERE status = 'skipped'"))).scalars()
        )
    assert reasons == {"nothing to report: no new session, alerts or news"}


async def test_the_hourly_run_sends_to_the_users_whose_local_hour_has_come(
    db: AsyncEngine, dev_env: WorkflowEnvironment, settings: Any, sink: Sink, task_queue: str
) -> None:
    # The dev server's clock is the real one (the time-skipping server's can leap years).
    now = dt.datetime.now(dt.UTC)
    tokyo = now.astimezone(ZoneInfo("Asia/Tokyo"))
    later = now + 3 * HOUR
    now_user = await user(db, 1, "UTC", now.hour)
    tokyo_user = await user(db, 2, "Asia/Tokyo", tokyo.hour)
    later_user = await user(db, 3, "UTC", later.hour)
    ids = await seed_market(db, ["AAPL"], until=now.date())
    await watch(db, [now_user, tokyo_user, later_user], [ids["AAPL"]])
    # Something to report for each: a firing in the half hour before this hour began.
    top_of_hour = now.replace(minute=0, second=0, microsecond=0)
    for user_id in (now_user, tokyo_user, later_user):
        await fire(db, user_id, ids["AAPL"], name=f"alert of user {user_id}", at=top_of_hour - dt.timedelta(minutes=30))

    async def hourly(record: str | None = None) -> DigestResult:
        handle = await dev_env.client.start_workflow(
            "SendDailyDigest", {}, id=f"send-daily-digest-{secrets.token_hex(3)}", task_queue=task_queue,
            result_type=DigestResult,
        )
        result = await handle.result()
        if record:
            await record_history(handle, record)
        return result

    async with running_workers(dev_env.client, settings, task_queue):
        first = await hourly(record="send_daily_digest_local_hour")
        again = await hourly()
        # The third user's hour comes (as if three hours had passed: they move it to now).
        async with db.begin() as conn:
            await conn.execute(text("UPDATE users SET digest_hour = :h WHERE id = :u"), {"h": now.hour, "u": later_user})
        third = await hourly()

    assert first.counts.sent == 2 and set(first.periods) == {now.date(), tokyo.date()}
    assert (again.counts.sent, again.users, again.counts.already_done) == (0, 2, 2)
    assert third.counts.sent == 1 and third.counts.already_done == 2
    sent = {(r.user_id, r.period) for r in await digest_ledger(db) if r.status == "sent"}
    assert sent == {(now_user, now.date()), (tokyo_user, tokyo.date()), (later_user, now.date())}
    assert [len(sink.to(f"user{n}@example.com")) for n in (1, 2, 3)] == [1, 1, 1]
