"""The AlphaVantage stand-in over real HTTP: shapes equal to the captured samples, determinism,
OHLC invariants, faults and rate limits."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from deallens.sim.alphavantage import AlphaVantageController, make_app
from deallens.sim.clock import ManualClock
from deallens.sim.market import HISTORY_START, SIM_COMPANIES, Market, weekday_index
from deallens.sim.serve import serve_asgi

SAMPLES = Path(__file__).resolve().parent / "provider-samples"
# Tuesday 2026-03-10 11:00 in New York (EDT): the market is open.
NOW = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
SEED = 7
DECIMAL4 = re.compile(r"^-?\d+\.\d{4}$")


def sample(name: str) -> Any:
    return json.loads((SAMPLES / f"{name}.json").read_text())


@dataclass
class Sim:
    client: httpx.AsyncClient
    controller: AlphaVantageController
    clock: ManualClock

    async def query(self, **params: str) -> httpx.Response:
        params.setdefault("apikey", "test-key")
        return await self.client.get("/query", params=params)

    async def body(self, **params: str) -> Any:
        response = await self.query(**params)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
async def av() -> AsyncIterator[Sim]:
    clock = ManualClock(NOW)
    app = make_app(seed=SEED, clock=clock, premium=True)
    async with serve_asgi(app) as url, httpx.AsyncClient(base_url=url) as client:
        yield Sim(client, app.state.sim, clock)


@pytest.fixture(autouse=True)
def fresh(av: Sim) -> Sim:
    av.controller.faults.clear()
    av.controller.stats.reset()
    av.controller.set_limits(calls_per_minute=None, calls_per_day=None)
    av.controller.usage.clear()
    av.clock.set(NOW)
    return av


async def test_global_quote_has_the_sample_keys_and_number_formats(av: Sim) -> None:
    body = await av.body(function="GLOBAL_QUOTE", symbol="ibm")
    quote = body["Global Quote"]
    assert list(body) == list(sample("alphavantage_global_quote"))
    assert list(quote) == list(sample("alphavantage_global_quote")["Global Quote"])
    assert quote["01. symbol"] == "IBM"
    for key in ("02. open", "03. high", "04. low", "05. price", "08. previous close", "09. change"):
        assert DECIMAL4.match(quote[key]), (key, quote[key])
    assert re.fullmatch(r"\d+", quote["06. volume"])
    assert quote["07. latest trading day"] == "2026-03-10"
    assert re.fullmatch(r"-?\d+\.\d{4}%", quote["10. change percent"])
    price, previous = float(quote["05. price"]), float(quote["08. previous close"])
    assert float(quote["09. change"]) == pytest.approx(price - previous, abs=1e-4)
    assert float(quote["10. change percent"][:-1]) == pytest.approx(100 * (price - previous) / previous, abs=1e-4)
    assert float(quote["04. low"]) <= price <= float(quote["03. high"])


async def test_error_bodies_are_the_real_ones_with_http_200(av: Sim) -> None:
    cases = {
        "alphavantage_error_message_apikey_missing": {"function": "GLOBAL_QUOTE", "symbol": "IBM", "apikey": ""},
        "alphavantage_error_message_unknown_function": {"function": "GLOBAL_QUOT", "symbol": "IBM"},
        "alphavantage_error_message_invalid_call_global_quote": {"function": "GLOBAL_QUOTE"},
        "alphavantage_error_message_invalid_call_time_series_daily": {"function": "TIME_SERIES_DAILY", "symbol": "NOPE"},
        "alphavantage_global_quote_unknown_symbol_empty": {"function": "GLOBAL_QUOTE", "symbol": "NOPE"},
    }
    for name, params in cases.items():
        response = await av.query(**params)
        assert response.status_code == 200
        assert response.json() == sample(name), name
    assert await av.body(function="OVERVIEW", symbol="NOPE") == {}


async def test_time_series_daily_compact_and_full(av: Sim) -> None:
    reference = sample("alphavantage_time_series_daily_compact_ibm_2025")
    compact = await av.body(function="TIME_SERIES_DAILY", symbol="MSFT")
    assert list(compact) == list(reference)
    assert list(compact["Meta Data"]) == list(reference["Meta Data"])
    assert compact["Meta Data"]["4. Output Size"] == "Compact"
    assert compact["Meta Data"]["5. Time Zone"] == "US/Eastern"
    # Taken during the session, "Last Refreshed" carries the time, as in the MSFT sample.
    assert compact["Meta Data"]["3. Last Refreshed"] == "2026-03-10 11:00:00"
    series = compact["Time Series (Daily)"]
    assert len(series) == 100
    days = list(series)
    assert days == sorted(days, reverse=True) and days[0] == "2026-03-10"
    first_bar = next(iter(reference["Time Series (Daily)"].values()))
    assert all(list(bar) == list(first_bar) for bar in series.values())

    full = await av.body(function="TIME_SERIES_DAILY", symbol="MSFT", outputsize="full")
    assert full["Meta Data"]["4. Output Size"] == sample("alphavantage_time_series_daily_full_crazzyghost")["Meta Data"]["4. Output Size"]
    bars = full["Time Series (Daily)"]
    assert len(bars) == weekday_index(date(2026, 3, 10)) + 1
    assert list(bars)[-1] == HISTORY_START.isoformat()
    assert list(bars.items())[:100] == list(series.items())
    for day, bar in bars.items():
        assert all(DECIMAL4.match(bar[k]) for k in ("1. open", "2. high", "3. low", "4. close")), day
        low, high = float(bar["3. low"]), float(bar["2. high"])
        assert 0 < low <= min(float(bar["1. open"]), float(bar["4. close"])), day
        assert max(float(bar["1. open"]), float(bar["4. close"])) <= high, day
        assert int(bar["5. volume"]) > 0


def test_every_symbol_has_consistent_weekday_history() -> None:
    market = Market(SEED)
    for company in SIM_COMPANIES:
        bars = market.daily_bars(company, NOW)
        assert len(bars) == weekday_index(date(2026, 3, 10)) + 1
        for previous, bar in zip(bars, bars[1:]):
            assert bar.day > previous.day and bar.day.weekday() < 5
        for bar in bars:
            assert 0 < bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high, (company.symbol, bar)
            assert isinstance(bar.volume, int) and bar.volume > 0
        recent = bars[-250:]
        assert 0.2 * float(company.base_price) < min(b.close for b in recent)
        assert max(b.close for b in recent) < 5 * float(company.base_price)


async def test_intraday_price_follows_the_clock_minute_and_today_bar_is_provisional(av: Sim) -> None:
    prices = []
    for _ in range(15):
        quote = (await av.body(function="GLOBAL_QUOTE", symbol="AAPL"))["Global Quote"]
        daily = await av.body(function="TIME_SERIES_DAILY", symbol="AAPL")
        today = daily["Time Series (Daily)"]["2026-03-10"]
        assert today["4. close"] == quote["05. price"]
        assert today["1. open"] == quote["02. open"]
        prices.append(quote["05. price"])
        assert (await av.body(function="GLOBAL_QUOTE", symbol="AAPL"))["Global Quote"]["05. price"] == prices[-1]
        av.clock.advance(minutes=1)
    assert len(set(prices)) > 3

    av.clock.set(datetime(2026, 3, 10, 13, 0, tzinfo=UTC))  # 09:00 ET: not open yet
    quote = (await av.body(function="GLOBAL_QUOTE", symbol="AAPL"))["Global Quote"]
    assert quote["07. latest trading day"] == "2026-03-09"
    av.clock.set(datetime(2026, 3, 14, 17, 0, tzinfo=UTC))  # Saturday
    saturday = (await av.body(function="GLOBAL_QUOTE", symbol="AAPL"))["Global Quote"]
    assert saturday["07. latest trading day"] == "2026-03-13"
    daily = await av.body(function="TIME_SERIES_DAILY", symbol="AAPL")
    assert daily["Meta Data"]["3. Last Refreshed"] == "2026-03-13"
    assert daily["Time Series (Daily)"]["2026-03-13"]["4. close"] == saturday["05. price"]


async def test_final_bar_after_the_close_is_what_later_days_show(av: Sim) -> None:
    av.clock.set(datetime(2026, 3, 10, 20, 30, tzinfo=UTC))  # 16:30 ET
    evening = (await av.body(function="TIME_SERIES_DAILY", symbol="NVDA"))["Time Series (Daily)"]["2026-03-10"]
    av.clock.set(datetime(2026, 4, 20, 15, 0, tzinfo=UTC))
    later = (await av.body(function="TIME_SERIES_DAILY", symbol="NVDA", outputsize="full"))["Time Series (Daily)"]
    assert later["2026-03-10"] == evening


async def test_same_seed_same_bodies_other_seed_different() -> None:
    requests = [
        {"function": "GLOBAL_QUOTE", "symbol": "JPM"},
        {"function": "TIME_SERIES_DAILY", "symbol": "JPM"},
        {"function": "OVERVIEW", "symbol": "JPM"},
    ]

    async def bodies(seed: int) -> list[bytes]:
        app = make_app(seed=seed, clock=lambda: NOW)
        async with serve_asgi(app) as url, httpx.AsyncClient(base_url=url) as client:
            return [(await client.get("/query", params={**r, "apikey": "k"})).content for r in requests]

    first, again, other = await asyncio.gather(bodies(1), bodies(1), bodies(2))
    assert first == again
    assert all(a != b for a, b in zip(first, other))


async def test_overview_has_the_current_field_set(av: Sim) -> None:
    reference = sample("alphavantage_overview_aapl_2025")
    body = await av.body(function="OVERVIEW", symbol="aapl")
    assert list(body) == list(reference)
    assert all(isinstance(v, str) for v in body.values())
    assert (body["Symbol"], body["Name"], body["Exchange"], body["Sector"]) == ("AAPL", "Apple Inc", "NASDAQ", "TECHNOLOGY")
    assert float(body["52WeekLow"]) <= float(body["50DayMovingAverage"]) <= float(body["52WeekHigh"])
    assert int(body["MarketCapitalization"]) == pytest.approx(int(body["SharesOutstanding"]) * 301.0, rel=0.5)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", body["LatestQuarter"])


async def test_bulk_quotes_premium_shape_and_consistency(av: Sim) -> None:
    reference = sample("alphavantage_realtime_bulk_quotes_demo")
    body = await av.body(function="REALTIME_BULK_QUOTES", symbol="MSFT,aapl,NOPE,IBM")
    assert list(body) == ["endpoint", "data"]  # a premium key gets no "message"
    assert body["endpoint"] == reference["endpoint"]
    assert [item["symbol"] for item in body["data"]] == ["MSFT", "AAPL", "IBM"]
    for item in body["data"]:
        assert list(item) == list(reference["data"][0])
        quote = (await av.body(function="GLOBAL_QUOTE", symbol=item["symbol"]))["Global Quote"]
        assert float(item["close"]) == float(quote["05. price"])
        assert float(item["previous_close"]) == float(quote["08. previous close"])
        assert item["volume"] == quote["06. volume"]
        assert item["timestamp"] == "2026-03-10 11:00:00.000"

    free = make_app(seed=SEED, clock=lambda: NOW)
    async with serve_asgi(free) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/query", params={"function": "REALTIME_BULK_QUOTES", "symbol": "IBM", "apikey": "k"})
    assert response.status_code == 200
    assert response.json() == sample("alphavantage_error_information_premium_endpoint")


@pytest.mark.parametrize(
    ("kind", "sample_name"),
    [
        ("note", "alphavantage_error_note_rate_limit_legacy_5_per_min"),
        ("information_daily", "alphavantage_error_information_daily_limit_25"),
        ("information_burst", "alphavantage_error_information_burst_1_per_second"),
        ("error_message", "alphavantage_error_message_invalid_call_global_quote"),
        ("premium", "alphavantage_error_information_premium_endpoint"),
        ("demo_key", "alphavantage_error_information_demo_key"),
        ("empty", "alphavantage_global_quote_unknown_symbol_empty"),
    ],
)
async def test_provider_fault_kinds_answer_the_real_bodies_once(av: Sim, kind: str, sample_name: str) -> None:
    av.controller.faults.add(kind, count=1)
    # The sample's key is redacted to 16 X; the real service interpolates the caller's key.
    params = {"function": "GLOBAL_QUOTE", "symbol": "IBM", "apikey": "XXXXXXXXXXXXXXXX"}
    faulted = await av.query(**params)
    assert faulted.status_code == 200
    assert faulted.json() == sample(sample_name)
    assert "Global Quote" in (await av.query(**params)).json()
    assert (await av.query(**params)).json()["Global Quote"] != {}
    assert av.controller.stats.faults == {kind: 1}


async def test_http_faults_malformed_json_latency_and_empty_overview(av: Sim) -> None:
    for kind, status in (("http_429", 429), ("http_500", 500), ("http_503", 503)):
        av.controller.faults.add(kind, count=1)
        response = await av.query(function="GLOBAL_QUOTE", symbol="IBM")
        assert response.status_code == status
        assert response.headers["content-type"].startswith("text/html")

    av.controller.faults.add("malformed_json", count=1)
    response = await av.query(function="GLOBAL_QUOTE", symbol="IBM")
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()

    av.controller.faults.add("empty", count=1, match="overview")
    assert await av.body(function="OVERVIEW", symbol="IBM") == {}

    av.controller.faults.add("latency", count=1, latency_ms=150)
    started = time.perf_counter()
    body = await av.body(function="GLOBAL_QUOTE", symbol="IBM")
    assert time.perf_counter() - started >= 0.15
    assert body["Global Quote"]["01. symbol"] == "IBM"
    assert av.controller.stats.faults == {"http_429": 1, "http_500": 1, "http_503": 1, "malformed_json": 1, "empty": 1, "latency": 1}


async def test_count_match_and_seeded_probability(av: Sim) -> None:
    note = sample("alphavantage_error_note_rate_limit_legacy_5_per_min")
    av.controller.faults.add("note", count=2, match="global_quote")
    assert "Time Series (Daily)" in await av.body(function="TIME_SERIES_DAILY", symbol="KO")
    assert await av.body(function="GLOBAL_QUOTE", symbol="KO") == note
    assert await av.body(function="GLOBAL_QUOTE", symbol="KO") == note
    assert "Global Quote" in await av.body(function="GLOBAL_QUOTE", symbol="KO")
    assert av.controller.faults.rules == []

    async def pattern() -> list[bool]:
        av.controller.faults.clear()
        av.controller.faults.add("http_500", probability=0.5)
        return [(await av.query(function="GLOBAL_QUOTE", symbol="KO")).status_code == 500 for _ in range(24)]

    first = await pattern()
    assert 4 < sum(first) < 20
    assert await pattern() == first  # same seed, same rules, same requests: the same failures


async def test_fault_rules_over_http_are_validated(av: Sim) -> None:
    bad = [
        ({"kind": "explode"}, "kind"),
        ({"kind": "note", "probability": 1.5}, "probability"),
        ({"kind": "note", "count": 0}, "count"),
        ({"kind": "latency"}, "latency_ms"),
        ({"kind": "note", "colour": "red"}, "colour"),
    ]
    for rule, field in bad:
        response = await av.client.post("/_sim/faults", json=rule)
        assert response.status_code == 422, rule
        assert field in response.json()["detail"], response.json()
    response = await av.client.post("/_sim/faults", content=b"{not json")
    assert response.status_code == 422

    response = await av.client.post("/_sim/faults", json={"kind": "note", "match": "global_quote", "count": 1})
    assert response.status_code == 201
    assert response.json()["added"]["match"] == "GLOBAL_QUOTE"
    assert (await av.client.get("/_sim/faults")).json()["rules"][0]["kind"] == "note"
    assert (await av.client.delete("/_sim/faults")).json() == {"rules": []}
    assert "Global Quote" in await av.body(function="GLOBAL_QUOTE", symbol="KO")

    stats = (await av.client.get("/_sim/stats")).json()
    assert stats == {"total_requests": 1, "by_endpoint": {"GLOBAL_QUOTE": 1}, "faults": {}, "rate_limit_refusals": 0}


async def test_per_minute_limit_refuses_with_the_note_and_refusals_are_not_used(av: Sim) -> None:
    response = await av.client.post("/_sim/limits", json={"calls_per_minute": 2})
    assert response.json() == {"calls_per_minute": 2, "calls_per_day": None}
    start = av.clock()
    assert "Global Quote" in await av.body(function="GLOBAL_QUOTE", symbol="IBM")  # t+0
    av.clock.set(start + timedelta(seconds=30))
    assert "Global Quote" in await av.body(function="GLOBAL_QUOTE", symbol="IBM")  # t+30
    av.clock.set(start + timedelta(seconds=45))
    assert await av.body(function="GLOBAL_QUOTE", symbol="IBM") == sample("alphavantage_error_note_rate_limit_legacy_5_per_min")
    assert "Global Quote" in await av.body(function="GLOBAL_QUOTE", symbol="IBM", apikey="other-key")
    # At t+61 the t+0 call has left the window; had the refused t+45 call counted, this would be refused too.
    av.clock.set(start + timedelta(seconds=61))
    assert "Global Quote" in await av.body(function="GLOBAL_QUOTE", symbol="IBM")
    stats = (await av.client.get("/_sim/stats")).json()
    assert stats["rate_limit_refusals"] == 1
    assert stats["total_requests"] == 5


async def test_per_day_limit_answers_information_until_the_next_day(av: Sim) -> None:
    av.controller.set_limits(calls_per_minute=None, calls_per_day=3)
    for _ in range(3):
        assert "Global Quote" in await av.body(function="GLOBAL_QUOTE", symbol="IBM", apikey="XXXXXXXXXXXXXXXX")
    for _ in range(2):
        refused = await av.body(function="TIME_SERIES_DAILY", symbol="IBM", apikey="XXXXXXXXXXXXXXXX")
        assert refused == sample("alphavantage_error_information_daily_limit_25")
    assert av.controller.usage.used_today("XXXXXXXXXXXXXXXX", av.clock()) == 3
    assert av.controller.stats.rate_limit_refusals == 2
    av.clock.set(datetime(2026, 3, 11, 15, 0, tzinfo=UTC))
    assert "Global Quote" in await av.body(function="GLOBAL_QUOTE", symbol="IBM", apikey="XXXXXXXXXXXXXXXX")
    response = await av.client.post("/_sim/limits", json={"calls_per_day": "many"})
    assert response.status_code == 422 and "calls_per_day" in response.json()["detail"]
