"""The async engine and sessions (asyncpg).

One engine per process, created by whoever owns the process (the worker's activity classes,
the starter's commands, a test fixture) and passed down; nothing here is global, so tests
can point each engine at their own database.
"""

from __future__ import annotations

from sqlalchemy.ext import asyncio as sa_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker


def create_engine(database_url: str, *, pool_size: int = 10) -> AsyncEngine:
    # Looked up on the module at call time: the SQLAlchemy instrumentation (when tracing is on,
    # deallens/observability/tracing.py) wraps sqlalchemy.ext.asyncio.create_async_engine.
    return sa_asyncio.create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        # Statement timeouts keep a stuck query from pinning an activity slot forever.
        # JIT compiles the alert-evaluation statement for 2-3 s before running it for 0.3 s
        # (bench/README.md): these short OLTP statements never gain from it.
        connect_args={"server_settings": {"application_name": "deallens", "statement_timeout": "60000", "jit": "off"}},
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def database_problem(error: BaseException) -> str:
    """One line saying what went wrong with the database, without the URL (it may hold a password)."""
    original = getattr(error, "orig", None) or error
    first = str(original).strip().splitlines()[0] if str(original).strip() else ""
    return first or type(original).__name__
