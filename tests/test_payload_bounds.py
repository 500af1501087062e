"""Payloads stay bounded as users and firings grow: the digest plan for 1,000,000 users, a
burst of 100,000 firings, and the fan-outs' histories across continue-as-new, measured as
Temporal encodes them (the data converter the worker uses)."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from google.protobuf.message import Message
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities.notifications import NotificationActivities, NotifyConfig
from deallens.contracts import (
    DeliveryCounts,
    DigestBatchInput,
    DigestCursor,
    DigestInput,
    DigestPageInput,
    DigestResult,
    NotificationResult,
    PlanAlertsInput,
    PlanDueDigestsInput,
    SendAlertNotificationBatchInput,
)
from deallens.notify.push import WebhookSender
from codec import PAYLOAD_TOO_LARGE
from temporal_client import DATA_CONVERTER
from tests.codec_support import EchoInput, EchoWorkflow, echo
from tests.notify_data import deliveries, digest_ledger, make_users, seed_market, watch
from tests.smtp_sink import Sink, smtp_sink
from tests.workers import record_history, running_workers
from workflows.notifications import DIGEST_PAGE_MAX

BURST_PAGE = SendAlertNotificationBatchInput.model_fields["page_size"].default

LIMIT = 256 * 1024
AT = dt.datetime(2026, 12, 1, 6, tzinfo=dt.UTC)


async def encoded_size(value: Any) -> int:
    (payload,) = await DATA_CONVERTER.encode([value])
    return payload.ByteSize()


def payloads(message: Message) -> Iterator[Payload]:
    """Every Payload inside a history event (inputs, results, failures' details, ...)."""
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if isinstance(value, Message):
            items: Any = [value]
        elif field.message_type.GetOptions().map_entry:  # a map (search attributes, headers, memo)
            items = value.values()
        else:
            items = value
        for item in items:
            if isinstance(item, Payload):
                yield item
            elif isinstance(item, Message):
                yield from payloads(item)


async def runs_largest_payload(client: Client, workflow_id: str, first_run_id: str) -> tuple[int, int]:
    """(runs in the continue-as-new chain, largest payload of any of their events)."""
    run_id: str | None = first_run_id
    runs = largest = 0
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        runs += 1
        run_id = None
        for event in history.events:
            for payload in payloads(event):
                largest = max(largest, payload.ByteSize())
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
                run_id = event.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return runs, largest


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


@pytest.fixture
def sink() -> Any:
    with smtp_sink() as sink:
        yield sink


@pytest.fixture
def settings(make_settings: Any, sink: Sink) -> Any:
    return make_settings(smtp_host="127.0.0.1", smtp_port=sink.port, smtp_tls="none", public_base_url="http://127.0.0.1:9")


# ------------------------------------------------------------------ digests


# A million rows inserted and planned: about 75 s on an idle 2-core machine, several times
# that on a busy one, beyond the suite's 300 s default.
@pytest.mark.timeout(1200)
async def test_the_digest_plan_for_a_million_users_stays_under_256_kb(
    db: AsyncEngine, make_settings: Any, http: httpx.AsyncClient
) -> None:
    # Three zones whose digest time is AT (06:00 UTC): UTC, and two whose local date differs
    # (Kiritimati is on 1 December 20:00, Pago Pago on 30 November 19:00); every tenth opted out.
    # (Tokens in order rather than random: the unique index fills 1,000,000 rows much faster.)
    async with db.begin() as conn:
        await conn.execute(
            text(
                """
                INSERT INTO users (email, unsubscribe_token, timezone, digest_hour, digest_opt_in)
                SELECT 'u' || i || '@example.com', 't' || i,
                       (ARRAY['UTC', 'Pacific/Kiritimati', 'Pacific/Pago_Pago'])[i % 3 + 1],
                       (ARRAY[6, 20, 19])[i % 3 + 1],
                       i % 10 <> 0
                FROM generate_series(1, 1000000) AS i
                """
            )
        )
    acts = NotificationActivities(db, NotifyConfig.from_settings(make_settings()), webhooks=WebhookSender(http), sms=None)
    env = ActivityEnvironment()
    request = PlanDueDigestsInput(kind="daily", at=AT)
    plan = await env.run(acts.plan_due_digests, request)
    assert plan.pending == 900_000 and plan.already_done == 0
    assert plan.periods == [dt.date(2026, 11, 30), dt.date(2026, 12, 1)]
    sizes = [await encoded_size(request), await encoded_size(plan)]

    # The workflow's pages: the largest any input allows (5,000 users a batch, 32 batches in
    # flight) is capped at DIGEST_PAGE_MAX ids.
    seen = 0
    biggest_page: list[int] = []
    for period in plan.periods:
        after = 0
        while True:
            page_request = DigestPageInput(kind="daily", period=period, after_user_id=after, limit=DIGEST_PAGE_MAX)
            page = await env.run(acts.page_digests, page_request)
            if not page.user_ids:
                break
            sizes += [await encoded_size(page_request), await encoded_size(page)]
            seen += len(page.user_ids)
            after = page.user_ids[-1]
            biggest_page = max(biggest_page, page.user_ids, key=len)
    assert seen == 900_000
    assert len(biggest_page) == DIGEST_PAGE_MAX
    batch = DigestBatchInput(kind="daily", period=plan.periods[-1], user_ids=biggest_page[-5_000:])
    cursor = DigestInput(
        batch_size=5_000, parallel_batches=32,
        resume=DigestCursor(
            periods=plan.periods, index=1, after_user_id=biggest_page[-1], users=900_000, batches=150,
            counts=DeliveryCounts(sent=750_000),
        ),
    )
    sizes += [await encoded_size(batch), await encoded_size(cursor)]
    assert max(sizes) < LIMIT, f"largest payload {max(sizes)} bytes"


async def test_a_long_digest_fan_out_continues_as_new_with_its_cursor(
    db: AsyncEngine, time_env: WorkflowEnvironment, settings: Any, sink: Sink, task_queue: str
) -> None:
    users = await make_users(db, 7)
    ids = await seed_market(db, ["AAPL"], until=dt.date(2026, 11, 27))
    await watch(db, users, [ids["AAPL"]])
    period = dt.date(2026, 11, 28)
    async with running_workers(time_env.client, settings, task_queue):
        handle = await time_env.client.start_workflow(
            "SendDailyDigest",
            DigestInput(date=period, batch_size=2, parallel_batches=1, pages_per_run=2),
            id=f"daily-{secrets.token_hex(4)}",
            task_queue=task_queue,
            result_type=DigestResult,
        )
        result = await handle.result()
        # The first run: its pages, batches and the continue-as-new with the cursor.
        await record_history(
            time_env.client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id),
            "send_daily_digest_continued",
        )

    # Pages of two users, two pages a run: 2+2 | 2+1 | the empty page that ends it.
    runs, largest = await runs_largest_payload(time_env.client, handle.id, handle.first_execution_run_id or handle.result_run_id)
    assert runs == 3
    assert (result.counts.sent, result.users, result.batches, result.periods) == (7, 7, 4, [period])
    assert sorted(sink.message_ids()) == sorted(f"<digest-daily-{period}-{u}@deallens.local>" for u in users)
    assert [r.status for r in await digest_ledger(db)] == ["sent"] * 7
    assert largest < LIMIT


