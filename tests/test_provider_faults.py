"""Every provider fault against its real stand-in over loopback, through the real client.

One table: (provider, fault) -> the typed error the client raises, whether it is permanent,
and the delay the next attempt waits (a Retry-After when the provider sent one). The same
error is then mapped as the activities map it (activities/errors.py), so the table also
says what Temporal does: retry after `next_retry_delay`, retry with the policy's backoff,
or fail non-retryable with one line.

Limits are set small so that the oversized bodies stay small (the caps' defaults are tested
below): every client reads with a 256 KiB cap (OpenAI: 64 KiB), a 0.5 s per-read timeout
and a 1.5 s overall deadline, which a body trickling a byte every 300 ms cannot meet.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import httpx
import pytest
from pydantic import BaseModel, SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.errors import to_application_error
from deallens.config import Settings
from deallens.llm.errors import LLMRateLimited, LLMServerError
from deallens.llm.gateway import DEFAULT_MAX_BODY_BYTES as OPENAI_DEFAULT_CAP
from deallens.llm.gateway import DEFAULT_RETRY_SECONDS, LLMGateway
from deallens.llm.prices import PriceTable
from deallens.providers import alphavantage, newsapi
from deallens.providers.alphavantage import AlphaVantageClient
from deallens.providers.bounded import retry_after_seconds
from deallens.providers.errors import (
    MalformedResponse,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    ResponseTooLarge,
    UnknownSymbol,
)
from deallens.providers.newsapi import NewsApiClient
from deallens.sim import alphavantage as av_sim
from deallens.sim import newsapi as news_sim
from deallens.sim import openai as openai_sim
from deallens.sim.faults import SimController
from deallens.sim.serve import serve_asgi

CAP = 256 * 1024
OPENAI_CAP = 64 * 1024
OVERSIZE = 1024 * 1024
READ_TIMEOUT = 0.5
DEADLINE = 1.5
DAY = dt.date(2026, 12, 1)
Provider = Literal["alphavantage", "newsapi", "openai"]


class Tone(BaseModel):
    """A tiny structured answer the stand-in's generic responder can fill."""

    company: str
    positive: bool


@dataclass
class Stand:
    controllers: dict[str, SimController]
    calls: dict[str, Callable[[], Awaitable[Any]]]


@pytest.fixture(scope="module")
async def stands() -> AsyncIterator[dict[str, tuple[str, SimController]]]:
    apps = {
        "alphavantage": av_sim.make_app(seed=5),
        "newsapi": news_sim.make_app(seed=5),
        "openai": openai_sim.make_app(seed=5),
    }
    async with serve_asgi(apps["alphavantage"]) as av, serve_asgi(apps["newsapi"]) as news, serve_asgi(
        apps["openai"]
    ) as oa:
        urls = {"alphavantage": av, "newsapi": news, "openai": oa}
        yield {name: (urls[name], app.state.sim) for name, app in apps.items()}


@pytest.fixture
async def call(
    stands: dict[str, tuple[str, SimController]], db: AsyncEngine
) -> AsyncIterator[Callable[[Provider], Awaitable[Any]]]:
    for _, controller in stands.values():
        controller.faults.clear()
    av = AlphaVantageClient(
        base_url=stands["alphavantage"][0], api_key=SecretStr("k"), timeout=READ_TIMEOUT,
        max_body_bytes=CAP, deadline_seconds=DEADLINE,
    )
    news = NewsApiClient(
        base_url=stands["newsapi"][0], api_key=SecretStr("k"), timeout=READ_TIMEOUT,
        max_body_bytes=CAP, deadline_seconds=DEADLINE,
    )
    llm = LLMGateway(
        engine=db, api_key=SecretStr("sk-test"), base_url=f"{stands['openai'][0]}/v1", default_model="gpt-4o-mini",
        prices=PriceTable.load(), daily_budget_usd=Decimal("1.00"), today=lambda: DAY,
        timeout_seconds=READ_TIMEOUT, max_body_bytes=OPENAI_CAP, deadline_seconds=DEADLINE,
    )
    messages = [{"role": "system", "content": "Rate the tone."}, {"role": "user", "content": "Company: Apple"}]
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "alphavantage": lambda: av.global_quote("AAPL"),
        "newsapi": lambda: news.top_headlines(),
        "openai": lambda: llm.structured(purpose="test", schema=Tone, messages=messages, max_output_tokens=50),
    }

    async def _call(provider: Provider) -> Any:
        return await calls[provider]()

    yield _call
    await av.aclose()
    await news.aclose()
    await llm.aclose()


