"""A batch job run by a workflow on durable timers (workflows/llm_batch.py), against the OpenAI
stand-in over real HTTP and a real PostgreSQL: hours of waiting skipped by the test server,
and a worker process killed with SIGKILL while the workflow waits, then restarted: the batch
is submitted once, completes, and its results are stored and billed exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from deallens.config import Settings
from deallens.db import llm_batches, llm_budget
from deallens.db.llm_batches import BatchRequest
from deallens.sim.clock import ManualClock
from deallens.sim.openai import make_app
from deallens.sim.serve import serve_asgi
from temporal_client import DATA_CONVERTER, interceptors
from workflows import search_attributes
from tests.batch_support import BatchRunInput, BatchRunResult, BatchRunWorkflow, Verdict, verdict_messages, verdict_responder
from tests.conftest import ROOT, TEMPORAL_CLI, dev_server_address
from worker import Resources, build_workers, open_resources
from workflows import queues
from workflows.policies import LLM_BATCH_RETRY

MODEL = "gpt-4o-mini"
COMPANIES = ["Apple Inc.", "Microsoft Corp.", "NVIDIA Corp.", "Alphabet Inc."]


def job_requests() -> list[BatchRequest]:
    return [
        BatchRequest(f"company-{n}", MODEL, verdict_messages(name), Verdict, 200)
        for n, name in enumerate(COMPANIES, start=1)
    ]


async def stored(db: AsyncEngine, job_id: int) -> list[tuple[str, str, str | None]]:
    async with db.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT i.custom_id, i.status, u.status AS billed FROM llm_batch_items i "
                "LEFT JOIN llm_usage u ON u.id = i.usage_id WHERE i.job_id = :id ORDER BY i.id"
            ),
            {"id": job_id},
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


@contextlib.asynccontextmanager
async def in_process_workers(client: Client, settings: Settings, resources: Resources, task_queue: str) -> AsyncIterator[None]:
    """The real deallens-llm worker of worker.build_workers, and the test workflow's."""
    llm_queue = queues.provider_queue(task_queue, queues.LLM_SUFFIX)
    async with contextlib.AsyncExitStack() as stack:
        for worker in [
            *build_workers(client, settings, resources, task_queue=task_queue, only=llm_queue),
            Worker(client, task_queue=task_queue, workflows=[BatchRunWorkflow]),
        ]:
            await stack.enter_async_context(worker)
        yield


@contextlib.asynccontextmanager
async def clock_following(env: WorkflowEnvironment, clock: ManualClock) -> AsyncIterator[None]:
    """Keep the stand-in's clock on the test server's (skipped) time."""

    async def follow() -> None:
        while True:
            clock.set(await env.get_current_time())
            await asyncio.sleep(0.02)

    task = asyncio.create_task(follow())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_workflow_waits_hours_on_timers_then_stores_each_result_once(
    db: AsyncEngine, time_env: WorkflowEnvironment, task_queue: str, make_settings: object
) -> None:
    start = await time_env.get_current_time()
    clock = ManualClock(start)
    app = make_app(seed=9, clock=clock, responders={"Verdict": verdict_responder}, batch_delay=dt.timedelta(hours=3))
    async with serve_asgi(app) as url:
        settings: Settings = make_settings(openai_api_key="sk-test", openai_base_url=url + "/v1")  # type: ignore[operator]
        job_id = await llm_batches.create_job(db, purpose="company_insight", workflow="TestBatchRun",
                                              requests=job_requests())
        async with open_resources(settings) as resources, in_process_workers(time_env.client, settings, resources, task_queue):
            async with clock_following(time_env, clock):
                handle = await time_env.client.start_workflow(
                    BatchRunWorkflow.run, BatchRunInput(job_id=job_id), id=f"batch-{job_id}", task_queue=task_queue,
                )
                result = await asyncio.wait_for(handle.result(), timeout=120)
            elapsed = await time_env.get_current_time() - start
    assert result.submitted.status == "submitted" and result.submitted.requests == 4
    assert (result.collected.succeeded, result.collected.failed) == (4, 0)
    assert elapsed >= dt.timedelta(hours=3)
    assert app.state.sim.stats.by_endpoint["/v1/batches"] == 1
    assert await stored(db, job_id) == [(f"company-{n}", "ok", "ok") for n in range(1, 5)]
    outputs = [r.output async for r in llm_batches.job_results(db, job_id)]
    assert [o.company for o in outputs if isinstance(o, Verdict)] == COMPANIES

    history = await handle.fetch_history()
    timers = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]
    assert 5 <= len(timers) <= 20  # 1, 2, 4, 8, 16, 30, 30 ... minutes: backoff, not a busy loop
    replay = await Replayer(
        workflows=[BatchRunWorkflow], data_converter=DATA_CONVERTER, interceptors=interceptors()
    ).replay_workflow(history, raise_on_replay_failure=False)
    assert replay.replay_failure is None


