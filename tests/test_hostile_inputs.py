"""Workflow inputs and CLI arguments of the wrong type, range or size: one clear line.

Through the Temporal client as an operator (or the Web UI) starts them: each bad input fails
the workflow at once, non-retryable, typed InvalidInput, with one bounded line naming the
field, before any activity runs. Through `python starter.py`: exit status 2 and a line that
says what is wrong, never a traceback.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from deallens.db.demo import seed_demo
from starter import MAX_DEFINITION_CHARS
from starter import main as starter_main
from tests.workers import running_workers

HUGE = "A" * 1_000_000
# (workflow, input, how the failure's line starts)
CASES: list[tuple[str, Any, str]] = [
    ("SyncCompanyPrices", {"symbols": ["AAPL", "AAPL; DROP TABLE"]}, "invalid input: symbols: 'AAPL; DROP TABLE' is not a ticker"),
    ("SyncCompanyPrices", {"symbols": [HUGE]}, "invalid input: symbols: 'AAAA"),
    ("SyncCompanyPrices", {"symbols": [f"S{i}" for i in range(1001)]}, "invalid input: symbols: List should have at most 1000 items"),
    ("SyncDailyOHLC", {"symbols": "AAPL"}, "invalid input: symbols: Input should be a valid list"),
    ("SyncFundamentals", {"symbols": [42]}, "invalid input: symbols.0: Input should be a valid string"),
    ("SendDailyDigest", {"date": "9999-12-31"}, "invalid input: date: Input should be less than or equal to 2100-12-31"),
    ("SendDailyDigest", {"date": "31/12/2026"}, "invalid input: date: Input should be a valid date"),
    ("SendWeeklySummary", {"user_ids": [0]}, "invalid input: user_ids.0: Input should be greater than 0"),
    ("SendDailyDigest", {"user_ids": list(range(1, 10_002))}, "invalid input: user_ids: List should have at most 10000 items"),
    ("SendDailyDigest", {"batch_size": 10**9}, "invalid input: batch_size: Input should be less than or equal to 5000"),
    ("GenerateCompanyInsights", {"company_ids": ["x"]}, "invalid input: company_ids.0: Input should be a valid integer"),
    ("GenerateMarketSummary", {"date": "0001-01-01"}, "invalid input: date: Input should be greater than or equal to 2000-01-01"),
    ("IngestCompanyNews", {"company_ids": list(range(1, 1002))}, "invalid input: company_ids: List should have at most 1000 items"),
    ("IngestMarketNews", {"query": "anything"}, "invalid input: query: Extra inputs are not permitted"),
    ("CleanupMarketData", {"dry_run": "maybe"}, "invalid input: dry_run: Input should be a valid boolean"),
    ("SendAlertNotification", {"alert_history_id": -1}, "invalid input: alert_history_id: Input should be greater than 0"),
    ("GenerateDealInsights", [1, 2, 3], "invalid input: expected a JSON object, got list"),
]


async def test_bad_workflow_inputs_fail_with_one_clear_line(
    time_env: WorkflowEnvironment, task_queue: str, db: AsyncEngine, make_settings: Any
) -> None:
    # Providers unreachable on purpose: a bad input must fail before any call is tried.
    settings = make_settings(
        alphavantage_base_url="http://127.0.0.1:9", newsapi_base_url="http://127.0.0.1:9",
        openai_base_url="http://127.0.0.1:9/v1",
    )
    await seed_demo(db)
    async with running_workers(time_env.client, settings, task_queue):
        handles = [
            await time_env.client.start_workflow(name, raw, id=f"bad-input-{n}", task_queue=task_queue)
            for n, (name, raw, _) in enumerate(CASES)
        ]
        failures = []
        for handle in handles:
            with pytest.raises(WorkflowFailureError) as raised:
                await asyncio.wait_for(handle.result(), timeout=60)
            failures.append(raised.value.cause)
        histories = [[e.event_type for e in (await handle.fetch_history()).events] for handle in handles]
    for (name, _, expected), cause, events in zip(CASES, failures, histories, strict=True):
        assert isinstance(cause, ApplicationError), (name, cause)
        assert cause.type == "InvalidInput" and cause.non_retryable, (name, cause)
        assert cause.message.startswith(expected), (name, cause.message)
        assert "\n" not in cause.message and len(cause.message) <= 300, name
        # Nothing was scheduled: the input was refused before the first activity.
        assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED not in events, name


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["alerts", "backtest", "--alert-id", "1", "--days", "0"], "--days: must be a whole number of days"),
        (["alerts", "backtest", "--alert-id", "x"], "--alert-id: invalid int value: 'x'"),
        (["notifications", "failed", "--limit", "-5"], "--limit: expected a positive whole number, got '-5'"),
        (["notifications", "retry", "--alert-id", "1e9999"], "--alert-id: expected a positive whole number"),
        (["costs", "--days", "many"], "--days: expected a positive whole number, got 'many'"),
        (["notifications", "unsubscribe", "t", "--list", "everything"], "--list: invalid choice: 'everything'"),
    ],
)
def test_bad_cli_arguments_exit_2_naming_the_argument(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        starter_main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    # argparse's usage (which may wrap), then the one line that says what is wrong.
    assert err[0].startswith("usage: python starter.py")
    assert [line for line in err if ": error: " in line] == [err[-1]]
    assert words in err[-1], err[-1]


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ("{" * 200_000, "invalid alert: the definition is 200000 characters"),
        ("[" * 5_000, "invalid alert: the definition is not JSON an alert can be: nested too deeply"),
        ('{"user_id": 1, "type": "price_above", "symbol": "AAPL", "threshold": "1e999999"}', "invalid alert: threshold"),
    ],
)
async def test_hostile_alert_definitions_are_one_line(
    db: AsyncEngine, database_url: str, definition: str, message: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert MAX_DEFINITION_CHARS < 200_000
    await seed_demo(db)
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert await asyncio.to_thread(starter_main, ["alerts", "add", definition]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().startswith(message), captured.err[:300]
    assert "\n" not in captured.err.strip() and len(captured.err) < 400 and captured.out == ""
