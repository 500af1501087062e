"""Run a batch job to its end from inside a workflow: submit, wait on durable timers, collect.

The waits are workflow timers, so a worker restart (or a Temporal server restart) in the
middle of a 24 h batch loses nothing: the next worker replays to the timer and polls on. Polls
back off from `first_poll` doubling to `max_poll`; OpenAI finishes (or expires) a batch within
its 24 h window, so the loop ends. A poll that fails after all its retries (an outage of
the API) does not end the run: the next timer polls again. Only the job id and counts enter
the history.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.llm_batch import LLMBatchActivities
    from deallens.contracts import (
        BatchCollectInput,
        BatchCollectResult,
        BatchPollInput,
        BatchPollResult,
        BatchSubmitInput,
        BatchSubmitResult,
    )
    from workflows import queues
    from workflows.policies import (
        LLM_BATCH_COLLECT_TIMEOUT,
        LLM_BATCH_HEARTBEAT,
        LLM_BATCH_POLL_TIMEOUT,
        LLM_BATCH_RETRY,
        LLM_BATCH_SUBMIT_TIMEOUT,
    )

FIRST_POLL = timedelta(minutes=1)
MAX_POLL = timedelta(minutes=30)


async def run_batch_job(
    job_id: int, *, first_poll: timedelta = FIRST_POLL, max_poll: timedelta = MAX_POLL
) -> tuple[BatchSubmitResult, BatchCollectResult]:
    """Submit the job, poll until its batch is finished, store its results; (submission, collection)."""
    llm_queue = queues.provider_queue(workflow.info().task_queue, queues.LLM_SUFFIX)
    submitted: BatchSubmitResult = await workflow.execute_activity_method(
        LLMBatchActivities.submit,
        BatchSubmitInput(job_id=job_id),
        task_queue=llm_queue,
        start_to_close_timeout=LLM_BATCH_SUBMIT_TIMEOUT,
        retry_policy=LLM_BATCH_RETRY,
        summary=f"submit batch job {job_id} to the Batch API",
    )
    if submitted.status == "submitted":
        delay = first_poll
        while True:
            await workflow.sleep(delay, summary=f"batch job {job_id}: next poll")
            delay = min(delay * 2, max_poll)
            try:
                polled: BatchPollResult = await workflow.execute_activity_method(
                    LLMBatchActivities.poll,
                    BatchPollInput(job_id=job_id),
                    task_queue=llm_queue,
                    start_to_close_timeout=LLM_BATCH_POLL_TIMEOUT,
                    retry_policy=LLM_BATCH_RETRY,
                    summary=f"poll batch job {job_id}",
                )
            except ActivityError as error:
                # The batch lives on at OpenAI whatever happens to a poll: an API outage longer
                # than the retries is waited out on the next timer; only a permanent error ends the run.
                if isinstance(error.cause, ApplicationError) and error.cause.non_retryable:
                    raise
                workflow.logger.warning("batch job %s: polling failed (%s); polling again later", job_id, error.cause)
                continue
            if polled.finished:
                break
    collected: BatchCollectResult = await workflow.execute_activity_method(
        LLMBatchActivities.collect,
        BatchCollectInput(job_id=job_id),
        task_queue=llm_queue,
        start_to_close_timeout=LLM_BATCH_COLLECT_TIMEOUT,
        heartbeat_timeout=LLM_BATCH_HEARTBEAT,
        retry_policy=LLM_BATCH_RETRY,
        summary=f"collect and store batch job {job_id}",
    )
    return submitted, collected
