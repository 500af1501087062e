"""Notification workflows: one fired alert (or a burst) on the user's channels, and the digests.

SendAlertNotification (ID notify-<alert_history_id>) plans the deliveries (ledger rows per
channel, quiet hours), waits on a durable timer for deliveries held by quiet hours, then runs
one activity per channel, each with its own retry policy. When a channel's retries run out
its deliveries are parked as failed instead of failing the workflow: the other channels
still go out, and the operator sees the parked ones with `starter.py notifications failed`.

SendDailyDigest / SendWeeklySummary fan out in batches of users (one activity per batch, a
few at a time), not one workflow per user: the digest ledger makes each batch idempotent.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.notifications import NotificationActivities
    from deallens.contracts import (
        DeliverAlertsInput,
        DeliveryCounts,
        DeliveryGroup,
        DigestBatchInput,
        DigestInput,
        DigestKindName,
        DigestPlanInput,
        DigestResult,
        NotificationResult,
        ParkAlertsInput,
        ParkDigestsInput,
        PlanAlertsInput,
        PlanAlertsResult,
        SendAlertNotificationBatchInput,
        SendAlertNotificationInput,
    )
    from workflows.inputs import validated
    from workflows.policies import (
        CHANNEL_RETRY,
        DB_RETRY,
        DB_TIMEOUT,
        DIGEST_BATCH_RETRY,
        DIGEST_BATCH_TIMEOUT,
        SEND_HEARTBEAT,
        SEND_TIMEOUT,
    )

# Firings per send activity: one SMTP connection carries a chunk.
CHUNK = 200

_SENDERS = {
    "email": NotificationActivities.send_email,
    "push": NotificationActivities.send_push,
    "sms": NotificationActivities.send_sms,
}


def _failure_text(error: ActivityError) -> str:
    cause = error.cause
    while cause is not None and getattr(cause, "cause", None) is not None:
        cause = cause.cause
    return str(cause or error)[:2000]


async def _deliver_channel(channel: str, ids: list[int], heartbeat: timedelta) -> DeliveryCounts:
    counts = DeliveryCounts()
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        try:
            result = await workflow.execute_activity(
                _SENDERS[channel],
                DeliverAlertsInput(channel=channel, alert_history_ids=chunk),  # type: ignore[arg-type]
                start_to_close_timeout=SEND_TIMEOUT,
                heartbeat_timeout=heartbeat,
                retry_policy=CHANNEL_RETRY[channel],
            )
        except ActivityError as error:
            parked = await workflow.execute_activity_method(
                NotificationActivities.park,
                ParkAlertsInput(channel=channel, alert_history_ids=chunk, error=_failure_text(error)),  # type: ignore[arg-type]
                start_to_close_timeout=DB_TIMEOUT,
                retry_policy=DB_RETRY,
            )
            workflow.logger.warning("parked %d %s deliveries as failed: %s", parked, channel, _failure_text(error))
            result = DeliveryCounts(failed=parked)
        counts = counts.plus(result)
    return counts


def _heartbeat(seconds: int | None) -> timedelta:
    return SEND_HEARTBEAT if seconds is None else timedelta(seconds=seconds)


async def _deliver(plan: PlanAlertsResult, heartbeat: timedelta) -> NotificationResult:
    """Due groups now, all channels at once; held groups after their quiet hours end."""
    counts = DeliveryCounts(already_done=plan.already_done)
    waited_until = None
    due: dict[Any, list[DeliveryGroup]] = {}
    for group in plan.groups:
        due.setdefault(group.deliver_at, []).append(group)
    for deliver_at in sorted(due, key=lambda at: (at is not None, at)):
        if deliver_at is not None:
            delay = deliver_at - workflow.now()
            if delay > timedelta(0):
                waited_until = deliver_at
                await workflow.sleep(delay, summary="quiet hours")
        results = await asyncio.gather(
            *(_deliver_channel(g.channel, g.alert_history_ids, heartbeat) for g in due[deliver_at])
        )
        for result in results:
            counts = counts.plus(result)
    return NotificationResult(firings=plan.firings, counts=counts, waited_until=waited_until)


@workflow.defn(name="SendAlertNotification")
class SendAlertNotification:
    """Deliver one fired alert on the user's channels, exactly once per channel."""

    @workflow.run
    async def run(self, raw: Any = None) -> NotificationResult:
        request = validated(SendAlertNotificationInput, raw)
        plan = await workflow.execute_activity_method(
            NotificationActivities.plan_alerts,
            PlanAlertsInput(alert_history_ids=[request.alert_history_id]),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        return await _deliver(plan, _heartbeat(request.send_heartbeat_seconds))


@workflow.defn(name="SendAlertNotificationBatch")
class SendAlertNotificationBatch:
    """Every firing of one evaluation (a burst): the same, by channel in chunks."""

    @workflow.run
    async def run(self, raw: Any = None) -> NotificationResult:
        request = validated(SendAlertNotificationBatchInput, raw)
        plan = await workflow.execute_activity_method(
            NotificationActivities.plan_alerts,
            PlanAlertsInput(kind=request.kind, triggered_at=request.triggered_at),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        return await _deliver(plan, _heartbeat(request.send_heartbeat_seconds))


# ------------------------------------------------------------------ digests
# Batches (DigestInput.batch_size, default 250) are small enough that a retried batch redoes
# little (the ledger skips what was sent) and large enough that one SMTP connection carries many.


def default_period(kind: DigestKindName, now: datetime) -> date:
    """The latest scheduled slot at or before `now` (12:00 UTC daily, Sunday 14:00 UTC weekly):
    a run that starts late (catch-up) or by hand early still sends that slot's digest, never
    one whose window lies in the future."""
    if kind == "daily":
        return (now - timedelta(hours=12)).date()
    shifted = now - timedelta(hours=14)
    return shifted.date() - timedelta(days=(shifted.weekday() + 1) % 7)


async def _send_digests(kind: DigestKindName, raw: Any) -> DigestResult:
    request = validated(DigestInput, raw)
    period = request.date or default_period(kind, workflow.now())
    plan = await workflow.execute_activity_method(
        NotificationActivities.plan_digests,
        DigestPlanInput(kind=kind, period=period, user_ids=request.user_ids),
        start_to_close_timeout=DB_TIMEOUT,
        retry_policy=DB_RETRY,
    )
    users = plan.pending_user_ids
    size = request.batch_size
    batches = [users[i : i + size] for i in range(0, len(users), size)]
    counts = DeliveryCounts(already_done=plan.already_done)
    gate = asyncio.Semaphore(request.parallel_batches)

    async def one(batch: list[int]) -> DeliveryCounts:
        async with gate:
            try:
                return await workflow.execute_activity_method(
                    NotificationActivities.send_digest_batch,
                    DigestBatchInput(kind=kind, period=period, user_ids=batch),
                    start_to_close_timeout=DIGEST_BATCH_TIMEOUT,
                    heartbeat_timeout=SEND_HEARTBEAT,
                    retry_policy=DIGEST_BATCH_RETRY,
                )
            except ActivityError as error:
                parked = await workflow.execute_activity_method(
                    NotificationActivities.park_digests,
                    ParkDigestsInput(kind=kind, period=period, user_ids=batch, error=_failure_text(error)),
                    start_to_close_timeout=DB_TIMEOUT,
                    retry_policy=DB_RETRY,
                )
                workflow.logger.warning("parked %d %s digests as failed: %s", parked, kind, _failure_text(error))
                return DeliveryCounts(failed=parked)

    for result in await asyncio.gather(*(one(batch) for batch in batches)):
        counts = counts.plus(result)
    return DigestResult(
        kind=kind,
        period=period,
        users=len(users) + plan.already_done,
        batches=len(batches),
        counts=counts,
        not_eligible=plan.not_eligible,
    )


@workflow.defn(name="SendDailyDigest")
class SendDailyDigest:
    """`{"date": "YYYY-MM-DD", "user_ids": [..]}`: the daily digest for opted-in users."""

    @workflow.run
    async def run(self, raw: Any = None) -> DigestResult:
        return await _send_digests("daily", raw)


@workflow.defn(name="SendWeeklySummary")
class SendWeeklySummary:
    """`{"date": "YYYY-MM-DD", "user_ids": [..]}`: the weekly summary for opted-in users."""

    @workflow.run
    async def run(self, raw: Any = None) -> DigestResult:
        return await _send_digests("weekly", raw)
