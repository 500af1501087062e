"""No SMTP configured outside `make run` means email is off: alert emails and digests are
skipped with the reason, never sent to a guessed localhost:1025."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import ActivityEnvironment

from activities.notifications import NotificationActivities, NotifyConfig
from deallens.contracts import DeliverAlertsInput, DigestBatchInput, DigestPlanInput
from deallens.db import notifications
from deallens.notify.push import WebhookSender
from tests.notify_data import deliveries, digest_ledger, fire, make_users, seed_market, watch


def _env() -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id="email-off", activity_id="1", attempt=1)
    return env


async def test_without_smtp_host_alert_emails_and_digests_are_skipped_with_the_reason(
    db: AsyncEngine, make_settings: Any
) -> None:
    settings = make_settings()
    assert not settings.email_enabled
    (user,) = await make_users(db, 1)
    history_id = await fire(db, user, None)
    await notifications.record_intents(db, [history_id], sms_enabled=False)
    async with httpx.AsyncClient(timeout=5) as http:
        acts = NotificationActivities(db, NotifyConfig.from_settings(settings), webhooks=WebhookSender(http), sms=None)
        counts = await _env().run(acts.send_email, DeliverAlertsInput(channel="email", alert_history_ids=[history_id]))
        assert (counts.sent, counts.skipped, counts.failed) == (0, 1, 0)
        (row,) = await deliveries(db)
        assert row.status == "skipped" and row.attempts == 0
        assert row.error.startswith("email is OFF: SMTP_HOST is not set")

        period = dt.date(2026, 11, 25)  # a Wednesday: the window before it holds a session
        companies = await seed_market(db, ["AAPL"], until=period)
        await watch(db, [user], list(companies.values()))
        plan = await _env().run(acts.plan_digests, DigestPlanInput(kind="daily", period=period))
        assert plan.pending_user_ids == [user]
        sent = await _env().run(acts.send_digest_batch, DigestBatchInput(kind="daily", period=period, user_ids=[user]))
        assert (sent.sent, sent.skipped, sent.failed, sent.already_done) == (0, 1, 0, 0)
        (digest,) = await digest_ledger(db)
        assert digest.status == "skipped" and digest.error.startswith("email is OFF")
