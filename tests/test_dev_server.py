"""Against a real dev server: the vertical slice through the `temporal` CLI, and schedules."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import ScheduleOverlapPolicy
from temporalio.testing import WorkflowEnvironment

import schedules
from deallens.db.demo import seed_demo
from deallens.sim import alphavantage as av_sim
from deallens.sim.serve import serve_asgi
from tests.conftest import TEMPORAL_CLI, dev_server_address
from tests.workers import running_workers


@pytest.fixture
async def sim() -> AsyncIterator[tuple[str, Any]]:
    app = av_sim.make_app(seed=5)
    async with serve_asgi(app) as url:
        yield url, app.state.sim


async def _cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(TEMPORAL_CLI), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    return process.returncode or 0, out.decode(), err.decode()


async def test_vertical_slice_through_the_temporal_cli(
    dev_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, sim: tuple[str, Any], make_settings: Any
) -> None:
    """`temporal workflow execute --input '{...}'` → quotes fetched on the AlphaVantage queue →
    one bulk upsert; the unknown symbol fails alone, non-retryably."""
    await seed_demo(db)
    settings = make_settings(alphavantage_base_url=sim[0], alphavantage_calls_per_minute=600)
    async with running_workers(dev_env.client, settings, task_queue):
        code, out, err = await _cli(
            "workflow", "execute",
            "--address", dev_server_address(dev_env.client),
            "--type", "SyncCompanyPrices",
            "--task-queue", task_queue,
            "--workflow-id", f"cli-{task_queue}",
            "--input", '{"symbols": ["AAPL", "NOPE", "GS"], "force": true}',
            "--output", "json",
        )
    assert code == 0, err
    result = json.loads(out)["result"]
    outcomes = {s["symbol"]: s["outcome"] for s in result["symbols"]}
    assert outcomes == {"AAPL": "updated", "NOPE": "unknown", "GS": "updated"}
    assert result["stored"] == 2 and result["simulated"] is True
    async with db.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT c.symbol, q.source, q.price > 0 FROM price_quotes q JOIN companies c ON c.id = q.company_id ORDER BY 1"
        ))).all()
    assert [tuple(r) for r in rows] == [("AAPL", "alphavantage-sim", True), ("GS", "alphavantage-sim", True)]
    # Each symbol was one provider call: the unknown one was not retried.
    assert sim[1].stats.by_endpoint["GLOBAL_QUOTE"] == 3


async def test_bad_cli_input_fails_the_workflow_with_the_field(
    dev_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, sim: tuple[str, Any], make_settings: Any
) -> None:
    settings = make_settings(alphavantage_base_url=sim[0])
    async with running_workers(dev_env.client, settings, task_queue):
        code, out, err = await _cli(
            "workflow", "execute",
            "--address", dev_server_address(dev_env.client),
            "--type", "SyncCompanyPrices",
            "--task-queue", task_queue,
            "--input", '{"symbols": "AAPL"}',
        )
    assert code != 0
    assert "invalid input: symbols: Input should be a valid list" in out + err


async def test_schedules_apply_creates_then_updates(dev_env: WorkflowEnvironment, task_queue: str) -> None:
    client = dev_env.client
    first = await schedules.apply(client, dry_run=False, task_queue=task_queue)
    created = [f"created {d.id} ({d.note})" for d in schedules.SCHEDULES]
    assert first[: len(created)] == created
    # It also makes sure the four alert monitors run, reusing a running one.
    monitor_lines = first[len(created):]
    assert [line.split(" (run ")[0] for line in monitor_lines] == [
        f"alert-monitor-{kind} running" for kind in ("price", "volume", "news", "deal")
    ]
    assert {d.id for d in schedules.SCHEDULES} == {
        "sync-company-prices", "sync-daily-ohlc", "sync-fundamentals", "cleanup-market-data",
        "send-daily-digest", "send-weekly-summary",
        "ingest-market-news", "ingest-company-news", "ingest-deal-news",
        "generate-company-insights", "generate-deal-insights", "generate-market-summary",
        "retry-parked-deliveries",
    }
    # Applying again updates in place instead of failing on "already exists".
    second = await schedules.apply(client, dry_run=False, task_queue=task_queue)
    assert second[: len(created)] == [f"updated {d.id} ({d.note})" for d in schedules.SCHEDULES]
    assert second[len(created):] == monitor_lines  # the same runs: not restarted

    # The digests: hourly (each run picks the users whose local hour has come), the weekly
    # summary hourly on Sundays and Mondays UTC (local Sunday evening in every zone).
    daily = (await client.get_schedule_handle("send-daily-digest").describe()).schedule.spec
    weekly = (await client.get_schedule_handle("send-weekly-summary").describe()).schedule.spec
    assert (daily.time_zone_name, weekly.time_zone_name) == ("UTC", "UTC")

    def covered(ranges: Any) -> list[int]:
        return sorted({v for r in ranges for v in range(r.start, max(r.end, r.start) + 1, r.step or 1)})

    assert [covered(c.hour) for c in daily.calendars] == [list(range(24))]
    assert [covered(c.minute) for c in daily.calendars] == [[0]]
    assert [covered(c.day_of_week) for c in weekly.calendars] == [[0, 1]]
    assert [covered(c.hour) for c in weekly.calendars] == [list(range(24))]

    # The market summary: 17:15 New York time on weekdays (holidays are skipped by the workflow).
    summary = (await client.get_schedule_handle("generate-market-summary").describe()).schedule.spec
    assert summary.time_zone_name == "America/New_York"
    assert [([r.start for r in c.hour], [r.start for r in c.minute]) for c in summary.calendars] == [([17], [15])]

    description = await client.get_schedule_handle("sync-company-prices").describe()
    spec = description.schedule.spec
    assert spec.time_zone_name == "America/New_York"
    # The server returns crons as calendars: 09:30-09:59 and 10:00-15:59 on weekdays.
    hours = sorted({r.start for c in spec.calendars for r in c.hour})
    assert hours == [9, 10]
    assert description.schedule.policy.overlap is ScheduleOverlapPolicy.SKIP
    action = description.schedule.action
    assert action.workflow == "SyncCompanyPrices" and action.task_queue == task_queue
    # An operator's pause survives a later apply (make run applies on every start).
    await client.get_schedule_handle("sync-fundamentals").pause(note="provider migration")
    await schedules.apply(client, dry_run=False, task_queue=task_queue)
    state = (await client.get_schedule_handle("sync-fundamentals").describe()).schedule.state
    assert state.paused and state.note == "provider migration"
    daily = (await client.get_schedule_handle("sync-daily-ohlc").describe()).schedule
    assert [(c.hour[0].start, c.minute[0].start) for c in daily.spec.calendars] == [(16, 30)]
    assert daily.policy.catchup_window == dt.timedelta(hours=12)
    # Self-healing every 15 minutes, UTC.
    healing = (await client.get_schedule_handle("retry-parked-deliveries").describe()).schedule
    assert [covered(c.minute) for c in healing.spec.calendars] == [[0, 15, 30, 45]]
    assert healing.action.workflow == "RetryParkedDeliveries"
    for definition in schedules.SCHEDULES:
        await client.get_schedule_handle(definition.id).delete()
    for kind in schedules.ALERT_KINDS:
        await client.get_workflow_handle(f"alert-monitor-{kind}").terminate("test over")
