"""Jobs for the OpenAI Batch API: the requests, their budget reservations, their results.

A job is written once by `create_job` (its requests in `llm_batch_items`) and then moved along
by deallens/llm/batch.py: reserved (one budget reservation for the whole job, one llm_usage
row per request, in one transaction), submitted (the batch id recorded in the same statement
that marks it), collected (every request's answer or error and the settlement of its
llm_usage row, in one transaction, each only while still pending, so a repeated collection
stores and bills nothing twice).

Requests name their output schema by import path ("module:QualName" of a pydantic model),
so that the worker that collects, maybe another process days later, validates each answer
with the very model the caller asked for.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import re
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from deallens.db.llm_budget import _RESERVE_BUDGET
from deallens.llm.errors import LLMBatchJobError

# OpenAI's limits for one batch input file.
MAX_REQUESTS = 50_000
MAX_CUSTOM_ID = 64
_CUSTOM_ID = re.compile(r"^[A-Za-z0-9_.:\-]+$")
_ERROR_CHARS = 500

ItemStatus = Literal["ok", "refused", "failed", "error"]


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One chat completion of a batch: the answer must validate against `schema`."""

    custom_id: str
    model: str
    messages: list[dict[str, str]]
    schema: type[BaseModel] | str  # the model, or its "module:QualName"
    max_output_tokens: int


@dataclass(frozen=True, slots=True)
class BatchJob:
    id: int
    purpose: str
    workflow: str | None
    model: str
    marker: str
    status: str
    provider_status: str | None
    batch_id: str | None
    input_file_id: str | None
    output_file_id: str | None
    error_file_id: str | None
    requests: int
    done: int
    failed: int
    succeeded: int
    reserved_usd: Decimal
    error: str | None


@dataclass(frozen=True, slots=True)
class BatchItem:
    custom_id: str
    schema_ref: str
    messages: list[dict[str, str]]
    max_output_tokens: int
    status: str
    usage_id: int | None


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    """What collection found for one request; cost is at the Batch price, zero when not billed."""

    custom_id: str
    status: ItemStatus
    output: dict[str, Any] | None = None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    response_id: str | None = None


@dataclass(frozen=True, slots=True)
class BatchResult:
    """One request's result: `output` is an instance of the request's schema when status is "ok"."""

    custom_id: str
    status: str
    output: BaseModel | None
    error: str | None
    usage_id: int | None


def schema_ref(schema: type[BaseModel]) -> str:
    """The import path a later process resolves the schema by."""
    if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        raise LLMBatchJobError(f"a batch request's schema must be a pydantic model class, got {schema!r}")
    ref = f"{schema.__module__}:{schema.__qualname__}"
    if "<locals>" in ref or schema.__module__ == "__main__":
        raise LLMBatchJobError(f"schema {ref} is not importable by name; define it at module level of a package")
    return ref


def resolve_schema(ref: str) -> type[BaseModel]:
    """The pydantic model named by `ref`, or LLMBatchJobError naming what is wrong."""
    module_name, _, qualname = ref.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError, ValueError):
        raise LLMBatchJobError(f"schema {ref!r} cannot be imported") from None
    if not (isinstance(target, type) and issubclass(target, BaseModel)):
        raise LLMBatchJobError(f"schema {ref!r} is not a pydantic model")
    return target


def _clip(message: str | None) -> str | None:
    if message is None:
        return None
    line = " ".join(message.split())
    return line[:_ERROR_CHARS]


def _validated(requests: Sequence[BatchRequest]) -> tuple[str, list[dict[str, Any]]]:
    """(the job's model, rows for llm_batch_items), or LLMBatchJobError with one line."""
    if not requests:
        raise LLMBatchJobError("a batch job needs at least one request")
    if len(requests) > MAX_REQUESTS:
        raise LLMBatchJobError(f"a batch job holds at most {MAX_REQUESTS} requests, got {len(requests)}")
    models = {r.model for r in requests}
    if len(models) != 1:
        raise LLMBatchJobError(f"every request of a batch job must use one model (OpenAI's rule), got {sorted(models)}")
    seen: set[str] = set()
    rows = []
    for request in requests:
        cid = request.custom_id
        if not cid or len(cid) > MAX_CUSTOM_ID or not _CUSTOM_ID.match(cid):
            raise LLMBatchJobError(
                f"custom_id {cid!r}: 1 to {MAX_CUSTOM_ID} characters of letters, digits, '_', '.', ':' or '-'"
            )
        if cid in seen:
            raise LLMBatchJobError(f"custom_id {cid!r} appears twice in the batch job")
        seen.add(cid)
        if request.max_output_tokens < 1:
            raise LLMBatchJobError(f"custom_id {cid!r}: max_output_tokens must be at least 1")
        if not request.messages or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in request.messages
        ):
            raise LLMBatchJobError(f"custom_id {cid!r}: messages must be a non-empty list of {{role, content}} strings")
        ref = request.schema if isinstance(request.schema, str) else schema_ref(request.schema)
        resolve_schema(ref)
        rows.append({
            "custom_id": cid, "schema_ref": ref, "messages": request.messages,
            "max_output_tokens": request.max_output_tokens,
        })
    return next(iter(models)), rows


