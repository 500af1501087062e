"""Infrastructure faults, with real processes around a real worker process:

- the Temporal dev server (its own, on a file database) stopped and restarted mid-run:
  running workflows finish, the alert monitor resumes (same run) and fires on new data, a
  schedule fires again after the restart;
- PostgreSQL unreachable for 30 s, through a TCP proxy cut in the test (the machine's
  PostgreSQL keeps running for everyone else): activities retry with backoff, the worker
  stays up and says in one line per retry what it waits for, the workflows finish when the
  database returns, nothing is lost or stored twice, and the pool serves the next run with
  no failed attempt (pre-ping replaced the dead connections);
- the SMTP relay down for ~60 s: alert emails and digests wait and go out once each, none
  parked; and the retry policies are checked to ride out a 10-minute outage before parking.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleSpec,
    WorkflowExecutionStatus,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.testing import WorkflowEnvironment

from activities.errors import next_retry_seconds
from deallens.contracts import (
    AlertMonitorInput,
    DigestInput,
    DigestResult,
    FetchedQuote,
    MonitorStatus,
    NewDataInput,
    NotificationResult,
    SendAlertNotificationBatchInput,
    SyncCompanyPricesResult,
)
from deallens.db.alerts import add_alert
from deallens.db.engine import create_engine, unreachable_reason
from deallens.db.prices import store_quotes
from deallens.domain.alert_rules import parse_alert
from temporal_client import DATA_CONVERTER, interceptors
from tests.conftest import ROOT, TEMPORAL_CLI, dev_server_address
from tests.faults import (
    PUSH_SECRET,
    Stack,
    at_most_one_in_flight_twice,
    check_alert_deliveries,
    rows,
    running_stack,
    scalar,
    until,
)
from tests.notify_data import fire, make_users, seed_market, watch
from tests.smtp_sink import Sink, _Handler, free_port
from workflows.policies import CHANNEL_RETRY, DIGEST_BATCH_RETRY

SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN"]


class Worker:
    """One worker process (`worker.py`, or the timeout-capped tests.fault_worker)."""

    def __init__(self, env: dict[str, str], log: Path, *, capped: bool) -> None:
        self.env, self.log = env, log
        self.argv = [sys.executable, "-m", "tests.fault_worker"] if capped else [sys.executable, "worker.py"]
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while "DealLens worker on" not in self.log.read_text(errors="replace"):
            assert self.proc.poll() is None, f"the worker exited:\n{self.tail()}"
            assert time.monotonic() < deadline, f"the worker did not start:\n{self.tail()}"
            await asyncio.sleep(0.05)

    def tail(self, chars: int = 5000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else "(no log)"

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, 20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait, 5)


async def seed_companies(db: AsyncEngine, symbols: list[str]) -> None:
    async with db.begin() as conn:
        await conn.execute(
            text("INSERT INTO companies (symbol, name) SELECT s, s || ' Inc' FROM unnest(CAST(:s AS text[])) s"),
            {"s": symbols},
        )


async def burst(
    db: AsyncEngine, stack: Stack, count: int, *, push: bool, start: int = 1
) -> tuple[list[int], dt.datetime]:
    """`count` urgent firings of one evaluation, each its own user (and webhook when `push`)."""
    users = await make_users(db, count, start=start, **({"push_webhook_secret": PUSH_SECRET} if push else {}))
    if push:
        async with db.begin() as conn:
            await conn.execute(
                text("UPDATE users SET push_webhook_url = :base || '/hook/' || id WHERE id = ANY(:ids)"),
                {"base": stack.receiver.url, "ids": users},
            )
    at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return [await fire(db, user, None, urgent=True, at=at) for user in users], at


def quote(symbol: str, price: str) -> FetchedQuote:
    now, value = dt.datetime.now(dt.UTC), Decimal(price)
    return FetchedQuote(
        symbol=symbol, price=value, open=value, high=value, low=value, previous_close=Decimal(200),
        change=value - 200, change_percent=Decimal(1), volume=1_000_000, latest_trading_day=now.date(),
        quoted_at=now, source="test",
    )


def failed_attempts(history: Any) -> int:
    return sum(
        e.event_type in (EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED, EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT)
        for e in history.events
    )


# ------------------------------------------------------------------ the retry policies, unit level


@pytest.mark.parametrize(
    "name, policy", [("email", CHANNEL_RETRY["email"]), ("digest batch", DIGEST_BATCH_RETRY)]
)
def test_a_ten_minute_relay_outage_is_ridden_out_before_anything_is_parked(name: str, policy: Any) -> None:
    """The workflows park a delivery only when the activity's retries run out: the backoff
    before the last attempt must exceed 10 minutes of SMTP outage (connection refused fails
    each attempt at once, so the waits are the whole outage the policy covers)."""
    assert policy.maximum_attempts >= 2
    waits = [
        next_retry_seconds(a, policy.initial_interval.total_seconds(), policy.backoff_coefficient,
                           policy.maximum_interval.total_seconds())
        for a in range(1, policy.maximum_attempts)
    ]
    covered = sum(waits)
    print(f"{name}: {policy.maximum_attempts} attempts, waits {waits} s: rides out {covered:.0f} s of outage")
    assert covered >= 600, f"{name} would park after {covered:.0f} s of outage"
    # Nor do the permanent-error types include what an unreachable relay raises.
    assert "TransientDeliveryError" not in (policy.non_retryable_error_types or [])


def test_the_backoff_arithmetic() -> None:
    assert [next_retry_seconds(a, 10, 2.0, 300) for a in range(1, 8)] == [10, 20, 40, 80, 160, 300, 300]
    assert next_retry_seconds(9, 1, 2.0, None) == 100  # the server's default cap: 100 x initial


async def test_what_counts_as_the_database_being_unreachable(db: AsyncEngine) -> None:
    """Refused and lost connections from the driver are an outage; bad SQL is not, nor is a
    refused connection raised elsewhere (an SMTP relay that is down, in the same activity)."""
    closed = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/postgres", pool_size=1)
    try:
        with pytest.raises(Exception) as refused:
            async with closed.connect() as conn:
                await conn.execute(text("SELECT 1"))
    finally:
        await closed.dispose()
    assert unreachable_reason(refused.value) == "connection refused"
    with pytest.raises(Exception) as bad_sql:
        async with db.connect() as conn:
            await conn.execute(text("SELECT no_such_column FROM users"))
    assert unreachable_reason(bad_sql.value) is None
    async with db.connect() as conn:
        pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        async with db.connect() as other:
            await other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        with pytest.raises(Exception) as lost:
            await conn.execute(text("SELECT 1"))
    assert unreachable_reason(lost.value) in ("connection lost", "the server is starting up or shutting down"), lost.value
    try:
        raise ConnectionRefusedError(111, "Connection refused")
    except ConnectionRefusedError as smtp_down:
        assert unreachable_reason(smtp_down) is None


# ------------------------------------------------------------------ the Temporal server restarted


class DevServer:
    """`temporal server start-dev` on a file database, stoppable and restartable on one port."""

    def __init__(self, directory: Path) -> None:
        self.db_file, self.log = directory / "temporal.db", directory / "temporal.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(TEMPORAL_CLI), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(self.port),
                 "--headless", "--db-filename", str(self.db_file), "--log-level", "error"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, self.log.read_text(errors="replace")[-2000:]
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            assert time.monotonic() < deadline, "the dev server did not open its port"
            await asyncio.sleep(0.1)
        # The port opens before the frontend answers: wait until a client gets through.
        while True:
            try:
                client = await self.client()
                await client.count_workflows()
                return
            except Exception:  # noqa: BLE001 - not ready yet
                assert time.monotonic() < deadline, "the dev server did not answer"
                await asyncio.sleep(0.2)

    async def client(self) -> Client:
        return await Client.connect(self.address, data_converter=DATA_CONVERTER, interceptors=interceptors())

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, 30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait, 5)


@pytest.fixture
async def own_dev_server(tmp_path: Path) -> AsyncIterator[DevServer]:
    server = DevServer(tmp_path)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_temporal_restarted_mid_run_on_its_file_database(
    db: AsyncEngine, database_url: str, own_dev_server: DevServer, tmp_path: Path
) -> None:
    server = own_dev_server
    client = await server.client()
    await seed_companies(db, ["AAPL"])
    [user] = await make_users(db, 1, start=1000)
    await add_alert(db, parse_alert({"user_id": user, "type": "price_above", "symbol": "AAPL", "threshold": 200, "urgent": True}))
    async with running_stack(database_url, server.address, timeout_cap_s=10) as stack:
        stack.sink.on_data = lambda number: time.sleep(0.25)  # the batch below takes ~8 s of sending
        ids, at = await burst(db, stack, 30, push=True)
        worker = Worker(stack.env(), tmp_path / "worker.log", capped=True)
        await worker.start()
        try:
            monitor = await client.start_workflow(
                "AlertMonitor", AlertMonitorInput(kind="price"), id="alert-monitor-price", task_queue="deallens",
                start_signal="new_data", start_signal_args=[NewDataInput(symbols=["AAPL"])],
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
            status = await until(lambda: _evaluated(monitor, 1), 60, "the monitor's first evaluation", worker)
            assert status.fired_total == 0  # no quote yet
            monitor_run = (await monitor.describe()).run_id
            schedule = await client.create_schedule(
                "fault-cleanup-dry-run",
                Schedule(
                    action=ScheduleActionStartWorkflow(
                        "CleanupMarketData", {"dry_run": True}, id="fault-cleanup", task_queue="deallens"
                    ),
                    spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=dt.timedelta(seconds=2))]),
                ),
            )
            await until(lambda: _schedule_ran(schedule, None), 30, "the schedule's first run", worker)
            batch = await client.start_workflow(
                "SendAlertNotificationBatch",
                SendAlertNotificationBatchInput(kind="price", triggered_at=at, send_heartbeat_seconds=4),
                id="fault-restart-batch", task_queue="deallens", result_type=NotificationResult,
            )
            await until(lambda: _arrived(stack.sink, 3), 30, "the batch under way", worker)

            await server.stop()
            down_at = dt.datetime.now(dt.UTC)
            during = len(stack.sink.message_ids())
            await asyncio.sleep(5)
            await server.start()
            restarted_at = dt.datetime.now(dt.UTC)
            client = await server.client()

            result = await asyncio.wait_for(client.get_workflow_handle(batch.id, result_type=NotificationResult).result(), 120)
            await asyncio.sleep(0.5)
            resent = check_alert_deliveries(stack, ids)
            assert result.counts.sent + result.counts.already_done == 2 * len(ids), result
            assert {r for r in await rows(db, "SELECT DISTINCT channel, status FROM notification_deliveries")} == {
                ("email", "sent"), ("push", "sent")
            }

            # The monitor resumed (the same run), and fires on data that lands after the restart.
            monitor = client.get_workflow_handle("alert-monitor-price")
            described = await monitor.describe()
            assert described.status is WorkflowExecutionStatus.RUNNING and described.run_id == monitor_run
            await store_quotes(db, [quote("AAPL", "210")])
            await client.start_workflow(
                "AlertMonitor", AlertMonitorInput(kind="price"), id="alert-monitor-price", task_queue="deallens",
                start_signal="new_data", start_signal_args=[NewDataInput(symbols=["AAPL"])],
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
            after = await until(lambda: _fired(monitor), 60, "the monitor firing after the restart", worker)
            assert (await monitor.describe()).run_id == described.run_id

            # The schedule fires again after the restart, and its run completes.
            schedule = client.get_schedule_handle("fault-cleanup-dry-run")
            ran = await until(lambda: _schedule_ran(schedule, restarted_at), 60, "a scheduled run after the restart", worker)
            assert worker.proc is not None and worker.proc.poll() is None, "the worker stayed up through the outage"
            print(
                f"temporal restart: down {down_at:%H:%M:%S} for 5 s with {during}/{len(ids)} emails sent; "
                f"batch of {len(ids)} x 2 channels completed, in-flight re-sends {resent}; monitor resumed in the same "
                f"run and fired {after.fired_total}; schedule ran again at {ran:%H:%M:%S}"
            )
            await schedule.delete()
            await monitor.terminate("test over")
        finally:
            await worker.stop()


async def _evaluated(handle: Any, count: int) -> MonitorStatus | None:
    with contextlib.suppress(Exception):
        status = await handle.query("status", result_type=MonitorStatus)
        if status.evaluations >= count and not status.pending_symbols:
            return status
    return None


async def _fired(handle: Any) -> MonitorStatus | None:
    with contextlib.suppress(Exception):
        status = await handle.query("status", result_type=MonitorStatus)
        if status.fired_total >= 1:
            return status
    return None


async def _schedule_ran(handle: Any, after: dt.datetime | None) -> dt.datetime | None:
    """The start of a scheduled run (after `after`) whose workflow completed."""
    with contextlib.suppress(Exception):
        described = await handle.describe()
        client: Client = handle._client
        for action in reversed(described.info.recent_actions):
            if after is not None and action.started_at <= after:
                continue
            run = client.get_workflow_handle(action.action.workflow_id, run_id=action.action.first_execution_run_id)
            if (await run.describe()).status is WorkflowExecutionStatus.COMPLETED:
                return action.started_at
    return None


async def _arrived(sink: Sink, count: int) -> bool:
    return len(sink.message_ids()) >= count


# ------------------------------------------------------------------ PostgreSQL unreachable for 30 s


class TcpProxy:
    """Loopback TCP proxy to PostgreSQL that can be cut (connections closed, new ones refused)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.accepted = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port, reuse_address=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            transport = writer.transport
            transport.abort()  # an RST, as when a network path or the server goes away
        self.writers.clear()
        await self.server.wait_closed()
        self.server = None

    async def stop(self) -> None:
        if self.server is not None:
            await self.cut()


