"""Where an email (or a push, or an SMS) leaves: the notification activities.

Each channel is its own activity, so each has its own retry policy (workflows/policies.py).
Around every single send the ledger is checked (only `pending` rows are read) and written
(its own committed transaction right after the provider accepted), so a retried activity,
a restarted worker or a re-run workflow never sends a delivery twice.

Outcomes:
- accepted -> `sent`, with the stable Message-ID (email) or provider receipt;
- permanent refusal (SMTP 5xx such as 550, HTTP 4xx) -> `failed` with the reason, at once;
- transient (SMTP 4xx, HTTP 5xx/429, timeouts) -> stays `pending`, the attempt and error
  are counted, and the activity fails retryably after the rest of its batch is done; when
  the retries run out the workflow parks what is left as `failed` (`starter.py notifications
  failed` lists them, `notifications retry` re-sends).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from email.message import EmailMessage
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from email.utils import parseaddr
from urllib.parse import parse_qs, quote, urlsplit
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import permanent_database_errors
from deallens.config import Settings
from deallens.contracts import (
    DeliverAlertsInput,
    DeliveryCounts,
    DeliveryGroup,
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
from deallens.db.claims import Ledger, Outcome
from deallens.domain.quiet_hours import quiet_until
from deallens.notify.content import AlertContent, PushEvent
from deallens.notify.email import SmtpConfig, SmtpMailer
from deallens.notify.content import DigestContent
from deallens.notify.errors import DeliveryError, PermanentDeliveryError
from deallens.notify.message import build_message
from deallens.notify.push import WebhookSender
from deallens.notify.push import check_public_host as push_check_public
from deallens.notify.render import Renderer, RenderedEmail
from deallens.notify.sms import HttpSmsProvider, SmsProvider

log = logging.getLogger(__name__)

# After this many transient *session* failures in a row (no connection, greeting refused, a
# dropped session) an email batch stops early: the server, not a recipient, is the problem,
# and the retry policy's backoff is the right way to wait.
ABORT_AFTER_TRANSIENT = 3


@dataclass(frozen=True)
class NotifyConfig:
    """What the senders need from Settings (read once in the worker process)."""

    smtp: SmtpConfig
    mail_from: str
    mail_domain: str
    public_base_url: str
    unsubscribe_mailto: str | None
    sms_enabled: bool
    claim_seconds: int = 180
    push_allow_private_hosts: bool = False
    digest_hour: int = 7
    weekly_summary_hour: int = 18

    @classmethod
    def from_settings(cls, settings: Settings) -> NotifyConfig:
        return cls(
            smtp=SmtpConfig.from_settings(settings),
            mail_from=settings.mail_from,
            mail_domain=settings.mail_domain,
            public_base_url=settings.public_base_url,
            unsubscribe_mailto=settings.unsubscribe_mailto,
            sms_enabled=settings.sms_enabled,
            claim_seconds=settings.notify_claim_seconds,
            push_allow_private_hosts=settings.push_allow_private_hosts,
            digest_hour=settings.digest_hour,
            weekly_summary_hour=settings.weekly_summary_hour,
        )


def sms_provider_from(settings: Settings, http: httpx.AsyncClient) -> SmsProvider | None:
    if not settings.sms_enabled:
        return None
    settings.check_notifications()
    assert settings.sms_provider_url and settings.sms_account_sid and settings.sms_auth_token and settings.sms_from
    return HttpSmsProvider(
        base_url=settings.sms_provider_url,
        account_sid=settings.sms_account_sid,
        auth_token=settings.sms_auth_token,
        from_number=settings.sms_from,
        client=http,
    )


def unsubscribe_mailto(address: str | None, unsubscribe_url: str) -> str | None:
    """mailto: form of List-Unsubscribe; the subject carries the token and list, for whatever
    reads that mailbox to pass on to `starter.py notifications unsubscribe TOKEN --list LIST`."""
    if not address:
        return None
    query = parse_qs(urlsplit(unsubscribe_url).query)
    token, list_name = query.get("token", [""])[0], query.get("list", ["all"])[0]
    return f"mailto:{address}?subject=unsubscribe%20{quote(token)}%20{quote(list_name)}"


def alert_message_id(history_id: int, domain: str) -> str:
    """Stable per firing: a re-send after a crash carries the same Message-ID (receivers dedupe)."""
    return f"<alert-{history_id}-email@{domain}>"


def _alert_content(row: Any, base_url: str) -> AlertContent:
    params = row.params or {}
    return AlertContent(
        alert_history_id=row.alert_history_id,
        kind=row.kind,
        alert_type=str(params.get("type", row.kind)),
        alert_name=row.alert_name,
        symbol=row.symbol,
        company_name=row.company_name,
        message=row.message,
        value=row.value,
        threshold=row.threshold,
        triggered_at=row.triggered_at,
        urgent=bool(params.get("urgent", False)),
        user_name=row.user_name,
        timezone=row.timezone,
        unsubscribe_url=digests.unsubscribe_url(base_url, row.unsubscribe_token, "alerts"),
    )


def _opted_out(row: Any, channel: str) -> str | None:
    if row.unsubscribed_at is not None:
        return "the user unsubscribed"
    if channel == "email" and not row.email_enabled:
        return "the user turned email off"
    if channel == "push" and not row.push_webhook_url:
        return "the user removed the push webhook"
    if channel == "sms" and not row.sms_number:
        return "the user removed the phone number"
    return None


class _Tally:
    """Counts, and the transient failures that make the activity fail retryably at the end."""

    def __init__(self) -> None:
        self.counts = DeliveryCounts()
        self.transient: list[str] = []
        self.elsewhere = 0
        self.session_failures = 0

    def add(self, **kwargs: int) -> None:
        self.counts = self.counts.plus(DeliveryCounts(**kwargs))

    def finish(self, what: str) -> DeliveryCounts:
        if self.transient or self.elsewhere:
            reasons = self.transient[:1] or [f"{self.elsewhere} being sent by another worker"]
            raise ApplicationError(
                f"{len(self.transient) + self.elsewhere} {what} not sent yet, will retry: {reasons[0]}",
                type="TransientDeliveryError",
            )
        return self.counts


@contextlib.asynccontextmanager
async def _keep_alive(progress: list[int], every: float = 5.0) -> AsyncIterator[None]:
    """Heartbeat on a timer, not only between sends: one slow SMTP command must not look like
    a dead worker (that would start a second attempt beside a live one)."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(every)
            activity.heartbeat(progress[0])

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


