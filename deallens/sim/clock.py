"""Time for the stand-ins: an injectable clock and the exchange's own calendar day.

Every simulated answer is a function of (seed, clock), so tests pass a clock instead of
patching `datetime`. AlphaVantage labels its data in US/Eastern, so "today" for prices is
the New York date of the clock, not the UTC one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

Clock = Callable[[], datetime]

EASTERN = ZoneInfo("America/New_York")
SESSION_OPEN = time(9, 30)
SESSION_MINUTES = 390


def system_clock() -> datetime:
    """The real time, timezone-aware (UTC)."""
    return datetime.now(UTC)


def aware(moment: datetime) -> datetime:
    """`moment` as an aware datetime; a naive one is taken to be UTC (what tests usually mean)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def eastern(moment: datetime) -> datetime:
    """`moment` on the exchange's wall clock (America/New_York, DST-aware)."""
    return aware(moment).astimezone(EASTERN)


def utc(moment: datetime) -> datetime:
    return aware(moment).astimezone(UTC)


def is_weekday(day: date) -> bool:
    return day.weekday() < 5


def previous_weekday(day: date) -> date:
    """The weekday strictly before `day`."""
    day -= timedelta(days=1)
    while not is_weekday(day):
        day -= timedelta(days=1)
    return day


class ManualClock:
    """A clock that only moves when told to: `clock.advance(minutes=5)`, `clock.set(dt)`.

    Pass it as `clock=` to any `make_app`; time-dependent behaviour (intraday prices,
    rate-limit windows, the news window) then follows it exactly.
    """

    def __init__(self, start: datetime) -> None:
        self._now = aware(start)

    def __call__(self) -> datetime:
        return self._now

    def set(self, moment: datetime) -> None:
        self._now = aware(moment)

    def advance(self, **delta: float) -> datetime:
        """Move forward by `timedelta(**delta)` and return the new time."""
        self._now += timedelta(**delta)
        return self._now
