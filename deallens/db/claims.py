"""Delivery ledgers: claim a row before sending it, settle it after.

A row is sent only by whoever holds its claim. Claiming is one atomic UPDATE of a `pending`
row whose claim is free, expired, or held by an earlier (or the same) attempt of the same
activity: Temporal only retries once that attempt timed out or failed, so it is presumed
gone. Two senders that overlap (a second digest run for the same date, a re-sent
notification while a batch still retries, an attempt that outlived its timeout) therefore
never both send one row.

The rule is monotonic in the attempt number: an attempt that Temporal gave up on but that
still runs (a worker frozen past its heartbeat timeout, then thawed) can never take back a
row a newer attempt holds, and settling requires the exact claim, so it cannot overwrite
the newer attempt's outcome either. `settle` raises ClaimLost when the claim is gone: the
sender has been superseded and must stop sending, or it would race its successor row by row.

The lease (NOTIFY_CLAIM_SECONDS) must outlast one send: SMTP commands time out well before.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

Outcome = Literal["sent", "failed", "retrying", "released"]
Blocker = Literal["settled", "superseded", "busy"]
# An engine (a pooled connection per call), or one connection a batch holds for all its
# rows: no pool checkout and pre-ping per message.
Target = AsyncEngine | AsyncConnection


@contextlib.asynccontextmanager
async def transaction(target: Target) -> AsyncIterator[AsyncConnection]:
    """One committed transaction on `target`."""
    if isinstance(target, AsyncEngine):
        async with target.begin() as conn:
            yield conn
    else:
        async with target.begin():
            yield target

class ClaimLost(Exception):
    """The row's claim is no longer ours (taken over by a newer attempt, or by anyone once the
    lease ran out): the outcome was not written, and the sender must stop its batch."""


def split_claimant(claimant: str) -> tuple[str, int]:
    """`<owner>#<attempt>` -> (owner, attempt); the owner may itself contain '#'."""
    owner, sep, attempt = claimant.rpartition("#")
    if not sep or not owner or not attempt.isdigit():
        raise ValueError(f"claimant must look like <owner>#<attempt number>, got {claimant!r}")
    return owner, int(attempt)


# The holder's owner (everything before the last '#') and attempt (the digits after it).
_HOLDER_OWNER = "substring(claimed_by from '^(.*)#[0-9]+$')"
_HOLDER_ATTEMPT = "CAST(substring(claimed_by from '#([0-9]+)$') AS bigint)"

_SETTLE = {
    "sent": "status = 'sent', sent_at = now(), message_id = :message_id, error = NULL",
    "failed": "status = 'failed', error = :error",
    # A transient failure: pending again, free for the next attempt.
    "retrying": "error = :error",
    # Not tried (the batch stopped first): pending again, the attempt not counted.
    "released": "attempts = greatest(attempts - 1, 0)",
}


@dataclass(frozen=True)
class Ledger:
    table: str
    key: tuple[str, ...]

    def _where(self) -> str:
        return " AND ".join(f"{column} = :{column}" for column in self.key)

    def _claim_sql(self) -> Any:
        return text(
            f"UPDATE {self.table} SET claimed_by = :claimant, "
            "claimed_until = now() + make_interval(secs => CAST(:lease AS double precision)), "
            "attempts = attempts + 1, updated_at = now() "
            f"WHERE {self._where()} AND status = 'pending' AND (claimed_until IS NULL OR claimed_until < now() "
            f"OR ({_HOLDER_OWNER} = :owner AND {_HOLDER_ATTEMPT} <= :attempt))"
        )

    async def blocker(self, engine: Target, key: dict[str, Any], *, claimant: str) -> Blocker:
        """Why `claimant` could not claim the row: it was settled meanwhile (or is gone), a
        newer attempt of the claimant's own activity holds it (Temporal gave up on the
        claimant: stop), or another sender's lease holds it."""
        owner, attempt = split_claimant(claimant)
        sql = text(
            f"SELECT CASE WHEN status <> 'pending' THEN 'settled' "
            f"WHEN {_HOLDER_OWNER} = :owner AND {_HOLDER_ATTEMPT} > :attempt THEN 'superseded' "
            f"ELSE 'busy' END FROM {self.table} WHERE {self._where()}"
        )
        async with transaction(engine) as conn:
            state = (await conn.execute(sql, {**key, "owner": owner, "attempt": attempt})).scalar()
        return "settled" if state is None else state  # type: ignore[no-any-return]

    async def claim(
        self, engine: Target, key: dict[str, Any], *, claimant: str, lease_seconds: float
    ) -> bool:
        """Take the row for one send; counts the attempt. False: sent, settled, or being sent elsewhere."""
        async with transaction(engine) as conn:
            return await self._claim(conn, key, claimant, lease_seconds)

    async def _claim(self, conn: Any, key: dict[str, Any], claimant: str, lease_seconds: float) -> bool:
        owner, attempt = split_claimant(claimant)
        result = await conn.execute(
            self._claim_sql(),
            {**key, "claimant": claimant, "owner": owner, "attempt": attempt, "lease": lease_seconds},
        )
        return bool(result.rowcount == 1)

    async def settle(
        self,
        engine: Target,
        key: dict[str, Any],
        outcome: Outcome,
        *,
        claimant: str,
        message_id: str | None = None,
        error: str | None = None,
        then_claim: dict[str, Any] | None = None,
        lease_seconds: float = 0,
    ) -> bool:
        """Write the outcome right after the send and free the claim, committed at once; with
        `then_claim`, claim the next row in the same transaction (one commit per message, not
        two) and return whether that claim was taken. ClaimLost (nothing written) when the
        row is no longer claimed by `claimant`."""
        sql = text(
            f"UPDATE {self.table} SET {_SETTLE[outcome]}, claimed_by = NULL, claimed_until = NULL, updated_at = now() "
            f"WHERE {self._where()} AND status = 'pending' AND claimed_by = :claimant"
        )
        async with transaction(engine) as conn:
            result = await conn.execute(
                sql, {**key, "claimant": claimant, "message_id": message_id, "error": (error or "")[:2000] or None}
            )
            if result.rowcount != 1:
                raise ClaimLost(f"{self.table} {key}: the claim of {claimant} was taken over")
            if then_claim is not None:
                return await self._claim(conn, then_claim, claimant, lease_seconds)
        return True

    async def park(self, engine: AsyncEngine, where: str, params: dict[str, Any], error: str) -> int:
        """Retries ran out: pending rows nobody is sending become failed, to be listed and re-sent."""
        sql = text(
            f"UPDATE {self.table} SET status = 'failed', error = :error, updated_at = now() "
            f"WHERE {where} AND status = 'pending' AND (claimed_until IS NULL OR claimed_until < now())"
        )
        async with engine.begin() as conn:
            result = await conn.execute(sql, {**params, "error": error[:2000]})
        return result.rowcount
