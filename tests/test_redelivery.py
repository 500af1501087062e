"""Failures that heal themselves: parked deliveries go again on a schedule, with backoff, before
they need a person; an alert monitor whose evaluation keeps failing stays up and says why."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import time
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from activities.alerts import monitor_id
from deallens.contracts import AlertMonitorInput, MonitorStatus, NotificationResult, RetryParkedInput, RetryParkedResult
from deallens.db.redelivery import requeue_due, waiting_for_auto_retry
from deallens.domain.redelivery import AUTO_RETRY_DELAYS, MAX_AUTO_RETRIES, next_auto_retry
from tests.notify_data import deliveries, fire, make_users
from tests.smtp_sink import Sink, smtp_sink
from tests.workers import record_history, running_workers

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def test_the_backoff_grows_and_ends_with_a_person() -> None:
    assert [next_auto_retry(T0, n) for n in range(MAX_AUTO_RETRIES)] == [T0 + delay for delay in AUTO_RETRY_DELAYS]
    assert list(AUTO_RETRY_DELAYS) == sorted(AUTO_RETRY_DELAYS) and len(set(AUTO_RETRY_DELAYS)) == MAX_AUTO_RETRIES
    assert sum(AUTO_RETRY_DELAYS, dt.timedelta()) < dt.timedelta(days=1)  # "a few times over a day"
    assert next_auto_retry(T0, MAX_AUTO_RETRIES) is None
    with pytest.raises(ValueError, match="auto_retries: -1 is negative"):
        next_auto_retry(T0, -1)


async def _park(db: AsyncEngine, history_id: int, channel: str, *, ago: dt.timedelta, auto_retries: int) -> None:
    async with db.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO notification_deliveries (alert_history_id, channel, status, attempts, error, auto_retries, updated_at) "
                "VALUES (:h, :c, 'failed', 6, 'smtp: 421 too busy', :n, now() - CAST(:ago AS interval))"
            ),
            {"h": history_id, "c": channel, "n": auto_retries, "ago": ago},
        )


async def test_only_rows_whose_retry_is_due_are_requeued_once(db: AsyncEngine) -> None:
    users = await make_users(db, 2)
    firings = [await fire(db, users[0], None) for _ in range(5)]
    minute = dt.timedelta(minutes=1)
    await _park(db, firings[0], "email", ago=16 * minute, auto_retries=0)  # due (15 min)
    await _park(db, firings[0], "push", ago=16 * minute, auto_retries=0)  # due: the same firing
    await _park(db, firings[1], "email", ago=10 * minute, auto_retries=0)  # not yet
    await _park(db, firings[2], "email", ago=90 * minute, auto_retries=1)  # not yet (2 h)
    await _park(db, firings[3], "email", ago=3 * 60 * minute, auto_retries=1)  # due
    await _park(db, firings[4], "email", ago=30 * 60 * minute, auto_retries=MAX_AUTO_RETRIES)  # a person's
    async with db.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO digest_deliveries (user_id, kind, period, status, attempts, auto_retries, updated_at) VALUES "
                "(:u1, 'daily', '2026-11-30', 'failed', 6, 0, now() - interval '20 minutes'), "
                "(:u2, 'daily', '2026-11-30', 'failed', 6, 2, now() - interval '9 hours'), "
                "(:u1, 'weekly', '2026-11-29', 'failed', 6, 2, now() - interval '1 hour')"
            ),
            {"u1": users[0], "u2": users[1]},
        )
    waiting = await waiting_for_auto_retry(db)
    assert waiting.rows == 8  # every failed row but the one whose retries are used up

    requeued = await requeue_due(db, limit=50)
    assert requeued.alert_history_ids == [firings[0], firings[3]]
    assert requeued.digests == {("daily", dt.date(2026, 11, 30)): sorted(users)}
    async with db.connect() as conn:
        rows = {
            (r.alert_history_id, r.channel): (r.status, r.auto_retries)
            for r in await conn.execute(text("SELECT alert_history_id, channel, status, auto_retries FROM notification_deliveries"))
        }
    assert rows == {
        (firings[0], "email"): ("pending", 1),
        (firings[0], "push"): ("pending", 1),
        (firings[1], "email"): ("failed", 0),
        (firings[2], "email"): ("failed", 1),
        (firings[3], "email"): ("pending", 2),
        (firings[4], "email"): ("failed", MAX_AUTO_RETRIES),
    }
    # A second run (or an overlapping one) finds nothing more to do.
    again = await requeue_due(db, limit=50)
    assert (again.alert_history_ids, again.digests) == ([], {})
    # The limit bounds a run's payload: firings are taken in id order.
    await _park(db, (await fire(db, users[1], None)), "email", ago=dt.timedelta(hours=1), auto_retries=0)
    await _park(db, (await fire(db, users[1], None)), "email", ago=dt.timedelta(hours=1), auto_retries=0)
    assert len((await requeue_due(db, limit=1)).alert_history_ids) == 1


async def test_a_firing_still_sending_on_another_channel_waits(db: AsyncEngine) -> None:
    """Its notify-<id> is still running (push retrying, or held by quiet hours): re-queued under
    it, the parked email would stay pending with nobody to send it. It goes once push settles."""
    [user] = await make_users(db, 1)
    firing = await fire(db, user, None)
    await _park(db, firing, "email", ago=dt.timedelta(minutes=20), auto_retries=0)  # due
    async with db.begin() as conn:
        await conn.execute(
            text("INSERT INTO notification_deliveries (alert_history_id, channel, status) VALUES (:h, 'push', 'pending')"),
            {"h": firing},
        )
    assert (await requeue_due(db, limit=50)).alert_history_ids == []
    assert (await waiting_for_auto_retry(db)).rows == 1  # still waiting, not given up
    async with db.begin() as conn:
        await conn.execute(
            text("UPDATE notification_deliveries SET status = 'sent', sent_at = now() WHERE channel = 'push'")
        )
    assert (await requeue_due(db, limit=50)).alert_history_ids == [firing]


@pytest.fixture
def sink() -> Any:
    with smtp_sink() as sink:
        yield sink


async def test_a_parked_email_goes_out_on_the_next_automatic_retry(
    db: AsyncEngine, time_env: WorkflowEnvironment, make_settings: Any, sink: Sink, task_queue: str
) -> None:
    settings = make_settings(smtp_host="127.0.0.1", smtp_port=sink.port, smtp_tls="none", public_base_url="http://127.0.0.1:9")
    (user,) = await make_users(db, 1)
    history_id = await fire(db, user, None)
    client = time_env.client
    sink.data_reply, sink.data_reply_times = "421 4.7.0 too busy", 1000
    async with running_workers(client, settings, task_queue):
        parked = await client.execute_workflow(
            "SendAlertNotification", {"alert_history_id": history_id}, id=f"notify-{history_id}",
            task_queue=task_queue, result_type=NotificationResult,
        )
        assert parked.counts.failed == 1 and sink.messages == []

        async def heal() -> RetryParkedResult:
            handle = await client.start_workflow(
                "RetryParkedDeliveries", RetryParkedInput(), id=f"retry-parked-{secrets.token_hex(3)}",
                task_queue=task_queue, result_type=RetryParkedResult,
            )
            result = await handle.result()
            if result.alerts_started:
                await record_history(handle, "retry_parked_deliveries")
            return result

        # Parked a moment ago: its first automatic retry is 15 minutes after parking.
        assert await heal() == RetryParkedResult()
        sink.data_reply_times = 0  # the relay recovers
        async with db.begin() as conn:
            await conn.execute(text("UPDATE notification_deliveries SET updated_at = now() - interval '16 minutes'"))
        assert await heal() == RetryParkedResult(alerts_started=1)
        resent = await client.get_workflow_handle(f"notify-{history_id}", result_type=NotificationResult).result()

    assert resent.counts.sent == 1
    assert len(sink.messages) == 1
    (row,) = await deliveries(db)
    assert row.status == "sent"
    async with db.connect() as conn:
        assert (await conn.execute(text("SELECT auto_retries FROM notification_deliveries"))).scalar_one() == 1


# ------------------------------------------------------------------ a monitor that keeps failing


async def _status(handle: Any) -> MonitorStatus:
    return await handle.query("status", result_type=MonitorStatus)


async def _until(check: Any, seconds: float = 30) -> MonitorStatus:
    deadline = time.monotonic() + seconds
    while True:
        value = await check()
        if value is not None or time.monotonic() > deadline:
            assert value is not None, "the monitor did not reach the expected state in time"
            return value
        await asyncio.sleep(0.2)


async def test_a_monitor_whose_evaluation_fails_permanently_keeps_running_and_says_why(
    db: AsyncEngine, dev_env: WorkflowEnvironment, make_settings: Any, task_queue: str
) -> None:
    client = dev_env.client
    settings = make_settings(smtp_host="127.0.0.1", smtp_port=9)
    # The schema no longer matches the code (a migration gone wrong): every deal evaluation fails
    # the same way. Before, the monitor retried it forever without a word.
    async with db.begin() as conn:
        await conn.execute(text("ALTER TABLE deals RENAME TO deals_moved_away"))
    handle = None
    try:
        async with running_workers(client, settings, task_queue):
            handle = await client.start_workflow(
                "AlertMonitor", AlertMonitorInput(kind="deal"), id=monitor_id("deal"), task_queue=task_queue
            )
            await handle.signal("new_data", {})

            async def failing() -> MonitorStatus | None:
                current = await _status(handle)
                return current if current.failed_evaluations >= 1 else None

            broken = await _until(failing)
            assert broken.failing_since is not None and broken.evaluations == 0
            assert broken.last_error is not None and broken.last_error.startswith("PermanentDatabaseError: ")
            assert "deals" in broken.last_error and "starter.py migrate" in broken.last_error
            assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING

            async with db.begin() as conn:
                await conn.execute(text("ALTER TABLE deals_moved_away RENAME TO deals"))
            await handle.signal("new_data", {})

            async def healed() -> MonitorStatus | None:
                current = await _status(handle)
                return current if current.evaluations >= 1 else None

            recovered = await _until(healed)
            assert (recovered.failed_evaluations, recovered.failing_since, recovered.last_error) == (0, None, None)
    finally:
        async with db.begin() as conn:
            await conn.execute(text("ALTER TABLE IF EXISTS deals_moved_away RENAME TO deals"))
        if handle is not None:
            await handle.terminate("test over")
