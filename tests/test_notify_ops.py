"""Operating notifications: the unsubscribe page (and a real email's List-Unsubscribe link),
`starter.py notifications failed | retry | unsubscribe`."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from deallens.contracts import DigestInput, DigestResult
from deallens.sim.serve import serve_asgi
from deallens.web.unsubscribe import create_app
from tests.conftest import ROOT, dev_server_address
from tests.notify_data import deliveries, fire, make_users, seed_market, watch
from tests.smtp_sink import smtp_sink
from tests.workers import running_workers


async def user_row(engine: AsyncEngine, user_id: int) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT * FROM users WHERE id = :id"), {"id": user_id})).one()


async def test_unsubscribe_page_confirms_on_get_and_acts_on_post(db: AsyncEngine) -> None:
    (user,) = await make_users(db, 1)
    token = (await user_row(db, user)).unsubscribe_token
    assert len(token) == 32
    async with serve_asgi(create_app(db)) as url, httpx.AsyncClient(base_url=url) as http:
        page = await http.get("/unsubscribe", params={"token": token, "list": "daily"})
        assert page.status_code == 200 and "user1@example.com" in page.text and "<form" in page.text
        assert (await user_row(db, user)).digest_opt_in is True  # a GET (a link scanner) changes nothing

        one_click = await http.post(
            "/unsubscribe",
            params={"token": token, "list": "daily"},
            content="List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert one_click.status_code == 200 and "no longer send the daily digest" in one_click.text
        row = await user_row(db, user)
        assert (row.digest_opt_in, row.weekly_opt_in, row.email_enabled, row.unsubscribed_at) == (False, True, True, None)

        again = await http.post("/unsubscribe", params={"token": token, "list": "daily"})
        assert again.status_code == 200
        everything = await http.post("/unsubscribe", params={"token": token, "list": "all"})
        assert everything.status_code == 200 and (await user_row(db, user)).unsubscribed_at is not None

        for params in ({"token": "0" * 32}, {"token": token, "list": "bogus"}, {}):
            assert (await http.post("/unsubscribe", params=params)).status_code == 404
            assert (await http.get("/unsubscribe", params=params)).status_code == 404


async def test_the_link_in_a_digest_unsubscribes_from_the_next_one(
    db: AsyncEngine, time_env: WorkflowEnvironment, make_settings: Any, task_queue: str
) -> None:
    users = await make_users(db, 2)
    ids = await seed_market(db, ["AAPL"], until=dt.date(2026, 11, 27))
    await watch(db, users, [ids["AAPL"]])
    with smtp_sink() as sink:
        async with serve_asgi(create_app(db)) as web:
            settings = make_settings(smtp_host="127.0.0.1", smtp_port=sink.port, public_base_url=web)
            async with running_workers(time_env.client, settings, task_queue):

                async def daily(day: dt.date) -> DigestResult:
                    return await time_env.client.execute_workflow(
                        "SendDailyDigest", DigestInput(date=day), id=f"daily-{day}", task_queue=task_queue,
                        result_type=DigestResult,
                    )

                assert (await daily(dt.date(2026, 11, 28))).counts.sent == 2
                (first,) = sink.to("user1@example.com")
                link = str(first["List-Unsubscribe"]).split(",")[0].strip().strip("<>")
                assert link.startswith(web + "/unsubscribe?")
                async with httpx.AsyncClient() as http:
                    answer = await http.post(link, content="List-Unsubscribe=One-Click")
                assert answer.status_code == 200
                # Tuesday's digest (Monday's session is new; a Sunday would have nothing new).
                assert (await daily(dt.date(2026, 12, 1))).counts.sent == 1
    assert [len(sink.to(f"user{n}@example.com")) for n in (1, 2)] == [1, 2]


def starter(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "starter.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


async def test_failed_deliveries_are_listed_and_resent_by_the_cli(
    db: AsyncEngine, database_url: str, dev_env: WorkflowEnvironment, make_settings: Any, task_queue: str
) -> None:
    users = await make_users(db, 2)
    history_id = await fire(db, users[0], None)
    stuck_id = await fire(db, users[0], None, message="stuck since its workflow was terminated")
    ids = await seed_market(db, ["AAPL"], until=dt.date(2026, 11, 27))
    await watch(db, users[1:], [ids["AAPL"]])
    async with db.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO notification_deliveries (alert_history_id, channel, status, attempts, error) "
                "VALUES (:h, 'email', 'failed', 6, 'smtp: 421 4.7.0 too busy')"
            ),
            {"h": history_id},
        )
        # Pending for two days and nobody sending it: its workflow is gone.
        await conn.execute(
            text(
                "INSERT INTO notification_deliveries (alert_history_id, channel, status, updated_at) "
                "VALUES (:h, 'email', 'pending', now() - interval '2 days')"
            ),
            {"h": stuck_id},
        )
        await conn.execute(
            text(
                # Its automatic retries are used up (RetryParkedDeliveries): it needs a person.
                "INSERT INTO digest_deliveries (user_id, kind, period, status, attempts, error, auto_retries) "
                "VALUES (:u, 'daily', '2026-11-28', 'failed', 6, 'smtp: connection refused', 3)"
            ),
            {"u": users[1]},
        )
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/tmp",
        "DATABASE_URL": database_url,
        "TEMPORAL_ADDRESS": dev_server_address(dev_env.client),
    }
    listed = starter(env, "notifications", "failed")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert any(
        f"alert_history {history_id}" in line and "failed" in line and "auto 1/3" in line and "421 4.7.0 too busy" in line
        for line in lines
    )
    assert any(f"alert_history {stuck_id}" in line and " stuck " in line for line in lines)
    assert any("daily 2026-11-28 user" in line and "needs a person" in line and "user2@example.com" in line for line in lines)
    assert lines[-1].startswith("3 failed or stuck, 2 of them need a person")

    with smtp_sink() as sink:
        settings = make_settings(smtp_host="127.0.0.1", smtp_port=sink.port)
        async with running_workers(dev_env.client, settings, task_queue):
            retried = starter(env, "notifications", "retry", "--task-queue", task_queue)
            assert retried.returncode == 0, retried.stderr
            assert "re-sending 2 alert notification(s) and 1 digest(s)" in retried.stdout
            for ref in (history_id, stuck_id):
                await dev_env.client.get_workflow_handle(f"notify-{ref}").result()
            await asyncio.to_thread(sink.wait_for, 3)
    assert sorted(str(m["To"]) for m in sink.messages) == ["User 1 <user1@example.com>"] * 2 + ["User 2 <user2@example.com>"]
    assert [r.status for r in await deliveries(db)] == ["sent", "sent"]
    assert starter(env, "notifications", "failed").stdout.strip() == "no failed deliveries"

    token = (await user_row(db, users[0])).unsubscribe_token
    done = starter(env, "notifications", "unsubscribe", token, "--list", "weekly")
    assert done.stdout.strip() == "user1@example.com: unsubscribed from the weekly summary"
    assert (await user_row(db, users[0])).weekly_opt_in is False
    unknown = starter(env, "notifications", "unsubscribe", "nope")
    assert (unknown.returncode, unknown.stderr.strip()) == (1, "unknown unsubscribe token")
