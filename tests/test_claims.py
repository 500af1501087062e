"""The claim rule of the delivery ledgers, straight against PostgreSQL: monotonic in the
attempt number, so an attempt Temporal gave up on but that still runs (frozen, then thawed)
can neither take back nor settle a row its successor holds."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from deallens.db import digests
from deallens.db.claims import ClaimLost, split_claimant
from tests.notify_data import digest_ledger, make_users

PERIOD = dt.date(2026, 11, 28)
LEDGER = digests.LEDGER


async def pending_rows(engine: AsyncEngine, count: int) -> list[dict[str, object]]:
    users = await make_users(engine, count)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO digest_deliveries (user_id, kind, period, status) "
                "SELECT u, 'daily', :p, 'pending' FROM unnest(CAST(:u AS bigint[])) u"
            ),
            {"u": users, "p": PERIOD},
        )
    return [digests.key("daily", PERIOD, user) for user in users]


async def holder(engine: AsyncEngine, key: dict[str, object]) -> str | None:
    async with engine.connect() as conn:
        return (
            await conn.execute(
                text("SELECT claimed_by FROM digest_deliveries WHERE kind = :kind AND period = :period AND user_id = :user_id"),
                key,
            )
        ).scalar_one()


async def claim(engine: AsyncEngine, key: dict[str, object], claimant: str, lease: float = 600) -> bool:
    return await LEDGER.claim(engine, key, claimant=claimant, lease_seconds=lease)


async def test_a_newer_attempt_takes_over_and_the_older_one_can_never_take_back(db: AsyncEngine) -> None:
    (row,) = await pending_rows(db, 1)
    assert await claim(db, row, "wf/run/3#1")
    assert await claim(db, row, "wf/run/3#2")  # Temporal retried: attempt 1 is presumed gone
    assert not await claim(db, row, "wf/run/3#1")  # ... but it was only frozen: no taking back
    assert await holder(db, row) == "wf/run/3#2"
    assert await LEDGER.blocker(db, row, claimant="wf/run/3#1") == "superseded"  # so it stops
    assert await LEDGER.blocker(db, row, claimant="other/run/1#9") == "busy"
    with pytest.raises(ClaimLost):
        await LEDGER.settle(db, row, "sent", claimant="wf/run/3#1", message_id="<old@x>")
    assert await holder(db, row) == "wf/run/3#2"
    assert await LEDGER.settle(db, row, "sent", claimant="wf/run/3#2", message_id="<new@x>")
    (ledger,) = await digest_ledger(db)
    assert (ledger.status, ledger.message_id, ledger.attempts) == ("sent", "<new@x>", 2)
    assert not await claim(db, row, "wf/run/3#3")  # settled: nobody claims it again
    assert await LEDGER.blocker(db, row, claimant="wf/run/3#1") == "settled"
    assert await LEDGER.blocker(db, digests.key("daily", PERIOD, 10**9), claimant="wf/run/3#1") == "settled"


async def test_attempts_compare_as_numbers_and_owners_may_contain_hashes(db: AsyncEngine) -> None:
    a, b = await pending_rows(db, 2)
    assert await claim(db, a, "wf/run/1#9")
    assert await claim(db, a, "wf/run/1#10")  # 10 > 9, though "10" < "9" as text
    assert not await claim(db, a, "wf/run/1#9")
    # A workflow id with '#' in it: the owner is everything before the last '#'.
    assert await claim(db, b, "digest#2026-11-28/run/1#1")
    assert await claim(db, b, "digest#2026-11-28/run/1#2")
    assert not await claim(db, b, "digest#2026-11-28/run/1#1")
    assert not await claim(db, b, "digest/run/1#5")  # another owner whose name is a prefix
    assert split_claimant("a#b#7") == ("a#b", 7)
    with pytest.raises(ValueError, match="<owner>#<attempt number>"):
        split_claimant("no-attempt")


async def test_other_senders_wait_for_the_lease_and_the_same_attempt_may_reclaim(db: AsyncEngine) -> None:
    (row,) = await pending_rows(db, 1)
    assert await claim(db, row, "wf-a/run/1#1", lease=0.2)
    assert not await claim(db, row, "wf-b/run/1#5")  # another activity: the lease holds
    assert await claim(db, row, "wf-a/run/1#1")  # the holder itself (re-entry) is fine
    assert not await claim(db, row, "wf-b/run/1#5")
    async with db.begin() as conn:
        await conn.execute(text("UPDATE digest_deliveries SET claimed_until = now() - interval '1 second'"))
    assert await claim(db, row, "wf-b/run/1#1")  # expired: anyone
    # The lease ran out, so the old holder lost it, whatever its attempt number.
    with pytest.raises(ClaimLost):
        await LEDGER.settle(db, row, "failed", claimant="wf-a/run/1#1", error="late")
    assert not await claim(db, row, "wf-a/run/1#7")


async def test_a_lost_settle_writes_nothing_not_even_the_chained_claim(db: AsyncEngine) -> None:
    a, b = await pending_rows(db, 2)
    assert await claim(db, a, "wf/run/1#1")
    assert await claim(db, a, "wf/run/1#2")
    with pytest.raises(ClaimLost):
        await LEDGER.settle(db, a, "sent", claimant="wf/run/1#1", message_id="<m@x>", then_claim=b, lease_seconds=60)
    assert await holder(db, b) is None  # the superseded attempt did not claim the next row
    assert [r.status for r in await digest_ledger(db)] == ["pending", "pending"]


async def test_concurrent_attempts_race_for_one_row_and_the_newest_ends_up_holding_it(db: AsyncEngine) -> None:
    (row,) = await pending_rows(db, 1)
    for _ in range(5):
        # Old and new attempts hammer the row at once: whatever the interleaving, once the
        # newest holds it no older attempt gets it back.
        results = await asyncio.gather(*(claim(db, row, f"wf/run/1#{n}") for n in (3, 1, 4, 2)))
        assert results[2]  # attempt 4 always wins (nothing newer exists)
        assert await holder(db, row) == "wf/run/1#4"
    assert not any([await claim(db, row, f"wf/run/1#{n}") for n in (1, 2, 3)])
