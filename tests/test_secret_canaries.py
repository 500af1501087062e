"""Canary secrets never reach Temporal or the logs: a run of the market, alert-notification
and digest workflows with a canary AlphaVantage key, database password, webhook signing
secrets, a webhook URL with a token in its path and unsubscribe tokens, then every workflow
history (inputs, results, failures, children) and every log record of the worker scanned
for them. The unsubscribe token is meant to travel in the email itself, and does.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.errors import log_expected_failures_on_one_line
from deallens.config import configure_logging, load_settings
from deallens.contracts import (
    DigestInput,
    DigestResult,
    NotificationResult,
    SendAlertNotificationInput,
    SyncCompanyPricesInput,
    SyncCompanyPricesResult,
)
from deallens.db.demo import seed_demo
from deallens.notify import push
from deallens.sim import alphavantage as av_sim
from deallens.sim.serve import serve_asgi
from tests.notify_data import fire, make_users, watch
from tests.smtp_sink import smtp_sink
from tests.workers import running_workers

AV_KEY = "av-canary-3e1f0b"
DB_PASSWORD = "db-canary-c0ffee"
WEBHOOK_SECRETS = ("whsec-canary-7f3a9c", "whsec-canary-2d6e14")
PATH_TOKEN = "path-canary-91c4aa"
UNSUBSCRIBE_TOKENS = ("unsub-canary-5b8e2d", "unsub-canary-a4f790")
CANARIES = (AV_KEY, DB_PASSWORD, *WEBHOOK_SECRETS, PATH_TOKEN, *UNSUBSCRIBE_TOKENS)


def _digest_date_now() -> dt.date:
    """The digest date whose window (the day before it, from 07:00 UTC) holds this moment, so
    the alerts just fired are in it and the digest is not skipped as having nothing new."""
    now = dt.datetime.now(dt.UTC)
    return now.date() + dt.timedelta(days=1) if now.hour >= 7 else now.date()


async def _histories(client: Client, handles: list[WorkflowHandle[Any, Any]]) -> list[str]:
    """Each workflow's history as JSON, children included (found through their start events)."""
    seen, out, queue = set(), [], list(handles)
    while queue:
        handle = queue.pop()
        if handle.id in seen:
            continue
        seen.add(handle.id)
        history = await handle.fetch_history()
        out.append(history.to_json())
        for event in history.events:
            if event.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
                child = event.start_child_workflow_execution_initiated_event_attributes.workflow_id
                queue.append(client.get_workflow_handle(child))
    return out