_INSERT_JOB = text(
    """
    INSERT INTO llm_batch_jobs (purpose, workflow, model, marker, requests)
    VALUES (:purpose, :workflow, :model, :marker, :requests)
    RETURNING id
    """
)

_INSERT_ITEMS = text(
    """
    INSERT INTO llm_batch_items (job_id, custom_id, schema_ref, messages, max_output_tokens)
    SELECT :job_id, r.custom_id, r.schema_ref, r.messages, r.max_output_tokens
      FROM jsonb_to_recordset(CAST(:rows AS jsonb))
           AS r(custom_id text, schema_ref text, messages jsonb, max_output_tokens int)
    """
)


async def create_job(
    engine: AsyncEngine, *, purpose: str, workflow: str | None, requests: Sequence[BatchRequest]
) -> int:
    """A new job holding `requests` (nothing is sent yet); its id for llm.batch_submit."""
    model, rows = _validated(requests)
    if not purpose or len(purpose) > 32:
        raise LLMBatchJobError("purpose must be 1 to 32 characters")
    async with engine.begin() as conn:
        job_id = (
            await conn.execute(
                _INSERT_JOB,
                {"purpose": purpose, "workflow": workflow, "model": model,
                 "marker": f"deallens-batch-{secrets.token_hex(12)}", "requests": len(rows)},
            )
        ).scalar_one()
        await conn.execute(_INSERT_ITEMS, {"job_id": job_id, "rows": json.dumps(rows)})
    return int(job_id)


_JOB_COLUMNS = (
    "id, purpose, workflow, model, marker, status, provider_status, batch_id, input_file_id, output_file_id, "
    "error_file_id, requests, done, failed, succeeded, reserved_usd, error"
)


async def load_job(conn: AsyncConnection, job_id: int, *, for_update: bool = False) -> BatchJob | None:
    lock = " FOR UPDATE" if for_update else ""
    row = (await conn.execute(text(f"SELECT {_JOB_COLUMNS} FROM llm_batch_jobs WHERE id = :id{lock}"), {"id": job_id})).one_or_none()
    return BatchJob(**row._mapping) if row is not None else None


async def get_job(engine: AsyncEngine, job_id: int) -> BatchJob | None:
    async with engine.connect() as conn:
        return await load_job(conn, job_id)


async def load_items(engine: AsyncEngine, job_id: int) -> list[BatchItem]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT custom_id, schema_ref, messages, max_output_tokens, status, usage_id "
                "FROM llm_batch_items WHERE job_id = :id ORDER BY id"
            ),
            {"id": job_id},
        )
        return [BatchItem(**row._mapping) for row in rows]


_RESERVE_ITEMS = text(
    """
    WITH estimates AS (
        SELECT i.id AS item_id, r.estimate,
               nextval(pg_get_serial_sequence('llm_usage', 'id')) AS usage_id
          FROM llm_batch_items i
          JOIN jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(custom_id text, estimate numeric)
            ON r.custom_id = i.custom_id
         WHERE i.job_id = :job_id
    ), usage AS (
        INSERT INTO llm_usage (id, day, model, purpose, workflow, status, prompt_tokens, completion_tokens,
                               cached_tokens, cost_usd, reserved_usd, attempt)
        SELECT usage_id, :day, :model, :purpose, :workflow, 'reserved', 0, 0, 0, 0, estimate, 1 FROM estimates
    )
    UPDATE llm_batch_items i SET usage_id = e.usage_id FROM estimates e WHERE i.id = e.item_id
    """
)


