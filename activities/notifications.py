"""Where an email (or a push, or an SMS) leaves: the Temporal side of the delivery engine.

Each channel is its own activity, so each has its own retry policy (workflows/policies.py).
The engine (deallens/notify/delivery.py) does the claim/send/settle loop around the ledger;
this adapter gives it a claimant id per attempt, heartbeats while it works, and maps its
outcome to Temporal: outstanding transient failures -> a retryable TransientDeliveryError
after the rest of the batch is done; a permanent session failure -> non-retryable (the
workflow parks what is left); an attempt superseded by a newer one -> a retryable failure
that Temporal ignores (it already gave up on this attempt).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import permanent_database_errors
from deallens.contracts import (
    DeliverAlertsInput,
    DeliveryCounts,
    DigestBatchInput,
    DigestPage,
    DigestPageInput,
    DigestPlanInput,
    DigestPlanResult,
    PlanDueDigestsInput,
    PlanDueDigestsResult,
    ParkAlertsInput,
    ParkDigestsInput,
    PlanAlertsInput,
    PlanAlertsResult,
)
from deallens.db import digests, notifications
from deallens.notify.delivery import (
    BatchStopped,
    DeliveryEngine,
    InvalidRequest,
    NotifyConfig,
    Progress,
    Superseded,
    Tally,
    sms_provider_from,
)
from deallens.notify.push import WebhookSender
from deallens.notify.sms import SmsProvider
from deallens.observability import metrics

# Re-exported: worker.py and the tests build the activities from these.
__all__ = ["NotificationActivities", "NotifyConfig", "sms_provider_from"]

Send = Callable[..., Awaitable[Tally]]

# A live worker heartbeats this often (or faster, for a short heartbeat timeout), also during
# one slow SMTP command: a slow send must not look like a dead worker.
HEARTBEAT_EVERY_S = 5.0


@contextlib.asynccontextmanager
async def _keep_alive(progress: Progress) -> AsyncIterator[None]:
    """Heartbeat on a timer, not only between sends: one slow SMTP command must not look like
    a dead worker (that would start a second attempt beside a live one)."""
    timeout = activity.info().heartbeat_timeout
    every = min(HEARTBEAT_EVERY_S, timeout.total_seconds() / 3) if timeout else HEARTBEAT_EVERY_S

    async def beat() -> None:
        while True:
            activity.heartbeat(progress.index)
            await asyncio.sleep(every)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


def _claimant() -> str:
    """`<workflow>/<run>/<activity>#<attempt>`: later attempts of one activity take over its
    claims, earlier ones never take them back (deallens/db/claims.py)."""
    info = activity.info()
    return f"{info.workflow_id}/{info.workflow_run_id}/{info.activity_id}#{info.attempt}"


class NotificationActivities:
    def __init__(
        self,
        engine: AsyncEngine,
        config: NotifyConfig,
        *,
        webhooks: WebhookSender,
        sms: SmsProvider | None,
    ) -> None:
        self._engine = engine
        self._config = config
        self._delivery = DeliveryEngine(engine, config, webhooks=webhooks, sms=sms)

    async def _run(
        self, send: Send, request: DeliverAlertsInput | DigestBatchInput, what: str, channel: str
    ) -> DeliveryCounts:
        progress = Progress()
        try:
            with permanent_database_errors():
                async with _keep_alive(progress):
                    tally = await send(request, claimant=_claimant(), progress=progress)
        except BatchStopped as error:
            raise ApplicationError(str(error), type="PermanentDeliveryError", non_retryable=True) from None
        except Superseded as error:
            activity.logger.warning("%s: %s", what, error)
            raise ApplicationError(str(error), type="Superseded") from None
        metrics.notifications(channel, tally.counts.model_dump())
        outstanding = tally.outstanding(what)
        if outstanding is not None:
            raise ApplicationError(outstanding, type="TransientDeliveryError")
        return tally.counts

    # ------------------------------------------------------------ alerts

    @activity.defn(name="notifications.plan_alerts")
    async def plan_alerts(self, request: PlanAlertsInput) -> PlanAlertsResult:
        """Record the intents (idempotent), then group what is pending by channel and due time."""
        try:
            with permanent_database_errors():
                return await self._delivery.plan_alerts(request, dt.datetime.now(dt.UTC))
        except InvalidRequest as error:
            raise ApplicationError(str(error), type="InvalidInput", non_retryable=True) from None

    @activity.defn(name="notifications.send_email")
    async def send_email(self, request: DeliverAlertsInput) -> DeliveryCounts:
        """Alert emails over one SMTP connection."""
        return await self._run(self._delivery.send_email, request, "alert emails", "email")

    @activity.defn(name="notifications.send_push")
    async def send_push(self, request: DeliverAlertsInput) -> DeliveryCounts:
        """Signed webhooks, one POST per firing, each to the user's own endpoint."""
        return await self._run(self._delivery.send_push, request, "push notifications", "push")

    @activity.defn(name="notifications.send_sms")
    async def send_sms(self, request: DeliverAlertsInput) -> DeliveryCounts:
        return await self._run(self._delivery.send_sms, request, "text messages", "sms")

    @activity.defn(name="notifications.park")
    async def park(self, request: ParkAlertsInput) -> int:
        with permanent_database_errors():
            return await notifications.park(self._engine, request.alert_history_ids, request.channel, request.error)

    # ------------------------------------------------------------ digests

    @activity.defn(name="digests.plan_due")
    async def plan_due_digests(self, request: PlanDueDigestsInput) -> PlanDueDigestsResult:
        """The run's pending ledger rows, made in the database; only counts come back."""
        with permanent_database_errors():
            periods, pending, done, not_eligible = await digests.plan_due(
                self._engine,
                request.kind,
                at=request.at,
                period=request.period,
                user_ids=request.user_ids,
                default_hour=self._config.digest_hour,
                weekly_hour=self._config.weekly_summary_hour,
            )
        return PlanDueDigestsResult(periods=periods, pending=pending, already_done=done, not_eligible=not_eligible)

    @activity.defn(name="digests.page")
    async def page_digests(self, request: DigestPageInput) -> DigestPage:
        with permanent_database_errors():
            ids = await digests.page(
                self._engine, request.kind, request.period,
                after_user_id=request.after_user_id, limit=request.limit, user_ids=request.user_ids,
            )
        return DigestPage(user_ids=ids)

    @activity.defn(name="digests.plan")
    async def plan_digests(self, request: DigestPlanInput) -> DigestPlanResult:
        """Runs started before paging (workflow.patched) still call this; new runs never do:
        its result lists every pending user and outgrows Temporal's payload limit."""
        with permanent_database_errors():
            pending, done, not_eligible = await digests.plan(
                self._engine, request.kind, request.period, request.user_ids
            )
        return DigestPlanResult(pending_user_ids=pending, already_done=done, not_eligible=not_eligible)

    @activity.defn(name="digests.send_batch")
    async def send_digest_batch(self, request: DigestBatchInput) -> DeliveryCounts:
        """One batch of users: content in a few set-based reads, one SMTP connection, the
        ledger claimed before and written after each message."""
        return await self._run(self._delivery.send_digest_batch, request, "digests", "digest")

    @activity.defn(name="digests.park")
    async def park_digests(self, request: ParkDigestsInput) -> int:
        with permanent_database_errors():
            return await digests.park(self._engine, request.kind, request.period, request.user_ids, request.error)
