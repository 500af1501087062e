"""Half-price bulk runs: a job of deallens/db/llm_batches.py through the OpenAI Batch API.

submit: reserve the whole job's estimate (at the Batch price) from today's budget, build the
  JSONL (one /v1/chat/completions body per request: strict json_schema, temperature 0), upload
  it (files, purpose "batch"), create the batch (completion window 24h), record the batch id.
  Idempotent: the job's `marker` goes into the batch's metadata and the file's name, so an
  attempt that died after the API call and before the commit is found again (batches and files
  are listed, by an attempt that finds the job already reserved) rather than paid for twice;
  a session advisory lock keeps two attempts of the same job from running at once.
poll: the batch's status and counts, recorded on the job.
collect: download the output and error files, validate each answer with the request's schema
  (a refusal, a truncated answer or a schema violation is a failed request, billed; an error
  line is not billed), and store each result and settle its reservation to the Batch price,
  once (deallens/db/llm_batches.store_results).

Batch answers are not asked again as the gateway does for a bad synchronous answer: the caller
decides what a failed request becomes (another batch, a synchronous call, a fallback).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import openai
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel, ValidationError
from sqlalchemy import text

from deallens.db import llm_batches
from deallens.db.llm_batches import BatchItem, BatchJob, ItemOutcome
from deallens.llm.errors import (
    PROVIDER,
    LLMBatchBusy,
    LLMBatchJobError,
    LLMBatchNotFinished,
    LLMConfigError,
    LLMServerError,
)
from deallens.llm.gateway import LLMGateway, _schema_name, estimate_prompt_tokens, map_error
from deallens.llm.prices import ModelPrice

log = logging.getLogger(__name__)

ENDPOINT = "/v1/chat/completions"
COMPLETION_WINDOW = "24h"
MARKER_KEY = "deallens_job"
# Statuses after which a batch no longer changes.
FINISHED = frozenset({"completed", "failed", "expired", "cancelled"})
# How many recent batches and files are searched for an orphan of a lost submission.
ORPHAN_SCAN = 500
# classid of pg_try_advisory_lock(classid, objid) for batch submissions ("LLMB").
_LOCK_CLASS = 0x4C4C4D42
_ERROR_CHARS = 300


@dataclass(frozen=True, slots=True)
class SubmitOutcome:
    batch_id: str | None
    requests: int
    status: str  # "submitted", "rejected", "collected"
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class PollOutcome:
    status: str
    done: int
    failed: int
    total: int

    @property
    def finished(self) -> bool:
        return self.status in FINISHED or self.status in ("rejected", "collected")


def _clip(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= _ERROR_CHARS else line[: _ERROR_CHARS - 1] + "…"


def _mapped(error: Exception) -> Exception:
    mapped = map_error(error)
    return mapped if mapped is not None else error


class BatchRunner:
    """The Batch API path of one LLMGateway: its client, prices, budget and ledger."""

    def __init__(self, gateway: LLMGateway) -> None:
        self._gateway = gateway
        self._engine = gateway.engine
        self._client = gateway.client

    def _price(self, model: str) -> ModelPrice:
        price = self._gateway.prices.get(model)
        if price is None:
            raise LLMConfigError(PROVIDER, f"no price for model {model!r} in the price table (OPENAI_PRICES_FILE)")
        return price.batch()

    # ------------------------------------------------------------------ submit

    async def submit(self, job_id: int) -> SubmitOutcome:
        async with self._engine.connect() as lock:
            locked = (
                await lock.execute(
                    text("SELECT pg_try_advisory_lock(:c, :o)"), {"c": _LOCK_CLASS, "o": job_id % 2**31}
                )
            ).scalar_one()
            await lock.commit()
            if not locked:
                raise LLMBatchBusy(PROVIDER, f"batch job {job_id} is being submitted by another attempt")
            try:
                return await self._submit(job_id)
            finally:
                await lock.execute(
                    text("SELECT pg_advisory_unlock(:c, :o)"), {"c": _LOCK_CLASS, "o": job_id % 2**31}
                )
                await lock.commit()

    async def _submit(self, job_id: int) -> SubmitOutcome:
        job = await self._job(job_id)
        if job.batch_id is not None:
            return SubmitOutcome(job.batch_id, job.requests, "submitted")
        if job.status in ("rejected", "collected"):
            return SubmitOutcome(None, job.requests, job.status, job.error)
        reason = self._gateway.unavailable_reason
        if reason is not None:
            message = "LLM calls are switched off (LLM_ENABLED=false)" if reason == "disabled" else "OPENAI_API_KEY is not set"
            return await self._reject(job, message)
        # API calls happen only after the reservation commits: a job still pending has none to find.
        resumed = job.status == "reserved"
        items = await llm_batches.load_items(self._engine, job_id)
        price = self._price(job.model)
        formats: dict[str, dict[str, Any]] = {}
        lines = [_line(job, item, formats) for item in items]
        if job.status == "pending":
            estimates = {
                item.custom_id: price.cost(
                    prompt_tokens=estimate_prompt_tokens(item.messages, line["body"]["response_format"]["json_schema"]["schema"]),
                    completion_tokens=item.max_output_tokens,
                )
                for item, line in zip(items, lines, strict=True)
            }
            budget = self._gateway.daily_budget_usd
            if not await llm_batches.reserve_job(
                self._engine, job, day=self._gateway.today(), limit_usd=budget, estimates=estimates
            ):
                total = sum(estimates.values(), Decimal(0))
                return await self._reject(
                    job, f"today's LLM budget (LLM_DAILY_BUDGET_USD={budget}) cannot cover batch job {job.id} "
                    f"of {job.requests} requests estimated at ${total} (Batch price)"
                )
        try:
            batch = await self._find_orphan(job) if resumed else None
            if batch is None:
                file_id = (await self._find_file(job) if resumed else None) or await self._upload(job, lines)
                batch = await self._client.batches.create(
                    input_file_id=file_id,
                    endpoint=ENDPOINT,
                    completion_window=COMPLETION_WINDOW,
                    metadata={MARKER_KEY: job.marker, "purpose": job.purpose},
                )
            else:
                log.info("batch job %s: adopting batch %s from an earlier attempt", job.id, batch.id)
        except openai.OpenAIError as error:
            mapped = _mapped(error)
            if isinstance(mapped, LLMConfigError):
                # Refused for good (bad key, no quota, a request the API rejects): give the budget back.
                await self._reject(job, str(mapped))
                return SubmitOutcome(None, job.requests, "rejected", str(mapped))
            raise mapped from None
        batch_id = await llm_batches.record_submission(
            self._engine, job.id, batch_id=batch.id, input_file_id=batch.input_file_id, provider_status=batch.status
        )
        return SubmitOutcome(batch_id, job.requests, "submitted")

    async def _reject(self, job: BatchJob, reason: str) -> SubmitOutcome:
        """The job will not be sent: its requests are stored as errors and any reservation is released."""
        log.info("batch job %s not sent: %s", job.id, reason)
        await llm_batches.reject_job(self._engine, job.id, reason)
        items = await llm_batches.load_items(self._engine, job.id)
        await llm_batches.store_results(
            self._engine, job.id,
            [ItemOutcome(i.custom_id, "error", error=f"not sent: {reason}") for i in items if i.status == "pending"],
        )
        return SubmitOutcome(None, job.requests, "rejected", _clip(reason))

    async def _job(self, job_id: int) -> BatchJob:
        job = await llm_batches.get_job(self._engine, job_id)
        if job is None:
            raise LLMBatchJobError(f"batch job {job_id} does not exist")
        return job

    async def _find_orphan(self, job: BatchJob) -> Any:
        seen = 0
        async for batch in self._client.batches.list(limit=100):
            if batch.metadata and batch.metadata.get(MARKER_KEY) == job.marker:
                return batch
            seen += 1
            if seen >= ORPHAN_SCAN:
                break
        return None

    async def _find_file(self, job: BatchJob) -> str | None:
        name = f"{job.marker}.jsonl"
        seen = 0
        async for stored in self._client.files.list(purpose="batch", limit=100):
            if stored.filename == name:
                return stored.id
            seen += 1
            if seen >= ORPHAN_SCAN:
                break
        return None

    async def _upload(self, job: BatchJob, lines: list[dict[str, Any]]) -> str:
        content = "".join(json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n" for line in lines)
        stored = await self._client.files.create(
            file=(f"{job.marker}.jsonl", io.BytesIO(content.encode("utf-8")), "application/jsonl"), purpose="batch"
        )
        return stored.id

    # ------------------------------------------------------------------ poll

    async def poll(self, job_id: int) -> PollOutcome:
        job = await self._job(job_id)
        if job.batch_id is None or job.status == "collected":
            status = job.status if job.status in ("rejected", "collected") else "pending"
            return PollOutcome(status, job.done, job.failed, job.requests)
        try:
            batch = await self._client.batches.retrieve(job.batch_id)
        except openai.OpenAIError as error:
            raise _mapped(error) from None
        counts = batch.request_counts
        done = counts.completed if counts else 0
        failed = counts.failed if counts else 0
        await llm_batches.record_poll(
            self._engine, job.id, provider_status=batch.status, done=done, failed=failed,
            output_file_id=batch.output_file_id, error_file_id=batch.error_file_id,
        )
        return PollOutcome(batch.status, done, failed, counts.total if counts else job.requests)

    # ------------------------------------------------------------------ collect

    async def collect(self, job_id: int, *, progress: Callable[[str], None] = lambda _: None) -> tuple[int, int]:
        """(succeeded, failed) of the job, storing each result once."""
        job = await self._job(job_id)
        if job.status == "collected":
            return job.succeeded, job.failed
        if job.batch_id is None:
            if job.status == "rejected":
                return await llm_batches.store_results(self._engine, job.id, [])
            raise LLMBatchJobError(f"batch job {job_id} was never submitted; run llm.batch_submit first")
        try:
            batch = await self._client.batches.retrieve(job.batch_id)
            if batch.status not in FINISHED:
                raise LLMBatchNotFinished(PROVIDER, f"batch {batch.id} is still {batch.status}; poll until it finishes")
            lines: dict[str, dict[str, Any]] = {}
            for file_id in (batch.error_file_id, batch.output_file_id):  # an answer wins over an error line
                if file_id:
                    content = await self._client.files.content(file_id)
                    progress(f"downloaded {file_id}")
                    for raw in content.text.splitlines():
                        if raw.strip():
                            line = json.loads(raw)
                            lines[str(line.get("custom_id"))] = line
        except openai.OpenAIError as error:
            raise _mapped(error) from None
        except json.JSONDecodeError as error:
            raise LLMServerError(PROVIDER, f"batch {job.batch_id}: a result file is not JSONL ({error.msg})") from None
        price = self._price(job.model)
        items = await llm_batches.load_items(self._engine, job_id)
        schemas: dict[str, type[BaseModel]] = {}
        outcomes = []
        status = batch.status
        if batch.status == "failed" and batch.errors and batch.errors.data:
            first = batch.errors.data[0]
            status = f"failed: {first.code}: {first.message}"  # the input was refused at validation
        for item in items:
            if item.status != "pending":
                continue
            schema = schemas.get(item.schema_ref) or schemas.setdefault(
                item.schema_ref, llm_batches.resolve_schema(item.schema_ref)
            )
            outcomes.append(_outcome(item, lines.get(item.custom_id), schema, price, status))
        progress(f"validated {len(outcomes)} results")
        return await llm_batches.store_results(self._engine, job_id, outcomes)


def _response_format(schema_ref: str) -> dict[str, Any]:
    schema = llm_batches.resolve_schema(schema_ref)
    return {
        "type": "json_schema",
        "json_schema": {"name": _schema_name(schema), "schema": to_strict_json_schema(schema), "strict": True},
    }


def _line(job: BatchJob, item: BatchItem, formats: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One request of the input file; `formats` caches each schema's response_format (built once per job)."""
    response_format = formats.get(item.schema_ref) or formats.setdefault(item.schema_ref, _response_format(item.schema_ref))
    return {
        "custom_id": item.custom_id,
        "method": "POST",
        "url": ENDPOINT,
        "body": {
            "model": job.model,
            "messages": item.messages,
            "response_format": response_format,
            "temperature": 0,
            "max_completion_tokens": item.max_output_tokens,
        },
    }


