"""NYSE sessions from exchange_calendars (holidays, early closes, DST handled there).

Every instant is timezone-aware UTC in and out; the exchange's own clock (America/New_York)
lives inside the calendar library, so nothing here hard-codes 13:30 or 14:30 UTC.
"""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass
from functools import lru_cache

import exchange_calendars
import pandas as pd

EXCHANGE = "XNYS"

# exchange_calendars on pandas 3.1 trips pandas' own deprecation of `.values` on tz-aware
# data; the library's results are unaffected, and the warning would flood worker logs.
warnings.filterwarnings("ignore", message=".*returning an ndarray that drops timezone", category=DeprecationWarning)


@dataclass(frozen=True, slots=True)
class MarketSession:
    is_open: bool
    # The session in force at `at`, or the next one when the market is closed.
    session_date: dt.date
    opens_at: dt.datetime
    closes_at: dt.datetime
    # The most recent session that had closed by `at`: whose daily bar is final.
    last_closed: dt.date


@lru_cache(maxsize=1)
def _calendar() -> exchange_calendars.ExchangeCalendar:
    today = pd.Timestamp.now(tz="UTC").normalize().tz_localize(None)
    # The library's default horizon is about a year ahead; schedules look a little further.
    return exchange_calendars.get_calendar(
        EXCHANGE, start=today - pd.DateOffset(years=25), end=today + pd.DateOffset(years=2)
    )


def _utc(timestamp: pd.Timestamp) -> dt.datetime:
    return timestamp.tz_convert("UTC").to_pydatetime()


def session_at(at: dt.datetime) -> MarketSession:
    """Whether NYSE is open at `at`, with the current (or next) session's open and close."""
    if at.tzinfo is None:
        raise ValueError("session_at needs a timezone-aware datetime")
    calendar = _calendar()
    minute = pd.Timestamp(at).tz_convert("UTC").floor("min")
    is_open = bool(calendar.is_open_on_minute(minute))
    session = calendar.minute_to_session(minute, direction="next")
    if not is_open and minute >= calendar.session_close(session):
        session = calendar.next_session(session)
    last_closed = calendar.previous_session(session)
    if not is_open and minute >= calendar.session_close(session):
        last_closed = session
    return MarketSession(
        is_open=is_open,
        session_date=session.date(),
        opens_at=_utc(calendar.session_open(session)),
        closes_at=_utc(calendar.session_close(session)),
        last_closed=last_closed.date(),
    )


def is_trading_day(day: dt.date) -> bool:
    return bool(_calendar().is_session(pd.Timestamp(day)))


def market_minutes_between(start: dt.datetime, end: dt.datetime) -> int:
    """Minutes NYSE was open in [start, end): how stale a quote is in the market's own time.

    A quote from Friday's close is 0 market minutes old on Sunday night; the span is capped at
    30 days back from `end` (anything older is stale by any measure)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("market_minutes_between needs timezone-aware datetimes")
    if end <= start:
        return 0
    start = max(start, end - dt.timedelta(days=30))
    calendar = _calendar()
    first = pd.Timestamp(start).tz_convert("UTC").ceil("min")
    last = pd.Timestamp(end).tz_convert("UTC").floor("min") - pd.Timedelta(minutes=1)
    if last < first:
        return 0
    return int(len(calendar.minutes_in_range(first, last)))


def sessions_closed_after(day: dt.date, at: dt.datetime) -> int:
    """Sessions that closed after `day` and by `at`: how many daily bars behind `day` is."""
    last_closed = session_at(at).last_closed
    if day >= last_closed:
        return 0
    sessions = _calendar().sessions_in_range(pd.Timestamp(day) + pd.Timedelta(days=1), pd.Timestamp(last_closed))
    return int(len(sessions))


def session_close(day: dt.date) -> dt.datetime:
    """When the session of `day` closes (early closes included); ValueError if `day` is no session."""
    if not is_trading_day(day):
        raise ValueError(f"{day} is not an NYSE session")
    return _utc(_calendar().session_close(pd.Timestamp(day)))


def previous_session(day: dt.date) -> dt.date:
    """The session before the session `day`."""
    if not is_trading_day(day):
        raise ValueError(f"{day} is not an NYSE session")
    return _calendar().previous_session(pd.Timestamp(day)).date()
