"""Quiet hours in the user's own zone: same-day and overnight windows, DST, bad zones."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deallens.domain.quiet_hours import quiet_until

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def t(text: str) -> dt.time:
    return dt.time.fromisoformat(text)


@pytest.mark.parametrize(
    ("now", "start", "end", "zone", "expected"),
    [
        # overnight window in New York (UTC-5 in November): 22:00-07:00 local
        ("2026-11-28T04:00:00", "22:00", "07:00", "America/New_York", "2026-11-28T12:00:00"),
        ("2026-11-28T03:30:00", "22:00", "07:00", "America/New_York", "2026-11-28T12:00:00"),  # 22:30 local
        ("2026-11-28T12:00:00", "22:00", "07:00", "America/New_York", None),  # 07:00 local: over
        ("2026-11-28T02:59:00", "22:00", "07:00", "America/New_York", None),  # 21:59 local
        # same-day window in Berlin (UTC+1): 12:00-14:00 local
        ("2026-11-28T11:30:00", "12:00", "14:00", "Europe/Berlin", "2026-11-28T13:00:00"),
        ("2026-11-28T13:00:00", "12:00", "14:00", "Europe/Berlin", None),
        # DST starts in New York on 2026-03-08: the night is an hour shorter in UTC
        ("2026-03-08T04:00:00", "22:00", "07:00", "America/New_York", "2026-03-08T11:00:00"),
        # no window, or an empty one
        ("2026-11-28T04:00:00", None, None, "UTC", None),
        ("2026-11-28T04:00:00", "07:00", "07:00", "UTC", None),
        # a zone zoneinfo does not know counts as UTC
        ("2026-11-28T23:30:00", "23:00", "06:00", "Mars/Olympus", "2026-11-29T06:00:00"),
    ],
)
def test_quiet_until(now: str, start: str | None, end: str | None, zone: str, expected: str | None) -> None:
    result = quiet_until(at(now), t(start) if start else None, t(end) if end else None, zone)
    assert result == (at(expected) if expected else None)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        quiet_until(dt.datetime(2026, 11, 28, 4), t("22:00"), t("07:00"), "UTC")


@given(
    now=st.datetimes(min_value=dt.datetime(2026, 1, 1), max_value=dt.datetime(2027, 12, 31), timezones=st.just(UTC)),
    start=st.times(),
    end=st.times(),
    zone=st.sampled_from(["UTC", "America/New_York", "Europe/London", "Asia/Kolkata", "Australia/Lord_Howe"]),
)
def test_the_end_is_in_the_future_and_within_a_day(
    now: dt.datetime, start: dt.time, end: dt.time, zone: str
) -> None:
    until = quiet_until(now, start, end, zone)
    if until is not None:
        assert now < until <= now + dt.timedelta(hours=25)
        # Once the window is over, it is not quiet any more (until it starts again).
        assert quiet_until(until, start, end, zone) is None or start == end
