"""LLM_DAILY_BUDGET_USD as a ledger: reserve an estimate before a call, settle to the real cost after.

`llm_budget` holds one row per UTC day whose `committed_usd` is what settled calls cost plus
what calls in flight have reserved. A reservation is one statement
(`INSERT ... ON CONFLICT DO UPDATE ... WHERE committed_usd + estimate <= limit`): PostgreSQL
locks the day's row, so two workers can never both take the last dollars. Each reservation
is also an `llm_usage` row with status 'reserved', written in the same transaction; settling
updates that row to what the call really used (tokens, cost, outcome) and moves the day's
`committed_usd` by the difference, once (`WHERE status = 'reserved'`), so a settle repeated
after a lost acknowledgement changes nothing.

A worker that dies between reserve and settle leaves its estimate committed: the budget then
errs on the side of spending less, never more.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

# How a call ended, in llm_usage.status:
#   ok: a valid answer; refused: the model declined; invalid: schema violation or truncation
#   (the gateway asks once more); failed: invalid again, given up; error: no answer (HTTP error,
#   timeout), nothing billed.
Outcome = Literal["ok", "refused", "invalid", "failed", "error"]

_RESERVE_BUDGET = text(
    """
    INSERT INTO llm_budget AS b (day, committed_usd, calls) VALUES (:day, :estimate, 1)
    ON CONFLICT (day) DO UPDATE
        SET committed_usd = b.committed_usd + :estimate, calls = b.calls + 1, updated_at = now()
        WHERE b.committed_usd + :estimate <= :limit
    RETURNING committed_usd
    """
)

_INSERT_USAGE = text(
    """
    INSERT INTO llm_usage (day, model, purpose, workflow, status, prompt_tokens, completion_tokens,
                           cached_tokens, cost_usd, reserved_usd, attempt)
    VALUES (:day, :model, :purpose, :workflow, 'reserved', 0, 0, 0, 0, :estimate, :attempt)
    RETURNING id
    """
)

_SETTLE = text(
    """
    WITH settled AS (
        UPDATE llm_usage
           SET status = :status, prompt_tokens = :prompt_tokens, completion_tokens = :completion_tokens,
               cached_tokens = :cached_tokens, cost_usd = :cost, response_id = :response_id,
               error = :error, settled_at = now()
         WHERE id = :id AND status = 'reserved'
        RETURNING day, reserved_usd
    )
    UPDATE llm_budget AS b
       SET committed_usd = greatest(0, b.committed_usd - settled.reserved_usd + :cost), updated_at = now()
      FROM settled
     WHERE b.day = settled.day
    RETURNING b.committed_usd
    """
)

_COMMITTED = text("SELECT committed_usd, calls FROM llm_budget WHERE day = :day")


@dataclass(frozen=True, slots=True)
class Reservation:
    usage_id: int
    estimate_usd: Decimal
    day: dt.date


@dataclass(frozen=True, slots=True)
class Settlement:
    outcome: Outcome
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    response_id: str | None = None
    error: str | None = None


async def reserve(
    engine: AsyncEngine,
    *,
    day: dt.date,
    limit_usd: Decimal,
    estimate_usd: Decimal,
    model: str,
    purpose: str,
    workflow: str | None,
    attempt: int = 1,
) -> Reservation | None:
    """Commit `estimate_usd` of the day's budget to one call, or None when it does not fit."""
    if estimate_usd > limit_usd:
        return None
    async with engine.begin() as conn:
        committed = (
            await conn.execute(_RESERVE_BUDGET, {"day": day, "estimate": estimate_usd, "limit": limit_usd})
        ).scalar_one_or_none()
        if committed is None:
            return None
        usage_id = (
            await conn.execute(
                _INSERT_USAGE,
                {"day": day, "model": model, "purpose": purpose, "workflow": workflow,
                 "estimate": estimate_usd, "attempt": attempt},
            )
        ).scalar_one()
    return Reservation(usage_id=usage_id, estimate_usd=estimate_usd, day=day)


async def settle(engine: AsyncEngine, reservation: Reservation, settlement: Settlement) -> None:
    """Replace the reservation by what the call cost (zero for a call that was not billed)."""
    error = settlement.error.splitlines()[0][:500] if settlement.error else None
    async with engine.begin() as conn:
        await conn.execute(
            _SETTLE,
            {
                "id": reservation.usage_id,
                "status": settlement.outcome,
                "prompt_tokens": settlement.prompt_tokens,
                "completion_tokens": settlement.completion_tokens,
                "cached_tokens": settlement.cached_tokens,
                "cost": settlement.cost_usd,
                "response_id": settlement.response_id,
                "error": error,
            },
        )


async def committed(engine: AsyncEngine, day: dt.date) -> tuple[Decimal, int]:
    """(USD committed, calls reserved) for the day: settled costs plus reservations in flight."""
    async with engine.connect() as conn:
        row = (await conn.execute(_COMMITTED, {"day": day})).one_or_none()
    return (Decimal(row.committed_usd), row.calls) if row else (Decimal(0), 0)