# ------------------------------------------------------------------ alert bursts


async def burst(engine: AsyncEngine, users: int, firings: int, at: dt.datetime) -> None:
    """`firings` price alerts of `users` users, all fired in one evaluation at `at`."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                """
                INSERT INTO users (email, name) SELECT 'user' || i || '@example.com', 'User ' || i
                FROM generate_series(1, CAST(:users AS int)) AS i
                """
            ),
            {"users": users},
        )
        await conn.execute(
            text(
                """
                INSERT INTO alerts (user_id, kind, params, name)
                SELECT (i % CAST(:users AS int)) + 1, 'price', '{"type": "price_above", "threshold": "200"}', 'burst ' || i
                FROM generate_series(1, CAST(:firings AS int)) AS i
                """
            ),
            {"users": users, "firings": firings},
        )
        await conn.execute(
            text(
                """
                INSERT INTO alert_history (alert_id, triggered_at, value, threshold, message, dedup_key)
                SELECT id, :at, 201.5, 200, 'AAPL rose above 200.00', 'burst' FROM alerts
                """
            ),
            {"at": at},
        )


async def test_a_burst_of_20000_firings_is_planned_in_bounded_pages(
    db: AsyncEngine, make_settings: Any, http: httpx.AsyncClient
) -> None:
    at = dt.datetime(2026, 12, 1, 15, 0, tzinfo=dt.UTC)
    await burst(db, 2_000, 20_000, at)
    async with db.begin() as conn:
        await conn.execute(text("ANALYZE alert_history"))  # as autovacuum would after such an insert
    acts = NotificationActivities(db, NotifyConfig.from_settings(make_settings()), webhooks=WebhookSender(http), sms=None)
    env = ActivityEnvironment()
    planned: list[int] = []
    sizes = []
    after = 0
    firings = 0
    while True:
        request = PlanAlertsInput(kind="price", triggered_at=at, after_id=after, limit=BURST_PAGE)
        plan = await env.run(acts.plan_alerts, request)
        sizes += [await encoded_size(request), await encoded_size(plan)]
        firings += plan.firings
        planned += [i for group in plan.groups for i in group.alert_history_ids]
        if plan.next_after_id is None:
            break
        after = plan.next_after_id
    assert firings == 20_000
    assert len(planned) == len(set(planned)) == 20_000  # one email each, none twice
    assert len(sizes) == 2 * 20_000 // BURST_PAGE
    assert max(sizes) < 64 * 1024, f"largest payload {max(sizes)} bytes"
    async with db.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM notification_deliveries"))).scalar_one() == 20_000


async def test_a_burst_is_delivered_page_by_page_and_continues_as_new(
    db: AsyncEngine, time_env: WorkflowEnvironment, settings: Any, sink: Sink, task_queue: str
) -> None:
    at = dt.datetime(2026, 12, 1, 15, 0, tzinfo=dt.UTC)
    await burst(db, 30, 30, at)
    async with running_workers(time_env.client, settings, task_queue):
        handle = await time_env.client.start_workflow(
            "SendAlertNotificationBatch",
            # Small pages so that a small burst crosses pages and runs: 3 pages of 10, 2 a run.
            SendAlertNotificationBatchInput(kind="price", triggered_at=at, page_size=10, pages_per_run=2),
            id=f"notify-batch-price-{secrets.token_hex(3)}",
            task_queue=task_queue,
            result_type=NotificationResult,
        )
        result = await handle.result()
        await record_history(
            time_env.client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id),
            "send_alert_notification_batch",
        )

    runs, largest = await runs_largest_payload(time_env.client, handle.id, handle.first_execution_run_id or handle.result_run_id)
    assert runs == 2
    assert (result.firings, result.counts.sent) == (30, 30)
    assert len(sink.messages) == len(set(sink.message_ids())) == 30
    assert {r.status for r in await deliveries(db)} == {"sent"}
    assert largest < LIMIT


# ------------------------------------------------------------------ Temporal's 2 MiB limit


async def activity_attempts(handle: Any) -> list[tuple[int, str]]:
    """(attempt, failure message) of each failed or completed activity attempt in the history."""
    seen = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            seen.append((event.activity_task_started_event_attributes.attempt, ""))
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
            seen[-1] = (seen[-1][0], event.activity_task_failed_event_attributes.failure.message)
    return seen


async def test_an_activity_result_over_2_mib_fails_once_with_one_clear_line(dev_env: WorkflowEnvironment, task_queue: str) -> None:
    """Without the guard the SDK core refuses it with a retryable "PayloadsTooLarge" (and the
    next attempt builds the same result again); the guard fails it once, naming the activity."""
    async with Worker(dev_env.client, task_queue=task_queue, workflows=[EchoWorkflow], activities=[echo]):
        handle = await dev_env.client.start_workflow(
            EchoWorkflow.run, EchoInput(note="big", result_chars=2_200_000), id=f"big-{secrets.token_hex(4)}", task_queue=task_queue
        )
        with pytest.raises(WorkflowFailureError) as raised:
            await handle.result()
        cause = raised.value.cause.cause
        assert isinstance(cause, ApplicationError) and cause.type == PAYLOAD_TOO_LARGE and cause.non_retryable
        line = cause.message
        assert "\n" not in line
        assert line.startswith(f"payload of activity TestCodecEcho of workflow TestCodecEcho ({handle.id}) is 2,200,0")
        assert line.endswith("bytes, over Temporal's 2,097,152-byte (2 MiB) limit: refused before sending; pass database ids or pages instead")
        # One attempt of the three the retry policy allows, failed with that line (not the server's).
        assert await activity_attempts(handle) == [(1, line)]


async def test_an_activity_result_of_1_mb_passes(dev_env: WorkflowEnvironment, task_queue: str) -> None:
    async with Worker(dev_env.client, task_queue=task_queue, workflows=[EchoWorkflow], activities=[echo]):
        result = await dev_env.client.execute_workflow(
            EchoWorkflow.run, EchoInput(note="fits", result_chars=1_000_000), id=f"fits-{secrets.token_hex(4)}", task_queue=task_queue
        )
    assert result.note == "FITS" and len(result.filler) == 1_000_000


async def test_an_oversize_workflow_input_is_refused_by_the_client_before_sending(dev_env: WorkflowEnvironment, task_queue: str) -> None:
    workflow_id = f"huge-input-{secrets.token_hex(4)}"
    with pytest.raises(ApplicationError, match=rf"payload of workflow {workflow_id} is 2,[0-9,]+ bytes, over Temporal's") as raised:
        await dev_env.client.start_workflow(
            EchoWorkflow.run, ["x" * 2_200_000], id=workflow_id, task_queue=task_queue  # type: ignore[arg-type]
        )
    assert raised.value.non_retryable
