"""The real AlphaVantage client over HTTP against the local stand-in, faults included."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

from deallens.providers.alphavantage import AlphaVantageClient
from deallens.providers.errors import (
    MalformedResponse,
    ProviderConfigError,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    UnknownSymbol,
)
from deallens.sim import alphavantage as av_sim
from deallens.sim.serve import serve_asgi

KEY = "av-test-key-do-not-leak"


@pytest.fixture
async def sim() -> AsyncIterator[tuple[str, Any]]:
    app = av_sim.make_app(seed=11)
    async with serve_asgi(app) as url:
        yield url, app.state.sim


@pytest.fixture
async def client(sim: tuple[str, Any]) -> AsyncIterator[AlphaVantageClient]:
    client = AlphaVantageClient(base_url=sim[0], api_key=SecretStr(KEY), timeout=2.0)
    yield client
    await client.aclose()


async def test_quote_for_a_known_symbol(client: AlphaVantageClient) -> None:
    quote = await client.global_quote("AAPL")
    assert quote.symbol == "AAPL"
    assert quote.low <= quote.price <= quote.high
    assert quote.price > 0 and quote.volume > 0


async def test_unknown_symbol_is_permanent(client: AlphaVantageClient) -> None:
    with pytest.raises(UnknownSymbol, match="unknown symbol 'ZZZZ'") as raised:
        await client.global_quote("ZZZZ")
    assert raised.value.permanent


@pytest.mark.parametrize(
    ("kind", "error", "message"),
    [
        ("http_429", RateLimited, "HTTP 429"),
        ("http_500", ProviderUnavailable, "HTTP 500"),
        ("http_503", ProviderUnavailable, "HTTP 503"),
        ("malformed_json", MalformedResponse, "not JSON"),
        ("empty", UnknownSymbol, "empty quote"),
        ("note", RateLimited, "per-minute"),
        ("information_daily", RateLimited, "daily"),
        ("information_burst", RateLimited, "burst"),
        ("error_message", UnknownSymbol, "Invalid API call"),
        ("premium", ProviderConfigError, "premium endpoint"),
        ("demo_key", ProviderConfigError, "demo API key"),
    ],
)
async def test_faults_become_typed_errors_then_clear(
    sim: tuple[str, Any], client: AlphaVantageClient, kind: str, error: type[ProviderError], message: str
) -> None:
    sim[1].faults.add(kind, count=1, match="GLOBAL_QUOTE")
    with pytest.raises(error, match=message) as raised:
        await client.global_quote("MSFT")
    assert KEY not in str(raised.value)
    # The fault was for one request only: the next call succeeds.
    assert (await client.global_quote("MSFT")).symbol == "MSFT"


async def test_timeout_is_retryable_and_names_no_url(sim: tuple[str, Any], client: AlphaVantageClient) -> None:
    sim[1].faults.add("latency", count=1, latency_ms=3000)
    with pytest.raises(ProviderUnavailable, match="GLOBAL_QUOTE timed out") as raised:
        await client.global_quote("MSFT")
    assert not raised.value.permanent
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


async def test_connection_refused_names_no_key() -> None:
    client = AlphaVantageClient(base_url="http://127.0.0.1:9", api_key=SecretStr(KEY), timeout=1.0)
    try:
        with pytest.raises(ProviderUnavailable) as raised:
            await client.global_quote("MSFT")
    finally:
        await client.aclose()
    assert KEY not in str(raised.value)


async def test_stand_in_rate_limit_is_reported_as_rate_limited(sim: tuple[str, Any], client: AlphaVantageClient) -> None:
    sim[1].set_limits(calls_per_minute=2, calls_per_day=None)
    await client.global_quote("AAPL")
    await client.global_quote("MSFT")
    with pytest.raises(RateLimited) as raised:
        await client.global_quote("IBM")
    assert raised.value.retry_after == 60.0
    assert sim[1].stats.rate_limit_refusals == 1


async def test_keyless_client_uses_the_stand_in_placeholder(sim: tuple[str, Any]) -> None:
    client = AlphaVantageClient(base_url=sim[0], api_key=None)
    try:
        assert (await client.global_quote("IBM")).symbol == "IBM"
    finally:
        await client.aclose()
