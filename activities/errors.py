"""Provider errors → Temporal failures.

Permanent errors become non-retryable ApplicationErrors typed by their class name, so that
workflows and the Web UI see *why* (`UnknownSymbol`, `ProviderConfigError`); rate limits
carry the provider's delay as the next retry's delay instead of the policy's backoff.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import timedelta

from typing import Any

from sqlalchemy import exc
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from deallens.db.engine import unreachable_reason
from deallens.providers.errors import ProviderError, RateLimited

log = logging.getLogger("deallens.worker")
DATABASE_UNAVAILABLE = "DatabaseUnavailable"


def to_application_error(error: ProviderError) -> ApplicationError:
    # Rate limits always carry a delay; other retryable errors may (an LLM 5xx with Retry-After).
    retry_after = error.retry_after if isinstance(error, RateLimited) else getattr(error, "retry_after", None)
    next_delay = timedelta(seconds=retry_after) if retry_after is not None and not error.permanent else None
    return ApplicationError(
        str(error),
        type=type(error).__name__,
        non_retryable=error.permanent,
        next_retry_delay=next_delay,
    )


@contextlib.contextmanager
def permanent_database_errors() -> Iterator[None]:
    """Data the database rejects (a broken CHECK, an overflowing number) or a schema this code
    does not match fails the same way on every retry: fail non-retryable, naming the cause,
    instead of retrying forever. Connection errors and timeouts stay retryable."""
    try:
        yield
    except (exc.IntegrityError, exc.DataError) as error:
        detail = str(error.orig).splitlines()[0] if error.orig is not None else type(error).__name__
        raise ApplicationError(
            f"the database rejected the data: {detail}", type="PermanentDatabaseError", non_retryable=True
        ) from None
    except exc.ProgrammingError as error:
        # A missing table or column: the schema is not what this code expects, on every retry.
        detail = str(error.orig).splitlines()[0] if error.orig is not None else type(error).__name__
        raise ApplicationError(
            f"the database schema does not match this code ({detail}): run `python starter.py migrate`",
            type="PermanentDatabaseError",
            non_retryable=True,
        ) from None


class OneLineExpectedFailures(logging.Filter):
    """The SDK logs every failed activity attempt with its traceback. A typed ApplicationError
    is an outcome we anticipated and classified (an unknown symbol, a refused recipient, a
    rejected row): one line naming the type and the reason is what an operator needs. Anything
    else that escapes an activity (KeyError, TypeError, ...) is a bug: its traceback stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ApplicationError) and error.type == DATABASE_UNAVAILABLE:
            return False  # DatabaseOutages said it already, in one line with the retry delay
        if isinstance(error, ApplicationError) and error.type:
            retry = "non-retryable" if error.non_retryable else "will retry"
            record.msg = f"{record.getMessage()}: {error.type} ({retry}): {error.message}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True


def log_expected_failures_on_one_line() -> None:
    """Install the filter on the SDK's activity logger (idempotent); worker.py calls it."""
    logger = logging.getLogger("temporalio.activity")
    if not any(isinstance(f, OneLineExpectedFailures) for f in logger.filters):
        logger.addFilter(OneLineExpectedFailures())


def next_retry_seconds(attempt: int, initial: float, coefficient: float, maximum: float | None) -> float:
    """The delay before attempt `attempt` + 1 under Temporal's exponential backoff (the
    server's default cap is 100 x the initial interval)."""
    cap = maximum if maximum else 100 * initial
    return min(initial * coefficient ** (attempt - 1), cap)


class _DatabaseOutageInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await super().execute_activity(input)
        except ApplicationError:
            raise
        except Exception as error:
            reason = unreachable_reason(error)
            if reason is None:
                raise
            info = activity.info()
            policy = info.retry_policy
            last = policy is not None and policy.maximum_attempts and info.attempt >= policy.maximum_attempts
            if policy is None:
                then = "will retry"
            elif last:
                then = "gives up (its last attempt)"
            else:
                delay = next_retry_seconds(
                    info.attempt, policy.initial_interval.total_seconds(), policy.backoff_coefficient,
                    policy.maximum_interval.total_seconds() if policy.maximum_interval else None,
                )
                then = f"will retry in {delay:g}s"
            log.warning(
                "database unreachable (%s), activity %s attempt %d %s (workflow %s)",
                reason, info.activity_type, info.attempt, then, info.workflow_id,
            )
            raise ApplicationError(f"database unreachable ({reason})", type=DATABASE_UNAVAILABLE) from None


class DatabaseOutages(Interceptor):
    """Activities that cannot reach PostgreSQL (refused, reset, timed out) fail retryable as
    DatabaseUnavailable, and the worker's log says, once per attempt, what it is waiting for:
    `database unreachable (connection refused), activity market.store_quotes attempt 3 will
    retry in 4s`. The retry policies' backoff does the waiting; the worker itself stays up
    (no crash loop), and the pool's pre-ping replaces the connections the outage killed."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _DatabaseOutageInbound(next)
