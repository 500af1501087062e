"""The send activities against a real SMTP server, webhook receiver and PostgreSQL: claims keep
two overlapping senders off one delivery, a few bad recipients never hold up the rest, a
message that cannot be built fails alone, a session failure stops the batch without
burning every delivery, and preferences are applied where they belong."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.notifications import NotificationActivities, NotifyConfig
from deallens.contracts import DeliverAlertsInput
from deallens.db import notifications
from deallens.notify.push import WebhookSender
from deallens.sim.serve import serve_asgi
from tests.notify_data import deliveries, digest_ledger, fire, make_users, seed_market, watch
from tests.smtp_sink import Sink, smtp_sink
from workflows.notifications import default_period


def activities(engine: AsyncEngine, settings: Any, http: httpx.AsyncClient) -> NotificationActivities:
    webhooks = WebhookSender(http, allow_private_hosts=settings.push_allow_private_hosts)
    return NotificationActivities(engine, NotifyConfig.from_settings(settings), webhooks=webhooks, sms=None)


def environment(workflow_id: str, attempt: int = 1) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id=workflow_id, activity_id="1", attempt=attempt)
    return env


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


async def test_two_overlapping_senders_deliver_each_email_once(
    db: AsyncEngine, make_settings: Any, http: httpx.AsyncClient
) -> None:
    users = await make_users(db, 30)
    ids = [await fire(db, user, None) for user in users]
    await notifications.record_intents(db, ids, sms_enabled=False)

    def slow(_: int) -> None:
        import time

        time.sleep(0.01)  # keep both senders busy at once

    with smtp_sink(on_data=slow) as sink:
        acts = activities(db, make_settings(smtp_host="127.0.0.1", smtp_port=sink.port), http)
        request = DeliverAlertsInput(channel="email", alert_history_ids=ids)
        # Two different workflows (a burst's batch and a hand-started notify-<id>, say).
        outcomes = await asyncio.gather(
            environment("notify-batch-a").run(acts.send_email, request),
            environment("retry-b").run(acts.send_email, request),
            return_exceptions=True,
        )
    sent = Counter(sink.message_ids())
    assert sorted(sent) == sorted(f"<alert-{h}-email@deallens.local>" for h in ids)
    assert set(sent.values()) == {1}
    assert {r.status for r in await deliveries(db)} == {"sent"}
    # Each row was claimed (attempted) once, by one of the two; a sender that met rows the
    # other held says so (retryable) instead of sending them.
    assert sum(r.attempts for r in await deliveries(db)) == len(ids)
    for outcome in outcomes:
        assert not isinstance(outcome, BaseException) or (
            isinstance(outcome, ApplicationError) and "being sent by another worker" in str(outcome)
        ), outcome


async def test_a_later_attempt_takes_over_the_claims_of_a_dead_one(
    db: AsyncEngine, make_settings: Any, http: httpx.AsyncClient
) -> None:
    (user,) = await make_users(db, 1)
    history_id = await fire(db, user, None)
    await notifications.record_intents(db, [history_id], sms_enabled=False)
    # Attempt 1 claimed the row and died (SIGKILL) before settling it.
    claimed = await notifications.LEDGER.claim(
        db, notifications.key(history_id, "email"), claimant="wf/run/1#1", lease_seconds=600
    )
    assert claimed
    with smtp_sink() as sink:
        acts = activities(db, make_settings(smtp_host="127.0.0.1", smtp_port=sink.port), http)
        request = DeliverAlertsInput(channel="email", alert_history_ids=[history_id])
        other = environment("someone-else")
        with pytest.raises(ApplicationError, match="being sent by another worker"):
            await other.run(acts.send_email, request)
        retry = ActivityEnvironment()
        retry.info = dataclasses.replace(retry.info, workflow_id="wf", workflow_run_id="run", activity_id="1", attempt=2)
        result = await retry.run(acts.send_email, request)
    assert result.sent == 1 and len(sink.messages) == 1


async def test_a_thawed_attempt_never_races_its_successor(
    db: AsyncEngine, make_settings: Any, http: httpx.AsyncClient
) -> None:
    """Attempt 1 hangs on one message past its heartbeat timeout (a frozen worker that no
    cancellation reaches); attempt 2 takes over (trying the hung row last: it was attempted
    before); attempt 1 wakes up mid-way through attempt 2's batch. It may settle the row it
    still holds, but it must not take the row attempt 2 is sending, nor claim any row
    ahead of it: it stops at the first row a newer attempt holds. Nothing goes out twice."""
    import threading
    import time

    users = await make_users(db, 20)
    ids = [await fire(db, user, None) for user in users]
    await notifications.record_intents(db, ids, sms_enabled=False)
    hang_at, hung, thaw = 5, threading.Event(), threading.Event()

    def frozen(number: int) -> None:
        if number == hang_at:
            hung.set()
            thaw.wait(30)  # accepted once thawed: the worker hears 250 late

    def slow(_: int) -> None:
        time.sleep(0.05)

    request = DeliverAlertsInput(channel="email", alert_history_ids=ids)
    with smtp_sink(on_data=frozen) as first_sink, smtp_sink(on_data=slow) as second_sink:
        first = activities(db, make_settings(smtp_host="127.0.0.1", smtp_port=first_sink.port), http)
        second = activities(db, make_settings(smtp_host="127.0.0.1", smtp_port=second_sink.port), http)
        old = asyncio.create_task(environment("wf", attempt=1).run(first.send_email, request))
        while not hung.is_set():
            assert not old.done()
            await asyncio.sleep(0.01)
        new = asyncio.create_task(environment("wf", attempt=2).run(second.send_email, request))
        while len(second_sink.messages) < 4:
            await asyncio.sleep(0.01)
        thaw.set()
        with pytest.raises(ApplicationError, match="a newer attempt than wf/.*#1 holds") as caught:
            await old
        assert not caught.value.non_retryable
        # Attempt 2 meets the hung row last, settled by attempt 1 meanwhile: already done.
        result = await new
    expected = [f"<alert-{h}-email@deallens.local>" for h in ids]
    assert first_sink.message_ids() == expected[:hang_at]  # nothing after the thaw
    sent = Counter(first_sink.message_ids() + second_sink.message_ids())
    assert sorted(sent) == sorted(expected)
    assert set(sent.values()) == {1}
    assert (result.sent, result.already_done) == (len(ids) - hang_at, hang_at)
    assert {r.status for r in await deliveries(db)} == {"sent"}


@pytest.fixture
async def receivers() -> AsyncIterator[tuple[str, list[str]]]:
    got: list[str] = []

    async def ok(request: Request) -> JSONResponse:
        got.append(request.path_params["user"])
        return JSONResponse({"ok": True})

    async def down(request: Request) -> JSONResponse:
        return JSONResponse({"error": "down"}, status_code=503)

    app = Starlette(routes=[Route("/ok/{user}", ok, methods=["POST"]), Route("/down/{user}", down, methods=["POST"])])
    async with serve_asgi(app) as url:
        yield url, got


async def test_dead_webhooks_do_not_hold_up_the_rest(
    db: AsyncEngine, make_settings: Any, http: httpx.AsyncClient, receivers: tuple[str, list[str]]
) -> None:
    url, got = receivers
    users = []
    for n in range(10):
        route = "down" if n < 3 else "ok"
        users += await make_users(
            db, 1, start=n + 1, email_enabled=False, push_webhook_url=f"{url}/{route}/{n + 1}",
            push_webhook_secret="secret-of-the-user",
        )
    ids = [await fire(db, user, None) for user in users]
    await notifications.record_intents(db, ids, sms_enabled=False)
    acts = activities(db, make_settings(push_allow_private_hosts=True), http)
    with pytest.raises(ApplicationError, match="3 push notifications not sent yet"):
        await environment("w").run(acts.send_push, DeliverAlertsInput(channel="push", alert_history_ids=ids))
    assert sorted(got, key=int) == [str(n) for n in range(4, 11)]
    rows = await deliveries(db)
    assert Counter(r.status for r in rows) == {"sent": 7, "pending": 3}
    # The failed ones go last next time.
    pending = await notifications.pending_deliveries(db, ids, "push")
    assert [r.alert_history_id for r in pending] == ids[:3]


async def test_private_webhook_hosts_are_refused_unless_allowed(
    db: AsyncEngine, make_settings: Any, http: httpx.AsyncClient, receivers: tuple[str, list[str]]
) -> None:
    url, got = receivers
    (user,) = await make_users(db, 1, email_enabled=False, push_webhook_url=f"{url}/ok/1", push_webhook_secret="s" * 16)
    history_id = await fire(db, user, None)
    await notifications.record_intents(db, [history_id], sms_enabled=False)
    acts = activities(db, make_settings(), http)
    result = await environment("w").run(acts.send_push, DeliverAlertsInput(channel="push", alert_history_ids=[history_id]))
    assert (result.failed, got) == (1, [])
    (row,) = await deliveries(db)
    assert row.status == "failed" and "non-public address (127.0.0.1)" in row.error
    assert "/ok/1" not in row.error


async def test_an_address_that_cannot_be_used_fails_alone(
    db: AsyncEngine, make_settings: Any, http: httpx.AsyncClient
) -> None:
    users = await make_users(db, 3)
    async with db.begin() as conn:
        await conn.execute(
            text("UPDATE users SET email = 'user1@example.com, victim@example.org' WHERE id = :id"), {"id": users[0]}
        )
    ids = [await fire(db, user, None) for user in users]
    await notifications.record_intents(db, ids, sms_enabled=False)
    with smtp_sink() as sink:
        acts = activities(db, make_settings(smtp_host="127.0.0.1", smtp_port=sink.port), http)
        result = await environment("w").run(acts.send_email, DeliverAlertsInput(channel="email", alert_history_ids=ids))
    assert (result.sent, result.failed) == (2, 1)
    assert all("victim" not in str(m["To"]) for m in sink.messages)
    bad = next(r for r in await deliveries(db) if r.alert_history_id == ids[0])
    assert bad.status == "failed" and "exactly one email address" in bad.error


async def test_a_login_failure_stops_the_batch_and_leaves_it_pending(
    db: AsyncEngine, make_settings: Any, http: httpx.AsyncClient
) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    from tests.smtp_sink import _Handler, free_port

    users = await make_users(db, 5)
    ids = [await fire(db, user, None) for user in users]
    await notifications.record_intents(db, ids, sms_enabled=False)
    sink, port = Sink(), free_port()
    controller = Controller(
        _Handler(sink), hostname="127.0.0.1", port=port, auth_require_tls=False,
        authenticator=lambda *args: AuthResult(success=False, handled=False),
    )
    controller.start()
    try:
        settings = make_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_username="bot", smtp_password="hunter2-wrong")
        acts = activities(db, settings, http)
        with pytest.raises(ApplicationError) as caught:
            await environment("w").run(acts.send_email, DeliverAlertsInput(channel="email", alert_history_ids=ids))
    finally:
        controller.stop()
    assert caught.value.non_retryable and "authentication failed as bot" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    rows = await deliveries(db)
    # One login attempt, not five; nothing burnt: the workflow parks them with this reason.
    assert [(r.status, r.attempts) for r in rows] == [("pending", 0)] * 5
    assert sink.connections == 1


async def test_digests_skip_opted_out_and_empty_and_alert_unsubscribes_keep_digests(db: AsyncEngine) -> None:
    from deallens.db import digests

    users = await make_users(db, 4)
    ids = await seed_market(db, ["AAPL"], until=dt.date(2026, 11, 27))
    await watch(db, users[:3], [ids["AAPL"]])  # users[3] has nothing to report
    async with db.begin() as conn:
        # Alert emails off: digests still come (they are their own list).
        await conn.execute(text("UPDATE users SET email_enabled = false WHERE id = :id"), {"id": users[0]})
        # A failed digest re-queued for a user who has since opted out.
        await conn.execute(
            text("INSERT INTO digest_deliveries (user_id, kind, period, status) VALUES (:u, 'daily', '2026-11-28', 'pending')"),
            {"u": users[1]},
        )
        await conn.execute(text("UPDATE users SET digest_opt_in = false WHERE id = :id"), {"id": users[1]})
    period = dt.date(2026, 11, 28)
    pending, done, not_eligible = await digests.plan(db, "daily", period, None)
    assert (pending, done, not_eligible) == ([users[0], users[2], users[3]], 0, 0)
    contents, opted_out, empty = await digests.load_batch(db, "daily", period, pending, public_base_url="http://x")
    assert ([c.user_id for c in contents], opted_out, empty) == ([users[0], users[2]], [], [users[3]])
    assert {r.user_id: r.status for r in await digest_ledger(db)}[users[1]] == "skipped"


@pytest.mark.parametrize(
    ("kind", "now", "expected"),
    [
        ("daily", "2026-11-28T12:00:05", "2026-11-28"),
        ("daily", "2026-11-28T09:00:00", "2026-11-27"),  # by hand before noon: yesterday's slot
        ("weekly", "2026-11-29T14:00:05", "2026-11-29"),  # Sunday
        ("weekly", "2026-11-30T01:00:00", "2026-11-29"),  # Monday catch-up: still Sunday's
        ("weekly", "2026-11-29T13:00:00", "2026-11-22"),  # Sunday before 14:00: last week's
    ],
)
def test_default_period_is_the_latest_slot(kind: str, now: str, expected: str) -> None:
    moment = dt.datetime.fromisoformat(now).replace(tzinfo=dt.UTC)
    assert default_period(kind, moment) == dt.date.fromisoformat(expected)  # type: ignore[arg-type]


def test_due_time_groups_hold_quiet_hours_and_let_urgent_through() -> None:
    """The engine's planning, without Temporal or a database: pending rows only, grouped
    by channel and due time, due-now groups first, urgent alerts ignoring quiet hours."""
    from types import SimpleNamespace

    from deallens.notify.delivery import group_by_due_time

    now = dt.datetime(2026, 11, 27, 23, 30, tzinfo=dt.UTC)  # 23:30 in London, quiet 22-07

    def row(history_id: int, channel: str, *, urgent: bool = False, quiet: bool = True, status: str = "pending") -> Any:
        return SimpleNamespace(
            alert_history_id=history_id, channel=channel, status=status, urgent=urgent, timezone="Europe/London",
            quiet_hours_start=dt.time(22) if quiet else None, quiet_hours_end=dt.time(7) if quiet else None,
        )

    rows = [
        row(1, "email"), row(2, "email", urgent=True), row(3, "push"), row(4, "email", quiet=False),
        row(5, "email", status="sent"), row(6, "push", urgent=True),
    ]
    morning = dt.datetime(2026, 11, 28, 7, 0, tzinfo=dt.UTC)
    assert [(g.channel, g.deliver_at, g.alert_history_ids) for g in group_by_due_time(rows, now)] == [
        ("email", None, [2, 4]),
        ("push", None, [6]),
        ("email", morning, [1]),
        ("push", morning, [3]),
    ]


async def test_the_engine_runs_without_temporal(db: AsyncEngine, make_settings: Any, http: httpx.AsyncClient) -> None:
    """deallens/notify/delivery.py is callable from anything (a CLI, a test): a claimant
    string and a progress counter are all it needs from its caller."""
    from deallens.notify.delivery import DeliveryEngine, NotifyConfig as EngineConfig, Progress

    users = await make_users(db, 3)
    ids = [await fire(db, user, None) for user in users]
    await notifications.record_intents(db, ids, sms_enabled=False)
    async with db.begin() as conn:
        await conn.execute(text("UPDATE users SET unsubscribed_at = now() WHERE id = :id"), {"id": users[2]})
    with smtp_sink() as sink:
        settings = make_settings(smtp_host="127.0.0.1", smtp_port=sink.port)
        engine = DeliveryEngine(db, EngineConfig.from_settings(settings), webhooks=WebhookSender(http), sms=None)
        progress = Progress()
        request = DeliverAlertsInput(channel="email", alert_history_ids=ids)
        tally = await engine.send_email(request, claimant="cli/resend#1", progress=progress)
        again = await engine.send_email(request, claimant="cli/resend#2", progress=Progress())
    assert (tally.counts.sent, tally.counts.skipped, tally.outstanding("emails")) == (2, 1, None)
    assert progress.index == 1
    assert (again.counts.sent, again.counts.already_done) == (0, 3)
    assert sorted(sink.message_ids()) == sorted(f"<alert-{h}-email@deallens.local>" for h in ids[:2])
