"""The worker's log: an expected business outcome (an unknown symbol) is one line naming it;
a bug keeps its traceback. The first test runs `python worker.py` as an operator does."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.errors import OneLineExpectedFailures
from deallens.contracts import SyncCompanyPricesInput, SyncCompanyPricesResult
from deallens.db.demo import seed_demo
from deallens.sim import alphavantage as av_sim
from deallens.sim.serve import serve_asgi
from tests.conftest import ROOT, dev_server_address


@pytest.fixture
async def sim() -> AsyncIterator[str]:
    async with serve_asgi(av_sim.make_app(seed=1)) as url:
        yield url


async def _read_until(stream: asyncio.StreamReader, marker: str, seen: list[str], seconds: float) -> None:
    async def read() -> None:
        while True:
            line = await stream.readline()
            if not line:
                raise AssertionError("the worker ended early:\n" + "".join(seen))
            seen.append(line.decode(errors="replace"))
            if marker in seen[-1]:
                return

    await asyncio.wait_for(read(), timeout=seconds)


async def test_an_unknown_symbol_is_one_line_in_the_worker_log(
    dev_env: WorkflowEnvironment, db: Any, database_url: str, sim: str, task_queue: str
) -> None:
    await seed_demo(db)
    env = {
        "PATH": "/usr/bin:/bin", "HOME": "/tmp", "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": database_url, "TEMPORAL_ADDRESS": dev_server_address(dev_env.client),
        "ALPHAVANTAGE_BASE_URL": sim, "ALPHAVANTAGE_CALLS_PER_MINUTE": "6000", "ALPHAVANTAGE_CALLS_PER_DAY": "10000",
        "NEWSAPI_BASE_URL": "http://127.0.0.1:9", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
    }
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "worker.py", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
    )
    assert worker.stdout is not None
    seen: list[str] = []
    try:
        await _read_until(worker.stdout, "task queues: deallens", seen, seconds=60)
        result = await dev_env.client.execute_workflow(
            "SyncCompanyPrices", SyncCompanyPricesInput(symbols=["NOPE", "AAPL"], force=True),
            id=f"log-{task_queue}", task_queue="deallens", result_type=SyncCompanyPricesResult,
        )
        assert [(s.symbol, s.outcome.value) for s in result.symbols] == [("NOPE", "unknown"), ("AAPL", "updated")]
        await _read_until(worker.stdout, "UnknownSymbol", seen, seconds=30)
    finally:
        if worker.returncode is None:
            os.killpg(worker.pid, signal.SIGTERM)
        rest, _ = await asyncio.wait_for(worker.communicate(), timeout=60)
    log = "".join(seen) + rest.decode(errors="replace")
    failed = [line for line in log.splitlines() if "UnknownSymbol" in line]
    assert len(failed) == 1, log
    assert "Completing activity as failed" in failed[0] and "UnknownSymbol (non-retryable): alphavantage: unknown symbol 'NOPE'" in failed[0]
    assert "alphavantage.fetch_quote" in failed[0]
    assert "Traceback" not in log, log
    # No SMTP_HOST: email is off, and the start-up banner says so.
    assert "!! email is OFF: SMTP_HOST is not set" in log


def _record(error: BaseException) -> logging.LogRecord:
    try:
        raise error
    except BaseException:  # noqa: BLE001 - capturing exc_info as the SDK does
        return logging.LogRecord(
            "temporalio.activity", logging.WARNING, __file__, 1, "Completing activity as failed (%s)",
            ("{'activity_type': 'x'}",), sys.exc_info(),
        )


def test_a_bug_keeps_its_traceback_and_an_untyped_error_too() -> None:
    formatter = logging.Formatter("%(levelname)s %(message)s")
    for bug in (KeyError("price"), ApplicationError("raised without a type")):
        record = _record(bug)
        assert OneLineExpectedFailures().filter(record)
        shown = formatter.format(record)
        assert "Traceback (most recent call last)" in shown and shown.startswith("WARNING Completing activity as failed")

    expected = _record(ApplicationError("the relay refused us", type="PermanentDeliveryError", non_retryable=True))
    assert OneLineExpectedFailures().filter(expected)
    shown = formatter.format(expected)
    assert shown == (
        "WARNING Completing activity as failed ({'activity_type': 'x'}): "
        "PermanentDeliveryError (non-retryable): the relay refused us"
    )
    retried = _record(ApplicationError("HTTP 503", type="ProviderUnavailable"))
    OneLineExpectedFailures().filter(retried)
    assert formatter.format(retried).endswith("ProviderUnavailable (will retry): HTTP 503")