async def reserve_job(
    engine: AsyncEngine, job: BatchJob, *, day: dt.date, limit_usd: Decimal, estimates: dict[str, Decimal]
) -> bool:
    """Commit the job's whole estimate of the day's budget, or nothing: False when it does not fit.

    One llm_usage row per request (status 'reserved', its own estimate), written with the
    budget update and the job's new status in one transaction; a job already reserved is left
    as it is (True).
    """
    total = sum(estimates.values(), Decimal(0))
    async with engine.begin() as conn:
        current = await load_job(conn, job.id, for_update=True)
        if current is None or current.status != "pending":
            return current is not None and current.status != "rejected"
        if total > limit_usd:
            return False
        committed = (
            await conn.execute(_RESERVE_BUDGET, {"day": day, "estimate": total, "limit": limit_usd})
        ).scalar_one_or_none()
        if committed is None:
            return False
        # One call per request in the day's count (the reservation statement counted one).
        await conn.execute(
            text("UPDATE llm_budget SET calls = calls + :more WHERE day = :day"),
            {"more": len(estimates) - 1, "day": day},
        )
        await conn.execute(
            _RESERVE_ITEMS,
            {"job_id": job.id, "day": day, "model": job.model, "purpose": job.purpose, "workflow": job.workflow,
             "rows": json.dumps([{"custom_id": c, "estimate": str(e)} for c, e in estimates.items()])},
        )
        await conn.execute(
            text("UPDATE llm_batch_jobs SET status = 'reserved', reserved_usd = :total, updated_at = now() WHERE id = :id"),
            {"id": job.id, "total": total},
        )
    return True


async def reject_job(engine: AsyncEngine, job_id: int, reason: str) -> None:
    """Mark a job that will not be sent (no key, no budget, a permanent refusal of the submission)."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE llm_batch_jobs SET status = 'rejected', error = :reason, updated_at = now() "
                "WHERE id = :id AND status IN ('pending', 'reserved') AND batch_id IS NULL"
            ),
            {"id": job_id, "reason": _clip(reason)},
        )


async def record_submission(
    engine: AsyncEngine, job_id: int, *, batch_id: str, input_file_id: str, provider_status: str
) -> str:
    """Record the batch the job was sent as; returns the job's batch id (an earlier one if already recorded)."""
    async with engine.begin() as conn:
        recorded = (
            await conn.execute(
                text(
                    "UPDATE llm_batch_jobs SET batch_id = :batch_id, input_file_id = :file_id, status = 'submitted', "
                    "provider_status = :provider_status, submitted_at = now(), updated_at = now() "
                    "WHERE id = :id AND batch_id IS NULL RETURNING batch_id"
                ),
                {"id": job_id, "batch_id": batch_id, "file_id": input_file_id, "provider_status": provider_status},
            )
        ).scalar_one_or_none()
        if recorded is None:
            recorded = (
                await conn.execute(text("SELECT batch_id FROM llm_batch_jobs WHERE id = :id"), {"id": job_id})
            ).scalar_one()
    return str(recorded)


async def record_poll(
    engine: AsyncEngine,
    job_id: int,
    *,
    provider_status: str,
    done: int,
    failed: int,
    output_file_id: str | None,
    error_file_id: str | None,
) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE llm_batch_jobs SET provider_status = :status, done = :done, failed = :failed, "
                "output_file_id = coalesce(:output, output_file_id), error_file_id = coalesce(:errors, error_file_id), "
                "updated_at = now() WHERE id = :id AND status = 'submitted'"
            ),
            {"id": job_id, "status": provider_status, "done": done, "failed": failed,
             "output": output_file_id, "errors": error_file_id},
        )


_STORE_RESULTS = text(
    """
    WITH results AS (
        SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb))
            AS r(custom_id text, status text, output jsonb, error text, prompt_tokens int, completion_tokens int,
                 cached_tokens int, cost numeric, response_id text)
    ), items AS (
        UPDATE llm_batch_items i
           SET status = r.status, output = r.output, error = r.error
          FROM results r
         WHERE i.job_id = :job_id AND i.custom_id = r.custom_id AND i.status = 'pending'
        RETURNING i.usage_id, r.*
    ), usage AS (
        UPDATE llm_usage u
           SET status = items.status, prompt_tokens = items.prompt_tokens, completion_tokens = items.completion_tokens,
               cached_tokens = items.cached_tokens, cost_usd = items.cost, response_id = items.response_id,
               error = items.error, settled_at = now()
          FROM items
         WHERE u.id = items.usage_id AND u.status = 'reserved'
        RETURNING u.day, u.reserved_usd, u.cost_usd
    ), per_day AS (
        SELECT day, sum(reserved_usd) AS reserved, sum(cost_usd) AS cost FROM usage GROUP BY day
    )
    UPDATE llm_budget b
       SET committed_usd = greatest(0, b.committed_usd - per_day.reserved + per_day.cost), updated_at = now()
      FROM per_day
     WHERE b.day = per_day.day
    """
)

