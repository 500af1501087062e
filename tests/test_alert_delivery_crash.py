"""Alert emails and pushes, exactly once, with real worker processes that die or freeze.

One burst of firings goes out on two channels at once (one SMTP connection, one webhook POST
per firing), each channel a batch caught in flight by a slow sink:
- SIGKILL mid-send, a new worker started: every firing reaches each channel once; the push
  in flight may arrive twice (same Idempotency-Key: the receiver had it, the worker died
  before hearing so).
- SIGSTOP past the heartbeat timeout, a successor takes over, then SIGCONT while the
  successor is mid-batch: at most the one message per channel that was in flight arrives
  twice, with the same Message-ID / Idempotency-Key. Two defences race here: the SDK
  cancels the thawed attempt as soon as its first heartbeat is refused, and the ledger
  (monotonic claims; a superseded attempt stops its batch) holds even when that
  cancellation never arrives, which tests/test_notify_delivery.py and tests/test_claims.py
  show deterministically.

Fast by design: a 2 s heartbeat timeout via the workflow input, small batches, short
workflow task timeouts (a task handed to the frozen worker is not waited for long).
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from temporalio.testing import WorkflowEnvironment

from deallens.contracts import NotificationResult, SendAlertNotificationBatchInput
from deallens.notify import push
from deallens.sim.serve import serve_asgi
from tests.conftest import ROOT, dev_server_address
from tests.notify_data import deliveries, fire, make_users
from tests.smtp_sink import Sink, smtp_sink

FIRINGS = 24
CAUGHT_AT = 8  # the email message the worker dies or freezes on
HEARTBEAT_S = 2
SECRET = "crash-test-webhook-secret"
EMAIL_DELAY_S = 0.05
# Pushes answer slower than emails: the push batch is mid-flight whenever the email one is.
# The SIGSTOP case needs the successor's push batch still running when the successor's email
# batch (which starts 5 s later: the retry policies differ) is under way, hence slower still.
PUSH_DELAY_S = {"kill": 0.2, "stop": 0.5}


@dataclass
class Receiver:
    """A webhook receiver that verifies signatures, records each request on arrival and
    answers slowly: a request in flight has been handled, its answer not yet heard."""

    url: str = ""
    delay: float = 0.2
    keys: list[str] = field(default_factory=list)
    forged: int = 0


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    got = Receiver()

    async def receive(request: Request) -> JSONResponse:
        body = await request.body()
        if not push.verify(SECRET, request.headers, body, now=int(time.time())):
            got.forged += 1
            return JSONResponse({"error": "bad signature"}, status_code=401)
        got.keys.append(request.headers[push.IDEMPOTENCY_HEADER])
        await asyncio.sleep(got.delay)
        return JSONResponse({"ok": True})

    async with serve_asgi(Starlette(routes=[Route("/hook/{user}", receive, methods=["POST"])])) as url:
        got.url = url
        yield got


class Workers:
    """worker.py processes; any left running are thawed and stopped at the end."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log, self.procs = env, log, list[subprocess.Popen[bytes]]()

    def start(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "worker.py"], cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        self.procs.append(proc)
        return proc

    async def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                await asyncio.to_thread(proc.wait, 20)
            except subprocess.TimeoutExpired:
                proc.kill()


def worker_env(database_url: str, dev_env: WorkflowEnvironment, sink: Sink) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "TEMPORAL_ADDRESS": dev_server_address(dev_env.client),
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(sink.port),
        "SMTP_TLS": "none",
        "PUSH_ALLOW_PRIVATE_HOSTS": "true",  # the receiver is on loopback
        # Two slots: while the email and the push batch both run, a worker polls for no more
        # activities, so a frozen one cannot swallow the retry meant for its successor.
        "WORKER_CONCURRENCY": "2",
        # No provider is called here; keyless providers must point at a stand-in.
        "ALPHAVANTAGE_BASE_URL": "http://127.0.0.1:9",
        "NEWSAPI_BASE_URL": "http://127.0.0.1:9",
        "OPENAI_BASE_URL": "http://127.0.0.1:9",
        "LOG_LEVEL": "WARNING",
    }


async def burst(db: AsyncEngine, receiver: Receiver) -> tuple[list[int], dt.datetime]:
    """FIRINGS firings of one evaluation, each for its own user with email and a webhook."""
    users = await make_users(db, FIRINGS, push_webhook_secret=SECRET)
    at = dt.datetime(2026, 11, 27, 15, 0, tzinfo=dt.UTC)
    async with db.begin() as conn:
        await conn.execute(
            text("UPDATE users SET push_webhook_url = :base || '/hook/' || id WHERE id = ANY(:ids)"),
            {"base": receiver.url, "ids": users},
        )
    return [await fire(db, user, None, urgent=True, at=at) for user in users], at


async def start_burst(dev_env: WorkflowEnvironment, at: dt.datetime, name: str) -> Any:
    return await dev_env.client.start_workflow(
        "SendAlertNotificationBatch",
        SendAlertNotificationBatchInput(kind="price", triggered_at=at, send_heartbeat_seconds=HEARTBEAT_S),
        id=f"notify-crash-{name}",
        task_queue="deallens",
        result_type=NotificationResult,
        task_timeout=dt.timedelta(seconds=2),
    )


