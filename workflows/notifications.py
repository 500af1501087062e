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
        DigestCursor,
        DigestInput,
        DigestPageInput,
        PlanDueDigestsInput,
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
        DIGEST_PLAN_TIMEOUT,
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
                summary=f"send {channel} for {len(chunk)} firing(s)",
            )
        except ActivityError as error:
            parked = await workflow.execute_activity_method(
                NotificationActivities.park,
                ParkAlertsInput(channel=channel, alert_history_ids=chunk, error=_failure_text(error)),  # type: ignore[arg-type]
                start_to_close_timeout=DB_TIMEOUT,
                retry_policy=DB_RETRY,
                summary=f"park {len(chunk)} {channel} deliveries as failed (retries exhausted)",
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
            summary=f"plan the deliveries of firing {request.alert_history_id} (channels, quiet hours)",
        )
        return await _deliver(plan, _heartbeat(request.send_heartbeat_seconds))


# A burst is planned `page_size` firings at a time and continues as new after
# `pages_per_run` plans (SendAlertNotificationBatchInput), both small and fixed.
PAGED_BURSTS = "paged-alert-bursts"


@workflow.defn(name="SendAlertNotificationBatch")
class SendAlertNotificationBatch:
    """Every firing of one evaluation (a burst): the same, by channel in chunks, a page of
    firings at a time so that no payload grows with the burst."""

    @workflow.run
    async def run(self, raw: Any = None) -> NotificationResult:
        request = validated(SendAlertNotificationBatchInput, raw)
        if not workflow.patched(PAGED_BURSTS):
            # Runs started before paging: one plan of the whole burst, as they recorded it.
            plan = await workflow.execute_activity_method(
                NotificationActivities.plan_alerts,
                PlanAlertsInput(kind=request.kind, triggered_at=request.triggered_at),
                start_to_close_timeout=DB_TIMEOUT,
                retry_policy=DB_RETRY,
            )
            return await _deliver(plan, _heartbeat(request.send_heartbeat_seconds))
        heartbeat = _heartbeat(request.send_heartbeat_seconds)
        after: int | None = request.after_id
        firings = request.firings
        deliveries: list[asyncio.Task[NotificationResult]] = []
        pages = 0
        while after is not None and pages < request.pages_per_run:
            plan = await workflow.execute_activity_method(
                NotificationActivities.plan_alerts,
                PlanAlertsInput(
                    kind=request.kind, triggered_at=request.triggered_at, after_id=after, limit=request.page_size
                ),
                start_to_close_timeout=DB_TIMEOUT,
                retry_policy=DB_RETRY,
                summary=f"plan a page of {request.page_size} {request.kind} firings after {after}",
            )
            # Delivered while the next page is planned: a page held by quiet hours does not
            # hold back the pages after it.
            deliveries.append(asyncio.create_task(_deliver(plan, heartbeat)))
            firings += plan.firings
            after = plan.next_after_id
            pages += 1
        counts = request.counts or DeliveryCounts()
        waited_until = None
        for result in await asyncio.gather(*deliveries):
            counts = counts.plus(result.counts)
            if result.waited_until is not None:
                waited_until = max(waited_until or result.waited_until, result.waited_until)
        if after is not None:
            workflow.continue_as_new(
                request.model_copy(update={"after_id": after, "firings": firings, "counts": counts})
            )
        return NotificationResult(firings=firings, counts=counts, waited_until=waited_until)


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


PAGED_DIGESTS = "digests-local-hour-paged"
# Most user ids one page (an activity result) carries.
DIGEST_PAGE_MAX = 20_000


async def _send_digests(kind: DigestKindName, raw: Any) -> DigestResult:
    request = validated(DigestInput, raw)
    if workflow.patched(PAGED_DIGESTS):
        return await _send_due_digests(kind, request)
    return await _send_digests_v1(kind, request)


async def _send_batch(kind: DigestKindName, period: date, batch: list[int]) -> DeliveryCounts:
    try:
        return await workflow.execute_activity_method(
            NotificationActivities.send_digest_batch,
            DigestBatchInput(kind=kind, period=period, user_ids=batch),
            start_to_close_timeout=DIGEST_BATCH_TIMEOUT,
            heartbeat_timeout=SEND_HEARTBEAT,
            retry_policy=DIGEST_BATCH_RETRY,
            summary=f"send {len(batch)} {kind} digests for {period}",
        )
    except ActivityError as error:
        parked = await workflow.execute_activity_method(
            NotificationActivities.park_digests,
            ParkDigestsInput(kind=kind, period=period, user_ids=batch, error=_failure_text(error)),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
            summary=f"park {len(batch)} {kind} digests as failed",
        )
        workflow.logger.warning("parked %d %s digests as failed: %s", parked, kind, _failure_text(error))
        return DeliveryCounts(failed=parked)


async def _send_due_digests(kind: DigestKindName, request: DigestInput) -> DigestResult:
    """Plan in the database, then page through the pending rows by user id.

    Nothing that travels grows with the users: the plan returns counts and the (at most
    three) local dates it made rows for, a page is batch_size * parallel_batches ids, and
    after pages_per_run pages the run continues as new with its cursor.
    """
    cursor = request.resume
    if cursor is None:
        plan = await workflow.execute_activity_method(
            NotificationActivities.plan_due_digests,
            PlanDueDigestsInput(kind=kind, at=workflow.now(), period=request.date, user_ids=request.user_ids),
            start_to_close_timeout=DIGEST_PLAN_TIMEOUT,
            retry_policy=DB_RETRY,
            summary=f"plan the {kind} digests due now (users' local hours)",
        )
        cursor = DigestCursor(
            periods=plan.periods,
            users=plan.pending + plan.already_done,
            not_eligible=plan.not_eligible,
            counts=DeliveryCounts(already_done=plan.already_done),
        )
    size = request.batch_size
    pages = 0
    while cursor.index < len(cursor.periods):
        if pages == request.pages_per_run or workflow.info().is_continue_as_new_suggested():
            workflow.continue_as_new(request.model_copy(update={"resume": cursor}))
        period = cursor.periods[cursor.index]
        page = await workflow.execute_activity_method(
            NotificationActivities.page_digests,
            DigestPageInput(
                kind=kind, period=period, after_user_id=cursor.after_user_id,
                limit=min(size * request.parallel_batches, DIGEST_PAGE_MAX), user_ids=request.user_ids,
            ),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
            summary=f"next page of {kind} digests for {period}",
        )
        pages += 1
        users = page.user_ids
        if not users:
            cursor = cursor.model_copy(update={"index": cursor.index + 1, "after_user_id": 0})
            continue
        batches = [users[i : i + size] for i in range(0, len(users), size)]
        counts = cursor.counts
        for result in await asyncio.gather(*(_send_batch(kind, period, batch) for batch in batches)):
            counts = counts.plus(result)
        cursor = cursor.model_copy(
            update={"after_user_id": users[-1], "batches": cursor.batches + len(batches), "counts": counts}
        )
    return DigestResult(
        kind=kind,
        period=cursor.periods[0] if cursor.periods else (request.date or workflow.now().date()),
        periods=cursor.periods,
        users=cursor.users,
        batches=cursor.batches,
        counts=cursor.counts,
        not_eligible=cursor.not_eligible,
    )


async def _send_digests_v1(kind: DigestKindName, request: DigestInput) -> DigestResult:
    """Runs started before local hours and paging, replayed as they were recorded."""
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
