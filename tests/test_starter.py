"""`python starter.py ...` as an operator runs it: exit codes and one-line messages."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from deallens.db.demo import seed_demo
from deallens.db.engine import create_engine
from deallens.db.migrate import head_revision
from starter import main as starter_main
from tests.conftest import ROOT, fresh_database


def starter(database_url: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    if database_url:
        env["DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "starter.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
async def blank_url(server_url: str) -> AsyncIterator[str]:
    async with fresh_database(server_url, migrate=False) as url:
        yield url


async def test_migrate_seed_and_add_alerts(blank_url: str) -> None:
    head = head_revision()
    assert starter(blank_url, "migrate").stdout.strip() == f"database at migration {head} (was empty)"
    assert starter(blank_url, "migrate").stdout.strip() == f"database at migration {head}"
    assert starter(blank_url, "seed-demo").stdout.strip() == "seeded 22 companies, 3 users, 9 alerts"
    assert starter(blank_url, "seed-demo").stdout.strip() == "database already has users: demo seed skipped"

    definition = {"user_id": 1, "type": "price_above", "symbol": "aapl", "threshold": 200}
    added = starter(blank_url, "alerts", "add", json.dumps(definition))
    assert added.returncode == 0, added.stderr
    alert_id = int(added.stdout)
    engine = create_engine(blank_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(
                text("SELECT a.kind, a.params, c.symbol FROM alerts a JOIN companies c ON c.id = a.company_id WHERE a.id = :i"),
                {"i": alert_id},
            )).one()
    finally:
        await engine.dispose()
    assert row.kind == "price" and row.symbol == "AAPL"
    assert row.params == {"type": "price_above", "threshold": "200"}

    rejected = starter(blank_url, "alerts", "add", '{"user_id": 1, "type": "price_above", "symbol": "AAPL", "threshold": 0}')
    assert rejected.returncode == 2 and rejected.stdout == ""
    assert rejected.stderr == "invalid alert: threshold: Input should be greater than 0\n"


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ('{"user_id": 1, "type": "price_above", "symbol": "AAPL", "threshold": -5}', "invalid alert: threshold: Input should be greater than 0"),
        ('{"user_id": 1, "type": "price_above", "symbol": "AAPL"}', "invalid alert: threshold: Field required"),
        ('{"user_id": 1, "type": "price_sideways", "symbol": "AAPL"}', "invalid alert: type: unknown alert type; expected one of price_above"),
        ('{"user_id": 1, "symbol": "AAPL", "threshold": 3}', "invalid alert: type: is required; one of price_above"),
        ('{"user_id": 1, "type": "volume_spike", "symbol": "AAPL", "multiple": 0.5}', "invalid alert: multiple: Input should be greater than 1"),
        ('{"user_id": 1, "type": "price_below", "symbol": "AAPL", "threshold": 5, "colour": "red"}', "invalid alert: colour: Extra inputs are not permitted"),
        ('{"user_id": 99, "type": "price_below", "symbol": "AAPL", "threshold": 5}', "invalid alert: user_id: no user with id 99"),
        ('{"user_id": 1, "type": "price_below", "symbol": "ZZZZ", "threshold": 5}', "invalid alert: symbol: 'ZZZZ' is not a tracked company"),
        ('{"user_id": 1, "type": "deal_status_change", "deal_id": 4, "symbol": "AAPL"}', "invalid alert: give deal_id or symbol, not both"),
        # Every wrong or missing field at once, in one line.
        ('{"user_id": 1, "type": "price_above"}', "invalid alert: symbol: Field required; threshold: Field required"),
        (
            '{"user_id": 0, "type": "volume_spike", "symbol": "", "multiple": 0.5, "colour": "red"}',
            "invalid alert: user_id: Input should be greater than 0; symbol: String should have at least 1 character; "
            "multiple: Input should be greater than 1; colour: Extra inputs are not permitted",
        ),
        ('{"user_id": 99, "type": "price_below", "symbol": "ZZZZ", "threshold": 5}',
         "invalid alert: user_id: no user with id 99; symbol: 'ZZZZ' is not a tracked company"),
        ("{not json", "invalid alert: the definition is not JSON: Expecting property name enclosed in double quotes at column 2"),
    ],
)
async def test_invalid_alert_names_the_field(
    db: AsyncEngine, database_url: str, definition: str, message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed_demo(db)
    monkeypatch.setenv("DATABASE_URL", database_url)
    # In-process (a thread: main() runs its own event loop); the subprocess path is covered above.
    assert await asyncio.to_thread(starter_main, ["alerts", "add", definition]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().startswith(message), captured.err
    assert "\n" not in captured.err.strip() and captured.out == ""
    async with db.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM alerts"))).scalar_one() == 9  # only the demo's


def test_usage_line_on_bad_arguments() -> None:
    result = starter(None, "alerts")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: python starter.py alerts")
    unknown = starter(None, "frobnicate")
    assert unknown.returncode == 2 and "invalid choice: 'frobnicate'" in unknown.stderr


def test_missing_database_url_is_one_line() -> None:
    result = starter(None, "migrate")
    assert result.returncode == 2
    assert result.stderr.strip() == "starter: DATABASE_URL: not set; export postgresql+asyncpg://user@host:5432/db, or use `make run`"


async def test_health_reports_each_part(database_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "starter.py", "health"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", "DATABASE_URL": database_url, "TEMPORAL_ADDRESS": "127.0.0.1:9"},
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2  # Temporal down: nothing would run
    lines = result.stdout.splitlines()
    assert "database: ok" in lines
    assert any(line.startswith("temporal: FAILED at 127.0.0.1:9") for line in lines)
    assert any(line.startswith("provider alphavantage: MISCONFIGURED") for line in lines)
    assert any(line.startswith("email: OFF: SMTP_HOST is not set") for line in lines)