async def test_polls_failing_past_their_retries_are_waited_out_on_the_next_timer(
    db: AsyncEngine, time_env: WorkflowEnvironment, task_queue: str, make_settings: object
) -> None:
    start = await time_env.get_current_time()
    clock = ManualClock(start)
    app = make_app(seed=9, clock=clock, responders={"Verdict": verdict_responder}, batch_delay=dt.timedelta(hours=3))
    # One poll's 20 attempts fail, then 3 more: the workflow outlives an outage of its retries.
    app.state.sim.faults.add("http_503", count=LLM_BATCH_RETRY.maximum_attempts + 3, match="/v1/batches:retrieve")
    async with serve_asgi(app) as url:
        settings: Settings = make_settings(openai_api_key="sk-test", openai_base_url=url + "/v1")  # type: ignore[operator]
        job_id = await llm_batches.create_job(db, purpose="p", workflow="TestBatchRun", requests=job_requests())
        async with open_resources(settings) as resources, in_process_workers(time_env.client, settings, resources, task_queue):
            async with clock_following(time_env, clock):
                handle = await time_env.client.start_workflow(
                    BatchRunWorkflow.run, BatchRunInput(job_id=job_id), id=f"batch-{job_id}", task_queue=task_queue,
                )
                result = await asyncio.wait_for(handle.result(), timeout=240)
    assert (result.collected.succeeded, result.collected.failed) == (4, 0)
    assert app.state.sim.stats.faults["http_503"] == LLM_BATCH_RETRY.maximum_attempts + 3
    events = [e async for e in handle.fetch_history_events()]
    assert sum(e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED for e in events) == 1


