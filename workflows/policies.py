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
# The alert monitors' evaluation: retried for about three minutes, then the monitor records the
# failure (status query, health) and tries again at its next wake-up, instead of stalling in
# silent retries behind a permanent error. The alert cursors make the next evaluation replay
# every quote the failed ones missed.
MONITOR_EVAL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=10,
    non_retryable_error_types=["PermanentDatabaseError", "InvalidInput"],
)

# Best-effort side signals (waking the alert monitors): a few tries, then let the monitors'
# own polling catch up rather than hold a finished sync open.
BEST_EFFORT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)

# Senders. Permanent refusals are recorded by the activity itself (never raised); what is
# raised is transient (SMTP 4xx, HTTP 5xx/429, timeouts) and retried with backoff, then
# parked as failed by the workflow. Email and digests ride out a relay down for 10 minutes
# before anything is parked: the backoff before their last attempt sums to 910 s and
# 1,230 s (tests/test_fault_infra.py checks it stays above 600 s).
_NOT_RETRYABLE = ["PermanentDatabaseError", "InvalidInput", "PermanentDeliveryError"]
CHANNEL_RETRY = {
    "email": RetryPolicy(
        initial_interval=timedelta(seconds=10),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(minutes=5),
        maximum_attempts=8,
        non_retryable_error_types=_NOT_RETRYABLE,
    ),
    "push": RetryPolicy(
        initial_interval=timedelta(seconds=5),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(minutes=2),
        maximum_attempts=6,
        non_retryable_error_types=_NOT_RETRYABLE,
    ),
    "sms": RetryPolicy(
        initial_interval=timedelta(seconds=15),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(minutes=5),
        maximum_attempts=4,
        non_retryable_error_types=_NOT_RETRYABLE,
    ),
}
SEND_TIMEOUT = timedelta(minutes=15)
# A lost worker is noticed this fast; a live one heartbeats every 5 s, also during a slow send.
SEND_HEARTBEAT = timedelta(seconds=20)
DIGEST_BATCH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=10),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    maximum_attempts=8,
    non_retryable_error_types=_NOT_RETRYABLE,
)
DIGEST_BATCH_TIMEOUT = timedelta(minutes=30)

# LLM activities (deallens-llm queue). Rate limits and 5xx carry the server's delay
# (next_retry_delay); no key, no budget, refusals, invalid output twice and a rejected key are
# not retried (the activities fall back, or fail non-retryable with one line). On the last
# attempt news.score_sentiment scores with the lexicon instead of failing.
LLM_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=4,
    non_retryable_error_types=[
        "PermanentDatabaseError", "InvalidInput", "LLMUnavailable", "LLMRefused", "LLMInvalidOutput", "LLMConfigError",
    ],
)
LLM_TIMEOUT = timedelta(minutes=15)
# A batch's call may take up to LLM_TIMEOUT_SECONDS (60 s); the activity heartbeats after each.
LLM_HEARTBEAT = timedelta(minutes=3)

# Batch API steps (workflows/llm_batch.py). Each is idempotent, so transient failures are
# retried for a long while (a batch may take up to 24 h: an hour of API trouble must not lose
# it); an unknown job or a refused key is not retried.
LLM_BATCH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=20,
    non_retryable_error_types=["PermanentDatabaseError", "InvalidInput", "LLMConfigError", "LLMUnavailable"],
)
LLM_BATCH_SUBMIT_TIMEOUT = timedelta(minutes=10)
LLM_BATCH_POLL_TIMEOUT = timedelta(minutes=2)
LLM_BATCH_COLLECT_TIMEOUT = timedelta(minutes=30)
LLM_BATCH_HEARTBEAT = timedelta(minutes=2)

# Planning a digest run is one statement over every due user: about 30 s for 1,000,000 users
# due at once (all in one zone) on a small machine, so not the 60 s of other database steps.
DIGEST_PLAN_TIMEOUT = timedelta(minutes=10)
