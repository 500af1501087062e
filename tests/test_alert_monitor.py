"""AlertMonitor on a real dev server through a real client: signals, update, query,
notifications started for firings, continue-as-new, and a worker restart."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from activities.alerts import monitor_id
from deallens.contracts import AlertMonitorInput, MonitorSettings, MonitorStatus, SyncCompanyPricesResult
from deallens.db.alerts import add_alert
from deallens.db.demo import seed_demo
from deallens.domain.alert_rules import parse_alert
from deallens.sim import alphavantage as av_sim
from deallens.sim.serve import serve_asgi
from tests.workers import record_history, running_workers

KINDS = ("price", "volume", "news", "deal")


@pytest.fixture
async def monitors(dev_env: WorkflowEnvironment) -> AsyncIterator[None]:
    """Monitor IDs are fixed per namespace: stop this test's monitors when it ends."""
    yield
    for kind in KINDS:
        try:
            await dev_env.client.get_workflow_handle(monitor_id(kind)).terminate("test over")
        except Exception:  # noqa: BLE001 - not running is fine
            pass


@pytest.fixture
async def sim() -> AsyncIterator[str]:
    async with serve_asgi(av_sim.make_app(seed=4)) as url:
        yield url


@pytest.fixture
def settings(sim: str, make_settings: Any) -> Any:
    return make_settings(
        alphavantage_base_url=sim, alphavantage_calls_per_minute=6000, alphavantage_calls_per_day=10_000,
        alert_max_quote_age_seconds=3600,
        # An SMTP server that refuses connections: email is on, deliveries stay pending (retried).
        smtp_host="127.0.0.1", smtp_port=9,
    )


async def start_monitor(client: Client, task_queue: str, kind: str, **fields: Any) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        "AlertMonitor", AlertMonitorInput(kind=kind, **fields), id=monitor_id(kind), task_queue=task_queue
    )


async def status(handle: WorkflowHandle[Any, Any]) -> MonitorStatus:
    return await handle.query("status", result_type=MonitorStatus)


async def eventually(check: Any, seconds: float = 20) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)


async def deliveries(db: AsyncEngine) -> list[tuple[int, str, str]]:
    async with db.connect() as conn:
        rows = await conn.execute(text("SELECT alert_history_id, channel, status FROM notification_deliveries ORDER BY 1, 2"))
        return [tuple(r) for r in rows]


async def test_pause_resume_adjust_and_status(
    dev_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, settings: Any, monitors: None
) -> None:
    async with running_workers(dev_env.client, settings, task_queue):
        handle = await start_monitor(dev_env.client, task_queue, "news")
        first = await status(handle)
        assert (first.paused, first.settings, first.evaluations) == (False, MonitorSettings(interval_seconds=300), 0)

        # adjust: the validator rejects bad values with the field; good ones return what is in force.
        with pytest.raises(WorkflowUpdateFailedError) as rejected:
            await handle.execute_update("adjust", {"interval_seconds": 5})
        assert "interval_seconds: Input should be greater than or equal to 10" in str(rejected.value.cause)
        with pytest.raises(WorkflowUpdateFailedError) as empty:
            await handle.execute_update("adjust", {})
        assert "give interval_seconds and/or cooldown_seconds" in str(empty.value.cause)
        in_force = await handle.execute_update("adjust", {"cooldown_seconds": 600}, result_type=MonitorSettings)
        assert in_force == MonitorSettings(interval_seconds=300, cooldown_seconds=600)

        # Paused: new data waits; nothing is evaluated.
        await handle.signal("pause", {"reason": "provider incident"})
        await handle.signal("new_data", {"symbols": ["aapl", "MSFT"]})
        paused = await eventually(lambda: _pending(handle, ["AAPL", "MSFT"]))
        assert paused.paused and paused.pause_reason == "provider incident" and paused.evaluations == 0

        # Resume: the pending data is evaluated.
        await handle.signal("resume")
        resumed = await eventually(lambda: _evaluated(handle, 1))
        assert not resumed.paused and resumed.pending_symbols == [] and resumed.last_evaluation_fired == 0


async def _pending(handle: WorkflowHandle[Any, Any], symbols: list[str]) -> MonitorStatus | None:
    current = await status(handle)
    return current if current.pending_symbols == symbols else None


async def _evaluated(handle: WorkflowHandle[Any, Any], count: int) -> MonitorStatus | None:
    current = await status(handle)
    return current if current.evaluations >= count else None


async def test_fresh_price_fires_and_starts_its_notification(
    dev_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, settings: Any, monitors: None
) -> None:
    """A forced sync stores a crossing price → signal-with-start of the monitors → one
    firing → notify-<id> records the delivery intent on the user's channels."""
    await seed_demo(db)
    alert_id = await add_alert(db, parse_alert({"user_id": 1, "type": "price_above", "symbol": "IBM", "threshold": 1}))
    async with running_workers(dev_env.client, settings, task_queue):
        started = time.monotonic()
        result = await dev_env.client.execute_workflow(
            "SyncCompanyPrices", {"symbols": ["IBM"], "force": True}, id=f"sync-{task_queue}",
            task_queue=task_queue, result_type=SyncCompanyPricesResult,
        )
        assert result.stored == 1
        rows = await eventually(lambda: deliveries(db))
        latency = time.monotonic() - started
        price = await dev_env.client.get_workflow_handle(monitor_id("price")).query("status", result_type=MonitorStatus)
    async with db.connect() as conn:
        history_id, value, threshold, message = (await conn.execute(text(
            "SELECT id, value, threshold, message FROM alert_history WHERE alert_id = :a"
        ), {"a": alert_id})).one()
    assert rows == [(history_id, "email", "pending")]
    assert threshold == Decimal("1") and value > 1 and message.startswith("IBM")
    notify = await dev_env.client.get_workflow_handle(f"notify-{history_id}").describe()
    assert notify.workflow_type == "SendAlertNotification"
    assert price.fired_total == 1
    assert latency < 10, latency


