"""The api_usage ledger (a provider's calls per day) and call slots, reserved before each call.

The reservation is one statement (`INSERT ... ON CONFLICT DO UPDATE ... WHERE calls < limit`):
PostgreSQL locks the day's row, so two workers can never both take the last call. A call is
counted when reserved, whether it then succeeds or not — the provider counts it too.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from deallens.domain import budget
from deallens.domain.budget import ledger_day

_RESERVE = text(
    """
    INSERT INTO api_usage AS u (provider, day, calls) VALUES (:provider, :day, 1)
    ON CONFLICT (provider, day) DO UPDATE SET calls = u.calls + 1, updated_at = now()
    WHERE u.calls < :limit
    RETURNING calls
    """
)

_REFUSED = text(
    """
    INSERT INTO api_usage AS u (provider, day, calls, refused) VALUES (:provider, :day, 0, 1)
    ON CONFLICT (provider, day) DO UPDATE SET refused = u.refused + 1, updated_at = now()
    """
)

# Counts a call on a further row without limit (a feed's share of the provider's quota).
_TALLY = text(
    """
    INSERT INTO api_usage AS u (provider, day, calls) VALUES (:provider, :day, 1)
    ON CONFLICT (provider, day) DO UPDATE SET calls = u.calls + 1, updated_at = now()
    """
)

_USED = text("SELECT calls, refused FROM api_usage WHERE provider = :provider AND day = :day")


# Takes the provider's next call slot and moves it on by one interval; answers how long the
# caller must wait for its slot, measured on the database's clock (the one all workers share).
_TAKE_SLOT = text(
    """
    INSERT INTO api_rate_slots AS s (provider, next_call_at)
    VALUES (:provider, clock_timestamp() + make_interval(secs => :interval))
    ON CONFLICT (provider) DO UPDATE
        SET next_call_at = greatest(s.next_call_at, clock_timestamp()) + make_interval(secs => :interval)
    RETURNING greatest(0, extract(epoch FROM (s.next_call_at - make_interval(secs => :interval)) - clock_timestamp()))
    """
)

# Network jitter can bring two calls closer together on arrival than they were sent.
JITTER_MARGIN_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class Reservation:
    number: int  # the call's number today
    wait_seconds: float  # until its slot: sleep this long, then call


async def reserve_call(
    engine: AsyncEngine,
    provider: str,
    day: dt.date,
    limit: int,
    *,
    calls_per_minute: float | None = None,
    tally: str | None = None,
) -> Reservation | None:
    """Take one call from the day's budget and, with `calls_per_minute`, the next call slot.

    With `tally`, the call is also counted on that ledger row, in the same transaction (the
    NewsAPI feeds' shares: deallens/domain/news/pacing.py). None when the day's budget is
    used up (no slot is taken, nothing is counted then).
    """
    if limit < 1:
        return None
    async with engine.begin() as conn:
        number = (
            await conn.execute(_RESERVE, {"provider": provider, "day": day, "limit": limit})
        ).scalar_one_or_none()
        if number is None:
            return None
        if tally is not None:
            await conn.execute(_TALLY, {"provider": tally, "day": day})
        wait = 0.0
        if calls_per_minute:
            interval = 60.0 / calls_per_minute + JITTER_MARGIN_SECONDS
            wait = float((await conn.execute(_TAKE_SLOT, {"provider": provider, "interval": interval})).scalar_one())
    return Reservation(number=number, wait_seconds=wait)


async def record_refusal(engine: AsyncEngine, provider: str, day: dt.date) -> None:
    """The provider refused a call for rate reasons despite the budget (should never happen)."""
    async with engine.begin() as conn:
        await conn.execute(_REFUSED, {"provider": provider, "day": day})


async def usage(engine: AsyncEngine, provider: str, day: dt.date) -> tuple[int, int]:
    """(calls, refused) for the day."""
    async with engine.connect() as conn:
        row = (await conn.execute(_USED, {"provider": provider, "day": day})).one_or_none()
    return (row.calls, row.refused) if row else (0, 0)


async def take_call_slot(engine: AsyncEngine, provider: str, calls_per_minute: float) -> float:
    """The provider's next call slot alone (no daily call count): seconds to wait for it.

    For providers budgeted in money rather than calls (the LLM gateway, deallens/db/llm_budget.py)
    that still have a requests-per-minute limit shared by every worker.
    """
    interval = 60.0 / calls_per_minute + JITTER_MARGIN_SECONDS
    async with engine.begin() as conn:
        return float((await conn.execute(_TAKE_SLOT, {"provider": provider, "interval": interval})).scalar_one())


async def calls_left(engine: AsyncEngine, provider: str, calls_per_day: int, at: dt.datetime) -> int:
    """The calls the provider's quota still allows on the ledger day of `at`."""
    used, _ = await usage(engine, provider, ledger_day(at))
    return budget.calls_left(calls_per_day=calls_per_day, used_today=used)
