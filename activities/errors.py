"""Provider errors → Temporal failures.

Permanent errors become non-retryable ApplicationErrors typed by their class name, so that
workflows and the Web UI see *why* (`UnknownSymbol`, `ProviderConfigError`); rate limits
carry the provider's delay as the next retry's delay instead of the policy's backoff.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta

from sqlalchemy import exc
from temporalio.exceptions import ApplicationError

from deallens.providers.errors import ProviderError, RateLimited


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
    """Data the database rejects (a broken CHECK, an overflowing number) fails the same way
    on every retry: fail non-retryable, naming the constraint, instead of retrying forever.
    Connection errors and timeouts stay retryable."""
    try:
        yield
    except (exc.IntegrityError, exc.DataError) as error:
        detail = str(error.orig).splitlines()[0] if error.orig is not None else type(error).__name__
        raise ApplicationError(
            f"the database rejected the data: {detail}", type="PermanentDatabaseError", non_retryable=True
        ) from None
