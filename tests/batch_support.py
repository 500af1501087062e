"""What the Batch API tests share with the worker process they start: the answer schema, the
stand-in's responder for it, and a test-only workflow that runs one job on durable timers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from deallens.contracts import BatchCollectResult, BatchSubmitResult
    from deallens.sim.openai import StructuredRequest
    from workflows.llm_batch import run_batch_job


class Verdict(BaseModel):
    """A small structured answer; the stand-in derives `company` from the prompt."""

    company: str
    stance: Literal["positive", "negative", "neutral"]
    confidence: float = Field(ge=0, le=1)


def verdict_responder(request: StructuredRequest) -> dict[str, Any]:
    asked = [m["content"] for m in request.messages if m["content"].startswith("Company:")]
    company = asked[0].split(":", 1)[1].strip() if asked else "unknown"
    return {"company": company, "stance": "positive", "confidence": 0.75}


def verdict_messages(company: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "Give a verdict on the company, using only the figures given."},
        {"role": "user", "content": f"Company: {company}"},
    ]


class BatchRunInput(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: int
    first_poll_seconds: float = 60
    max_poll_seconds: float = 1800


class BatchRunResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    submitted: BatchSubmitResult
    collected: BatchCollectResult


@workflow.defn(name="TestBatchRun")
class BatchRunWorkflow:
    @workflow.run
    async def run(self, request: BatchRunInput) -> BatchRunResult:
        submitted, collected = await run_batch_job(
            request.job_id,
            first_poll=timedelta(seconds=request.first_poll_seconds),
            max_poll=timedelta(seconds=request.max_poll_seconds),
        )
        return BatchRunResult(submitted=submitted, collected=collected)
