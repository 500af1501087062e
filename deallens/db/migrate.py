"""Alembic, driven from code: `starter.py migrate`, the worker's start-up check and tests.

The migration scripts live beside this module (deallens/db/migrations) so that they ship
with the package; `alembic.ini` at the repository root points here for `alembic revision`.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class DatabaseBehindError(Exception):
    """The database schema is older (or newer) than this code's migrations."""


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads ({heads}); merge them into one")
    return heads[0]


async def upgrade_to_head(engine: AsyncEngine) -> str:
    """Apply every pending migration in one transaction; returns the revision in force."""

    def _upgrade(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)
    return head_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    def _current(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as conn:
        return await conn.run_sync(_current)


async def ensure_up_to_date(engine: AsyncEngine) -> None:
    """Raise `DatabaseBehindError` with what to run when the schema is not at head."""
    current = await current_revision(engine)
    head = head_revision()
    if current != head:
        raise DatabaseBehindError(
            f"the database is at migration {current or 'none (empty)'} but this code needs {head}: "
            "run `python starter.py migrate` first"
        )
