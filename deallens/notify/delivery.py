"""The delivery engine: what goes out, to whom, when, and the ledger around every send.

Around every single send the ledger is checked (only `pending` rows are read) and written
(its own committed transaction right after the provider accepted), so a retried activity,
a restarted worker or a re-run workflow never sends a delivery twice.

Outcomes:
- accepted -> `sent`, with the stable Message-ID (email) or provider receipt;
- permanent refusal (SMTP 5xx such as 550, HTTP 4xx) -> `failed` with the reason, at once;
- transient (SMTP 4xx, HTTP 5xx/429, timeouts) -> stays `pending`, the attempt and error
  are counted, and the batch reports it (`Tally.outstanding`) after the rest is done; the
  caller retries, and when the retries run out parks what is left as `failed`.

No Temporal here: the activity (activities/notifications.py) supplies the claimant id and
the heartbeat, and maps `Tally` and the exceptions below to Temporal failures.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from deallens.config import Settings
from deallens.contracts import (
    DeliverAlertsInput,
    DeliveryCounts,
    DeliveryGroup,
    DigestBatchInput,
    PlanAlertsInput,
    PlanAlertsResult,
)
from deallens.db import digests, notifications
from deallens.db.claims import ClaimLost, Ledger, Outcome
from deallens.domain.quiet_hours import quiet_until
from deallens.notify.content import AlertContent, DigestContent, PushEvent, RenderedEmail
from deallens.notify.email import SmtpConfig, SmtpMailer
from deallens.notify.errors import DeliveryError, PermanentDeliveryError
from deallens.notify.message import build_message
from deallens.notify.push import WebhookSender
from deallens.notify.render import Renderer
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
    digest_hour: int = 7
    weekly_summary_hour: int = 18
    email_off: str | None = None  # Settings.email_off_reason: no SMTP configured, email deliveries skipped

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
            digest_hour=settings.digest_hour,
            weekly_summary_hour=settings.weekly_summary_hour,
            email_off=settings.email_off_reason,
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


def alert_idempotency_key(history_id: int, channel: str) -> str:
    """Stable per firing and channel, for the same reason as the Message-ID."""
    return f"alert-{history_id}-{channel}"


def alert_content(row: Any, base_url: str) -> AlertContent:
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


def push_event(content: AlertContent) -> PushEvent:
    return PushEvent(
        title=f"{content.symbol or 'DealLens'}: {content.alert_name or content.alert_type.replace('_', ' ')}",
        message=content.message,
        priority="high" if content.urgent else "default",
        tags=[content.kind],
        data={"alert_history_id": content.alert_history_id, "symbol": content.symbol, "kind": content.kind},
    )


def opted_out(row: Any, channel: str) -> str | None:
    """Why this delivery must not go out any more (preferences changed since it was planned)."""
    if row.unsubscribed_at is not None:
        return "the user unsubscribed"
    if channel == "email" and not row.email_enabled:
        return "the user turned email off"
    if channel == "push" and not row.push_webhook_url:
        return "the user removed the push webhook"
    if channel == "sms" and not row.sms_number:
        return "the user removed the phone number"
    return None


def group_by_due_time(rows: list[Any], now: dt.datetime) -> list[DeliveryGroup]:
    """Pending deliveries grouped by channel and due time (None: now; else the end of the
    user's quiet hours; urgent alerts ignore quiet hours), due-now groups first."""
    groups: dict[tuple[str, dt.datetime | None], list[int]] = defaultdict(list)
    for row in rows:
        if row.status != "pending":
            continue
        until = None if row.urgent else quiet_until(now, row.quiet_hours_start, row.quiet_hours_end, row.timezone)
        groups[(row.channel, until)].append(row.alert_history_id)
    ordered = sorted(groups.items(), key=lambda item: (item[0][1] is not None, item[0][1] or now, item[0][0]))
    return [DeliveryGroup(channel=ch, deliver_at=at, alert_history_ids=ids) for (ch, at), ids in ordered]


class InvalidRequest(ValueError):
    """A request that is wrong the same way on every retry."""


class BatchStopped(Exception):
    """A permanent session failure (bad login, our sender refused): nothing more of this
    batch can go out; what is left stays pending for the caller to park."""


class Superseded(Exception):
    """A newer attempt of the same activity took over this batch's claims: this attempt
    was given up on (frozen past its heartbeat timeout, say) and must send nothing more."""


@dataclass
class Tally:
    """Counts, and what is still outstanding (the caller retries while there is any)."""

    counts: DeliveryCounts = field(default_factory=DeliveryCounts)
    transient: list[str] = field(default_factory=list)
    elsewhere: int = 0
    session_failures: int = 0

    def add(self, **kwargs: int) -> None:
        self.counts = self.counts.plus(DeliveryCounts(**kwargs))

    def outstanding(self, what: str) -> str | None:
        """One line for the retry, or None when nothing is left to send."""
        if not (self.transient or self.elsewhere):
            return None
        reasons = self.transient[:1] or [f"{self.elsewhere} being sent by another worker"]
        return f"{len(self.transient) + self.elsewhere} {what} not sent yet, will retry: {reasons[0]}"


@dataclass
class Progress:
    """How far a batch got; read by the caller's heartbeat."""

    index: int = 0


@dataclass(frozen=True)
class _Item:
    key: dict[str, Any]  # the ledger row
    label: str  # for logs
    send: Callable[[], Awaitable[str]]  # builds and sends; the receipt (Message-ID, ...)


class DeliveryEngine:
    """One per worker process: templates compiled once, each company's sparkline drawn once
    a day (the renderer caches by series), one webhook client pool."""

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
        self._renderer = Renderer()
        self._envelope_from = parseaddr(config.mail_from)[1]
        self._webhooks = webhooks
        self._sms = sms

    # ------------------------------------------------------------ alerts

    async def plan_alerts(self, request: PlanAlertsInput, now: dt.datetime) -> PlanAlertsResult:
        """Record the intents (idempotent), then group what is pending by channel and due time."""
        sms_enabled = self._config.sms_enabled
        next_after_id: int | None = None
        if request.alert_history_ids is not None:
            ids = request.alert_history_ids
            firings, _ = await notifications.record_intents(self._engine, ids, sms_enabled=sms_enabled)
        elif request.kind is not None and request.triggered_at is not None:
            if request.after_id == 0:
                # Every firing's intents in one statement, once: later pages find them.
                firings, _ = await notifications.record_intents_for_evaluation(
                    self._engine, request.kind, request.triggered_at, sms_enabled=sms_enabled
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
            raise InvalidRequest("plan_alerts: give alert_history_ids, or kind and triggered_at")
        rows = await notifications.pending_plan(self._engine, ids)
        return PlanAlertsResult(
            firings=firings,
            already_done=sum(1 for row in rows if row.status == "sent"),
            groups=group_by_due_time(rows, now),
            next_after_id=next_after_id,
        )

    async def _pending(self, request: DeliverAlertsInput, tally: Tally) -> list[Any]:
        """The ledger checked before sending: pending rows only; opted-out users skipped."""
        rows = await notifications.pending_deliveries(self._engine, request.alert_history_ids, request.channel)
        tally.add(already_done=len(set(request.alert_history_ids)) - len(rows))
        live = []
        for row in rows:
            reason = opted_out(row, request.channel) or (self._config.email_off if request.channel == "email" else None)
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

    async def send_email(self, request: DeliverAlertsInput, *, claimant: str, progress: Progress) -> Tally:
        """Alert emails over one SMTP connection."""
        tally = Tally()
        rows = await self._pending(request, tally)
        if not rows:
            return tally
        async with SmtpMailer(self._config.smtp) as mailer:

            def item(row: Any) -> _Item:
                async def send() -> str:
                    content = alert_content(row, self._config.public_base_url)
                    message = self._email(
                        self._renderer.render_alert(content), to=row.email, to_name=row.user_name,
                        message_id=alert_message_id(row.alert_history_id, self._config.mail_domain),
                        unsubscribe_url=content.unsubscribe_url,
                    )
                    return await mailer.send(message, envelope=(self._envelope_from, [row.email]))

                return _Item(notifications.key(row.alert_history_id, "email"), f"{row.alert_history_id}/email", send)

            items = [item(r) for r in rows]
            await self._send_all(notifications.LEDGER, items, tally, claimant, progress, batch_stops=True)
        return tally

    async def send_push(self, request: DeliverAlertsInput, *, claimant: str, progress: Progress) -> Tally:
        """Signed webhooks, one POST per firing, each to the user's own endpoint."""
        tally = Tally()

        def item(row: Any) -> _Item:
            async def send() -> str:
                if not row.push_webhook_secret:
                    raise PermanentDeliveryError("push: the user's webhook has no signing secret")
                content = alert_content(row, self._config.public_base_url)
                return await self._webhooks.send(
                    url=row.push_webhook_url,
                    secret=row.push_webhook_secret,
                    event=push_event(content),
                    style=row.push_format,
                    idempotency_key=alert_idempotency_key(row.alert_history_id, "push"),
                )

            return _Item(notifications.key(row.alert_history_id, "push"), f"{row.alert_history_id}/push", send)

        rows = await self._pending(request, tally)
        await self._send_all(notifications.LEDGER, [item(r) for r in rows], tally, claimant, progress, batch_stops=False)
        return tally

    async def send_sms(self, request: DeliverAlertsInput, *, claimant: str, progress: Progress) -> Tally:
        tally = Tally()
        rows = await self._pending(request, tally)
        sms = self._sms
        if sms is None:
            for row in rows:
                await notifications.skip(self._engine, row.alert_history_id, "sms", "SMS is switched off (SMS_ENABLED)")
            tally.add(skipped=len(rows))
            return tally

        def item(row: Any) -> _Item:
            async def send() -> str:
                content = alert_content(row, self._config.public_base_url)
                return await sms.send(
                    to=row.sms_number, body=f"DealLens: {content.message}",
                    idempotency_key=alert_idempotency_key(row.alert_history_id, "sms"),
                )

            return _Item(notifications.key(row.alert_history_id, "sms"), f"{row.alert_history_id}/sms", send)

        await self._send_all(notifications.LEDGER, [item(r) for r in rows], tally, claimant, progress, batch_stops=False)
        return tally

    # ------------------------------------------------------------ digests

    async def send_digest_batch(self, request: DigestBatchInput, *, claimant: str, progress: Progress) -> Tally:
        """One batch of users: content in a few set-based reads, one SMTP connection, the
        ledger claimed before and written after each message."""
        tally = Tally()
        kind, period = request.kind, request.period
        contents, out, empty = await digests.load_batch(
            self._engine, kind, period, request.user_ids, public_base_url=self._config.public_base_url
        )
        skipped = await digests.skip(self._engine, kind, period, out, "the user opted out")
        skipped += await digests.skip(self._engine, kind, period, empty, "nothing to report: no new session, alerts or news")
        if self._config.email_off:
            skipped += await digests.skip(self._engine, kind, period, [c.user_id for c in contents], self._config.email_off)
        tally.add(skipped=skipped, already_done=len(set(request.user_ids)) - len(contents) - len(out) - len(empty))
        if not contents or self._config.email_off:
            return tally
        async with SmtpMailer(self._config.smtp) as mailer:

            def item(content: DigestContent) -> _Item:
                async def send() -> str:
                    message = self._email(
                        self._renderer.render_digest(content), to=content.user_email,
                        to_name=content.user_name,
                        message_id=digests.message_id(kind, period, content.user_id, self._config.mail_domain),
                        unsubscribe_url=content.unsubscribe_url,
                    )
                    return await mailer.send(message, envelope=(self._envelope_from, [content.user_email]))

                return _Item(digests.key(kind, period, content.user_id), f"{kind} {period} user {content.user_id}", send)

            items = [item(c) for c in contents]
            await self._send_all(digests.LEDGER, items, tally, claimant, progress, batch_stops=True)
        return tally

    # ------------------------------------------------------------ the loop

    async def _send_all(
        self, ledger: Ledger, items: list[_Item], tally: Tally, claimant: str, progress: Progress, *, batch_stops: bool
    ) -> None:
        """Claim, send, settle, one item at a time; the ledger is written after every send.

        `batch_stops`: one connection carries the batch (email), so a session failure (no
        connection, bad login, our sender refused) stops it: permanent ones raise
        BatchStopped, leaving the rest pending for the caller to park; transient ones stop
        after three in a row. Per-recipient failures (a 550, a dead webhook) never stop a batch.
        A claim found taken over by a newer attempt raises Superseded: the rest is its job.
        """
        async with self._engine.connect() as conn:
            try:
                await self._send_each(ledger, items, tally, batch_stops, claimant, conn, progress)
            except ClaimLost as error:
                raise Superseded(f"stopped: {error}") from None

    async def _send_each(
        self,
        ledger: Ledger,
        items: list[_Item],
        tally: Tally,
        batch_stops: bool,
        claimant: str,
        conn: AsyncConnection,
        progress: Progress,
    ) -> None:
        """The loop of `_send_all`, on the one connection the batch holds."""
        lease = self._lease

        async def refused(key: dict[str, Any]) -> None:
            """A claim was refused: count why, or stop when a newer attempt of ours holds it
            (it holds the rest of the batch too, and racing it row by row could send twice)."""
            blocker = await ledger.blocker(conn, key, claimant=claimant)
            if blocker == "superseded":
                raise Superseded(f"stopped: a newer attempt than {claimant} holds {ledger.table} {key}")
            if blocker == "settled":
                tally.add(already_done=1)  # settled since the pending rows were read
            else:
                tally.elsewhere += 1

        async def claim(index: int) -> bool:
            if index >= len(items):
                return False
            if await ledger.claim(conn, items[index].key, claimant=claimant, lease_seconds=lease):
                return True
            await refused(items[index].key)
            return False

        async def settle(index: int, outcome: Outcome, *, chain: bool = True, **details: Any) -> bool:
            """Settle item `index`; with `chain`, claim the next one in the same commit."""
            following = items[index + 1].key if chain and index + 1 < len(items) else None
            claimed = await ledger.settle(
                conn, items[index].key, outcome, claimant=claimant, then_claim=following, lease_seconds=lease, **details
            )
            if following is not None and not claimed:
                await refused(following)
            return claimed

        claimed = await claim(0)
        for index, item in enumerate(items):
            progress.index = index
            if not claimed:
                claimed = await claim(index + 1)
                continue
            try:
                receipt = await item.send()
            except DeliveryError as error:
                if batch_stops and error.session and error.permanent:
                    await settle(index, "released", chain=False)
                    raise BatchStopped(str(error)) from None
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