# (provider, fault kind, rule options) -> (error class, permanent, next retry delay or None, words in the message)
Row = tuple[Provider, str, dict[str, Any], type[ProviderError], bool, float | None, str]
TABLE: list[Row] = [
    # 429 without and with Retry-After: the header, when sent, is the next attempt's delay.
    ("alphavantage", "http_429", {}, RateLimited, False, alphavantage.MINUTE_RETRY_SECONDS, "HTTP 429"),
    ("alphavantage", "http_429", {"retry_after": 7}, RateLimited, False, 7.0, "Retry-After 7s"),
    ("newsapi", "http_429", {}, RateLimited, False, newsapi.DAILY_RETRY_SECONDS, "daily requests are used up"),
    ("newsapi", "http_429", {"retry_after": 7}, RateLimited, False, 7.0, "retry after 7s"),
    ("openai", "http_429", {}, LLMRateLimited, False, DEFAULT_RETRY_SECONDS, "429 rate_limit_exceeded"),
    ("openai", "http_429", {"retry_after": 7}, LLMRateLimited, False, 7.0, "429 rate_limit_exceeded"),
    ("openai", "rate_limit", {}, LLMRateLimited, False, 27.0, "tokens per min"),
    # 5xx: retried with the policy's backoff.
    ("alphavantage", "http_500", {}, ProviderUnavailable, False, None, "HTTP 500"),
    ("alphavantage", "http_503", {}, ProviderUnavailable, False, None, "HTTP 503"),
    ("newsapi", "http_500", {}, ProviderUnavailable, False, None, "HTTP 500 unexpectedError"),
    ("newsapi", "http_503", {}, ProviderUnavailable, False, None, "HTTP 503"),
    ("openai", "http_500", {}, LLMServerError, False, None, "server error (500)"),
    ("openai", "http_503", {}, LLMServerError, False, None, "server error (503)"),
    # No answer in time (the per-read timeout), a reset connection, a trickle, a body cut short.
    ("alphavantage", "timeout", {"latency_ms": 10_000}, ProviderUnavailable, False, None, "timed out"),
    ("newsapi", "timeout", {"latency_ms": 10_000}, ProviderUnavailable, False, None, "timed out"),
    ("openai", "timeout", {"latency_ms": 10_000}, LLMServerError, False, None, "timed out"),
    ("alphavantage", "connection_reset", {}, ProviderUnavailable, False, None, "failed"),
    ("newsapi", "connection_reset", {}, ProviderUnavailable, False, None, "failed"),
    ("openai", "connection_reset", {}, LLMServerError, False, None, "connection"),
    ("alphavantage", "slow_body", {"interval_ms": 300}, ProviderUnavailable, False, None, "within 1.5s"),
    ("newsapi", "slow_body", {"interval_ms": 300}, ProviderUnavailable, False, None, "within 1.5s"),
    ("openai", "slow_body", {"interval_ms": 300}, LLMServerError, False, None, "within 1.5s"),
    ("alphavantage", "truncated_body", {}, ProviderUnavailable, False, None, "before the answer was complete"),
    ("newsapi", "truncated_body", {}, ProviderUnavailable, False, None, "before the answer was complete"),
    ("openai", "truncated_body", {}, LLMServerError, False, None, "connection"),
    # HTTP-200 error bodies: each means what its text says.
    ("alphavantage", "note", {}, RateLimited, False, alphavantage.MINUTE_RETRY_SECONDS, "per-minute rate limit"),
    ("alphavantage", "information_daily", {}, RateLimited, False, alphavantage.DAILY_RETRY_SECONDS, "daily"),
    ("alphavantage", "error_message", {}, UnknownSymbol, True, None, "Invalid API call"),
    ("newsapi", "error_200", {}, ProviderUnavailable, False, None, "HTTP 200 unexpectedError"),
    ("openai", "error_200", {}, LLMServerError, False, None, "without a completion: The server had an error"),
    # Malformed JSON: nothing is stored, the call is retried (a proxy's glitch is not permanent).
    ("alphavantage", "malformed_json", {}, MalformedResponse, False, None, "not JSON"),
    ("newsapi", "malformed_json", {}, MalformedResponse, False, None, "not JSON"),
    ("openai", "malformed_json", {}, LLMServerError, False, None, "unreadable answer"),
    # Oversized, announced (refused before reading) or chunked (refused at the cap while reading).
    ("alphavantage", "oversized", {"size_bytes": OVERSIZE}, ResponseTooLarge, True, None, f"announced {OVERSIZE} bytes"),
    ("alphavantage", "oversized_chunked", {"size_bytes": OVERSIZE}, ResponseTooLarge, True, None, f"more than {CAP}"),
    ("newsapi", "oversized", {"size_bytes": OVERSIZE}, ResponseTooLarge, True, None, f"announced {OVERSIZE} bytes"),
    ("newsapi", "oversized_chunked", {"size_bytes": OVERSIZE}, ResponseTooLarge, True, None, f"more than {CAP}"),
    ("openai", "oversized", {"size_bytes": OVERSIZE}, ResponseTooLarge, True, None, f"announced {OVERSIZE} bytes"),
    ("openai", "oversized_chunked", {"size_bytes": OVERSIZE}, ResponseTooLarge, True, None, f"more than {OPENAI_CAP}"),
]


