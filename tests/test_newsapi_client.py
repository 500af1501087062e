"""The NewsAPI client over real HTTP: against the stand-in (its real error bodies, paging,
from/to) and against a recording server (where the key travels)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from deallens.providers.errors import MalformedResponse, ProviderConfigError, ProviderUnavailable, RateLimited
from deallens.providers.newsapi import InvalidRequest, MaximumResultsReached, NewsApiClient
from deallens.sim import newsapi as news_sim
from deallens.sim.clock import ManualClock
from deallens.sim.faults import SimController
from deallens.sim.serve import serve_asgi
from tests.conftest import SAMPLES

NOW = dt.datetime(2026, 3, 10, 15, 0, tzinfo=dt.UTC)
KEY = "news-secret-key-123"


@pytest.fixture
async def sim() -> AsyncIterator[tuple[NewsApiClient, SimController]]:
    app = news_sim.make_app(seed=3, clock=ManualClock(NOW))
    async with serve_asgi(app) as url:
        client = NewsApiClient(base_url=url, api_key=SecretStr(KEY), timeout=2.0)
        try:
            yield client, app.state.sim
        finally:
            await client.aclose()


async def test_everything_and_top_headlines_parse(sim: tuple[NewsApiClient, SimController]) -> None:
    client, _ = sim
    page = await client.everything(q='"Apple" OR "Microsoft"', since=NOW - dt.timedelta(days=2), until=NOW)
    assert page.total_results > 0 and page.articles
    for article in page.articles:
        moment = dt.datetime.fromisoformat(article["publishedAt"].replace("Z", "+00:00"))
        assert NOW - dt.timedelta(days=2) <= moment <= NOW
    top = await client.top_headlines(page_size=5)
    assert len(top.articles) == 5 and top.total_results >= 5


async def test_paging_follows_page_and_page_size(sim: tuple[NewsApiClient, SimController]) -> None:
    client, _ = sim
    since = NOW - dt.timedelta(days=20)
    first = await client.everything(q="shares OR stock", since=since, until=NOW, page=1, page_size=10)
    second = await client.everything(q="shares OR stock", since=since, until=NOW, page=2, page_size=10)
    assert len(first.articles) == len(second.articles) == 10
    assert not {a["url"] for a in first.articles} & {a["url"] for a in second.articles}
    # The Developer plan's cap: results beyond the 100th are refused, not silently empty.
    with pytest.raises(MaximumResultsReached):
        await client.everything(q="shares OR stock", since=since, until=NOW, page=11, page_size=10)


@pytest.mark.parametrize(
    ("kind", "error", "text"),
    [
        ("api_key_invalid", ProviderConfigError, "apiKeyInvalid: the API key is invalid: set NEWS_API_KEY"),
        ("api_key_missing", ProviderConfigError, "apiKeyMissing"),
        ("api_key_disabled", ProviderConfigError, "apiKeyDisabled"),
        ("api_key_exhausted", ProviderConfigError, "apiKeyExhausted"),
        ("parameter_invalid", InvalidRequest, "parameterInvalid"),
        ("parameters_missing", InvalidRequest, "parametersMissing"),
        ("parameters_incompatible", InvalidRequest, "parametersIncompatible: parameter sources:"),
        ("sources_too_many", InvalidRequest, "sourcesTooMany: parameter sources:"),
        ("maximum_results_reached", MaximumResultsReached, "maximumResultsReached"),
        ("unexpected_error", ProviderUnavailable, "HTTP 500"),
        ("http_500", ProviderUnavailable, "HTTP 500"),
        ("http_503", ProviderUnavailable, "HTTP 503"),
        ("malformed_json", MalformedResponse, "not JSON"),
    ],
)
async def test_every_error_code_is_typed(
    sim: tuple[NewsApiClient, SimController], kind: str, error: type[Exception], text: str
) -> None:
    client, controller = sim
    controller.faults.add(kind, count=1)
    with pytest.raises(error) as caught:
        await client.everything(q="Apple")
    message = str(caught.value)
    assert text in message and "\n" not in message and KEY not in message
    # No httpx exception (it would carry the request) in the chain a Temporal failure keeps.
    assert caught.value.__cause__ is None and (caught.value.__context__ is None or caught.value.__suppress_context__)
    assert getattr(caught.value, "permanent") is (error in (ProviderConfigError, InvalidRequest, MaximumResultsReached))
    await client.everything(q="Apple")  # the fault was for one request only


async def test_rate_limited_is_the_daily_quota(sim: tuple[NewsApiClient, SimController]) -> None:
    client, controller = sim
    controller.faults.add("rate_limited", count=1)
    with pytest.raises(RateLimited) as caught:
        await client.top_headlines()
    assert caught.value.daily and caught.value.retry_after >= 3600


async def test_a_timeout_is_retryable(sim: tuple[NewsApiClient, SimController]) -> None:
    client, controller = sim
    controller.faults.add("latency", latency_ms=3000, count=1)
    with pytest.raises(ProviderUnavailable, match="timed out"):
        await client.everything(q="Apple")


async def test_a_parameter_refusal_names_the_parameter(sim: tuple[NewsApiClient, SimController]) -> None:
    client, _ = sim
    with pytest.raises(InvalidRequest) as caught:
        await client.everything(q="Apple", since=NOW - dt.timedelta(days=45))
    assert caught.value.code == "parameterInvalid" and caught.value.parameter is not None
    with pytest.raises(InvalidRequest) as unparsable:
        await client.everything(q="(Apple")
    assert unparsable.value.parameter == "q"


async def test_the_key_travels_in_the_header_never_in_the_url() -> None:
    seen: list[tuple[str, str | None]] = []
    sample = (SAMPLES / "newsapi_everything_bitcoin_2020.json").read_bytes()

    async def everything(request: Request) -> Response:
        seen.append((str(request.url), request.headers.get("x-api-key")))
        return Response(sample, media_type="application/json")

    app = Starlette(routes=[Route("/v2/everything", everything)])
    async with serve_asgi(app) as url:
        client = NewsApiClient(base_url=url, api_key=SecretStr(KEY))
        try:
            page = await client.everything(q="bitcoin")
        finally:
            await client.aclose()
    assert page.total_results == json.loads(sample)["totalResults"] and page.articles
    [(requested, header)] = seen
    assert header == KEY and KEY not in requested and "apiKey" not in requested


async def test_samples_map_to_their_errors() -> None:
    """The captured bodies, served with their statuses, give the documented typed errors."""
    cases: dict[str, tuple[int, type[Exception]]] = {
        "newsapi_error_400_parametersIncompatible": (400, InvalidRequest),
        "newsapi_error_400_parametersMissing": (400, InvalidRequest),
        "newsapi_error_401_apiKeyInvalid": (401, ProviderConfigError),
        "newsapi_error_401_apiKeyMissing": (401, ProviderConfigError),
        "newsapi_error_426_maximumResultsReached": (426, MaximumResultsReached),
        "newsapi_error_429_rateLimited": (429, RateLimited),
        "newsapi_error_parameterInvalid_too_far_in_past": (426, InvalidRequest),
    }
    current: dict[str, Any] = {}

    async def answer(request: Request) -> Response:
        return Response((SAMPLES / f"{current['name']}.json").read_bytes(), status_code=current["status"])

    app = Starlette(routes=[Route("/v2/everything", answer)])
    async with serve_asgi(app) as url:
        client = NewsApiClient(base_url=url, api_key=SecretStr(KEY))
        try:
            for name, (status, error) in cases.items():
                current.update(name=name, status=status)
                with pytest.raises(error):
                    await client.everything(q="bitcoin")
        finally:
            await client.aclose()
