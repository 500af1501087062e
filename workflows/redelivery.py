"""RetryParkedDeliveries: parked deliveries are tried again before they need a person.

Started by the `retry-parked-deliveries` schedule every 15 minutes. One activity re-queues the
parked rows whose automatic retry has come (deallens/domain/redelivery.py: three times over
about ten hours, further apart each time) and the workflow starts their notification work
again: `notify-<id>` per firing (the ledger sends only what is not sent yet), one digest run
per (kind, date). What is still parked after the last automatic retry is what
`starter.py notifications failed` lists as needing a human.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.redelivery import RedeliveryActivities
    from deallens.contracts import DigestInput, RetryParkedInput, RetryParkedResult, SendAlertNotificationInput
    from workflows.inputs import validated
    from workflows.policies import DB_RETRY, DB_TIMEOUT

_DIGEST_WORKFLOWS = {"daily": "SendDailyDigest", "weekly": "SendWeeklySummary"}


@workflow.defn(name="RetryParkedDeliveries")
class RetryParkedDeliveries:
    @workflow.run
    async def run(self, raw: Any = None) -> RetryParkedResult:
        request = validated(RetryParkedInput, raw)
        requeued = await workflow.execute_activity_method(
            RedeliveryActivities.requeue_parked,
            request,
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
            summary="re-queue parked deliveries whose automatic retry is due",
        )
        started = await asyncio.gather(
            *(
                self._start(
                    "SendAlertNotification",
                    SendAlertNotificationInput(alert_history_id=history_id),
                    f"notify-{history_id}",
                    timedelta(days=2),
                )
                for history_id in requeued.alert_history_ids
            )
        )
        suffix = workflow.info().run_id[:8]
        for group in requeued.digests:
            await self._start(
                _DIGEST_WORKFLOWS[group.kind],
                DigestInput(date=group.period, user_ids=group.user_ids),
                f"redeliver-{group.kind}-digest-{group.period.isoformat()}-{suffix}",
                timedelta(hours=6),
            )
        if requeued.alert_history_ids or requeued.digests:
            workflow.logger.info(
                "re-queued %d parked firing(s) and %d digest(s)",
                len(requeued.alert_history_ids),
                sum(len(group.user_ids) for group in requeued.digests),
            )
        return RetryParkedResult(
            alerts_started=sum(started),
            alerts_running=len(started) - sum(started),
            digests_requeued=sum(len(group.user_ids) for group in requeued.digests),
        )

    async def _start(self, workflow_type: str, argument: Any, workflow_id: str, timeout: timedelta) -> bool:
        try:
            await workflow.start_child_workflow(
                workflow_type,
                argument,
                id=workflow_id,
                # The sends must outlive this short run.
                parent_close_policy=ParentClosePolicy.ABANDON,
                execution_timeout=timeout,
            )
        except WorkflowAlreadyStartedError:
            # notify-<id> still running: a narrow window only, since a firing with a channel
            # still pending is not re-queued (deallens/db/redelivery.py). A run that planned
            # before the re-queue does not send those rows: they show as stuck in `health`.
            return False
        return True