def start_worker(env: dict[str, str], queue: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.batch_worker", queue], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


async def waiting_on_a_timer(handle: WorkflowHandle[object, object], *, activities: int) -> bool:
    """The workflow's last event is a started timer after `activities` completed: nothing is running."""
    events = [e async for e in handle.fetch_history_events()]
    done = [e for e in events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED]
    return len(done) >= activities and events[-1].event_type == EventType.EVENT_TYPE_TIMER_STARTED


async def test_a_worker_killed_while_the_workflow_waits_loses_nothing(
    db: AsyncEngine, database_url: str, dev_env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> None:
    # Real time: the batch completes 6 s after it is created, while no worker is running.
    app = make_app(seed=11, responders={"Verdict": verdict_responder}, batch_delay=dt.timedelta(seconds=6))
    async with serve_asgi(app) as url:
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "TEMPORAL_ADDRESS": dev_server_address(dev_env.client),
            "OPENAI_API_KEY": "sk-test",
            "OPENAI_BASE_URL": url + "/v1",
            "ALPHAVANTAGE_BASE_URL": "http://127.0.0.1:9",
            "NEWSAPI_BASE_URL": "http://127.0.0.1:9",
            "LLM_DAILY_BUDGET_USD": "5",
            "LOG_LEVEL": "WARNING",
        }
        job_id = await llm_batches.create_job(db, purpose="company_insight", workflow="TestBatchRun",
                                              requests=job_requests())
        log = tmp_path / "worker.log"
        workers = [start_worker(env, task_queue, log)]
        try:
            handle = await dev_env.client.start_workflow(
                BatchRunWorkflow.run,
                # Timers long enough that the kill lands inside one, not on a poll.
                BatchRunInput(job_id=job_id, first_poll_seconds=3, max_poll_seconds=3),
                id=f"batch-kill-{job_id}",
                task_queue=task_queue,
            )
            for _ in range(1200):
                if await waiting_on_a_timer(handle, activities=1):  # type: ignore[arg-type]
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the workflow never waited on a timer:\n" + log.read_text())
            job = await llm_batches.get_job(db, job_id)
            assert job is not None and job.batch_id is not None and job.status == "submitted"
            workers[0].send_signal(signal.SIGKILL)
            assert await asyncio.to_thread(workers[0].wait, 30) == -signal.SIGKILL

            await asyncio.sleep(7)  # the batch finishes with no worker alive
            assert app.state.batches.batches[job.batch_id].status in ("in_progress", "completed")
            workers.append(start_worker(env, task_queue, log))
            result: BatchRunResult = await asyncio.wait_for(handle.result(), timeout=180)  # type: ignore[assignment]
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.send_signal(signal.SIGTERM)
                    await asyncio.to_thread(worker.wait, 20)
    assert result.submitted.batch_id == job.batch_id
    assert (result.collected.succeeded, result.collected.failed) == (4, 0)
    stats = app.state.sim.stats.by_endpoint
    assert (stats["/v1/files"], stats["/v1/batches"]) == (1, 1), log.read_text()
    assert app.state.batches.lines_answered == 4
    assert await stored(db, job_id) == [(f"company-{n}", "ok", "ok") for n in range(1, 5)]
    async with db.connect() as conn:
        usage = (await conn.execute(text("SELECT count(*), sum(cost_usd) FROM llm_usage"))).one()
    assert usage[0] == 4
    committed, calls = await llm_budget.committed(db, dt.datetime.now(dt.UTC).date())
    assert calls == 4 and committed == Decimal(usage[1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(port: int, store: Path, log: Path) -> subprocess.Popen[bytes]:
    """A dev server persisting to `store`, so that a restart keeps its workflows and timers."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(TEMPORAL_CLI), "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port),
             "--http-port", str(free_port()), "--metrics-port", str(free_port()), "--db-filename", str(store),
             "--log-level", "error", *search_attributes.cli_flags()],
            stdout=out, stderr=subprocess.STDOUT,
        )


async def connected(port: int, log: Path) -> Client:
    for _ in range(150):
        try:
            return await Client.connect(f"127.0.0.1:{port}", data_converter=DATA_CONVERTER, interceptors=interceptors())
        except RuntimeError:
            await asyncio.sleep(0.2)
    raise AssertionError("the dev server did not start:\n" + log.read_text())


async def test_a_temporal_server_restart_while_the_workflow_waits_loses_nothing(
    db: AsyncEngine, make_settings: object, task_queue: str, tmp_path: Path
) -> None:
    port = free_port()
    store, log = tmp_path / "temporal.db", tmp_path / "server.log"
    app = make_app(seed=13, responders={"Verdict": verdict_responder}, batch_delay=dt.timedelta(seconds=5))
    servers = [start_server(port, store, log)]
    try:
        async with serve_asgi(app) as url:
            settings: Settings = make_settings(openai_api_key="sk-test", openai_base_url=url + "/v1")  # type: ignore[operator]
            job_id = await llm_batches.create_job(db, purpose="company_insight", workflow="TestBatchRun",
                                                  requests=job_requests())
            async with open_resources(settings) as resources:
                client = await connected(port, log)
                async with in_process_workers(client, settings, resources, task_queue):
                    handle = await client.start_workflow(
                        BatchRunWorkflow.run,
                        BatchRunInput(job_id=job_id, first_poll_seconds=1, max_poll_seconds=1),
                        id=f"batch-restart-{job_id}",
                        task_queue=task_queue,
                    )
                    for _ in range(400):
                        if await waiting_on_a_timer(handle, activities=2):  # type: ignore[arg-type]
                            break
                        await asyncio.sleep(0.05)
                    else:
                        raise AssertionError("the workflow never waited on a timer")
                job = await llm_batches.get_job(db, job_id)
                assert job is not None and job.status == "submitted"  # polled, not collected
                # Everything down: the workers, then the server, hard.
                servers[0].send_signal(signal.SIGKILL)
                await asyncio.to_thread(servers[0].wait, 30)
                await asyncio.sleep(6)  # the batch finishes while nothing runs
                servers.append(start_server(port, store, log))
                client = await connected(port, log)
                async with in_process_workers(client, settings, resources, task_queue):
                    result: BatchRunResult = await asyncio.wait_for(
                        client.get_workflow_handle(f"batch-restart-{job_id}", result_type=BatchRunResult).result(),
                        timeout=120,
                    )
    finally:
        for server in servers:
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
                await asyncio.to_thread(server.wait, 30)
    assert (result.collected.succeeded, result.collected.failed) == (4, 0)
    assert (app.state.sim.stats.by_endpoint["/v1/files"], app.state.sim.stats.by_endpoint["/v1/batches"]) == (1, 1)
    assert await stored(db, job_id) == [(f"company-{n}", "ok", "ok") for n in range(1, 5)]
