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


_DRIVER_PATHS = ("/sqlalchemy/", "/asyncpg/")


def _raised_by_the_driver(error: BaseException) -> bool:
    tb = error.__traceback__
    while tb is not None:
        if any(part in tb.tb_frame.f_code.co_filename for part in _DRIVER_PATHS):
            return True
        tb = tb.tb_next
    return False


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return seen


def unreachable_reason(error: BaseException) -> str | None:
    """Why the database could not be reached ("connection refused", "connection lost", ...),
    or None when `error` is something else (bad SQL, bad data, a bug, an SMTP or HTTP error).

    An outage is transient: the caller retries with backoff and says what it is waiting for.
    Only errors raised from inside SQLAlchemy or asyncpg count, so a refused SMTP or HTTP
    connection in the same activity is never mistaken for the database being down.
    """
    import asyncpg  # the driver: imported here so that the module stays light for the CLIs
    from sqlalchemy import exc

    chain = _chain(error)
    if not any(_raised_by_the_driver(e) or isinstance(e, (exc.DBAPIError, asyncpg.PostgresError)) for e in chain):
        return None
    for e in chain:
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, (ConnectionResetError, BrokenPipeError, asyncpg.ConnectionDoesNotExistError)):
            return "connection lost"
        if isinstance(e, asyncpg.CannotConnectNowError):
            return "the server is starting up or shutting down"
        if isinstance(e, asyncpg.TooManyConnectionsError):
            return "too many connections"
        if isinstance(e, (TimeoutError, asyncpg.ConnectionFailureError)):
            return "connection timed out" if isinstance(e, TimeoutError) else "connection failure"
        if isinstance(e, asyncpg.InterfaceError) and "closed" in str(e):
            return "connection lost"
        if isinstance(e, exc.DBAPIError) and e.connection_invalidated:
            return "connection lost"
        if isinstance(e, OSError):
            return database_problem(e)
    return None
