"""The workflow commands of `python starter.py` against a dev server running the real workers:
starting by name with --wait, the printed `temporal` commands run by the real CLI, monitors
and schedules operated, the backfill's progress bar, and wrong arguments as a usage line."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

import schedules
from activities.alerts import monitor_id
from deallens.contracts import MonitorStatus
from deallens.db.demo import seed_demo
from deallens.sim import alphavantage as av_sim
from deallens.sim.serve import serve_asgi
from starter import main as starter_main
from tests.conftest import ROOT, TEMPORAL_CLI, dev_server_address
from tests.workers import running_workers


@pytest.fixture
async def sim() -> AsyncIterator[str]:
    async with serve_asgi(av_sim.make_app(seed=7)) as url:
        yield url


@pytest.fixture
def settings(sim: str, make_settings: Any) -> Any:
    return make_settings(alphavantage_base_url=sim, alphavantage_calls_per_minute=6000, alphavantage_calls_per_day=10_000)


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, database_url: str, dev_env: WorkflowEnvironment, sim: str) -> dict[str, str]:
    env = {"DATABASE_URL": database_url, "TEMPORAL_ADDRESS": dev_server_address(dev_env.client), "ALPHAVANTAGE_BASE_URL": sim}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


async def starter(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """In-process (a thread: main() runs its own event loop, the workers run on the test's)."""
    code = await asyncio.to_thread(starter_main, list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def temporal(command: str) -> subprocess.CompletedProcess[str]:
    words = shlex.split(command)
    assert words[0] == "temporal"
    return subprocess.run([str(TEMPORAL_CLI), *words[1:], "--output", "json"], capture_output=True, text=True, timeout=120)


async def test_sync_by_name_waits_and_its_printed_command_runs_in_the_temporal_cli(
    db: AsyncEngine, dev_env: WorkflowEnvironment, task_queue: str, settings: Any, cli_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    await seed_demo(db)
    async with running_workers(dev_env.client, settings, task_queue):
        code, out, err = await starter(capsys, "sync", "prices", "aapl", "--force", "--wait", "--task-queue", task_queue)
        assert code == 0, err
        started, _, result = out.partition("\n")
        assert re.match(rf"started SyncCompanyPrices cli-sync-company-prices-\d{{8}}T\d{{6}}Z \(run .+\) on {task_queue}$", started)
        assert [s["symbol"] for s in json.loads(result)["symbols"]] == ["AAPL"]

        code, out, _ = await starter(capsys, "sync", "prices", "MSFT", "--force", "--wait", "--show-command", "--task-queue", task_queue)
        assert code == 0
        command = out.strip()
        assert f"--task-queue {task_queue}" in command and "--type SyncCompanyPrices" in command
        assert json.loads(shlex.split(command)[shlex.split(command).index("--input") + 1]) == {"symbols": ["MSFT"], "force": True}
        ran = await asyncio.to_thread(temporal, command)
        assert ran.returncode == 0, ran.stderr
        assert '"symbol": "MSFT"' in ran.stdout or '"symbol":"MSFT"' in ran.stdout, ran.stdout

        # A monitor paused by the printed signal command, resumed and adjusted by starter.py.
        handle = await dev_env.client.start_workflow("AlertMonitor", {"kind": "news"}, id=monitor_id("news"), task_queue=task_queue)
        try:
            code, out, _ = await starter(capsys, "monitors", "pause", "news", "--reason", "vendor outage", "--show-command")
            ran = await asyncio.to_thread(temporal, out.strip())
            assert ran.returncode == 0, ran.stderr
            status = await handle.query("status", result_type=MonitorStatus)
            assert status.paused and status.pause_reason == "vendor outage"
            code, out, _ = await starter(capsys, "monitors", "status", "news")
            assert code == 0 and out.startswith("monitor news: PAUSED (vendor outage); every ")
            assert (await starter(capsys, "monitors", "resume", "news"))[:2] == (0, "monitor news: resumed\n")
            code, out, _ = await starter(capsys, "monitors", "adjust", "news", "--interval-seconds", "120")
            assert code == 0 and '"interval_seconds": 120' in out
            code, out, _ = await starter(capsys, "monitors", "status", "news", "deal")
            assert code == 1  # deal is not running here (the syncs woke the price monitor only)
            assert "monitor news: running; every 120s" in out and "monitor deal: MISSING (not running)" in out
        finally:
            for kind in schedules.ALERT_KINDS:
                try:
                    await dev_env.client.get_workflow_handle(monitor_id(kind)).terminate("test over")
                except Exception:  # noqa: BLE001 - not running
                    pass


async def test_schedules_list_pause_unpause_trigger(
    db: AsyncEngine, dev_env: WorkflowEnvironment, task_queue: str, cli_env: dict[str, str], capsys: pytest.CaptureFixture[str],
) -> None:
    await schedules.apply(dev_env.client, dry_run=False, task_queue=task_queue)
    try:
        assert (await starter(capsys, "schedules", "pause", "cleanup-market-data", "--note", "disk full"))[:2] == (
            0, "schedule cleanup-market-data: paused\n")
        code, out, _ = await starter(capsys, "schedules", "list")
        assert code == 0
        rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:]}
        assert rows["cleanup-market-data"] == "PAUSED" and rows["sync-company-prices"] == "active"
        assert set(rows) >= {d.id for d in schedules.SCHEDULES}
        described = await dev_env.client.get_schedule_handle("cleanup-market-data").describe()
        assert described.schedule.state.paused and described.schedule.state.note == "disk full"
        assert (await starter(capsys, "schedules", "unpause", "cleanup-market-data"))[0] == 0
        assert not (await dev_env.client.get_schedule_handle("cleanup-market-data").describe()).schedule.state.paused
        # The printed toggle command pauses it too.
        code, out, _ = await starter(capsys, "schedules", "pause", "sync-fundamentals", "--show-command")
        assert (await asyncio.to_thread(temporal, out.strip())).returncode == 0
        assert (await dev_env.client.get_schedule_handle("sync-fundamentals").describe()).schedule.state.paused
        assert (await starter(capsys, "schedules", "trigger", "cleanup-market-data"))[:2] == (
            0, "schedule cleanup-market-data: triggered\n")
        code, _, err = await starter(capsys, "schedules", "trigger", "no-such-schedule")
        assert code == 2 and err.startswith("starter: no schedule 'no-such-schedule'; schedules.py defines sync-company-prices")
    finally:
        for definition in schedules.SCHEDULES:
            await dev_env.client.get_schedule_handle(definition.id).delete()
        for kind in schedules.ALERT_KINDS:
            try:
                await dev_env.client.get_workflow_handle(monitor_id(kind)).terminate("test over")
            except Exception:  # noqa: BLE001 - already gone
                pass


async def test_backfill_follows_the_workflows_progress_query(
    db: AsyncEngine, dev_env: WorkflowEnvironment, task_queue: str, settings: Any, cli_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    await seed_demo(db)
    since = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=30)).isoformat()
    async with running_workers(dev_env.client, settings, task_queue):
        code, out, err = await starter(capsys, "backfill", "ohlc", "AAPL", "MSFT", "IBM", "--from", since, "--task-queue", task_queue)
    assert code == 0, err
    first, _, result = out.partition("\n")
    assert first.startswith("started SyncDailyOHLC cli-backfill-ohlc-") and "(last 100 sessions)" in first
    document, _, stored = result.partition("daily bars stored from ")
    assert json.loads(document)["bars_inserted"] > 0
    per_symbol = {line.split()[0]: int(line.split()[1]) for line in stored.splitlines()[1:]}
    assert set(per_symbol) == {"AAPL", "IBM", "MSFT"} and all(15 <= n <= 23 for n in per_symbol.values()), stored
    # The bar ended at the planned count, as the `progress` query told it.
    assert "3/3" in err.replace(" ", ""), err