def through(database_url: str, port: int) -> str:
    parts = urlsplit(database_url)
    user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}"))


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[TcpProxy]:
    parts = urlsplit(database_url)
    running = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


RETRY_LINE = re.compile(
    r"database unreachable \((connection refused|connection lost)\), activity (\S+) attempt (\d+) will retry in (\d+)s"
)


async def test_postgres_unreachable_for_30_seconds(
    db: AsyncEngine, database_url: str, dev_env: WorkflowEnvironment, proxy: TcpProxy, tmp_path: Path
) -> None:
    client = dev_env.client
    await seed_companies(db, SYMBOLS)
    async with running_stack(database_url, dev_server_address(client)) as stack:
        ids, at = await burst(db, stack, 6, push=True)
        env = {**stack.env(), "DATABASE_URL": through(database_url, proxy.port)}
        worker = Worker(env, tmp_path / "worker.log", capped=False)  # the production timeouts
        await worker.start()
        try:
            await proxy.cut()
            cut_at = time.monotonic()
            prices = await client.start_workflow(
                "SyncCompanyPrices", {"symbols": SYMBOLS, "force": True}, id="fault-pg-prices",
                task_queue="deallens", result_type=SyncCompanyPricesResult,
            )
            batch = await client.start_workflow(
                "SendAlertNotificationBatch", SendAlertNotificationBatchInput(kind="price", triggered_at=at),
                id="fault-pg-batch", task_queue="deallens", result_type=NotificationResult,
            )
            await asyncio.sleep(30)
            assert worker.proc is not None and worker.proc.poll() is None, f"the worker died:\n{worker.tail()}"
            log_text = worker.log.read_text(errors="replace")
            during = [m.groups() for m in RETRY_LINE.finditer(log_text)]
            example = next((line for line in log_text.splitlines() if RETRY_LINE.search(line)), "")
            await proxy.start()
            restored_at = time.monotonic()
            priced = await asyncio.wait_for(prices.result(), 120)
            sent = await asyncio.wait_for(batch.result(), 180)
            finished = time.monotonic()
            await asyncio.sleep(0.5)

            assert priced.stored == len(SYMBOLS)
            per_symbol = await rows(db, "SELECT company_id, count(*) FROM price_quotes GROUP BY company_id")
            assert len(per_symbol) == len(SYMBOLS) and {n for _, n in per_symbol} == {1}, per_symbol
            assert sent.counts.sent + sent.counts.already_done == 2 * len(ids) and sent.counts.failed == 0, sent
            resent = check_alert_deliveries(stack, ids)
            assert resent == 0  # nothing was in flight: the database was down before any send

            # One clear line per retry, with a backoff that grows; no crash loop.
            assert worker.proc.poll() is None, "the worker stayed up"
            assert len(worker.log.read_text().split("DealLens worker on")) == 2, "started once"
            assert len(during) >= 4, worker.tail()
            by_activity: dict[str, list[int]] = {}
            for _, activity, attempt, delay in during:
                by_activity.setdefault(activity, []).append(int(delay))
            assert any(len(d) >= 3 and d == sorted(d) and d[-1] > d[0] for d in by_activity.values()), by_activity
            assert "Traceback" not in worker.log.read_text()

            # The pool recovered: a new run after the outage has no failed attempt.
            async with db.begin() as conn:
                await conn.execute(text("DELETE FROM price_quotes"))
            again = await client.execute_workflow(
                "SyncCompanyPrices", {"symbols": SYMBOLS, "force": True}, id="fault-pg-prices-after",
                task_queue="deallens", result_type=SyncCompanyPricesResult,
            )
            assert again.stored == len(SYMBOLS)
            history = await client.get_workflow_handle("fault-pg-prices-after").fetch_history()
            assert failed_attempts(history) == 0
            print(
                f"postgres cut 30 s: {len(during)} retry lines ({', '.join(f'{a}: {d}' for a, d in by_activity.items())}); "
                f"workflows finished {finished - restored_at:.1f} s after the restore "
                f"({finished - cut_at:.1f} s after the cut); {len(SYMBOLS)} quotes once each, {len(ids)} firings x 2 "
                f"channels once each; worker up throughout; next run 0 failed attempts; proxy accepted {proxy.accepted}\n"
                f"  e.g. {example}"
            )
        finally:
            await worker.stop()
            for kind in ("price", "volume"):
                with contextlib.suppress(Exception):
                    await client.get_workflow_handle(f"alert-monitor-{kind}").terminate("test over")


