"""How old a piece of data may be before it is shown as stale, in market time.

Data that could not be refreshed (a provider down, rate limited, answering garbage) keeps its
last value; a digest or the health page must then say "as of <then>, stale" instead of
presenting it as current. What "too old" means depends on the kind and on the market:

- a QUOTE (an intraday price) is fresh within QUOTE_MAX_AGE while NYSE is open; when it is
  closed, a quote taken from QUOTE_MAX_AGE before the last close on is as fresh as one gets
  (nothing trades over a weekend, so Friday's closing quote is not stale on Sunday);
- a DAILY_BAR (dated by its session) is fresh if it is the last closed session's, or for
  DAILY_BAR_GRACE after a close, the session before (the bars are synced after the close);
- NEWS and FUNDAMENTALS age on the wall clock (news is published at weekends too).

`is_stale(as_of, now, kind)` is the one test; `fresh_since(kind, now)` the boundary it uses.
A missing as-of (never fetched) is stale.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from zoneinfo import ZoneInfo

from deallens.domain.market_calendar import previous_session, session_at, session_close


_EASTERN = ZoneInfo("America/New_York")


class DataKind(StrEnum):
    QUOTE = "quote"
    DAILY_BAR = "daily_bar"
    NEWS = "news"
    FUNDAMENTALS = "fundamentals"


# Price sync runs every minute in market hours; a quarter of an hour without one is a fault.
QUOTE_MAX_AGE = dt.timedelta(minutes=15)
# SyncDailyOHLC runs after the close; until this long after it, yesterday's bar is still current.
DAILY_BAR_GRACE = dt.timedelta(hours=3)
# Market news is ingested every few hours; company news at least daily.
NEWS_MAX_AGE = dt.timedelta(hours=26)
# Fundamentals are refreshed stalest first, about weekly.
FUNDAMENTALS_MAX_AGE = dt.timedelta(days=8)


def _aware(moment: dt.datetime, name: str) -> dt.datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")
    return moment.astimezone(dt.UTC)


def fresh_since(kind: DataKind, now: dt.datetime) -> dt.datetime | dt.date:
    """The oldest as-of that still counts as fresh at `now` (a date for DAILY_BAR, else an instant)."""
    now = _aware(now, "now")
    if kind is DataKind.QUOTE:
        session = session_at(now)
        if session.is_open:
            return now - QUOTE_MAX_AGE
        return session_close(session.last_closed) - QUOTE_MAX_AGE
    if kind is DataKind.DAILY_BAR:
        last = session_at(now).last_closed
        if now < session_close(last) + DAILY_BAR_GRACE:
            return previous_session(last)
        return last
    if kind is DataKind.NEWS:
        return now - NEWS_MAX_AGE
    return now - FUNDAMENTALS_MAX_AGE


def is_stale(as_of: dt.datetime | dt.date | None, now: dt.datetime, kind: DataKind) -> bool:
    """Whether data of `kind` last refreshed at `as_of` must be shown as stale at `now`."""
    if as_of is None:
        return True
    boundary = fresh_since(kind, now)
    if kind is DataKind.DAILY_BAR:
        day = _aware(as_of, "as_of").astimezone(_EASTERN).date() if isinstance(as_of, dt.datetime) else as_of
        assert isinstance(boundary, dt.date)
        return day < boundary
    if not isinstance(as_of, dt.datetime):
        raise ValueError(f"a {kind.value} as-of must be a datetime, not a date")
    assert isinstance(boundary, dt.datetime)
    return _aware(as_of, "as_of") < boundary
