"""The NYSE calendar against the published 2026-2027 holidays and early closes (tests/provider-samples)."""

from __future__ import annotations

import csv
import datetime as dt

import pytest

from deallens.domain.market_calendar import is_trading_day, session_at
from tests.conftest import SAMPLES

UTC = dt.UTC


def _utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def _rows(name: str) -> list[dict[str, str]]:
    with (SAMPLES / name).open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("row", _rows("nyse_holidays_2026_2027.csv"), ids=lambda r: r["date"])
def test_published_holidays_are_closed(row: dict[str, str]) -> None:
    day = dt.date.fromisoformat(row["date"])
    assert not is_trading_day(day), row["holiday"]
    noon_et = dt.datetime.combine(day, dt.time(17, 0), tzinfo=UTC)
    session = session_at(noon_et)
    assert not session.is_open
    assert session.session_date > day


@pytest.mark.parametrize("row", _rows("nyse_early_closes_2026_2027.csv"), ids=lambda r: r["date"])
def test_published_early_closes(row: dict[str, str]) -> None:
    day = dt.date.fromisoformat(row["date"])
    session = session_at(dt.datetime.combine(day, dt.time(15, 0), tzinfo=UTC))
    assert session.is_open and session.session_date == day
    # 13:00 ET is 18:00 UTC in November and December (EST).
    assert row["close_time_et"] == "13:00"
    assert session.closes_at == dt.datetime.combine(day, dt.time(18, 0), tzinfo=UTC)
    assert not session_at(dt.datetime.combine(day, dt.time(18, 30), tzinfo=UTC)).is_open


@pytest.mark.parametrize(
    ("day", "open_utc"),
    [
        ("2026-03-06", "14:30"),  # Friday before the US switch to EDT: EST, 09:30 = 14:30 UTC
        ("2026-03-09", "13:30"),  # Monday after 2026-03-08: EDT, 09:30 = 13:30 UTC
        ("2026-10-30", "13:30"),  # Friday before 2026-11-01: still EDT
        ("2026-11-02", "14:30"),  # Monday after: EST again
    ],
)
def test_sessions_follow_new_york_clock_across_dst(day: str, open_utc: str) -> None:
    opens = _utc(f"{day}T{open_utc}")
    assert not session_at(opens - dt.timedelta(minutes=1)).is_open
    session = session_at(opens + dt.timedelta(minutes=1))
    assert session.is_open
    assert session.opens_at == opens
    assert session.closes_at == opens + dt.timedelta(hours=6, minutes=30)


def test_weekend_points_at_next_monday() -> None:
    session = session_at(_utc("2026-11-28T16:00"))  # a Saturday
    assert not session.is_open
    assert session.session_date == dt.date(2026, 11, 30)
    assert session.opens_at == _utc("2026-11-30T14:30")


def test_naive_datetime_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        session_at(dt.datetime(2026, 11, 30, 15, 0))


@pytest.mark.parametrize(
    ("switch_day", "monday_open_utc"),
    [
        ("2026-03-08", "2026-03-09T13:30"),  # clocks spring forward at 02:00 ET: EDT from here
        ("2026-11-01", "2026-11-02T14:30"),  # clocks fall back at 02:00 ET: EST from here
    ],
)
def test_on_the_dst_switch_days_themselves(switch_day: str, monday_open_utc: str) -> None:
    # Before, across and after 02:00 ET on the Sunday: closed, next session Monday 09:30 ET.
    for hour in (5, 6, 7, 8, 20):
        session = session_at(_utc(f"{switch_day}T{hour:02d}:00"))
        assert not session.is_open
        assert session.opens_at == _utc(monday_open_utc)
        assert session.last_closed == dt.date.fromisoformat(switch_day) - dt.timedelta(days=2)  # the Friday