def test_wrong_arguments_give_a_usage_line_and_exit_2() -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "starter.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    for args, usage in (
        (("sync",), "usage: python starter.py sync"),
        (("notify", "abc"), "usage: python starter.py notify"),
        (("digest", "monthly"), "usage: python starter.py digest"),
        (("digest", "daily", "--date", "2026-02-30"), "usage: python starter.py digest"),
        (("monitors", "pause"), "usage: python starter.py monitors pause"),
        (("monitors", "status", "prices"), "usage: python starter.py monitors status"),
        (("backfill", "ohlc", "AAPL"), "usage: python starter.py backfill ohlc"),
        (("schedules", "frobnicate"), "usage: python starter.py schedules"),
    ):
        result = run(*args)
        assert result.returncode == 2 and result.stderr.startswith(usage), (args, result.stderr)
        assert "Traceback" not in result.stderr and result.stdout == ""
    for args, message in (
        (("backfill", "ohlc", "--from", "2026-02-01", "--to", "2026-01-01", "--show-command"),
         "starter: --to: 2026-01-01 is before --from 2026-02-01"),
        (("sync", "prices", "A A", "--show-command"), "starter: invalid input: symbols: 'A A' is not a ticker symbol"),
        (("news", "ingest", "market", "--company-id", "3", "--show-command"), "starter: --company-id: only for `news ingest company`"),
        (("monitors", "adjust", "price", "--show-command"), "starter: adjust: give --interval-seconds and/or --cooldown-seconds"),
    ):
        result = run(*args)
        assert result.returncode == 2 and result.stderr.startswith(message), (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