def _claimant() -> str:
    """`<workflow>/<run>/<activity>#<attempt>`: later attempts of one activity take over its claims."""
    info = activity.info()
    return f"{info.workflow_id}/{info.workflow_run_id}/{info.activity_id}#{info.attempt}"


@dataclass(frozen=True)
class _Item:
    key: dict[str, Any]  # the ledger row
    label: str  # for logs
    send: Callable[[], Awaitable[str]]  # builds and sends; the receipt (Message-ID, ...)


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
        self._lease = config.claim_seconds
        # One per worker process: templates compiled once, each company's sparkline drawn
        # once a day (the cache is keyed by the series), not once per batch.
        self._renderer = Renderer()
        self._envelope_from = parseaddr(config.mail_from)[1]
        self._webhooks = webhooks
        self._sms = sms

    # ------------------------------------------------------------ alerts

    @activity.defn(name="notifications.plan_alerts")
    async def plan_alerts(self, request: PlanAlertsInput) -> PlanAlertsResult:
        """Record the intents (idempotent), then group what is pending by channel and due time."""
        next_after_id: int | None = None
        with permanent_database_errors():
            if request.alert_history_ids is not None:
                ids = request.alert_history_ids
                firings, _ = await notifications.record_intents(self._engine, ids, sms_enabled=self._config.sms_enabled)
            elif request.kind is not None and request.triggered_at is not None:
                if request.after_id == 0:
                    # Every firing's intents in one statement, once: later pages find them.
                    firings, _ = await notifications.record_intents_for_evaluation(
                        self._engine, request.kind, request.triggered_at, sms_enabled=self._config.sms_enabled
                    )
                if request.limit is None:
                    ids = await notifications.evaluation_firings(self._engine, request.kind, request.triggered_at)
                else:
                    # A page of the burst: the result stays the same size however many fired.
                    ids, more = await notifications.evaluation_firings_page(
                        self._engine, request.kind, request.triggered_at, after_id=request.after_id, limit=request.limit
                    )
                    next_after_id = ids[-1] if more else None
                    firings = len(ids)
            else:
                raise ApplicationError(
                    "plan_alerts: give alert_history_ids, or kind and triggered_at", type="InvalidInput", non_retryable=True
                )
            rows = await notifications.pending_plan(self._engine, ids)
        now = dt.datetime.now(dt.UTC)
        groups: dict[tuple[str, dt.datetime | None], list[int]] = defaultdict(list)
        already_done = sum(1 for row in rows if row.status == "sent")
        for row in rows:
            if row.status != "pending":
                continue
            until = None if row.urgent else quiet_until(now, row.quiet_hours_start, row.quiet_hours_end, row.timezone)
            groups[(row.channel, until)].append(row.alert_history_id)
        ordered = sorted(groups.items(), key=lambda item: (item[0][1] is not None, item[0][1] or now, item[0][0]))
        return PlanAlertsResult(
            firings=firings,
            already_done=already_done,
            groups=[DeliveryGroup(channel=ch, deliver_at=at, alert_history_ids=ids) for (ch, at), ids in ordered],
            next_after_id=next_after_id,
        )

    async def _send_all(self, ledger: Ledger, items: list[_Item], tally: _Tally, *, batch_stops: bool) -> None:
        """Claim, send, settle, one item at a time; the ledger is written after every send.

        `batch_stops`: one connection carries the batch (email), so a session failure (no
        connection, bad login, our sender refused) stops it: permanent ones fail the activity
        non-retryably, leaving the rest pending for the workflow to park; transient ones stop
        after three in a row. Per-recipient failures (a 550, a dead webhook) never stop a batch.
        """
        claimant = _claimant()
        progress = [0]
        lease = self._lease
        async with self._engine.connect() as conn, _keep_alive(progress):
            await self._send_each(ledger, items, tally, batch_stops, claimant, conn, lease, progress)

    async def _send_each(
        self,
        ledger: Ledger,
        items: list[_Item],
        tally: _Tally,
        batch_stops: bool,
        claimant: str,
        conn: AsyncConnection,
        lease: float,
        progress: list[int],
    ) -> None:
        """The loop of `_send_all`, on the one connection the batch holds."""

        async def settle(index: int, outcome: Outcome, *, chain: bool = True, **details: Any) -> bool:
            """Settle item `index`; with `chain`, claim the next one in the same commit."""
            following = items[index + 1].key if chain and index + 1 < len(items) else None
            return await ledger.settle(
                conn, items[index].key, outcome, claimant=claimant, then_claim=following, lease_seconds=lease, **details
            )

        claimed = bool(items) and await ledger.claim(conn, items[0].key, claimant=claimant, lease_seconds=lease)
        for index, item in enumerate(items):
            progress[0] = index
            if not claimed:
                tally.elsewhere += 1
                following = items[index + 1].key if index + 1 < len(items) else None
                claimed = following is not None and await ledger.claim(
                    conn, following, claimant=claimant, lease_seconds=lease
                )
                continue
            try:
                receipt = await item.send()
            except DeliveryError as error:
                if batch_stops and error.session and error.permanent:
                    await settle(index, "released", chain=False)
                    raise ApplicationError(str(error), type="PermanentDeliveryError", non_retryable=True) from None
                if error.permanent:
                    claimed = await settle(index, "failed", error=str(error))
                    tally.add(failed=1)
                    log.warning("delivery %s failed permanently: %s", item.label, error)
                    continue
                tally.transient.append(str(error))
                tally.session_failures = tally.session_failures + 1 if error.session else 0
                stop = batch_stops and tally.session_failures >= ABORT_AFTER_TRANSIENT
                claimed = await settle(index, "retrying", chain=not stop, error=str(error))
                if stop:
                    tally.transient.append(f"{len(items) - index - 1} not tried")
                    break
            except (ValueError, UnicodeError) as error:
                # A message that cannot be built (an address with a comma, a control
                # character): the same on every retry, so this row fails, not the batch.
                reason = f"cannot build the message: {error}"
                claimed = await settle(index, "failed", error=reason)
                tally.add(failed=1)
                log.warning("delivery %s failed permanently: %s", item.label, reason)
            else:
                claimed = await settle(index, "sent", message_id=receipt[:255])
                tally.add(sent=1)
                tally.session_failures = 0

    async def _pending(self, request: DeliverAlertsInput, tally: _Tally) -> list[Any]:
        """The ledger checked before sending: pending rows only; opted-out users skipped."""
        with permanent_database_errors():
            rows = await notifications.pending_deliveries(self._engine, request.alert_history_ids, request.channel)
        tally.add(already_done=len(set(request.alert_history_ids)) - len(rows))
        live = []
        for row in rows:
            reason = _opted_out(row, request.channel)
            if reason is None:
                live.append(row)
            else:
                await notifications.skip(self._engine, row.alert_history_id, request.channel, reason)
                tally.add(skipped=1)
        return live

    def _email(
        self, rendered: RenderedEmail, *, to: str, to_name: str | None, message_id: str, unsubscribe_url: str
    ) -> EmailMessage:
        return build_message(
            rendered,
            sender=self._config.mail_from,
            to=to,
            to_name=to_name,
            message_id=message_id,
            unsubscribe_url=unsubscribe_url,
            unsubscribe_mailto=unsubscribe_mailto(self._config.unsubscribe_mailto, unsubscribe_url),
        )

    @activity.defn(name="notifications.send_email")
    async def send_email(self, request: DeliverAlertsInput) -> DeliveryCounts:
        """Alert emails over one SMTP connection."""
        tally = _Tally()
        rows = await self._pending(request, tally)
        if rows:
            renderer = self._renderer
            async with SmtpMailer(self._config.smtp) as mailer:

                def item(row: Any) -> _Item:
                    async def send() -> str:
                        content = _alert_content(row, self._config.public_base_url)
                        message = self._email(
                            renderer.render_alert(content), to=row.email, to_name=row.user_name,
                            message_id=alert_message_id(row.alert_history_id, self._config.mail_domain),
                            unsubscribe_url=content.unsubscribe_url,
                        )
                        return await mailer.send(message, envelope=(self._envelope_from, [row.email]))

                    return _Item(notifications.key(row.alert_history_id, "email"), f"{row.alert_history_id}/email", send)

                await self._send_all(notifications.LEDGER, [item(r) for r in rows], tally, batch_stops=True)
        return tally.finish("alert emails")

    @activity.defn(name="notifications.send_push")
    async def send_push(self, request: DeliverAlertsInput) -> DeliveryCounts:
        """Signed webhooks, one POST per firing, each to the user's own endpoint."""
        tally = _Tally()

        def item(row: Any) -> _Item:
            async def send() -> str:
                if not row.push_webhook_secret:
                    raise PermanentDeliveryError("push: the user's webhook has no signing secret")
                if not self._config.push_allow_private_hosts:
                    await push_check_public(row.push_webhook_url)
                content = _alert_content(row, self._config.public_base_url)
                event = PushEvent(
                    title=f"{content.symbol or 'DealLens'}: {content.alert_name or content.alert_type.replace('_', ' ')}",
                    message=content.message,
                    priority="high" if content.urgent else "default",
                    tags=[content.kind],
                    data={"alert_history_id": content.alert_history_id, "symbol": content.symbol, "kind": content.kind},
                )
                return await self._webhooks.send(
                    url=row.push_webhook_url,
                    secret=row.push_webhook_secret,
                    event=event,
                    style=row.push_format,
                    idempotency_key=f"alert-{row.alert_history_id}-push",
                )

            return _Item(notifications.key(row.alert_history_id, "push"), f"{row.alert_history_id}/push", send)

        rows = await self._pending(request, tally)
        await self._send_all(notifications.LEDGER, [item(r) for r in rows], tally, batch_stops=False)
        return tally.finish("push notifications")

    @activity.defn(name="notifications.send_sms")
    async def send_sms(self, request: DeliverAlertsInput) -> DeliveryCounts:
        tally = _Tally()
        rows = await self._pending(request, tally)
        sms = self._sms
        if sms is None:
            for row in rows:
                await notifications.skip(self._engine, row.alert_history_id, "sms", "SMS is switched off (SMS_ENABLED)")
            tally.add(skipped=len(rows))
            return tally.finish("text messages")

        def item(row: Any) -> _Item:
            async def send() -> str:
                content = _alert_content(row, self._config.public_base_url)
                return await sms.send(
                    to=row.sms_number, body=f"DealLens: {content.message}",
                    idempotency_key=f"alert-{row.alert_history_id}-sms",
                )

            return _Item(notifications.key(row.alert_history_id, "sms"), f"{row.alert_history_id}/sms", send)

        await self._send_all(notifications.LEDGER, [item(r) for r in rows], tally, batch_stops=False)
        return tally.finish("text messages")

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
        tally = _Tally()
        kind, period = request.kind, request.period
        with permanent_database_errors():
            contents, opted_out, empty = await digests.load_batch(
                self._engine, kind, period, request.user_ids, public_base_url=self._config.public_base_url
            )
            skipped = await digests.skip(self._engine, kind, period, opted_out, "the user opted out")
            skipped += await digests.skip(self._engine, kind, period, empty, "nothing to report: no new session, alerts or news")
        tally.add(skipped=skipped, already_done=len(set(request.user_ids)) - len(contents) - len(opted_out) - len(empty))
        if not contents:
            return tally.finish("digests")
        renderer = self._renderer
        async with SmtpMailer(self._config.smtp) as mailer:

            def item(content: DigestContent) -> _Item:
                async def send() -> str:
                    message = self._email(
                        renderer.render_digest(content), to=content.user_email,
                        to_name=content.user_name,
                        message_id=digests.message_id(kind, period, content.user_id, self._config.mail_domain),
                        unsubscribe_url=content.unsubscribe_url,
                    )
                    return await mailer.send(message, envelope=(self._envelope_from, [content.user_email]))

                return _Item(digests.key(kind, period, content.user_id), f"{kind} {period} user {content.user_id}", send)

            await self._send_all(digests.LEDGER, [item(c) for c in contents], tally, batch_stops=True)
        return tally.finish("digests")

    @activity.defn(name="digests.park")
    async def park_digests(self, request: ParkDigestsInput) -> int:
        with permanent_database_errors():
            return await digests.park(self._engine, request.kind, request.period, request.user_ids, request.error)
