"""Alembic environment: online migrations over a connection handed in by deallens.db.migrate,
or, from the `alembic` command line, over DATABASE_URL."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from deallens.db.models import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return

    from deallens.config import get_settings
    from deallens.db.engine import create_engine

    url = get_settings().database_url
    if url is None:
        raise SystemExit("DATABASE_URL is not set: export it (postgresql+asyncpg://...) to run alembic directly")

    async def _main() -> None:
        engine = create_engine(url, pool_size=1)
        async with engine.begin() as conn:
            await conn.run_sync(_run)
        await engine.dispose()

    asyncio.run(_main())


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run against a database")
run_migrations_online()
