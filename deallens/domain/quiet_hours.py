"""Quiet hours: a daily window in the user's own time zone when alerts wait.

The window may cross midnight (22:00-07:00). Times are wall-clock in the user's zone, so the
end is computed with zoneinfo on the right calendar day: on a DST switch the window is an hour
shorter or longer in UTC, as the user experiences it. A zone name the database holds but
zoneinfo does not know counts as UTC rather than holding alerts forever.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone(name: str | None) -> dt.tzinfo:
    try:
        return ZoneInfo(name) if name else dt.UTC
    except (ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def quiet_until(now: dt.datetime, start: dt.time | None, end: dt.time | None, timezone: str | None) -> dt.datetime | None:
    """When the quiet window that contains `now` ends (UTC), or None when `now` is not quiet.

    `start == end` means no window (an empty window, not 24 hours of silence: a user who
    wants no alerts at all turns the channel off).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if start is None or end is None or start == end:
        return None
    tz = zone(timezone)
    local = now.astimezone(tz)
    clock = local.time().replace(tzinfo=None)
    if start < end:
        quiet = start <= clock < end
        end_day = local.date()
    else:  # crosses midnight
        quiet = clock >= start or clock < end
        end_day = local.date() + dt.timedelta(days=1) if clock >= start else local.date()
    if not quiet:
        return None
    # fold=0 and normalising through UTC resolve a wall time that a DST jump skips or repeats.
    ends = dt.datetime.combine(end_day, end, tzinfo=tz).astimezone(dt.UTC)
    return ends if ends > now else None