def _outcome(
    item: BatchItem, line: dict[str, Any] | None, schema: type[BaseModel], price: ModelPrice, batch_status: str
) -> ItemOutcome:
    """What one result line means for its request."""
    cid = item.custom_id
    if line is None:
        return ItemOutcome(cid, "error", error=f"no result for this request (batch {batch_status})")
    response = line.get("response") or {}
    body = response.get("body") if isinstance(response, dict) else None
    if line.get("error") or response.get("status_code") != 200 or not isinstance(body, dict):
        error = line.get("error") or (body or {}).get("error") or {}
        message = error.get("message") if isinstance(error, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        status = response.get("status_code") if isinstance(response, dict) else None
        return ItemOutcome(cid, "error", error=_clip(f"{status or code or 'error'}: {message or 'no answer'}"))
    usage = body.get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    tokens = {
        "prompt_tokens": int(usage.get("prompt_tokens") or 0),
        "completion_tokens": int(usage.get("completion_tokens") or 0),
        "cached_tokens": int(details.get("cached_tokens") or 0),
    }
    billed = {**tokens, "cost_usd": price.cost(**tokens), "response_id": body.get("id")}
    choices = body.get("choices") or [{}]
    message = choices[0].get("message") or {}
    if message.get("refusal"):
        return ItemOutcome(cid, "refused", error=_clip(f"refused: {message['refusal']}"), **billed)
    if choices[0].get("finish_reason") == "length":
        return ItemOutcome(
            cid, "failed", error=f"the answer was cut off at {item.max_output_tokens} output tokens (finish_reason length)",
            **billed,
        )
    try:
        output = schema.model_validate_json(message.get("content") or "")
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "(root)"
        return ItemOutcome(
            cid, "failed", error=_clip(f"the answer does not match the {_schema_name(schema)} schema at {where}: {first['msg']}"),
            **billed,
        )
    return ItemOutcome(cid, "ok", output=output.model_dump(mode="json"), **billed)
