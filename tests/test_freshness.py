"""Freshness in market time (deallens/domain/freshness.py), and the digest that shows it:
a watchlist row whose last close is older than the digest's time expects is marked stale,
with its as-of date, in both parts of the email."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from deallens.db import digests
from deallens.domain.freshness import DataKind, fresh_since, is_stale
from deallens.notify.render import Renderer
from tests.notify_data import make_users, seed_market, watch

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("as_of", "now", "stale"),
    [
        # Market open (Tue 1 Dec 2026, 10:00 ET = 15:00 UTC): 15 minutes.
        ("2026-12-01T14:50:00", "2026-12-01T15:00:00", False),
        ("2026-12-01T14:40:00", "2026-12-01T15:00:00", True),
        # Before the open, yesterday's closing quote is current; one from the morning before is not.
        ("2026-11-30T20:58:00", "2026-12-01T13:00:00", False),
        ("2026-11-30T15:00:00", "2026-12-01T13:00:00", True),
        # A weekend after the early close of Fri 27 Nov (13:00 ET = 18:00 UTC): Friday's close holds.
        ("2026-11-27T17:55:00", "2026-11-29T12:00:00", False),
        ("2026-11-27T15:00:00", "2026-11-29T12:00:00", True),
    ],
)
def test_quote_freshness_follows_market_hours(as_of: str, now: str, stale: bool) -> None:
    assert is_stale(at(as_of), at(now), DataKind.QUOTE) is stale


@pytest.mark.parametrize(
    ("bar", "now", "stale"),
    [
        # Saturday: Friday's (early-close) bar is the latest there can be; Wednesday's is stale
        # (Thursday 26 Nov is Thanksgiving, so Wednesday is the session before Friday).
        ("2026-11-27", "2026-11-28T12:00:00", False),
        ("2026-11-25", "2026-11-28T12:00:00", True),
        # An hour after Monday's close the bars may not be synced yet: Friday's still counts...
        ("2026-11-27", "2026-11-30T22:00:00", False),
        # ...but not the next morning.
        ("2026-11-27", "2026-12-01T12:00:00", True),
        ("2026-11-30", "2026-12-01T12:00:00", False),
    ],
)
def test_daily_bar_freshness_knows_sessions_and_the_sync_grace(bar: str, now: str, stale: bool) -> None:
    assert is_stale(dt.date.fromisoformat(bar), at(now), DataKind.DAILY_BAR) is stale


def test_wall_clock_kinds_and_bad_input() -> None:
    now = at("2026-11-29T12:00:00")
    assert not is_stale(now - dt.timedelta(hours=25), now, DataKind.NEWS)
    assert is_stale(now - dt.timedelta(hours=27), now, DataKind.NEWS)
    assert not is_stale(now - dt.timedelta(days=7), now, DataKind.FUNDAMENTALS)
    assert is_stale(now - dt.timedelta(days=9), now, DataKind.FUNDAMENTALS)
    assert is_stale(None, now, DataKind.QUOTE)  # never fetched
    assert fresh_since(DataKind.DAILY_BAR, now) == dt.date(2026, 11, 27)
    with pytest.raises(ValueError, match="timezone-aware"):
        is_stale(dt.datetime(2026, 11, 29), dt.datetime(2026, 11, 29), DataKind.QUOTE)
    with pytest.raises(ValueError, match="must be a datetime"):
        is_stale(dt.date(2026, 11, 29), now, DataKind.NEWS)


async def test_digest_marks_a_close_that_could_not_be_refreshed_as_stale(db: AsyncEngine) -> None:
    [user] = await make_users(db, 1)
    # FRSH has Friday's bar; STAL's sync stopped on Tuesday 24 Nov.
    fresh = await seed_market(db, ["FRSH"], until=dt.date(2026, 11, 27))
    stale = await seed_market(db, ["STAL"], until=dt.date(2026, 11, 24))
    await watch(db, [user], [fresh["FRSH"], stale["STAL"]])
    period = dt.date(2026, 11, 28)
    pending, _, _ = await digests.plan(db, "daily", period, [user])
    [digest], _, _ = await digests.load_batch(db, "daily", period, pending, public_base_url="http://x")
    rows = {row.symbol: row for row in digest.watchlist}
    assert (rows["FRSH"].as_of, rows["FRSH"].stale) == (dt.date(2026, 11, 27), False)
    assert (rows["STAL"].as_of, rows["STAL"].stale) == (dt.date(2026, 11, 24), True)

    rendered = Renderer().render_digest(digest)
    [frsh_line] = [line for line in rendered.text.splitlines() if line.startswith("FRSH")]
    [stal_line] = [line for line in rendered.text.splitlines() if line.startswith("STAL")]
    assert frsh_line.endswith("27 Nov") and "stale" not in frsh_line
    assert stal_line.endswith("24 Nov (stale)")
    assert "Prices marked stale could not be refreshed" in rendered.text
    assert "stale · Tue 24 Nov" in rendered.html and "stale · Fri 27 Nov" not in rendered.html
    assert ">Fri 27 Nov</div>" in rendered.html  # the fresh row shows its as-of too