# ------------------------------------------------------------------ the SMTP relay down


class RestartableSink:
    """The recording SMTP sink of tests/smtp_sink.py on a fixed port, stoppable and restartable."""

    def __init__(self) -> None:
        self.sink = Sink()
        self.sink.port = free_port()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(_Handler(self.sink), hostname="127.0.0.1", port=self.sink.port, ready_timeout=10)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def relay() -> Iterator[RestartableSink]:
    running = RestartableSink()
    running.start()
    try:
        yield running
    finally:
        running.stop()


OUTAGE_S = float(os.environ.get("FAULT_SMTP_OUTAGE_SECONDS", "60"))


async def test_smtp_relay_down_then_back_every_email_goes_out_once_none_parked(
    db: AsyncEngine, database_url: str, dev_env: WorkflowEnvironment, relay: RestartableSink, tmp_path: Path
) -> None:
    client = dev_env.client
    async with running_stack(database_url, dev_server_address(client)) as stack:
        stack.sink = relay.sink  # the worker's SMTP_PORT: the restartable relay
        ids, at = await burst(db, stack, 6, push=False)
        readers = await make_users(db, 4, start=100)
        market = await seed_market(db, ["AAPL"], until=dt.date(2026, 11, 27))
        await watch(db, readers, list(market.values()))
        worker = Worker(stack.env(), tmp_path / "worker.log", capped=False)  # the production policies
        await worker.start()
        try:
            relay.stop()
            batch = await client.start_workflow(
                "SendAlertNotificationBatch", SendAlertNotificationBatchInput(kind="price", triggered_at=at),
                id="fault-smtp-batch", task_queue="deallens", result_type=NotificationResult,
            )
            digest = await client.start_workflow(
                "SendDailyDigest", DigestInput(date=dt.date(2026, 12, 1), user_ids=readers),
                id="fault-smtp-digest", task_queue="deallens", result_type=DigestResult,
            )
            await asyncio.sleep(OUTAGE_S)
            assert relay.sink.message_ids() == []
            pending = await scalar(db, "SELECT count(*) FROM notification_deliveries WHERE status <> 'sent'")
            relay.start()
            back = time.monotonic()
            sent, digested = await asyncio.wait_for(asyncio.gather(batch.result(), digest.result()), 600)
            waited = time.monotonic() - back
            await asyncio.sleep(0.5)

            alerts = {f"<alert-{h}-email@deallens.local>" for h in ids}
            ledger = await rows(db, "SELECT status, message_id FROM digest_deliveries")
            expected = alerts | {m for _, m in ledger}
            at_most_one_in_flight_twice(relay.sink.message_ids(), expected, "email")
            assert len(relay.sink.message_ids()) == len(ids) + len(readers), "none twice: nothing was in flight"
            assert sent.counts.sent == len(ids) and sent.counts.failed == 0, sent
            assert digested.counts.sent == len(readers) and digested.counts.failed == 0, digested
            statuses = await rows(db, "SELECT status, attempts FROM notification_deliveries")
            assert {s for s, _ in statuses} == {"sent"} and min(a for _, a in statuses) >= 2, statuses
            assert {s for s, _ in ledger} == {"sent"}
            print(
                f"smtp relay down {OUTAGE_S:.0f} s: {pending} alert deliveries waiting at the end of it; "
                f"{len(ids)} alert emails and {len(readers)} digests arrived once each {waited:.1f} s after the relay "
                f"returned (attempts {sorted({a for _, a in statuses})}), 0 parked"
            )
        finally:
            await worker.stop()
