"""Typed LLM failures. The gateway raises only these; activities map them like provider errors.

`LLMUnavailable` is not a failure to retry: no key or no budget left today, so the caller
uses its fallback (the lexicon for sentiment, rules for insights). Messages are one line and
never hold the API key (the SDK's own exceptions are not chained: `raise ... from None`).
"""

from __future__ import annotations

from deallens.providers.errors import ProviderConfigError, ProviderError, ProviderUnavailable, RateLimited

PROVIDER = "openai"


class LLMUnavailable(ProviderError):
    """No call was made: no API key, or today's LLM_DAILY_BUDGET_USD cannot cover the reservation."""

    permanent = True

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(PROVIDER, message)
        self.reason = reason  # "no_key" or "budget"


class LLMRefused(ProviderError):
    """The model refused to answer (recorded in llm_usage as status 'refused'); asking again gets the same."""

    permanent = True


class LLMInvalidOutput(ProviderError):
    """The answer broke the schema or was cut off (finish_reason length), twice."""

    permanent = True


class LLMRateLimited(RateLimited):
    """429 rate_limit_exceeded: retry after `retry_after` seconds (the server's Retry-After)."""


class LLMServerError(ProviderUnavailable):
    """5xx, a timeout or a dropped connection: retry with backoff."""

    def __init__(self, provider: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(provider, message)
        self.retry_after = retry_after


class LLMConfigError(ProviderConfigError):
    """401 (bad key), insufficient_quota (billing), a model without a price, a 400 for our request."""


class LLMBatchBusy(ProviderUnavailable):
    """Another attempt is submitting the same batch job right now: retry shortly."""


class LLMBatchNotFinished(ProviderUnavailable):
    """The batch has not reached a final status yet: collect after polling says it has."""


class LLMBatchJobError(ValueError):
    """A batch job that cannot be created or run as asked (bad requests, unknown job): one line."""
