"""Alerts see every data point, with real processes: a worker process (`python worker.py`)
running the real price AlertMonitor on a dev server, quotes stored as the sync stores them
(`deallens.db.prices.store_quotes`) and each followed by the sync's signal-with-start of the
monitor. In each test a price_above 200 alert has fired on 210 and is disarmed; then the
price dips to 190 and recovers to 210 where the monitor cannot look in between:

- the monitor is paused meanwhile, and resumed;
- both quotes land while one evaluation waits to start (two syncs within one evaluation);
- the worker process is down meanwhile (SIGKILL), and a new one is started.

Against the latest quote only, each would see 210 twice and never fire again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.testing import WorkflowEnvironment

from activities.alerts import monitor_id
from deallens.contracts import AlertMonitorInput, FetchedQuote, MonitorStatus, NewDataInput
from deallens.db.alerts import add_alert
from deallens.db.prices import store_quotes
from deallens.domain.alert_rules import parse_alert
from tests.conftest import ROOT, dev_server_address
from tests.smtp_sink import Sink, smtp_sink

QUEUE = "deallens"


@pytest.fixture
def sink() -> Iterator[Sink]:
    with smtp_sink() as running:
        yield running


@pytest.fixture
async def worker_env(
    database_url: str, dev_env: WorkflowEnvironment, sink: Sink, tmp_path: Path
) -> AsyncIterator[dict[str, str]]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "TEMPORAL_ADDRESS": dev_server_address(dev_env.client),
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(sink.port),
        "SMTP_TLS": "none",
        # No provider is called here; keyless providers must point at a stand-in.
        "ALPHAVANTAGE_BASE_URL": "http://127.0.0.1:9",
        "NEWSAPI_BASE_URL": "http://127.0.0.1:9",
        "OPENAI_BASE_URL": "http://127.0.0.1:9",
        "LOG_LEVEL": "WARNING",
    }
    yield env
    try:  # the monitor ID is fixed per namespace, and the dev server is the module's
        await dev_env.client.get_workflow_handle(monitor_id("price")).terminate("test over")
    except Exception:  # noqa: BLE001 - not running is fine
        pass


class Workers:
    """Worker processes started by a test, stopped (SIGTERM) at its end."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self._env, self.log, self.processes = env, log, list[subprocess.Popen[bytes]]()

    def start(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "worker.py"], cwd=ROOT, env=self._env, stdout=out, stderr=subprocess.STDOUT
            )
        self.processes.append(process)
        return process

    async def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                await asyncio.to_thread(process.wait, 30)


@pytest.fixture
async def workers(worker_env: dict[str, str], tmp_path: Path) -> AsyncIterator[Workers]:
    started = Workers(worker_env, tmp_path / "worker.log")
    try:
        yield started
    finally:
        await started.stop()


async def sync(db: AsyncEngine, client: Client, price: str) -> None:
    """What SyncCompanyPrices does with one fetched quote: store it, then signal-with-start."""
    now = dt.datetime.now(dt.UTC)
    value = Decimal(price)
    stored, _ = await store_quotes(db, [FetchedQuote(
        symbol="AAPL", price=value, open=value, high=value, low=value, previous_close=Decimal(200),
        change=value - 200, change_percent=(value - 200) / 2, volume=1_000_000 + int(value * 100),
        latest_trading_day=now.date(), quoted_at=now, source="test",
    )])
    assert stored == ["AAPL"]
    await client.start_workflow(
        "AlertMonitor", AlertMonitorInput(kind="price"), id=monitor_id("price"), task_queue=QUEUE,
        start_signal="new_data", start_signal_args=[NewDataInput(symbols=["AAPL"])],
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )


async def firings(db: AsyncEngine) -> list[tuple[Decimal, dt.datetime]]:
    async with db.connect() as conn:
        rows = await conn.execute(text("SELECT value, data_at FROM alert_history ORDER BY id"))
        return [(Decimal(v).normalize(), at) for v, at in rows]


async def until(check: Callable[[], Awaitable[Any]], seconds: float, log: Path) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s; worker log:\n{log.read_text()[-3000:]}")
        await asyncio.sleep(0.2)


async def fired_on_210(db: AsyncEngine, client: Client, workers: Workers) -> WorkflowHandle[Any, Any]:
    """The alert, fired on 210 by the running monitor (started by the sync's signal)."""
    await add_alert(db, parse_alert({
        "user_id": 1, "type": "price_above", "symbol": "AAPL", "threshold": 200, "cooldown_seconds": 0,
    }))
    await sync(db, client, "210")
    await until(lambda: _count(db, 1), 60, workers.log)
    return client.get_workflow_handle(monitor_id("price"))


