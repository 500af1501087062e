"""`starter.py alerts add` wakes its kind's monitor: a new alert whose condition already holds
on stored data fires at once, with no sync after it (which may be `unchanged`, or hours away
outside market hours). Real CLI process, real dev server, real workers, PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from activities.alerts import monitor_id, wake_monitor
from deallens.contracts import MonitorStatus
from deallens.db.demo import seed_demo
from tests.conftest import ROOT, dev_server_address
from tests.workers import running_workers


async def _store_quote(db: AsyncEngine, symbol: str, price: str) -> None:
    async with db.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO price_quotes (company_id, price, previous_close, volume, latest_trading_day, quoted_at, source) "
                "SELECT id, CAST(:p AS numeric), CAST(:p AS numeric), 1000, CAST(now() AT TIME ZONE 'America/New_York' AS date), "
                "now(), 'test' FROM companies WHERE symbol = :s"
            ),
            {"p": price, "s": symbol},
        )


async def _firings(db: AsyncEngine, alert_id: int) -> int:
    async with db.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM alert_history WHERE alert_id = :a"), {"a": alert_id})).scalar_one())


def _starter(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "starter.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


async def test_alerts_add_evaluates_the_new_alert_on_stored_data_at_once(
    dev_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, database_url: str, make_settings: Any
) -> None:
    await seed_demo(db)
    await _store_quote(db, "AAPL", "150.00")
    client = dev_env.client
    settings = make_settings(alphavantage_base_url="http://127.0.0.1:9", alert_max_quote_age_seconds=3600)
    async with running_workers(client, settings, task_queue):
        # The monitor is up and idle: it evaluated what it was woken for, and would not poll
        # again for minutes (or, outside market hours, at all).
        await wake_monitor(client, "price", ["MSFT"], task_queue)
        handle = client.get_workflow_handle(monitor_id("price"))
        try:
            for _ in range(200):
                if (await handle.query("status", result_type=MonitorStatus)).evaluations >= 1:
                    break
                await asyncio.sleep(0.1)
            before = await handle.query("status", result_type=MonitorStatus)
            assert before.evaluations == 1 and before.settings.interval_seconds >= 120

            env = {
                "PATH": "/usr/bin:/bin", "HOME": "/tmp", "DATABASE_URL": database_url,
                "TEMPORAL_ADDRESS": dev_server_address(client),
            }
            added = _starter(
                env, "alerts", "add", '{"user_id": 1, "type": "price_above", "symbol": "AAPL", "threshold": 100}',
                "--task-queue", task_queue,
            )
            assert added.returncode == 0 and added.stderr == "", added.stderr
            alert_id = int(added.stdout)
            started = asyncio.get_running_loop().time()
            while await _firings(db, alert_id) == 0 and asyncio.get_running_loop().time() - started < 30:
                await asyncio.sleep(0.2)
            assert await _firings(db, alert_id) == 1
            # Woken by the CLI, well before the monitor's own poll would have come round.
            assert asyncio.get_running_loop().time() - started < before.settings.interval_seconds
            after = await handle.query("status", result_type=MonitorStatus)
            assert after.evaluations >= 2 and after.last_evaluation_fired >= 1

            # A condition that does not hold yet stays quiet: stored, evaluated, not fired.
            quiet = _starter(
                env, "alerts", "add", '{"user_id": 1, "type": "price_above", "symbol": "AAPL", "threshold": 500}',
                "--task-queue", task_queue,
            )
            assert quiet.returncode == 0, quiet.stderr
            evaluations = after.evaluations
            for _ in range(200):
                if (await handle.query("status", result_type=MonitorStatus)).evaluations > evaluations:
                    break
                await asyncio.sleep(0.1)
            assert (await handle.query("status", result_type=MonitorStatus)).evaluations > evaluations
            assert await _firings(db, int(quiet.stdout)) == 0
        finally:
            await handle.terminate("test over")


async def test_alerts_add_without_temporal_stores_the_alert_and_says_the_monitor_was_not_woken(
    db: AsyncEngine, database_url: str
) -> None:
    await seed_demo(db)
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "DATABASE_URL": database_url, "TEMPORAL_ADDRESS": "127.0.0.1:9"}
    added = _starter(env, "alerts", "add", '{"user_id": 1, "type": "volume_above", "symbol": "AAPL", "threshold": 5}')
    assert added.returncode == 0
    alert_id = int(added.stdout)
    assert added.stderr.startswith("starter: alert stored, but alert-monitor-volume was not woken (Temporal at 127.0.0.1:9")
    assert added.stderr.count("\n") == 1
    async with db.connect() as conn:
        assert (await conn.execute(text("SELECT kind FROM alerts WHERE id = :a"), {"a": alert_id})).scalar_one() == "volume"
