"""NewsAPI over httpx: /v2/everything and /v2/top-headlines, errors as typed failures.

The key travels in the X-Api-Key header, never in the URL, so no log line, error text or
Temporal history can carry it. NewsAPI reports failures as `{"status": "error", "code",
"message"}` with an HTTP status; each code maps to one typed error here (see
tests/provider-samples/newsapi_error_*.json):

- apiKeyInvalid / apiKeyMissing / apiKeyDisabled / apiKeyExhausted: ProviderConfigError
  (non-retryable; the configuration must change);
- rateLimited: RateLimited(daily=True): the Developer plan's 100 requests a day are gone, so
  the run defers instead of retrying in a loop;
- parameterInvalid / parametersMissing / parametersIncompatible / sourcesTooMany /
  sourceDoesNotExist: InvalidRequest (non-retryable), naming the parameter;
- maximumResultsReached: MaximumResultsReached, which paging treats as "stop, keep what came";
- 5xx, unexpectedError, timeouts and network errors: ProviderUnavailable (retried).

Articles are returned as the provider sent them (JSON objects): judging each one (missing
url, bad date, oversized or invalid text) is the store's job, so that one bad article is
skipped with its reason instead of failing the page.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import SecretStr

from deallens.providers.bounded import MIB, BodyLimits, get_bounded, retry_after_seconds
from deallens.providers.errors import (
    MalformedResponse,
    ProviderConfigError,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)

PROVIDER = "newsapi"
SIMULATED_KEY = "simulated"
EVERYTHING = "/v2/everything"
TOP_HEADLINES = "/v2/top-headlines"
# The Developer plan serves at most 100 results per query, whatever the paging.
DEVELOPER_MAX_RESULTS = 100
MAX_PAGE_SIZE = 100
# rateLimited on the Developer plan means the day's 100 requests are spent.
DAILY_RETRY_SECONDS = 3600.0
MINUTE_RETRY_SECONDS = 60.0
# A page is ~100 articles of ~2 KB (the samples: 19 KB for 20 articles); 5 MiB is no NewsAPI page.
DEFAULT_MAX_BODY_BYTES = 5 * MIB
DEFAULT_DEADLINE_SECONDS = 60.0

_KEY_CODES = {
    "apiKeyInvalid": "the API key is invalid: set NEWS_API_KEY to a valid key",
    "apiKeyMissing": "the API key is missing: set NEWS_API_KEY",
    "apiKeyDisabled": "the API key has been disabled: set NEWS_API_KEY to an active key",
    "apiKeyExhausted": "the API key has no requests left on its plan: upgrade the plan or set another NEWS_API_KEY",
}
_REQUEST_CODES = frozenset(
    {"parameterInvalid", "parametersMissing", "parametersIncompatible", "sourcesTooMany", "sourceDoesNotExist"}
)
# Parameter names as they appear in NewsAPI's messages ("The q parameter ...", "mix the sources parameter").
_PARAMETER = re.compile(r"\b(?:the\s+)?([A-Za-z]+)\s+parameters?\b", re.IGNORECASE)
_MAX_MESSAGE = 240


class InvalidRequest(ProviderError):
    """NewsAPI refused the request's parameters: the same request will fail again."""

    permanent = True

    def __init__(self, provider: str, code: str, parameter: str | None, detail: str) -> None:
        named = f" parameter {parameter}:" if parameter else ""
        super().__init__(provider, f"{code}:{named} {detail}")
        self.code = code
        self.parameter = parameter


class MaximumResultsReached(ProviderError):
    """The plan's result cap: no further page exists for this query (not a failure of the run)."""

    permanent = True


def _parameter_of(code: str, message: str, sent: Mapping[str, str]) -> str | None:
    """The parameter a refusal is about: named in the message, or the one that was sent."""
    if code == "sourcesTooMany":
        return "sources"
    if "too far in the past" in message.lower():
        return "from"
    for match in _PARAMETER.finditer(message):
        word = match.group(1)
        for name in (*sent, "q", "qInTitle", "sources", "domains", "from", "to", "page", "pageSize", "country", "category", "language"):
            if word.lower() == name.lower():
                return name
    return None


