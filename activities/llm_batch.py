"""llm.batch_submit / llm.batch_poll / llm.batch_collect on the deallens-llm queue.

Thin adapters over deallens/llm/batch.py. Each is idempotent (a retried submit finds the batch
it already made, a retried collect stores nothing twice), so Temporal may retry them freely:
transient API failures (429, 5xx, timeouts, another attempt holding the job) are retryable,
an unknown job or a job that cannot run is non-retryable with one line.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import permanent_database_errors, to_application_error
from deallens.contracts import (
    BatchCollectInput,
    BatchCollectResult,
    BatchPollInput,
    BatchPollResult,
    BatchSubmitInput,
    BatchSubmitResult,
)
from deallens.llm.batch import BatchRunner
from deallens.llm.errors import LLMBatchJobError
from deallens.llm.gateway import LLMGateway
from deallens.providers.errors import ProviderError


def _invalid(error: LLMBatchJobError) -> ApplicationError:
    return ApplicationError(f"invalid input: {error}", type="InvalidInput", non_retryable=True)


class LLMBatchActivities:
    def __init__(self, gateway: LLMGateway) -> None:
        self._runner = BatchRunner(gateway)

    @activity.defn(name="llm.batch_submit")
    async def submit(self, request: BatchSubmitInput) -> BatchSubmitResult:
        try:
            with permanent_database_errors():
                outcome = await self._runner.submit(request.job_id)
        except ProviderError as error:
            raise to_application_error(error) from None
        except LLMBatchJobError as error:
            raise _invalid(error) from None
        return BatchSubmitResult(
            batch_id=outcome.batch_id, requests=outcome.requests, status=outcome.status,  # type: ignore[arg-type]
            reason=outcome.reason,
        )

    @activity.defn(name="llm.batch_poll")
    async def poll(self, request: BatchPollInput) -> BatchPollResult:
        try:
            with permanent_database_errors():
                outcome = await self._runner.poll(request.job_id)
        except ProviderError as error:
            raise to_application_error(error) from None
        except LLMBatchJobError as error:
            raise _invalid(error) from None
        return BatchPollResult(
            status=outcome.status, done=outcome.done, failed=outcome.failed, total=outcome.total,
            finished=outcome.finished,
        )

    @activity.defn(name="llm.batch_collect")
    async def collect(self, request: BatchCollectInput) -> BatchCollectResult:
        try:
            with permanent_database_errors():
                succeeded, failed = await self._runner.collect(request.job_id, progress=activity.heartbeat)
        except ProviderError as error:
            raise to_application_error(error) from None
        except LLMBatchJobError as error:
            raise _invalid(error) from None
        return BatchCollectResult(succeeded=succeeded, failed=failed)
