"""Typed provider failures, shared by every client.

Activities map these to Temporal's retry semantics: `permanent` errors become non-retryable
ApplicationErrors, `RateLimited` carries the delay for the next attempt. Messages never hold
request URLs (AlphaVantage puts the API key in the query string) and exceptions are raised
`from None` so that no httpx exception with a URL travels in a Temporal failure's cause chain.
"""

from __future__ import annotations


class ProviderError(Exception):
    """A provider call failed. Retryable unless `permanent`."""

    permanent: bool = False

    # A message quotes what the provider sent (a key, a value): whatever a hostile body holds,
    # the error stays one bounded line in logs, Temporal failures and the CLI.
    MAX_MESSAGE = 300

    def __init__(self, provider: str, message: str) -> None:
        line = " ".join(str(message).split())
        if len(line) > self.MAX_MESSAGE:
            line = line[: self.MAX_MESSAGE - 1] + "…"
        super().__init__(f"{provider}: {line}")
        self.provider = provider
        self.message = line


class ProviderUnavailable(ProviderError):
    """Network error, timeout or 5xx: try again later."""


class MalformedResponse(ProviderError):
    """The body is not what the API documents (bad JSON, impossible numbers). Nothing is stored."""


class RateLimited(ProviderError):
    """The provider refused the call for rate or quota reasons; retry after `retry_after` seconds."""

    def __init__(self, provider: str, message: str, *, retry_after: float, daily: bool = False) -> None:
        super().__init__(provider, message)
        self.retry_after = retry_after
        self.daily = daily


class UnknownSymbol(ProviderError):
    """The provider does not know this symbol. Retrying will not help."""

    permanent = True

    def __init__(self, provider: str, symbol: str, detail: str) -> None:
        super().__init__(provider, f"unknown symbol {symbol!r}: {detail}")
        self.symbol = symbol


class ProviderConfigError(ProviderError):
    """Our side is wrong (missing/invalid key, premium-only endpoint): fix the configuration."""

    permanent = True


class ResponseTooLarge(ProviderError):
    """The answer is larger than this provider's cap: refused before (Content-Length) or while reading.

    Permanent: the same request brings the same body, and holding it would cost the worker
    its memory. Raise the cap (its setting is named in the message) if the data really grew.
    """

    permanent = True

    def __init__(self, provider: str, what: str, *, size: int, limit: int, declared: bool) -> None:
        amount = f"announced {size} bytes" if declared else f"sent more than {limit} bytes"
        super().__init__(provider, f"{what} {amount}, over the {limit}-byte cap for this provider")
        self.size = size
        self.limit = limit