_FINISH_JOB = text(
    """
    UPDATE llm_batch_jobs j
       SET status = CASE WHEN j.status = 'rejected' THEN 'rejected' ELSE 'collected' END,
           collected_at = coalesce(j.collected_at, now()), updated_at = now(),
           succeeded = c.ok, failed = c.not_ok
      FROM (SELECT count(*) FILTER (WHERE status = 'ok') AS ok,
                   count(*) FILTER (WHERE status NOT IN ('ok', 'pending')) AS not_ok
              FROM llm_batch_items WHERE job_id = :job_id) c
     WHERE j.id = :job_id AND j.status <> 'collected'
    """
)


async def store_results(engine: AsyncEngine, job_id: int, outcomes: Sequence[ItemOutcome]) -> tuple[int, int]:
    """Store each still-pending request's outcome and settle its reservation, then close the job.

    Returns the job's (succeeded, failed). Set-based, one transaction: a second call with the
    same outcomes changes nothing.
    """
    rows = [
        {
            "custom_id": o.custom_id, "status": o.status, "output": o.output, "error": _clip(o.error),
            "prompt_tokens": o.prompt_tokens, "completion_tokens": o.completion_tokens,
            "cached_tokens": o.cached_tokens, "cost": str(o.cost_usd), "response_id": (o.response_id or None) and o.response_id[:64],
        }
        for o in outcomes
    ]
    async with engine.begin() as conn:
        await load_job(conn, job_id, for_update=True)
        await conn.execute(_STORE_RESULTS, {"job_id": job_id, "rows": json.dumps(rows)})
        await conn.execute(_FINISH_JOB, {"job_id": job_id})
        row = (
            await conn.execute(text("SELECT succeeded, failed FROM llm_batch_jobs WHERE id = :id"), {"id": job_id})
        ).one()
    return int(row.succeeded), int(row.failed)


async def reject_output(engine: AsyncEngine, job_id: int, custom_id: str, reason: str) -> bool:
    """Turn a schema-valid answer the caller's own check refuses (an invented figure) into a failed one.

    The answer was billed and stays billed; its llm_usage row and the job's counts say failed.
    False when the request is not (or no longer) "ok": a repeated rejection changes nothing.
    """
    async with engine.begin() as conn:
        usage_id = (
            await conn.execute(
                text(
                    "UPDATE llm_batch_items SET status = 'failed', output = NULL, error = :reason "
                    "WHERE job_id = :job_id AND custom_id = :custom_id AND status = 'ok' RETURNING usage_id"
                ),
                {"job_id": job_id, "custom_id": custom_id, "reason": _clip(f"rejected: {reason}")},
            )
        ).one_or_none()
        if usage_id is None:
            return False
        await conn.execute(
            text("UPDATE llm_usage SET status = 'failed', error = :reason WHERE id = :id"),
            {"id": usage_id[0], "reason": _clip(f"rejected: {reason}")},
        )
        await conn.execute(
            text(
                "UPDATE llm_batch_jobs SET succeeded = greatest(0, succeeded - 1), failed = failed + 1, "
                "updated_at = now() WHERE id = :id"
            ),
            {"id": job_id},
        )
    return True


async def job_results(engine: AsyncEngine, job_id: int) -> AsyncIterator[BatchResult]:
    """Each request's result in the order they were given: output validated by its schema."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT custom_id, schema_ref, status, output, error, usage_id "
                    "FROM llm_batch_items WHERE job_id = :id ORDER BY id"
                ),
                {"id": job_id},
            )
        ).all()
    schemas: dict[str, type[BaseModel]] = {}
    for row in rows:
        output = None
        if row.status == "ok" and row.output is not None:
            schema = schemas.get(row.schema_ref) or schemas.setdefault(row.schema_ref, resolve_schema(row.schema_ref))
            output = schema.model_validate(row.output)
        yield BatchResult(custom_id=row.custom_id, status=row.status, output=output, error=row.error, usage_id=row.usage_id)