async def test_a_burst_is_notified_in_one_batch(
    dev_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, settings: Any, monitors: None
) -> None:
    test_started = dt.datetime.now(dt.UTC)
    await seed_demo(db)
    async with db.begin() as conn:
        await conn.execute(text("INSERT INTO users (email) SELECT 'u' || n || '@x.io' FROM generate_series(1, 40) n"))
    for user_id in range(4, 44):
        await add_alert(db, parse_alert({"user_id": user_id, "type": "price_above", "symbol": "KO", "threshold": 1}))
    async with running_workers(dev_env.client, settings, task_queue):
        await dev_env.client.execute_workflow(
            "SyncCompanyPrices", {"symbols": ["KO"], "force": True}, id=f"sync-{task_queue}", task_queue=task_queue,
        )
        rows = await eventually(lambda: _count(db, 40))
    assert len(rows) == 40 and {r[1:] for r in rows} == {("email", "pending")}
    since = f"StartTime > '{test_started.isoformat()}'"
    batches = [w async for w in dev_env.client.list_workflows(f"WorkflowType = 'SendAlertNotificationBatch' AND {since}")]
    singles = [w async for w in dev_env.client.list_workflows(f"WorkflowType = 'SendAlertNotification' AND {since}")]
    assert len(batches) == 1 and singles == []


async def _count(db: AsyncEngine, n: int) -> list[tuple[int, str, str]] | None:
    rows = await deliveries(db)
    return rows if len(rows) >= n else None


async def test_continue_as_new_keeps_settings_and_counts(
    dev_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, settings: Any, monitors: None
) -> None:
    async with running_workers(dev_env.client, settings, task_queue):
        handle = await start_monitor(dev_env.client, task_queue, "deal", evaluations_per_run=2)
        await handle.execute_update("adjust", {"interval_seconds": 77})
        for n in range(1, 6):
            await handle.signal("new_data", {})
            await eventually(lambda n=n: _evaluated(handle, n))
        latest = dev_env.client.get_workflow_handle(monitor_id("deal"))
        final = await eventually(lambda: _evaluated(latest, 5))
        description = await latest.describe()
        # The first run's whole history, ended by continue-as-new: a replay fixture.
        await record_history(handle, "alert_monitor_continue_as_new")
    assert final.evaluations == 5 and final.settings.interval_seconds == 77
    assert description.run_id != handle.first_execution_run_id  # it continued as new


async def test_pending_new_data_survives_a_worker_restart(
    dev_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, settings: Any, monitors: None
) -> None:
    await seed_demo(db)
    alert_id = await add_alert(db, parse_alert({"user_id": 2, "type": "price_below", "symbol": "GS", "threshold": 100000}))
    async with db.begin() as conn:
        await conn.execute(text(
            "INSERT INTO price_quotes (company_id, price, quoted_at, source) "
            "SELECT id, 500, now(), 'test' FROM companies WHERE symbol = 'GS'"
        ))
    async with running_workers(dev_env.client, settings, task_queue):
        handle = await start_monitor(dev_env.client, task_queue, "price")
        await eventually(lambda: status(handle))
    # No worker now: the signal is recorded in the workflow's history all the same.
    await handle.signal("new_data", {"symbols": ["GS"]})
    async with running_workers(dev_env.client, settings, task_queue):
        # The restarted worker takes the task once the dead worker's sticky queue times out.
        # (up to a minute more if the first worker shut down mid-activity: that activity is
        # retried after its 60 s start-to-close timeout.)
        after = await eventually(lambda: _evaluated(handle, 1), seconds=150)
    assert after.fired_total == 1
    async with db.connect() as conn:
        fired = (await conn.execute(text("SELECT count(*) FROM alert_history WHERE alert_id = :a"), {"a": alert_id})).scalar_one()
    assert fired == 1


async def test_a_paused_monitor_still_continues_as_new_keeping_its_state(
    dev_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, settings: Any, monitors: None
) -> None:
    async with running_workers(dev_env.client, settings, task_queue):
        handle = await start_monitor(dev_env.client, task_queue, "news", evaluations_per_run=1)
        await handle.signal("pause", {"reason": "maintenance"})
        latest = dev_env.client.get_workflow_handle(monitor_id("news"))
        # One signal at a time, as price syncs send them (a minute apart): each its own wake-up.
        for n in range(8):
            await latest.signal("new_data", {"symbols": [f"S{n}"]})
            await eventually(lambda n=n: _pending(latest, [f"S{i}" for i in range(n + 1)]))
        carried = await status(latest)
        description = await latest.describe()
    assert carried is not None and carried.paused and carried.pause_reason == "maintenance"
    assert carried.evaluations == 0
    assert description.run_id != handle.first_execution_run_id