async def test_no_secret_reaches_a_workflow_history_or_the_log(
    time_env: WorkflowEnvironment, db: AsyncEngine, database_url: str, task_queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The worker's own logging set-up (worker.py), at its most talkative level.
    quieted = {name: logging.getLogger(name).level for name in ("httpx", "httpcore", "alembic")}
    configure_logging("DEBUG")
    log_expected_failures_on_one_line()
    caplog.set_level(logging.DEBUG)
    try:
        await _run_everything(time_env, db, database_url, task_queue, caplog)
    finally:
        for name, level in quieted.items():
            logging.getLogger(name).setLevel(level)


async def _run_everything(
    time_env: WorkflowEnvironment, db: AsyncEngine, database_url: str, task_queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    await seed_demo(db)
    good, refusing = [
        (await make_users(
            db, 1, start=100 + n, push_webhook_secret=WEBHOOK_SECRETS[n], unsubscribe_token=UNSUBSCRIBE_TOKENS[n],
            push_webhook_url=url,
        ))[0]
        for n, url in enumerate(["http://127.0.0.1:{port}/push/good", f"http://127.0.0.1:{{port}}/hooks/T0/B0/{PATH_TOKEN}"])
    ]
    received: list[bytes] = []

    async def hook(request: Request) -> JSONResponse:
        body = await request.body()
        if request.url.path.endswith(PATH_TOKEN):
            return JSONResponse({"error": "gone"}, status_code=410)  # a permanent refusal, with its text
        assert push.verify(WEBHOOK_SECRETS[0], request.headers, body, now=int(dt.datetime.now().timestamp()))
        received.append(request.url.path.encode() + b" " + body)
        return JSONResponse({"ok": True})

    # The password goes into the URL the worker connects with (the test server trusts local
    # connections, so it is not checked; it must never be shown all the same).
    url = database_url.replace("://postgres@", f"://postgres:{DB_PASSWORD}@", 1)
    assert DB_PASSWORD in url
    with smtp_sink() as sink:
        async with serve_asgi(Starlette(routes=[Route("/{p:path}", hook, methods=["POST"])])) as hooks, serve_asgi(
            av_sim.make_app(seed=2)
        ) as av:
            port = hooks.rsplit(":", 1)[1]
            async with db.begin() as conn:
                await conn.execute(
                    text("UPDATE users SET push_webhook_url = replace(push_webhook_url, '{port}', :p) WHERE id = ANY(:ids)"),
                    {"p": port, "ids": [good, refusing]},
                )
            aapl = (await _company(db, "AAPL"))
            await watch(db, [good, refusing], [aapl])
            settings = load_settings(
                _env_file=None, database_url=url, alphavantage_base_url=av, alphavantage_api_key=SecretStr(AV_KEY),
                alphavantage_calls_per_minute=6000, alphavantage_calls_per_day=10_000,
                smtp_host="127.0.0.1", smtp_port=sink.port, public_base_url="http://127.0.0.1:9",
                push_allow_private_hosts=True,
            )
            client = time_env.client
            handles: list[WorkflowHandle[Any, Any]] = []
            async with running_workers(client, settings, task_queue):
                sync = await client.start_workflow(
                    "SyncCompanyPrices", SyncCompanyPricesInput(symbols=["AAPL", "NOPE"], force=True),
                    id=f"canary-sync-{secrets.token_hex(3)}", task_queue=task_queue, result_type=SyncCompanyPricesResult,
                )
                handles.append(sync)
                await sync.result()
                for user in (good, refusing):
                    history_id = await fire(db, user, aapl, urgent=True)
                    notify = await client.start_workflow(
                        "SendAlertNotification", SendAlertNotificationInput(alert_history_id=history_id),
                        id=f"notify-{history_id}", task_queue=task_queue, result_type=NotificationResult,
                    )
                    handles.append(notify)
                    await notify.result()
                daily = await client.start_workflow(
                    "SendDailyDigest", DigestInput(date=_digest_date_now(), user_ids=[good, refusing]),
                    id=f"canary-digest-{secrets.token_hex(3)}", task_queue=task_queue, result_type=DigestResult,
                )
                handles.append(daily)
                digest = await daily.result()
            histories = await _histories(client, handles)

    # It all ran: pushes arrived signed (the monitor, woken by the sync, may fire the test's
    # alerts a second time), the 410 was recorded, emails and digests went out.
    assert received and all(r.startswith(b"/push/good ") for r in received) and digest.counts.sent == 2
    async with db.connect() as conn:
        refused = (await conn.execute(
            text("SELECT d.error FROM notification_deliveries d JOIN alert_history h ON h.id = d.alert_history_id "
                 "JOIN alerts a ON a.id = h.alert_id WHERE a.user_id = :u AND d.channel = 'push'"), {"u": refusing},
        )).scalar_one()
    assert "410" in refused and PATH_TOKEN not in refused
    # The unsubscribe token is in the emails, where it belongs...
    mail = b"".join(m.as_bytes() for m in sink.messages)
    assert UNSUBSCRIBE_TOKENS[0].encode() in mail
    # ...and nowhere in Temporal or the worker's log (the SMTP sink's own log, `mail.log`, is
    # the receiving server's: it shows the message it received, as a mail server does).
    formatter = logging.Formatter("%(name)s %(message)s")
    worker_log = "\n".join(formatter.format(r) for r in caplog.records if not r.name.startswith("mail.log"))
    assert len(histories) >= 4 and "temporalio.activity" in worker_log and "UnknownSymbol" in worker_log
    for canary in CANARIES:
        for history in histories:
            assert canary not in history, f"{canary} in a workflow history"
        assert canary not in worker_log, f"{canary} in the worker's log"


async def _company(db: AsyncEngine, symbol: str) -> int:
    async with db.connect() as conn:
        return int((await conn.execute(text("SELECT id FROM companies WHERE symbol = :s"), {"s": symbol})).scalar_one())
