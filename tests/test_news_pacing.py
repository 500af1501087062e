"""The NewsAPI pacing over a whole UTC day of the three news schedules as schedules.py defines
them, at the free plan's 100 requests: no feed is starved, and market runs get both queries."""

from __future__ import annotations

import datetime as dt
import random

import pytest

import schedules
from deallens.domain.news import pacing

DAY = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)
# Requests a run asks (config defaults: two market queries, one deal query, three companies
# of one request each), and whether they are one run's queries (all or nothing) or separate
# companies (each its own activity).
ASKS = {"IngestMarketNews": ("market", 2, True), "IngestDealNews": ("deal", 1, True), "IngestCompanyNews": ("company", 3, False)}


def _field(spec: str, top: int) -> list[int]:
    values: set[int] = set()
    for part in spec.split(","):
        rng, _, step = part.partition("/")
        first, last = (0, top) if rng == "*" else (int(rng.split("-")[0]), int(rng.split("-")[-1]))
        values.update(range(first, last + 1, int(step or 1)))
    return sorted(values)


def _runs() -> list[tuple[dt.datetime, str]]:
    runs = []
    for definition in schedules.SCHEDULES:
        if definition.workflow not in ASKS:
            continue
        assert definition.time_zone == "UTC"
        for cron in definition.crons:
            minute, hour, *_ = cron.split()
            runs += [(DAY.replace(hour=h, minute=m), definition.workflow) for h in _field(hour, 23) for m in _field(minute, 59)]
    return runs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_day_of_the_three_schedules_shares_the_free_quota(seed: int) -> None:
    per_day, total = 100, 0
    rng = random.Random(seed)
    spent = dict.fromkeys(pacing.FEEDS, 0)
    complete_market = 0
    # Each run at its time plus the schedules' jitter (up to two minutes).
    for at, workflow in sorted((at + dt.timedelta(seconds=rng.uniform(0, 120)), w) for at, w in _runs()):
        feed, asks, together = ASKS[workflow]
        made = 0
        for position in range(asks):
            need = asks - position if together else 1
            if total >= per_day or not pacing.may_spend(per_day, at, used_by_feed=spent[feed], need=need):
                if together:
                    break
                continue
            spent[feed] += 1
            total += 1
            made += 1
        complete_market += workflow == "IngestMarketNews" and made == asks
    assert total == per_day
    # Each feed gets about its third (one pool gave the market feed 7-26 calls and 0-2 full runs).
    assert all(32 <= calls <= 35 for calls in spent.values()), spent
    assert complete_market >= 16


def test_a_feed_that_did_not_run_at_night_finds_its_share_waiting() -> None:
    noon = DAY.replace(hour=12)
    assert pacing.feed_due(100, noon) == 19  # 100 / 3 * 13 / 24, rounded up
    assert pacing.may_spend(100, noon, used_by_feed=17, need=2)
    assert not pacing.may_spend(100, noon, used_by_feed=18, need=2)
    # A quota too small for two calls a feed still lets a run make one.
    assert pacing.may_spend(3, noon, used_by_feed=0, need=2)