async def _count(db: AsyncEngine, n: int) -> bool:
    return len(await firings(db)) >= n


async def status(handle: WorkflowHandle[Any, Any]) -> MonitorStatus:
    return await handle.query("status", result_type=MonitorStatus)


@pytest.fixture
async def demo(db: AsyncEngine) -> AsyncEngine:
    async with db.begin() as conn:
        await conn.execute(text("INSERT INTO companies (symbol, name) VALUES ('AAPL', 'Apple Inc')"))
        await conn.execute(text("INSERT INTO users (id, email) VALUES (1, 'ada@example.com')"))
    return db


async def test_paused_through_a_dip_and_recovery_fires_on_resume(
    demo: AsyncEngine, dev_env: WorkflowEnvironment, workers: Workers
) -> None:
    client = dev_env.client
    workers.start()
    monitor = await fired_on_210(demo, client, workers)
    await monitor.signal("pause", {"reason": "test"})
    await until(lambda: _paused(monitor), 20, workers.log)
    await sync(demo, client, "190")
    await sync(demo, client, "210")
    waiting = await until(lambda: _pending(monitor), 20, workers.log)
    assert waiting.paused and len(await firings(demo)) == 1
    await monitor.signal("resume")
    await until(lambda: _count(demo, 2), 60, workers.log)
    first, second = await firings(demo)
    assert second[0] == Decimal(210) and second[1] > first[1]


async def _paused(handle: WorkflowHandle[Any, Any]) -> bool:
    return (await status(handle)).paused


async def _pending(handle: WorkflowHandle[Any, Any]) -> MonitorStatus | None:
    current = await status(handle)
    return current if current.pending_symbols == ["AAPL"] else None


async def test_two_syncs_landing_within_one_evaluation(
    demo: AsyncEngine, dev_env: WorkflowEnvironment, workers: Workers
) -> None:
    """The evaluation after 190's signal is held at its start (the kind's advisory lock, which
    the test holds) while 210 lands too: it then reads both, in order, in one evaluation."""
    client = dev_env.client
    workers.start()
    monitor = await fired_on_210(demo, client, workers)
    evaluations = (await status(monitor)).evaluations
    async with demo.connect() as holder:
        await holder.execute(text(
            "SELECT pg_advisory_lock(hashtext('deallens.alert_eval'), hashtext('price'))"
        ))
        await holder.commit()
        await sync(demo, client, "190")
        await until(lambda: _evaluation_waiting(demo), 30, workers.log)
        await sync(demo, client, "210")
        await holder.execute(text("SELECT pg_advisory_unlock(hashtext('deallens.alert_eval'), hashtext('price'))"))
        await holder.commit()
    await until(lambda: _count(demo, 2), 60, workers.log)
    # The held evaluation fired; the one for 210's signal found nothing new.
    after = await until(lambda: _evaluated(monitor, evaluations + 2), 60, workers.log)
    assert after.fired_total == 2 and len(await firings(demo)) == 2
    assert (await firings(demo))[1][0] == Decimal(210)


async def _evaluation_waiting(db: AsyncEngine) -> bool:
    async with db.connect() as conn:
        waiting = await conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
        ))
        return bool(waiting.scalar_one())


async def _evaluated(handle: WorkflowHandle[Any, Any], count: int) -> MonitorStatus | None:
    current = await status(handle)
    return current if current.evaluations >= count else None


async def test_a_worker_down_through_a_dip_and_recovery(
    demo: AsyncEngine, dev_env: WorkflowEnvironment, workers: Workers
) -> None:
    """Killed with SIGKILL; the two syncs land (another worker ran them) and signal the
    monitor, whose history keeps the signals; a new worker process evaluates them."""
    client = dev_env.client
    first = workers.start()
    await fired_on_210(demo, client, workers)
    first.send_signal(signal.SIGKILL)
    assert await asyncio.to_thread(first.wait, 30) == -signal.SIGKILL
    await sync(demo, client, "190")
    await asyncio.sleep(2)
    await sync(demo, client, "210")
    assert len(await firings(demo)) == 1
    workers.start()
    # The new worker takes the monitor's task once the dead worker's sticky queue times out.
    await until(lambda: _count(demo, 2), 120, workers.log)
    assert (await firings(demo))[1][0] == Decimal(210)
