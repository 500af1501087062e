"""The Web UI answers "what happened to AAPL's alert today?": after a sync, an evaluation and a
notification for AAPL, `temporal workflow list --query 'DealLensSymbols = "AAPL"'` (the CLI
binary, as an operator types it) finds all three, and `temporal workflow describe` of the
notification shows which alert, which user id and which channels. Real dev server (its
visibility is eventually consistent: polled), real workers, PostgreSQL, SMTP over loopback.

`schedules.py apply` registers the attributes on a namespace that lacks them, once."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

import schedules
from activities.alerts import monitor_id
from deallens.contracts import NotificationResult, SyncCompanyPricesInput, SyncCompanyPricesResult
from deallens.db.alerts import add_alert
from deallens.db.demo import seed_demo
from deallens.domain.alert_rules import parse_alert
from deallens.sim import alphavantage as av_sim
from deallens.sim.serve import serve_asgi
from temporal_client import DATA_CONVERTER
from tests.conftest import TEMPORAL_CLI, dev_server_address
from tests.smtp_sink import Sink, smtp_sink
from tests.workers import running_workers
from workflows import search_attributes


@pytest.fixture
def sink() -> Any:
    with smtp_sink() as sink:
        yield sink


@pytest.fixture
async def sim() -> AsyncIterator[str]:
    async with serve_asgi(av_sim.make_app(seed=1)) as url:
        yield url


def _cli(client: Client, *args: str) -> str:
    done = subprocess.run(
        [str(TEMPORAL_CLI), *args, "--address", dev_server_address(client), "--namespace", client.namespace],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _listed(client: Client, query: str) -> dict[str, set[str]]:
    """workflow type -> ids, from `temporal workflow list --query ... -o jsonl`."""
    found: dict[str, set[str]] = {}
    for line in _cli(client, "workflow", "list", "--query", query, "-o", "jsonl").splitlines():
        if line.strip():
            row = json.loads(line)
            found.setdefault(row["type"]["name"], set()).add(row["execution"]["workflowId"])
    return found


async def _eventually_listed(client: Client, query: str, types: set[str], seconds: float = 45) -> dict[str, set[str]]:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        found = await asyncio.to_thread(_listed, client, query)
        if types <= set(found) or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.5)


async def test_the_cli_finds_aapls_sync_evaluation_and_notification_and_shows_the_summary(
    dev_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, make_settings: Any, sim: str, sink: Sink
) -> None:
    await seed_demo(db)
    async with db.begin() as conn:
        # Email only (no webhook to wait on), so the notification's channels are known.
        await conn.execute(text("UPDATE users SET push_webhook_url = NULL, sms_number = NULL WHERE id = 1"))
    alert_id = await add_alert(db, parse_alert({"user_id": 1, "type": "price_above", "symbol": "AAPL", "threshold": 1}))
    client = dev_env.client
    settings = make_settings(
        alphavantage_base_url=sim, alphavantage_calls_per_minute=6000, alphavantage_calls_per_day=10000,
        smtp_host=sink.host, smtp_port=sink.port,
    )
    async with running_workers(client, settings, task_queue):
        synced = await client.execute_workflow(
            "SyncCompanyPrices", SyncCompanyPricesInput(symbols=["AAPL"], force=True),
            id=f"sync-aapl-{task_queue}", task_queue=task_queue, result_type=SyncCompanyPricesResult,
        )
        assert [(s.symbol, s.outcome.value) for s in synced.symbols] == [("AAPL", "updated")]
        # The sync woke the price monitor, which fired the alert and started notify-<id>.
        history_id = None
        for _ in range(300):
            async with db.connect() as conn:
                history_id = (
                    await conn.execute(text("SELECT max(id) FROM alert_history WHERE alert_id = :a"), {"a": alert_id})
                ).scalar()
            if history_id is not None:
                break
            await asyncio.sleep(0.1)
        assert history_id is not None, "the alert did not fire"
        notify = f"notify-{history_id}"
        delivered: NotificationResult | None = None
        for _ in range(150):
            try:
                delivered = await client.get_workflow_handle(notify, result_type=NotificationResult).result()
                break
            except RPCError as error:  # not started yet (the monitor starts it)
                if error.status is not RPCStatusCode.NOT_FOUND:
                    raise
                await asyncio.sleep(0.2)
        assert delivered is not None and delivered.counts.sent == 1, delivered
        assert len(sink.to("ada@deallens.local")) >= 1

        wanted = {"SyncCompanyPrices", "AlertMonitor", "SendAlertNotification"}
        found = await _eventually_listed(client, 'DealLensSymbols = "AAPL"', wanted)
        assert wanted <= set(found), found
        assert f"sync-aapl-{task_queue}" in found["SyncCompanyPrices"]
        assert monitor_id("price") in found["AlertMonitor"]
        assert notify in found["SendAlertNotification"]
        # The alert's id finds its notification and the monitor run that fired it.
        by_alert = await _eventually_listed(
            client, f'DealLensAlertIds = "{alert_id}" AND DealLensKind = "price"', {"AlertMonitor", "SendAlertNotification"}
        )
        assert notify in by_alert.get("SendAlertNotification", set()), by_alert
        assert monitor_id("price") in by_alert.get("AlertMonitor", set()), by_alert
        # Nothing about another symbol.
        assert notify not in (await asyncio.to_thread(_listed, client, 'DealLensSymbols = "MSFT"')).get(
            "SendAlertNotification", set()
        )

        described = await asyncio.to_thread(_cli, client, "workflow", "describe", "-w", notify)
        assert f"alert {alert_id} (price_above AAPL) for user 1 via email" in described, described
        description = await client.get_workflow_handle(notify).describe()
        assert await description.static_summary() == f"alert {alert_id} (price_above AAPL) for user 1 via email"
        details = await description.static_details()
        assert details is not None and "channels the user has: email" in details
        # No personal data in what the server indexes or shows: no name, no address.
        indexed = [str(pair.value) for pair in description.typed_search_attributes]
        assert f"['{alert_id}']" in indexed and "['AAPL']" in indexed and "price" in indexed, indexed
        for shown in (described, details, *indexed):
            assert "ada@" not in shown and "Ada" not in shown
        # The activities and timers say what they do.
        history = await client.get_workflow_handle(f"sync-aapl-{task_queue}").fetch_history()
        summaries = [
            DATA_CONVERTER.payload_converter.from_payload(e.user_metadata.summary, str)
            for e in history.events
            if e.HasField("user_metadata") and e.user_metadata.HasField("summary")
        ]
        assert "quote AAPL" in summaries and "plan the symbols to fetch within the paced quota" in summaries, summaries


async def test_schedules_apply_registers_the_search_attributes_once(dev_env: WorkflowEnvironment, task_queue: str) -> None:
    namespace = f"ns-{secrets.token_hex(4)}"
    await dev_env.client.workflow_service.register_namespace(
        RegisterNamespaceRequest(namespace=namespace, workflow_execution_retention_period=Duration(seconds=86400))
    )
    client = await Client.connect(
        dev_server_address(dev_env.client), namespace=namespace, data_converter=DATA_CONVERTER
    )

    async def custom() -> set[str]:
        listed = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
        return set(listed.custom_attributes)

    names = {key.name for key in search_attributes.ALL}
    for _ in range(100):  # a new namespace takes a moment to be served
        try:
            assert not names & await custom()
            break
        except Exception:  # noqa: BLE001
            await asyncio.sleep(0.2)
    first = await schedules.apply(client, dry_run=False, task_queue=task_queue)
    assert first[0] == "registered the search attributes DealLensAlertIds, DealLensCompanyIds, DealLensKind, DealLensSymbols", first
    assert names <= await custom()
    second = await schedules.apply(client, dry_run=False, task_queue=task_queue)
    assert not any("search attributes" in line for line in second), second
    assert len(second) == len(first) - 1
    # The monitors it starts carry their kind; the schedules their summary.
    description = await client.get_workflow_handle(monitor_id("news")).describe()
    assert description.typed_search_attributes.get(search_attributes.KIND) == "news"
    assert await description.static_summary() == "alert monitor: news alerts"
    schedule = await client.get_schedule_handle("sync-company-prices").describe()
    summary = schedule.schedule.action.static_summary  # type: ignore[union-attr]
    assert DATA_CONVERTER.payload_converter.from_payload(summary, str) == "sync-company-prices: latest quotes in market hours"
    for kind in schedules.ALERT_KINDS:
        await client.get_workflow_handle(monitor_id(kind)).terminate("test over")
