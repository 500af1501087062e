"""Timeouts and retry policies shared by the workflows."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

# Database activities: quick, retried with backoff for as long as a short outage lasts;
# a permanent database error (bad data, a broken constraint) is raised non-retryable.
DB_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=["PermanentDatabaseError", "InvalidInput"],
)
DB_TIMEOUT = timedelta(seconds=60)

# Best-effort side signals (waking the alert monitors): a few tries, then let the monitors'
# own polling catch up rather than hold a finished sync open.
BEST_EFFORT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)
