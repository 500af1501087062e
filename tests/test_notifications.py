"""SendAlertNotification, SendDailyDigest and SendWeeklySummary through the real workers, a real
PostgreSQL and a real SMTP server on loopback: exactly once per (firing, channel), permanent
refusals recorded, transient ones retried then parked, quiet hours, push signatures, digests."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from deallens.contracts import DigestInput, DigestResult, NotificationResult, SendAlertNotificationInput
from deallens.db.notifications import requeue_alerts, retry_candidates
from deallens.notify import push
from deallens.sim.serve import serve_asgi
from tests.notify_data import deliveries, digest_ledger, fire, make_users, seed_market, watch
from tests.smtp_sink import Sink, smtp_sink
from tests.workers import record_history, running_workers

TODAY = dt.date(2026, 11, 27)


@pytest.fixture
def sink() -> Any:
    with smtp_sink() as sink:
        yield sink


@pytest.fixture
def settings(make_settings: Any, sink: Sink) -> Any:
    return make_settings(
        smtp_host="127.0.0.1", smtp_port=sink.port, smtp_tls="none", public_base_url="http://127.0.0.1:9",
        unsubscribe_mailto="unsubscribe@deallens.local", push_allow_private_hosts=True,
    )


async def notify(client: Client, task_queue: str, history_id: int, *, record: str | None = None) -> NotificationResult:
    handle = await client.start_workflow(
        "SendAlertNotification",
        SendAlertNotificationInput(alert_history_id=history_id),
        id=f"notify-{history_id}-{secrets.token_hex(3)}",
        task_queue=task_queue,
        result_type=NotificationResult,
    )
    result = await handle.result()
    if record:
        await record_history(handle, record)
    return result


async def digest(client: Client, task_queue: str, kind: str, *, record: str | None = None, **fields: Any) -> DigestResult:
    workflow = {"daily": "SendDailyDigest", "weekly": "SendWeeklySummary"}[kind]
    handle = await client.start_workflow(
        workflow,
        DigestInput(**fields),
        id=f"{kind}-{secrets.token_hex(4)}",
        task_queue=task_queue,
        result_type=DigestResult,
    )
    result = await handle.result()
    if record:
        await record_history(handle, record)
    return result


# ------------------------------------------------------------------ alert emails


async def test_alert_email_is_sent_once_with_a_stable_message_id(
    db: AsyncEngine, time_env: WorkflowEnvironment, settings: Any, sink: Sink, task_queue: str
) -> None:
    (user,) = await make_users(db, 1)
    ids = await seed_market(db, ["AAPL"], until=TODAY)
    history_id = await fire(db, user, ids["AAPL"], name="Breakout <b>now</b>")
    async with running_workers(time_env.client, settings, task_queue):
        first = await notify(time_env.client, task_queue, history_id)
        again = await notify(time_env.client, task_queue, history_id)

    assert (first.counts.sent, first.counts.failed) == (1, 0)
    assert (again.counts.sent, again.counts.already_done) == (0, 1)
    assert sink.message_ids() == [f"<alert-{history_id}-email@deallens.local>"]
    (message,) = sink.messages
    assert message["To"].addresses[0].addr_spec == "user1@example.com"
    assert "AAPL" in str(message["Subject"])
    # Raw on the wire: a URL in RFC 2047 encoded words is no link for any mail client.
    raw_unsubscribe = dict(message.raw_items())["List-Unsubscribe"]
    assert raw_unsubscribe.startswith("<http://127.0.0.1:9/unsubscribe?token=")
    assert raw_unsubscribe.endswith("&list=alerts>, <mailto:unsubscribe@deallens.local?subject=unsubscribe%20"
                                    + raw_unsubscribe.split("token=")[1].split("&")[0] + "%20alerts>")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html = message.get_body(("html",)).get_content()
    assert "Breakout &lt;b&gt;now&lt;/b&gt;" in html and "<b>now</b>" not in html
    (row,) = await deliveries(db)
    assert (row.channel, row.status, row.attempts, row.message_id) == (
        "email", "sent", 1, f"<alert-{history_id}-email@deallens.local>",
    )


async def test_a_refused_address_is_recorded_as_failed_without_retrying(
    db: AsyncEngine, time_env: WorkflowEnvironment, settings: Any, sink: Sink, task_queue: str
) -> None:
    users = await make_users(db, 2)
    sink.refuse_rcpt["user1@example.com"] = "550 5.1.1 <user1@example.com>: user unknown"
    refused, fine = [await fire(db, user, None) for user in users]
    async with running_workers(time_env.client, settings, task_queue):
        result = await notify(time_env.client, task_queue, refused)
        ok = await notify(time_env.client, task_queue, fine)

    assert (result.counts.failed, result.counts.sent) == (1, 0)
    assert ok.counts.sent == 1
    rows = {r.alert_history_id: r for r in await deliveries(db)}
    assert rows[refused].status == "failed" and rows[refused].attempts == 1
    assert "550" in rows[refused].error and "user unknown" in rows[refused].error
    assert rows[fine].status == "sent"
    assert [str(m["To"]) for m in sink.messages] == ["User 2 <user2@example.com>"]


async def test_a_temporary_refusal_is_retried_until_accepted(
    db: AsyncEngine, time_env: WorkflowEnvironment, settings: Any, sink: Sink, task_queue: str
) -> None:
    (user,) = await make_users(db, 1)
    history_id = await fire(db, user, None)
    sink.data_reply, sink.data_reply_times = "451 4.3.0 try again later", 2
    async with running_workers(time_env.client, settings, task_queue):
        result = await notify(time_env.client, task_queue, history_id)

    assert result.counts.sent == 1
    (row,) = await deliveries(db)
    assert (row.status, row.attempts) == ("sent", 3)
    assert len(sink.messages) == 1


async def test_retries_run_out_then_the_delivery_is_parked_and_can_be_resent(
    db: AsyncEngine, time_env: WorkflowEnvironment, settings: Any, sink: Sink, task_queue: str
) -> None:
    (user,) = await make_users(db, 1)
    history_id = await fire(db, user, None)
    sink.data_reply, sink.data_reply_times = "421 4.7.0 too busy", 1000
    async with running_workers(time_env.client, settings, task_queue):
        parked = await notify(time_env.client, task_queue, history_id, record="send_alert_notification_parked")
        (row,) = await deliveries(db)
        assert (parked.counts.failed, row.status) == (1, "failed")
        assert "421" in row.error
        assert row.attempts == 8  # CHANNEL_RETRY["email"].maximum_attempts

        sink.data_reply_times = 0
        alerts, digests_ = await retry_candidates(db)
        assert (alerts, digests_) == ([history_id], {})
        assert await requeue_alerts(db, alerts) == 1
        resent = await notify(time_env.client, task_queue, history_id)

    assert resent.counts.sent == 1
    assert len(sink.messages) == 1
    assert (await deliveries(db))[0].status == "sent"


async def test_unsubscribed_and_email_off_users_get_nothing(
    db: AsyncEngine, time_env: WorkflowEnvironment, settings: Any, sink: Sink, task_queue: str
) -> None:
    gone = (await make_users(db, 1, start=1))[0]
    off = (await make_users(db, 1, start=2, email_enabled=False))[0]
    async with db.begin() as conn:
        await conn.execute(text("UPDATE users SET unsubscribed_at = now() WHERE id = :id"), {"id": gone})
    firings = [await fire(db, gone, None), await fire(db, off, None)]
    async with running_workers(time_env.client, settings, task_queue):
        results = [await notify(time_env.client, task_queue, h) for h in firings]

    assert [r.counts.sent for r in results] == [0, 0]
    assert await deliveries(db) == []
    assert sink.messages == []


# ------------------------------------------------------------------ quiet hours


async def test_quiet_hours_hold_an_alert_until_they_end_and_urgent_ones_go_at_once(
    db: AsyncEngine, time_env: WorkflowEnvironment, settings: Any, sink: Sink, task_queue: str
) -> None:
    now = dt.datetime.now(dt.UTC)
    start = (now - dt.timedelta(hours=1)).time().replace(second=0, microsecond=0)
    end = (now + dt.timedelta(hours=2)).time().replace(second=0, microsecond=0)
    (user,) = await make_users(db, 1, quiet_hours_start=start, quiet_hours_end=end, timezone="UTC")
    normal = await fire(db, user, None)
    urgent = await fire(db, user, None, urgent=True)
    async with running_workers(time_env.client, settings, task_queue):
        held = await notify(time_env.client, task_queue, normal, record="send_alert_notification_quiet_hours")
        immediate = await notify(time_env.client, task_queue, urgent)

    assert held.counts.sent == 1 and held.waited_until is not None
    expected_end = dt.datetime.combine(now.date(), end, tzinfo=dt.UTC)
    if expected_end < now:
        expected_end += dt.timedelta(days=1)
    assert abs((held.waited_until - expected_end).total_seconds()) < 1
    assert immediate.counts.sent == 1 and immediate.waited_until is None
    assert len(sink.messages) == 2


# ------------------------------------------------------------------ push


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook receiver that checks the signature with the user's secret, as a real one would."""
    got: list[dict[str, Any]] = []

    async def hook(request: Request) -> JSONResponse:
        body = await request.body()
        now = int(dt.datetime.now(dt.UTC).timestamp())
        if not push.verify("s3cret-for-user", request.headers, body, now=now):
            return JSONResponse({"error": "bad signature"}, status_code=401)
        got.append({"json": await request.json(), "key": request.headers.get("idempotency-key")})
        return JSONResponse({"ok": True})

    async with serve_asgi(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as url:
        yield url, got


async def test_push_is_signed_and_verified_by_the_receiver(
    db: AsyncEngine,
    time_env: WorkflowEnvironment,
    settings: Any,
    sink: Sink,
    task_queue: str,
    receiver: tuple[str, list[dict[str, Any]]],
) -> None:
    url, got = receiver
    good = (await make_users(db, 1, start=1, push_webhook_url=url + "/hook", push_webhook_secret="s3cret-for-user"))[0]
    bad = (await make_users(db, 1, start=2, push_webhook_url=url + "/hook", push_webhook_secret="wrong"))[0]
    signed, forged = await fire(db, good, None, urgent=True), await fire(db, bad, None)
    async with running_workers(time_env.client, settings, task_queue):
        ok = await notify(time_env.client, task_queue, signed)
        refused = await notify(time_env.client, task_queue, forged)

    assert (ok.counts.sent, refused.counts.sent) == (2, 1)  # email + push; email only
    assert [g["key"] for g in got] == [f"alert-{signed}-push"]
    assert got[0]["json"]["priority"] == "high"
    rows = {(r.alert_history_id, r.channel): r for r in await deliveries(db)}
    assert rows[(signed, "push")].status == "sent"
    assert rows[(forged, "push")].status == "failed" and "401" in rows[(forged, "push")].error


# ------------------------------------------------------------------ digests


async def test_daily_digest_goes_once_to_each_opted_in_user(
    db: AsyncEngine, time_env: WorkflowEnvironment, settings: Any, sink: Sink, task_queue: str
) -> None:
    users = await make_users(db, 5)
    opted_out = (await make_users(db, 1, start=6, digest_opt_in=False))[0]
    ids = await seed_market(db, ["AAPL", "MSFT", "NVDA"], until=TODAY)
    await watch(db, users + [opted_out], [ids["AAPL"], ids["MSFT"]])
    await watch(db, users[:1], [ids["NVDA"]])
    # Just before the users' 07:00 (UTC, their zone) digest time: in the window.
    send_time = dt.datetime.combine(TODAY + dt.timedelta(days=1), dt.time(6, 30), tzinfo=dt.UTC)
    fired = await fire(db, users[0], ids["AAPL"], name="AAPL over 200", at=send_time)
    await fire(db, users[0], ids["AAPL"], name="old news", at=send_time - dt.timedelta(days=3))
    period = TODAY + dt.timedelta(days=1)
    async with running_workers(time_env.client, settings, task_queue):
        first = await digest(time_env.client, task_queue, "daily", date=period, batch_size=2, record="send_daily_digest_paged")
        second = await digest(time_env.client, task_queue, "daily", date=period, batch_size=2)

    assert (first.users, first.batches, first.counts.sent) == (5, 3, 5)
    assert (second.counts.sent, second.counts.already_done) == (0, 5)
    assert sorted(sink.message_ids()) == sorted(
        f"<digest-daily-{period.isoformat()}-{u}@deallens.local>" for u in users
    )
    assert sink.to("user6@example.com") == []
    (mine,) = sink.to("user1@example.com")
    body = mine.get_body(("plain",)).get_content()
    assert "AAPL" in body and "MSFT" in body and "NVDA" in body
    assert "AAPL over 200" in body and "old news" not in body
    assert "list=daily" in str(mine["List-Unsubscribe"])
    ledger = await digest_ledger(db)
    assert [r.status for r in ledger] == ["sent"] * 5
    assert fired


async def test_digest_for_named_users_respects_their_opt_out(
    db: AsyncEngine, time_env: WorkflowEnvironment, settings: Any, sink: Sink, task_queue: str
) -> None:
    users = await make_users(db, 3)
    out = (await make_users(db, 1, start=4, weekly_opt_in=False))[0]
    ids = await seed_market(db, ["AAPL"], until=TODAY)
    await watch(db, users + [out], [ids["AAPL"]])
    async with db.begin() as conn:
        deal = (
            await conn.execute(
                text(
                    "INSERT INTO deals (title, acquirer_company_id, status, source) "
                    "VALUES ('AAPL buys <Widgets>', :c, 'approved', 'test') RETURNING id"
                ),
                {"c": ids["AAPL"]},
            )
        ).scalar_one()
        await conn.execute(
            text(
                "INSERT INTO deal_events (deal_id, event_type, old_status, new_status, occurred_at) "
                "VALUES (:d, 'status_change', 'announced', 'approved', :at)"
            ),
            {"d": deal, "at": dt.datetime.combine(TODAY, dt.time(15), tzinfo=dt.UTC)},
        )
    sunday = dt.date(2026, 11, 29)
    async with running_workers(time_env.client, settings, task_queue):
        result = await digest(
            time_env.client, task_queue, "weekly", date=sunday, user_ids=[users[1], out], record="send_weekly_summary_paged"
        )

    assert (result.counts.sent, result.not_eligible) == (1, 1)
    (message,) = sink.messages
    assert "user2@example.com" in str(message["To"])
    html = message.get_body(("html",)).get_content()
    assert "AAPL buys &lt;Widgets&gt;" in html
    assert message["Message-ID"] == f"<digest-weekly-{sunday.isoformat()}-{users[1]}@deallens.local>"