def raise_for_error(status: int, body: Any, params: Mapping[str, str], *, retry_after: float | None = None) -> None:
    """Raise the typed error an error response stands for; return for an `ok` body.

    `retry_after` is the response's Retry-After: a rate limit that names its delay is retried
    then (the next attempt's delay), not treated as the day's quota being spent.
    """
    if not isinstance(body, dict):
        raise MalformedResponse(PROVIDER, f"answered a JSON {type(body).__name__}, expected an object")
    if body.get("status") == "ok" and status == 200:
        return
    code = " ".join(body["code"].split())[:40] if isinstance(body.get("code"), str) else ""
    raw_message = body.get("message") if isinstance(body.get("message"), str) else ""
    message = " ".join(raw_message.split())[:_MAX_MESSAGE]
    if code in _KEY_CODES:
        raise ProviderConfigError(PROVIDER, f"{code}: {_KEY_CODES[code]}")
    if (code == "rateLimited" or status == 429) and retry_after is not None:
        raise RateLimited(PROVIDER, f"rateLimited: retry after {retry_after:g}s (Retry-After)", retry_after=retry_after)
    if code == "rateLimited" or status == 429:
        raise RateLimited(PROVIDER, "rateLimited: the plan's daily requests are used up", retry_after=DAILY_RETRY_SECONDS, daily=True)
    if code == "maximumResultsReached":
        raise MaximumResultsReached(PROVIDER, f"maximumResultsReached: {message}")
    if code in _REQUEST_CODES:
        raise InvalidRequest(PROVIDER, code, _parameter_of(code, message, params), message)
    if status >= 500 or code == "unexpectedError":
        raise ProviderUnavailable(PROVIDER, f"answered HTTP {status}{' ' + code if code else ''}")
    if status == 401:
        raise ProviderConfigError(PROVIDER, f"answered HTTP 401 {code}: check NEWS_API_KEY")
    raise ProviderConfigError(PROVIDER, f"answered HTTP {status} {code or 'without an error code'}: {message}")


@dataclass(frozen=True, slots=True)
class NewsPage:
    total_results: int
    articles: list[Any]  # JSON objects as sent; the store judges each one


@dataclass(slots=True)
class Fetched:
    """Every article one query's pages brought, and how many requests that took."""

    articles: list[Any] = field(default_factory=list)
    requests: int = 0
    total_results: int = 0
    # Why paging stopped before the provider's totalResults: "result cap", "budget", or None.
    stopped: str | None = None


def _moment(value: dt.datetime) -> str:
    """NewsAPI's from/to: ISO 8601 in UTC, to the second."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


class NewsApiClient:
    """The real HTTP client. With no key it sends a placeholder that only the stand-in accepts."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: SecretStr | None,
        timeout: float = 15.0,
        transport: httpx.AsyncBaseTransport | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        deadline_seconds: float = DEFAULT_DEADLINE_SECONDS,
    ) -> None:
        key = (api_key or SecretStr(SIMULATED_KEY)).get_secret_value()
        self._limits = BodyLimits(max_bytes=max_body_bytes, deadline_seconds=deadline_seconds)
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            headers={"User-Agent": "deallens-workers/0.1", "X-Api-Key": key},
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def everything(
        self,
        *,
        q: str,
        search_in: str | None = "title,description",
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        language: str = "en",
        sort_by: str = "publishedAt",
        page: int = 1,
        page_size: int = MAX_PAGE_SIZE,
    ) -> NewsPage:
        params = {"q": q, "language": language, "sortBy": sort_by, "page": str(page), "pageSize": str(page_size)}
        if search_in:
            params["searchIn"] = search_in
        if since is not None:
            params["from"] = _moment(since)
        if until is not None:
            params["to"] = _moment(until)
        return await self._get(EVERYTHING, params)

    async def top_headlines(
        self,
        *,
        country: str | None = "us",
        category: str | None = "business",
        q: str | None = None,
        page: int = 1,
        page_size: int = MAX_PAGE_SIZE,
    ) -> NewsPage:
        params = {"page": str(page), "pageSize": str(page_size)}
        for name, value in (("country", country), ("category", category), ("q", q)):
            if value:
                params[name] = value
        return await self._get(TOP_HEADLINES, params)

    async def _get(self, path: str, params: dict[str, str]) -> NewsPage:
        response = await get_bounded(self._http, path, params=params, provider=PROVIDER, what=path, limits=self._limits)
        return parse_page(
            response.status_code, response.content, params, path=path, retry_after=retry_after_seconds(response.headers)
        )


def parse_page(
    status: int, content: bytes, params: Mapping[str, str], *, path: str, retry_after: float | None = None
) -> NewsPage:
    """A NewsAPI answer (status and raw body) as a page, or the typed error it stands for."""
    try:
        # Invalid UTF-8 in one article must not make the page unreadable: it survives as lone
        # surrogates, which the store recognises and skips that article for.
        body = json.loads(content.decode("utf-8", errors="surrogateescape"))
    except (ValueError, RecursionError):
        if status >= 500:
            raise ProviderUnavailable(PROVIDER, f"{path} answered HTTP {status}") from None
        if status == 429:
            raise RateLimited(
                PROVIDER, f"{path} answered HTTP 429", retry_after=MINUTE_RETRY_SECONDS if retry_after is None else retry_after
            ) from None
        raise MalformedResponse(PROVIDER, f"{path} answered HTTP {status} with a body that is not JSON") from None
    raise_for_error(status, body, params, retry_after=retry_after)
    total = body.get("totalResults")
    articles = body.get("articles")
    if not isinstance(total, int) or isinstance(total, bool) or total < 0 or not isinstance(articles, list):
        raise MalformedResponse(PROVIDER, f"{path} ok body has no totalResults count or articles list")
    return NewsPage(total_results=total, articles=list(articles))
