"""LOG_FORMAT=json: the worker writes one JSON object per line, and the lines an activity causes
name its workflow id, run id, activity type and attempt. The first test runs `python worker.py`
as an operator does, through a real workflow on a real dev server; no secret reaches the log."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.log_context import activity_log_context
from deallens import logs
from deallens.config import ConfigError, load_settings
from deallens.contracts import SyncCompanyPricesInput, SyncCompanyPricesResult
from deallens.db.demo import seed_demo
from deallens.sim import alphavantage as av_sim
from deallens.sim.serve import serve_asgi
from tests.conftest import ROOT, dev_server_address

CANARY = "canary-smtp-secret-7f3a9c"


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


async def test_a_json_worker_log_is_json_lines_with_the_activity_context(
    dev_env: WorkflowEnvironment, db: Any, database_url: str, sim: str, task_queue: str
) -> None:
    await seed_demo(db)
    env = {
        "PATH": "/usr/bin:/bin", "HOME": "/tmp", "PYTHONUNBUFFERED": "1", "LOG_FORMAT": "json",
        "DATABASE_URL": database_url, "TEMPORAL_ADDRESS": dev_server_address(dev_env.client),
        "ALPHAVANTAGE_BASE_URL": sim, "ALPHAVANTAGE_CALLS_PER_MINUTE": "6000", "ALPHAVANTAGE_CALLS_PER_DAY": "10000",
        "NEWSAPI_BASE_URL": "http://127.0.0.1:9", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        # A secret the worker holds: it must appear nowhere in its output.
        "SMTP_PASSWORD": CANARY,
    }
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "worker.py", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
    )
    assert worker.stdout is not None
    seen: list[str] = []
    workflow_id = f"jsonlog-{task_queue}"
    try:
        await _read_until(worker.stdout, "task queues: deallens", seen, seconds=60)
        handle = await dev_env.client.start_workflow(
            "SyncCompanyPrices", SyncCompanyPricesInput(symbols=["NOPE", "AAPL"], force=True),
            id=workflow_id, task_queue="deallens", result_type=SyncCompanyPricesResult,
        )
        result = await handle.result()
        assert [(s.symbol, s.outcome.value) for s in result.symbols] == [("NOPE", "unknown"), ("AAPL", "updated")]
        await _read_until(worker.stdout, "UnknownSymbol", seen, seconds=30)
    finally:
        if worker.returncode is None:
            os.killpg(worker.pid, signal.SIGTERM)
        rest, _ = await asyncio.wait_for(worker.communicate(), timeout=60)
    lines = [line for line in ("".join(seen) + rest.decode(errors="replace")).splitlines() if line.strip()]
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    assert all({"ts", "level", "logger", "message"} <= set(e) for e in events), events
    banner = [e for e in events if "task queues: deallens" in e["message"]]
    assert len(banner) == 1 and banner[0]["level"] == "WARNING"
    failed = [e for e in events if "UnknownSymbol" in e["message"]]
    assert len(failed) == 1, events
    (line,) = failed
    assert line["logger"] == "temporalio.activity" and "exc" not in line
    assert line["workflow_id"] == workflow_id and line["run_id"] == handle.result_run_id
    assert line["activity_type"] == "alphavantage.fetch_quote" and line["attempt"] == 1
    assert line["workflow_type"] == "SyncCompanyPrices" and line["task_queue"] == "deallens-alphavantage"
    assert all(CANARY not in raw for raw in lines)


def test_log_format_is_text_or_json() -> None:
    assert load_settings(_env_file=None).log_format == "text"
    assert load_settings(_env_file=None, log_format=" JSON ").log_format == "json"
    with pytest.raises(ConfigError, match=r"^LOG_FORMAT: Input should be 'text' or 'json' \(got 'yaml'\)$"):
        load_settings(_env_file=None, log_format="yaml")


def _capture(formatter: logging.Formatter, provider: Any = None) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    if provider is not None:
        handler.addFilter(logs.TemporalContextFilter(provider))
    logger = logging.getLogger(f"test.json.{id(out)}")
    logger.handlers, logger.propagate = [handler], False
    logger.setLevel(logging.DEBUG)
    return logger, out


def test_a_traceback_is_a_field_of_one_line_and_secrets_are_redacted_in_both_formats() -> None:
    secret = 'sk-live-"quoted\\secret'
    logger, out = _capture(logs.JsonFormatter([secret, "short"]))
    try:
        raise KeyError(f"price for {secret}")
    except KeyError:
        logger.exception("a bug with %s inside", secret, extra={"symbol": "AAPL", "obj": object()})
    logger.warning("short stays: short")
    first, second = out.getvalue().splitlines()
    event = json.loads(first)
    assert event["message"] == "a bug with *** inside" and event["level"] == "ERROR"
    assert "Traceback (most recent call last)" in event["exc"] and "KeyError" in event["exc"]
    assert event["symbol"] == "AAPL" and event["obj"].startswith("<object object")
    assert "quoted" not in first
    # Fewer than 8 characters is no secret worth garbling the text for.
    assert json.loads(second)["message"] == "short stays: short"

    text_logger, text_out = _capture(logs.RedactingTextFormatter([secret]))
    text_logger.error("provider said: %s", secret)
    assert text_out.getvalue().rstrip().endswith("provider said: ***")


def test_the_sdks_workflow_and_activity_details_become_flat_fields() -> None:
    logger, out = _capture(logs.JsonFormatter())
    logger.info("planned", extra={"temporal_workflow": {
        "workflow_id": "sync-1", "run_id": "r1", "workflow_type": "SyncCompanyPrices", "attempt": 1,
        "task_queue": "deallens", "namespace": "default",
    }})
    event = json.loads(out.getvalue())
    assert (event["workflow_id"], event["run_id"], event["workflow_type"], event["attempt"]) == (
        "sync-1", "r1", "SyncCompanyPrices", 1,
    )
    assert "temporal_workflow" not in event


async def test_a_plain_module_logger_inside_an_activity_carries_its_context() -> None:
    logger, out = _capture(logs.JsonFormatter(), provider=activity_log_context)

    @activity.defn(name="probe")
    async def probe() -> None:
        logger.warning("provider refused a call")

    logger.info("outside any activity")
    environment = ActivityEnvironment()
    environment.info = dataclasses.replace(
        environment.info, activity_type="probe", workflow_id="wf-7", workflow_run_id="run-7", attempt=3
    )
    await environment.run(probe)
    outside, inside = (json.loads(line) for line in out.getvalue().splitlines())
    assert "activity_type" not in outside and "workflow_id" not in outside
    assert (inside["activity_type"], inside["workflow_id"], inside["run_id"], inside["attempt"]) == ("probe", "wf-7", "run-7", 3)


def test_an_expected_failure_stays_one_line_in_json() -> None:
    from activities.errors import OneLineExpectedFailures

    logger, out = _capture(logs.JsonFormatter())
    logger.addFilter(OneLineExpectedFailures())
    try:
        raise ApplicationError("unknown symbol 'NOPE'", type="UnknownSymbol", non_retryable=True)
    except ApplicationError:
        logger.warning("Completing activity as failed", exc_info=True)
    (line,) = out.getvalue().splitlines()
    event = json.loads(line)
    assert event["message"] == "Completing activity as failed: UnknownSymbol (non-retryable): unknown symbol 'NOPE'"
    assert "exc" not in event


def test_each_codec_key_is_a_secret_on_its_own() -> None:
    """A line quoting one TEMPORAL_CODEC_KEYS entry is redacted, not only the whole list."""
    import base64

    k2, k1 = (base64.b64encode(bytes([n]) * 32).decode() for n in (2, 1))
    settings = load_settings(_env_file=None, temporal_codec_keys=f"k2:{k2}, k1:{k1}")
    secrets = settings.secret_values()
    assert {k1, k2} <= set(secrets)
    logger, out = _capture(logs.JsonFormatter(secrets))
    logger.warning("rotating from %s", k1)
    assert k1 not in out.getvalue() and json.loads(out.getvalue())["message"] == "rotating from ***"
