"""TIME_SERIES_DAILY, OVERVIEW and REALTIME_BULK_QUOTES through the real client, over HTTP, against
the local stand-in (faults included). The stand-in's clock is fixed, so every answer is too."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

from deallens.domain.universe import demo_company
from deallens.providers.alphavantage import BULK_QUOTES_MAX_SYMBOLS, AlphaVantageClient
from deallens.providers.errors import (
    MalformedResponse,
    ProviderConfigError,
    ProviderError,
    RateLimited,
    UnknownSymbol,
)
from deallens.sim import alphavantage as av_sim
from deallens.sim.clock import ManualClock
from deallens.sim.market import HISTORY_START
from deallens.sim.serve import serve_asgi

KEY = "av-test-key-do-not-leak"
# Friday 2025-03-14, 11:00 in New York (EDT): the session is open, so the stand-in's latest bar
# is provisional and its "3. Last Refreshed" carries a time, as the real service's does intraday.
NOW = dt.datetime(2025, 3, 14, 15, 0, tzinfo=dt.UTC)
TODAY = dt.date(2025, 3, 14)


# One server per module and key kind (starting and stopping one costs ~0.2 s); each test gets
# a fresh client, no faults and zeroed statistics.


async def _server(premium: bool) -> AsyncIterator[tuple[str, Any]]:
    app = av_sim.make_app(seed=11, clock=ManualClock(NOW), premium=premium)
    async with serve_asgi(app) as url:
        yield url, app.state.sim


@pytest.fixture(scope="module")
async def basic_server() -> AsyncIterator[tuple[str, Any]]:
    async for server in _server(premium=False):
        yield server


@pytest.fixture(scope="module")
async def premium_server() -> AsyncIterator[tuple[str, Any]]:
    async for server in _server(premium=True):
        yield server


async def _client(server: tuple[str, Any]) -> AsyncIterator[tuple[AlphaVantageClient, Any]]:
    url, sim = server
    sim.faults.clear()
    sim.stats.reset()
    client = AlphaVantageClient(base_url=url, api_key=SecretStr(KEY), timeout=5.0)
    try:
        yield client, sim
    finally:
        await client.aclose()


@pytest.fixture
async def basic(basic_server: tuple[str, Any]) -> AsyncIterator[tuple[AlphaVantageClient, Any]]:
    async for served in _client(basic_server):
        yield served


@pytest.fixture
async def premium(premium_server: tuple[str, Any]) -> AsyncIterator[tuple[AlphaVantageClient, Any]]:
    async for served in _client(premium_server):
        yield served


# ------------------------------------------------------------------ TIME_SERIES_DAILY


async def test_compact_series_is_100_bars_oldest_first_ending_at_the_latest_bar(
    basic: tuple[AlphaVantageClient, Any],
) -> None:
    client, _ = basic
    series = await client.daily_series("AAPL")
    quote = await client.global_quote("AAPL")
    assert series.symbol == "AAPL" and series.output_size == "compact"
    assert series.last_refreshed == TODAY
    assert len(series.bars) == 100 and series.rejected == []
    assert all(a.date < b.date for a, b in zip(series.bars, series.bars[1:]))
    latest = series.bars[-1]
    assert latest.date == quote.latest_trading_day == TODAY
    assert (latest.open, latest.high, latest.low, latest.close) == (quote.open, quote.high, quote.low, quote.price)


async def test_full_series_reaches_back_to_the_start_of_the_history(basic: tuple[AlphaVantageClient, Any]) -> None:
    client, _ = basic
    series = await client.daily_series("msft", full=True)
    assert series.symbol == "MSFT" and series.output_size == "full"
    assert len(series.bars) > 5000 and series.rejected == []
    assert series.bars[0].date == HISTORY_START and series.bars[-1].date == TODAY
    assert all(a.date < b.date for a, b in zip(series.bars, series.bars[1:]))


async def test_series_of_an_unknown_symbol_is_permanent(basic: tuple[AlphaVantageClient, Any]) -> None:
    client, _ = basic
    with pytest.raises(UnknownSymbol, match="unknown symbol 'ZZZZ': TIME_SERIES_DAILY") as raised:
        await client.daily_series("ZZZZ")
    assert raised.value.permanent


@pytest.mark.parametrize(
    ("kind", "error", "message"),
    [
        ("malformed_json", MalformedResponse, "TIME_SERIES_DAILY answered a body that is not JSON"),
        ("note", RateLimited, "per-minute"),
        ("error_message", UnknownSymbol, "TIME_SERIES_DAILY answered 'Invalid API call'"),
        # The stand-in's "empty" is a bare `{}` for every function but GLOBAL_QUOTE. For
        # TIME_SERIES_DAILY that is not the shape of an empty series (Meta Data plus an empty
        # "Time Series (Daily)"), so it is a retryable MalformedResponse: nothing is stored,
        # and it is never read as "no bars" (which could look like lost history) nor as an
        # unknown symbol (which would quarantine a good one).
        ("empty", MalformedResponse, "no 'Meta Data' and no 'Time Series \\(Daily\\)' object"),
    ],
)
async def test_series_faults_become_typed_errors_then_clear(
    basic: tuple[AlphaVantageClient, Any], kind: str, error: type[ProviderError], message: str
) -> None:
    client, sim = basic
    sim.faults.add(kind, count=1, match="TIME_SERIES_DAILY")
    with pytest.raises(error, match=message) as raised:
        await client.daily_series("IBM")
    assert KEY not in str(raised.value)
    assert len((await client.daily_series("IBM")).bars) == 100


# ------------------------------------------------------------------ OVERVIEW


# NVDA pays no dividend in the stand-in with seed 11: its dividend fields are "None".
@pytest.mark.parametrize("symbol", ["AAPL", "NVDA", "IBM"])
async def test_overview_of_a_demo_company(basic: tuple[AlphaVantageClient, Any], symbol: str) -> None:
    client, _ = basic
    company = demo_company(symbol)
    assert company is not None
    overview = await client.overview(symbol)
    assert overview.symbol == symbol and overview.name == company.name
    assert (overview.sector, overview.exchange, overview.currency) == (company.sector, company.exchange, "USD")
    assert overview.market_cap is not None and overview.market_cap > 0
    assert overview.shares_outstanding is not None and overview.shares_outstanding > 0
    assert overview.week52_low is not None and overview.week52_high is not None
    assert 0 < overview.week52_low <= overview.week52_high
    assert overview.latest_quarter is not None and overview.latest_quarter < TODAY
    assert overview.raw["Symbol"] == symbol and len(overview.raw) > 40
    no_dividend = symbol == "NVDA"
    assert (overview.dividend_yield is None) == (overview.raw["DividendYield"] == "None") == no_dividend


async def test_overview_of_an_unknown_symbol_is_permanent(basic: tuple[AlphaVantageClient, Any]) -> None:
    client, _ = basic
    with pytest.raises(UnknownSymbol, match="unknown symbol 'ZZZZ': OVERVIEW returned an empty object"):
        await client.overview("ZZZZ")


# ------------------------------------------------------------------ REALTIME_BULK_QUOTES


async def test_bulk_quotes_with_a_premium_key(premium: tuple[AlphaVantageClient, Any]) -> None:
    client, sim = premium
    bulk = await client.bulk_quotes(["AAPL", "ZZZZ", "msft"])
    assert [quote.symbol for quote in bulk.quotes] == ["AAPL", "MSFT"]
    assert bulk.unknown == ["ZZZZ"]
    single = await client.global_quote("AAPL")
    aapl = bulk.quotes[0]
    assert (aapl.price, aapl.volume, aapl.previous_close) == (single.price, single.volume, single.previous_close)
    assert aapl.latest_trading_day is None
    assert aapl.quoted_at is not None and aapl.quoted_at == NOW
    assert sim.stats.by_endpoint["REALTIME_BULK_QUOTES"] == 1


async def test_bulk_quotes_without_premium_is_a_config_error(basic: tuple[AlphaVantageClient, Any]) -> None:
    client, _ = basic
    with pytest.raises(ProviderConfigError, match="REALTIME_BULK_QUOTES is a premium endpoint") as raised:
        await client.bulk_quotes(["AAPL", "MSFT"])
    assert raised.value.permanent


@pytest.mark.parametrize("count", [0, BULK_QUOTES_MAX_SYMBOLS + 1])
async def test_bulk_quotes_refuses_a_bad_symbol_count_before_any_request(
    premium: tuple[AlphaVantageClient, Any], count: int
) -> None:
    client, sim = premium
    with pytest.raises(ValueError, match=f"takes 1 to 100 symbols, got {count}"):
        await client.bulk_quotes([f"S{i}" for i in range(count)])
    assert sim.stats.total_requests == 0


async def test_bulk_quotes_takes_exactly_100_symbols(premium: tuple[AlphaVantageClient, Any]) -> None:
    client, _ = premium
    unknown = [f"ZZ{i}" for i in range(BULK_QUOTES_MAX_SYMBOLS - 1)]
    bulk = await client.bulk_quotes(["IBM", *unknown])
    assert [quote.symbol for quote in bulk.quotes] == ["IBM"] and bulk.unknown == unknown
