"""How much of the day's NewsAPI quota each feed may have spent by a moment (NEWSAPI_PACE_DAILY_QUOTA).

The three feeds' schedules (schedules.py) ask for about three times the free plan's 100
requests a day: market news every 15 minutes 12:00-23:00 UTC (two requests a run), company
news every 30 minutes all day (one request per company, three a run), deal news every 30
minutes (one request). Paced as one pool, the all-night company and deal runs spent each
call as it came due, and by day a market run, which needs two calls at once, almost never
found both: its /v2/everything query was starved and its fetch state never moved.

So each feed is paced on its own third of the quota, spread over the UTC day: by any moment a
feed may have spent its third of the day's share up to an hour from then. A feed whose
schedule covers only part of the day (market news) finds the share of the hours it did not
run waiting for its first runs. The api_usage reservation still caps the total.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Final

FEEDS: Final = ("market", "company", "deal")
# The share due by a moment runs this far ahead of the clock, so that the day's first run
# (and a run just after an hour's worth of calls was spent) is not refused outright.
AHEAD: Final = dt.timedelta(hours=1)
DAY_SECONDS: Final = 86_400


def ledger_name(feed: str) -> str:
    """The api_usage row counting one feed's NewsAPI calls (beside the provider's own row)."""
    return f"newsapi:{feed}"


def feed_due(calls_per_day: int, at: dt.datetime) -> int:
    """The calls one feed may have made by `at` on its UTC day (at least one)."""
    utc = at.astimezone(dt.UTC)
    midnight = dt.datetime.combine(utc.date(), dt.time(), tzinfo=dt.UTC)
    share = min(1.0, ((utc - midnight) + AHEAD).total_seconds() / DAY_SECONDS)
    return max(1, math.ceil(calls_per_day / len(FEEDS) * share))


def may_spend(calls_per_day: int, at: dt.datetime, *, used_by_feed: int, need: int = 1) -> bool:
    """Whether a feed that spent `used_by_feed` calls today may spend `need` more now.

    `need` is what the rest of the run asks at least (a market run's two queries): a run
    that cannot afford them all waits for a later run instead of spending half of them."""
    whole_day = math.ceil(calls_per_day / len(FEEDS))
    return used_by_feed + max(1, min(need, whole_day)) <= feed_due(calls_per_day, at)
