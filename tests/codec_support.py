"""A workflow and activities for the codec and payload-size tests (test-only types).

Small on purpose: what is under test is what the data converter does to their inputs and
results on the way to the server and back, not what they compute.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import activity, workflow
from temporalio.common import RetryPolicy


class EchoInput(BaseModel):
    note: str = Field(max_length=10_000)
    # Characters of filler the activity returns (the payload-size tests).
    result_chars: int = Field(default=0, ge=0, le=10_000_000)


class EchoResult(BaseModel):
    note: str
    filler: str = ""


@activity.defn(name="TestCodecEcho")
async def echo(params: EchoInput) -> EchoResult:
    return EchoResult(note=params.note.upper(), filler="x" * params.result_chars)


@workflow.defn(name="TestCodecEcho")
class EchoWorkflow:
    @workflow.run
    async def run(self, params: EchoInput) -> EchoResult:
        return await workflow.execute_activity(
            echo,
            params,
            start_to_close_timeout=timedelta(seconds=30),
            # Several attempts allowed: a payload guard that let its error be retried would show.
            retry_policy=RetryPolicy(maximum_attempts=3, initial_interval=timedelta(milliseconds=100)),
        )
