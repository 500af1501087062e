"""Provider errors → Temporal failures.

Permanent errors become non-retryable ApplicationErrors typed by their class name, so that
workflows and the Web UI see *why* (`UnknownSymbol`, `ProviderConfigError`); rate limits
carry the provider's delay as the next retry's delay instead of the policy's backoff.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.exceptions import ApplicationError

from deallens.providers.errors import ProviderError, RateLimited


def to_application_error(error: ProviderError) -> ApplicationError:
    next_delay = timedelta(seconds=error.retry_after) if isinstance(error, RateLimited) else None
    return ApplicationError(
        str(error),
        type=type(error).__name__,
        non_retryable=error.permanent,
        next_retry_delay=next_delay,
    )