def assert_each_once_but_one(received: list[str], expected: set[str], in_flight: str | None) -> None:
    """Every key arrived; none twice but at most one (`in_flight` if known), and that one twice."""
    counts = collections.Counter(received)
    assert set(counts) == expected
    repeated = {key: n for key, n in counts.items() if n != 1}
    if in_flight is not None:
        assert repeated in ({}, {in_flight: 2}), repeated
    else:
        assert len(repeated) <= 1 and set(repeated.values()) <= {2}, repeated


async def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_sigkill_mid_send_then_restart_delivers_each_alert_once_per_channel(
    db: AsyncEngine, database_url: str, dev_env: WorkflowEnvironment, tmp_path: Path, receiver: Receiver
) -> None:
    receiver.delay = PUSH_DELAY_S["kill"]
    ids, at = await burst(db, receiver)
    pool: Workers | None = None

    def kill_mid_send(number: int) -> str | None:
        time.sleep(EMAIL_DELAY_S)
        if number == CAUGHT_AT:
            assert pool is not None
            os.kill(pool.procs[0].pid, signal.SIGKILL)
            return "421 4.3.2 shutting down"
        return None

    with smtp_sink(on_data=kill_mid_send) as sink:
        pool = Workers(worker_env(database_url, dev_env, sink), tmp_path / "worker.log")
        first = pool.start()
        try:
            handle = await start_burst(dev_env, at, "kill")
            assert await asyncio.to_thread(first.wait, 60) == -signal.SIGKILL, pool.log.read_text()
            pushed_before = len(receiver.keys)
            assert len(sink.messages) == CAUGHT_AT - 1 and 0 < pushed_before < FIRINGS
            pool.start()
            result = await asyncio.wait_for(handle.result(), timeout=90)
        finally:
            await pool.stop_all()
        message_ids = sink.message_ids()

    # The email the worker died on was refused (421): no email twice at all.
    assert_each_once_but_one(message_ids, {f"<alert-{h}-email@deallens.local>" for h in ids}, None)
    assert len(message_ids) == FIRINGS
    # The push in flight (handled by the receiver, its answer lost) may come again.
    assert_each_once_but_one(receiver.keys, {f"alert-{h}-push" for h in ids}, None)
    assert receiver.forged == 0
    assert {(r.channel, r.status) for r in await deliveries(db)} == {("email", "sent"), ("push", "sent")}
    assert result.counts.sent + result.counts.already_done == 2 * FIRINGS
    assert result.counts.already_done >= CAUGHT_AT - 1 + pushed_before - 1


async def test_sigstop_past_the_heartbeat_timeout_then_sigcont_resends_only_what_was_in_flight(
    db: AsyncEngine, database_url: str, dev_env: WorkflowEnvironment, tmp_path: Path, receiver: Receiver
) -> None:
    receiver.delay = PUSH_DELAY_S["stop"]
    ids, at = await burst(db, receiver)
    pool: Workers | None = None
    frozen_push: list[str] = []

    def freeze_mid_send(number: int) -> str | None:
        time.sleep(EMAIL_DELAY_S)
        if number == CAUGHT_AT:
            assert pool is not None
            os.kill(pool.procs[0].pid, signal.SIGSTOP)
            # Accepted, but the worker never hears the 250 until it is thawed.
            frozen_push.extend(receiver.keys[-1:])
        return None

    with smtp_sink(on_data=freeze_mid_send) as sink:
        pool = Workers(worker_env(database_url, dev_env, sink), tmp_path / "worker.log")
        first = pool.start()
        try:
            handle = await start_burst(dev_env, at, "stop")
            await wait_until(lambda: len(sink.messages) >= CAUGHT_AT, 60, f"email {CAUGHT_AT}")
            pushed_before = len(receiver.keys)
            assert 0 < pushed_before < FIRINGS
            # Temporal gives up on the frozen attempts after HEARTBEAT_S; the successor
            # takes over both batches after the retry policies' first backoff.
            pool.start()
            await wait_until(lambda: len(sink.messages) >= CAUGHT_AT + 4, 60, "the successor's emails")
            assert len(set(receiver.keys)) < FIRINGS, "the push batch should still be in flight"
            assert first.poll() is None
            first.send_signal(signal.SIGCONT)  # the frozen attempt resumes mid-send
            result = await asyncio.wait_for(handle.result(), timeout=90)
            await asyncio.sleep(1)  # anything the thawed worker still sends would arrive now
        finally:
            await pool.stop_all()
        message_ids = sink.message_ids()

    in_flight_email = f"<alert-{ids[CAUGHT_AT - 1]}-email@deallens.local>"
    assert_each_once_but_one(message_ids, {f"<alert-{h}-email@deallens.local>" for h in ids}, in_flight_email)
    assert_each_once_but_one(receiver.keys, {f"alert-{h}-push" for h in ids}, None)
    repeated_push = [k for k, n in collections.Counter(receiver.keys).items() if n > 1]
    assert set(repeated_push) <= set(frozen_push)
    assert receiver.forged == 0
    assert {(r.channel, r.status) for r in await deliveries(db)} == {("email", "sent"), ("push", "sent")}
    assert result.counts.sent + result.counts.already_done == 2 * FIRINGS
