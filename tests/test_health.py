"""`starter.py health` on real parts: a dev server with the real workers, the schedules and
monitors applied, the session database; and the verdict logic on its own."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

import schedules
from activities.alerts import monitor_id
from cli import health as health_cli
from deallens.db import health as db_health
from deallens.ops.health import (
    MonitorState,
    Status,
    deliveries_check,
    monitor_check,
    exit_code,
    freshness_checks,
    stuck_margin,
)
from tests.conftest import ROOT, dev_server_address
from tests.notify_data import fire, make_users
from tests.workers import running_workers

STAND_IN = "http://127.0.0.1:9"  # health never calls the providers: loopback means simulated


@pytest.fixture
def settings(make_settings: Any, dev_env: WorkflowEnvironment) -> Any:
    return make_settings(
        temporal_address=dev_server_address(dev_env.client),
        alphavantage_base_url=STAND_IN, newsapi_base_url=STAND_IN, openai_base_url=STAND_IN,
    )


@pytest.fixture
async def applied(dev_env: WorkflowEnvironment, task_queue: str) -> AsyncIterator[None]:
    """The schedules and monitors as `schedules.py apply` makes them (IDs are namespace-wide:
    removed again at the end)."""
    await schedules.apply(dev_env.client, dry_run=False, task_queue=task_queue)
    yield
    for definition in schedules.SCHEDULES:
        await dev_env.client.get_schedule_handle(definition.id).delete()
    for kind in schedules.ALERT_KINDS:
        try:
            await dev_env.client.get_workflow_handle(monitor_id(kind)).terminate("test over")
        except Exception:  # noqa: BLE001 - already gone
            pass


def lines(checks: list[Any]) -> dict[str, Any]:
    return {c.name: c for c in checks}


async def test_all_green_then_a_paused_schedule_and_a_missing_monitor_are_told_apart(
    db: AsyncEngine, dev_env: WorkflowEnvironment, task_queue: str, settings: Any, applied: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with running_workers(dev_env.client, settings, task_queue):
        assert await health_cli.run(settings, as_json=False, task_queue=task_queue) == 0, capsys.readouterr().out
        out = capsys.readouterr().out.splitlines()
        assert "database: ok" in out and out[-1] == "health: ok (exit 0)"
        assert any(line.startswith(f"queue {task_queue}: ok, 1 workflow and 1 activity poller(s)") for line in out), out
        assert any(line.startswith(f"queue {task_queue}-alphavantage: ok") for line in out), out
        assert any(line.startswith("schedule sync-daily-ohlc: ok, next run 20") for line in out), out
        assert any(line.startswith("monitor price: running") for line in out), out
        assert "provider alphavantage: simulated at http://127.0.0.1:9; 25 of 25 calls left today" in out

        await dev_env.client.get_schedule_handle("sync-daily-ohlc").pause(note="vendor outage")
        await dev_env.client.get_workflow_handle(monitor_id("news")).terminate("lost")
        await dev_env.client.get_workflow_handle(monitor_id("deal")).signal("pause", {"reason": "noisy"})

        checks = lines(await health_cli.gather(settings, task_queue=task_queue))
    assert exit_code(checks.values()) == 1
    paused, missing = checks["schedule sync-daily-ohlc"], checks["monitor news"]
    assert paused.status is Status.DEGRADED and paused.detail.startswith("PAUSED (vendor outage)")
    assert missing.status is Status.DEGRADED and missing.detail.startswith("MISSING (not running)")
    assert checks["monitor deal"].detail.startswith("PAUSED (noisy)")
    assert checks["schedule sync-company-prices"].status is Status.OK
    assert checks["monitor price"].status is Status.OK
    # With the workers stopped, nothing polls the main queue: down.
    after = lines(await health_cli.gather(settings, task_queue=f"{task_queue}-nobody"))
    assert after[f"queue {task_queue}-nobody"].status is Status.DOWN
    assert after["monitor price"].detail.startswith("NOT ANSWERING")
    assert exit_code(after.values()) == 2


async def test_json_and_exit_codes_from_the_command_line(
    db: AsyncEngine, dev_env: WorkflowEnvironment, database_url: str, task_queue: str
) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "DATABASE_URL": database_url,
           "TEMPORAL_ADDRESS": dev_server_address(dev_env.client),
           "ALPHAVANTAGE_BASE_URL": STAND_IN, "NEWSAPI_BASE_URL": STAND_IN, "OPENAI_BASE_URL": STAND_IN}
    # No worker and no schedules on this queue: down, and the document says why.
    result = subprocess.run([sys.executable, "starter.py", "health", "--json", "--task-queue", task_queue],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    document = json.loads(result.stdout)
    assert document["status"] == "down" and document["exit_code"] == 2
    by_name = {c["name"]: c for c in document["checks"]}
    assert by_name[f"queue {task_queue}"]["status"] == "down"
    assert by_name["schedule sync-company-prices"]["status"] == "degraded"
    assert by_name["temporal"]["status"] == "ok" and by_name["database"]["status"] == "ok"

    down = subprocess.run([sys.executable, "starter.py", "health"], cwd=ROOT,
                          env={**env, "TEMPORAL_ADDRESS": "127.0.0.1:9"}, capture_output=True, text=True, timeout=120)
    assert down.returncode == 2
    assert any(line.startswith("temporal: FAILED at 127.0.0.1:9") for line in down.stdout.splitlines())
    assert down.stdout.splitlines()[-1] == "health: down (exit 2)" and "Traceback" not in down.stderr


async def test_a_stuck_delivery_is_flagged_once_its_lease_and_margin_have_passed(db: AsyncEngine) -> None:
    lease = 180
    margin = stuck_margin(lease)
    (user,) = await make_users(db, 1)
    ids = [await fire(db, user, None, message=f"firing {n}") for n in range(4)]
    async with db.begin() as conn:
        for history_id, claimed_until, updated in (
            (ids[0], "now() + interval '1 minute'", "now()"),  # being sent
            (ids[1], f"now() - make_interval(secs => {margin.total_seconds() - 30})", "now()"),  # within the margin
            (ids[2], f"now() - make_interval(secs => {margin.total_seconds() + 5})", "now()"),  # lapsed: stuck
            (ids[3], "NULL", "now() - interval '2 hours'"),  # never claimed: waiting for its workflow
        ):
            await conn.execute(text(
                "INSERT INTO notification_deliveries (alert_history_id, channel, status, claimed_by, claimed_until, updated_at) "
                f"VALUES (:h, 'email', 'pending', 'x#1', {claimed_until}, {updated})"
            ), {"h": history_id})
        # Parked: its automatic retries are used up (a person's), or not yet (RetryParkedDeliveries').
        await conn.execute(text("UPDATE notification_deliveries SET status = 'failed', auto_retries = 3 WHERE alert_history_id = :h"), {"h": ids[0]})
        extra = await fire(db, user, None, message="parked a minute ago")
        await conn.execute(text(
            "INSERT INTO notification_deliveries (alert_history_id, channel, status) VALUES (:h, 'email', 'failed')"
        ), {"h": extra})
    counts = await db_health.deliveries(db, margin=margin)
    assert (counts.parked, counts.stuck, counts.retrying) == (1, 1, 1)
    async with db.begin() as conn:  # a day and more unclaimed: stuck too
        await conn.execute(text("UPDATE notification_deliveries SET updated_at = now() - interval '27 hours' WHERE alert_history_id = :h"), {"h": ids[3]})
    counts = await db_health.deliveries(db, margin=margin)
    assert counts.stuck == 2
    check = deliveries_check(counts.parked, counts.stuck, lease_seconds=lease, margin=margin, retrying=counts.retrying)
    assert check.status is Status.DEGRADED
    assert check.detail.startswith("1 PARKED (retries and automatic retries ran out)")
    assert "; 2 STUCK (pending, claim lapsed over 180s + 180s ago" in check.detail
    assert check.detail.endswith("; 1 parked, to be retried automatically (retry-parked-deliveries)")
    healing = deliveries_check(0, 0, lease_seconds=lease, margin=margin, retrying=4)
    assert healing.status is Status.OK and "4 parked, to be retried automatically" in healing.detail


def test_freshness_is_measured_in_market_time() -> None:
    # Sunday night: Friday's last quote is not stale (no market minute since); Thursday's
    # bar is one session behind (fine), Wednesday's two (stale).
    sunday = dt.datetime(2026, 11, 22, 23, 0, tzinfo=dt.UTC)
    friday_close = dt.datetime(2026, 11, 20, 20, 59, tzinfo=dt.UTC)
    checks = lines(freshness_checks(sunday, quote_at=friday_close, bar_date=dt.date(2026, 11, 19),
                                    article_at=sunday - dt.timedelta(hours=1), insight_at=None))
    assert checks["freshness quote"].status is Status.OK
    assert checks["freshness quote"].data["market_minutes"] == 1
    assert checks["freshness bar"].status is Status.OK and checks["freshness bar"].data["sessions_behind"] == 1
    assert checks["freshness insight"].detail == "none stored yet"
    monday_noon = dt.datetime(2026, 11, 23, 17, 0, tzinfo=dt.UTC)  # 12:00 in New York, open since 9:30
    stale = lines(freshness_checks(monday_noon, quote_at=friday_close, bar_date=dt.date(2026, 11, 18),
                                   article_at=monday_noon - dt.timedelta(hours=4), insight_at=None))
    assert stale["freshness quote"].status is Status.DEGRADED and stale["freshness quote"].data["market_minutes"] == 151
    assert stale["freshness bar"].status is Status.DEGRADED and stale["freshness bar"].data["sessions_behind"] == 2
    assert stale["freshness article"].status is Status.DEGRADED


def test_verdicts_a_used_up_quota_and_a_provider_queue_without_workers_degrade() -> None:
    from deallens.ops.health import Pollers, queue_check, quota_check

    used_up = quota_check("alphavantage", simulated=False, url="https://www.alphavantage.co", calls_per_day=25, used_today=25)
    assert used_up.status is Status.DEGRADED and "QUOTA USED UP today (25 of 25 calls)" in used_up.detail
    assert quota_check("newsapi", simulated=True, url=STAND_IN, calls_per_day=100, used_today=40).data["left_today"] == 60
    idle_provider = queue_check(Pollers("deallens-llm", 0, 0), main=False)
    idle_main = queue_check(Pollers("deallens", 0, 2), main=True)
    assert (idle_provider.status, idle_main.status) == (Status.DEGRADED, Status.DOWN)
    assert exit_code([used_up, idle_provider]) == 1 and exit_code([used_up, idle_main]) == 2 and exit_code([]) == 0


def test_a_monitor_whose_evaluations_keep_failing_is_degraded_with_the_reason() -> None:
    since = dt.datetime(2026, 12, 1, 14, 0, tzinfo=dt.UTC)
    failing = monitor_check(MonitorState(
        "deal", running=True, evaluations=0, failed_evaluations=3, failing_since=since,
        last_error="PermanentDatabaseError: the database schema does not match this code",
    ))
    assert failing.status is Status.DEGRADED
    assert failing.detail == (
        "FAILING: 3 evaluation(s) in a row since 2026-12-01T14:00:00+00:00: "
        "PermanentDatabaseError: the database schema does not match this code"
    )
    assert monitor_check(MonitorState("deal", running=True, evaluations=2)).status is Status.OK


async def test_each_provider_s_calls_are_read_on_its_own_ledger_day(db: AsyncEngine, make_settings: Any) -> None:
    # 02:00 UTC on 2 December is still 1 December in New York: AlphaVantage's ledger day is
    # New York's, NewsAPI's the UTC date (activities/news.py), so at that hour the NewsAPI line
    # must read 2 December's row, not yesterday's used-up one.
    now = dt.datetime(2026, 12, 2, 2, 0, tzinfo=dt.UTC)
    async with db.begin() as conn:
        await conn.execute(text(
            "INSERT INTO api_usage (provider, day, calls) VALUES "
            "('alphavantage', '2026-12-01', 5), ('newsapi', '2026-12-01', 100), ('newsapi', '2026-12-02', 40)"
        ))
    settings = make_settings(alphavantage_base_url=STAND_IN, newsapi_base_url=STAND_IN, openai_base_url=STAND_IN)
    _, used, _ = await health_cli._database(settings, now)
    assert used is not None and used["alphavantage"] == 5 and used["newsapi"] == 40
