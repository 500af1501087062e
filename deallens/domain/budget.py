"""How many provider calls a market-hours price sync may spend now.

The daily quota is shared: the post-close OHLC sync needs about one call per tracked
company, so that much is held back, and the rest is spread evenly over the session —
by 12:45 ET (half the session) the price syncs may have used half their share. Spending
is paced against the ledger's total for the day, so calls made before the open (the
fundamentals sync) are paid for out of the same share.
"""

from __future__ import annotations

import datetime as dt
import math
from zoneinfo import ZoneInfo

# The day in the ledger is the exchange's day: the quota is spread over its session.
LEDGER_TZ = ZoneInfo("America/New_York")


def price_sync_allowance(
    *,
    calls_per_day: int,
    used_today: int,
    held_back: int,
    opens_at: dt.datetime,
    closes_at: dt.datetime,
    at: dt.datetime,
    max_symbols: int,
) -> int:
    """Calls this run may make: the paced share so far, less what today already used."""
    share = max(0, calls_per_day - held_back)
    session = (closes_at - opens_at).total_seconds()
    elapsed = (at - opens_at).total_seconds()
    # Outside the session (a forced run) the whole share is available.
    fraction = 1.0 if session <= 0 or elapsed >= session or elapsed < 0 else elapsed / session
    # ceil: the first run after the open may already spend one call.
    target = math.ceil(share * fraction)
    return max(0, min(max_symbols, target - used_today))


def calls_left(*, calls_per_day: int, used_today: int) -> int:
    """What the day's quota still allows (never negative: refused calls can push `used` over)."""
    return max(0, calls_per_day - used_today)


def symbols_per_price_call(*, premium: bool, bulk_max: int) -> int:
    """A premium key refreshes `bulk_max` symbols in one REALTIME_BULK_QUOTES call; a free
    key one symbol per GLOBAL_QUOTE call."""
    return bulk_max if premium else 1


def fundamentals_allowance(*, calls_left: int, tracked: int, max_symbols: int) -> int:
    """Companies a scheduled fundamentals refresh may fetch. Fundamentals change quarterly,
    so they get only what is left after holding back a call per tracked company for the
    post-close OHLC sync."""
    return max(0, min(max_symbols, calls_left - tracked))


def ledger_day(at: dt.datetime) -> dt.date:
    """The ledger's day for an instant: the date in New York."""
    return at.astimezone(LEDGER_TZ).date()