@pytest.mark.parametrize(
    ("provider", "kind", "options", "error", "permanent", "delay", "words"),
    TABLE,
    ids=[f"{row[0]}-{row[1]}{'-retry-after' if 'retry_after' in row[2] else ''}" for row in TABLE],
)
async def test_each_fault_follows_its_designed_path(
    call: Callable[[Provider], Awaitable[Any]],
    stands: dict[str, tuple[str, SimController]],
    provider: Provider,
    kind: str,
    options: dict[str, Any],
    error: type[ProviderError],
    permanent: bool,
    delay: float | None,
    words: str,
) -> None:
    controller = stands[provider][1]
    controller.faults.add(kind, count=1, **options)
    with pytest.raises(ProviderError) as raised:
        await call(provider)
    caught = raised.value
    assert type(caught) is error, f"{type(caught).__name__}: {caught}"
    assert caught.permanent is permanent
    assert words in str(caught) and "\n" not in str(caught) and "sk-test" not in str(caught)
    assert caught.__cause__ is None  # no httpx exception (with its URL) travels along
    assert controller.stats.faults[kind] >= 1

    failure = to_application_error(caught)
    assert failure.non_retryable is permanent and failure.type == error.__name__
    if delay is None:
        assert failure.next_retry_delay is None  # the retry policy's backoff decides
    else:
        assert failure.next_retry_delay == dt.timedelta(seconds=delay)

    # The fault was one request: the next call is answered normally.
    assert await call(provider) is not None


async def test_an_llm_fault_gives_its_reservation_back(
    call: Callable[[Provider], Awaitable[Any]], stands: dict[str, tuple[str, SimController]], db: AsyncEngine
) -> None:
    async with db.begin() as conn:
        await conn.execute(text("DELETE FROM llm_usage"))
    stands["openai"][1].faults.add("oversized_chunked", count=1, size_bytes=OVERSIZE)
    with pytest.raises(ResponseTooLarge):
        await call("openai")
    async with db.connect() as conn:
        rows = (await conn.execute(text("SELECT status, cost_usd, error FROM llm_usage"))).all()
    assert [(row.status, row.cost_usd) for row in rows] == [("error", 0)]
    assert "ResponseTooLarge" in rows[0].error or "cap" in rows[0].error


async def test_the_largest_legitimate_answer_fits_the_default_caps(stands: dict[str, tuple[str, SimController]]) -> None:
    """A full TIME_SERIES_DAILY (the largest answer any client asks for) passes the default cap."""
    client = AlphaVantageClient(base_url=stands["alphavantage"][0], api_key=SecretStr("k"))
    try:
        series = await client.daily_series("AAPL", full=True)
    finally:
        await client.aclose()
    assert len(series.bars) > 5000
    settings = Settings(_env_file=None)
    assert settings.alphavantage_max_body_bytes == alphavantage.DEFAULT_MAX_BODY_BYTES == 16 * 1024 * 1024
    assert settings.newsapi_max_body_bytes == newsapi.DEFAULT_MAX_BODY_BYTES == 5 * 1024 * 1024
    assert settings.openai_max_body_bytes == OPENAI_DEFAULT_CAP == 10 * 1024 * 1024


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
    assert retry_after_seconds({"retry-after": "120"}) == 120.0
    assert retry_after_seconds({"retry-after": "Tue, 01 Dec 2026 12:01:30 GMT"}, now=now) == 90.0
    assert retry_after_seconds({"retry-after": "Tue, 01 Dec 2026 11:00:00 GMT"}, now=now) == 0.0
    for useless in ("", "soon", "-5", "nan", "999999999"):
        assert retry_after_seconds({"retry-after": useless}) is None
    assert retry_after_seconds({}) is None


async def test_the_new_fault_options_over_the_control_endpoint(stands: dict[str, tuple[str, SimController]]) -> None:
    """`POST /_sim/faults` takes the new kinds and options and names a bad one in its 422."""
    url, controller = stands["newsapi"]
    controller.faults.clear()
    async with httpx.AsyncClient(base_url=url) as http:
        added = await http.post("/_sim/faults", json={"kind": "http_429", "count": 1, "retry_after": 9})
        assert added.status_code == 201 and added.json()["added"]["retry_after"] == 9
        refused = await http.get("/v2/top-headlines", headers={"X-Api-Key": "k"})
        assert refused.status_code == 429 and refused.headers["retry-after"] == "9"
        kinds = (await http.get("/_sim/faults")).json()["kinds"]
        assert {"timeout", "connection_reset", "slow_body", "truncated_body", "oversized", "oversized_chunked"} <= set(kinds)
        bad = await http.post("/_sim/faults", json={"kind": "oversized", "size_bytes": 0})
        assert bad.status_code == 422 and "size_bytes" in bad.json()["detail"]
        bad = await http.post("/_sim/faults", json={"kind": "slow_body", "interval_ms": -1})
        assert bad.status_code == 422 and "interval_ms" in bad.json()["detail"]
    controller.faults.clear()
