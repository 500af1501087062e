"""The AlphaVantage parsers (GLOBAL_QUOTE, TIME_SERIES_DAILY, OVERVIEW, REALTIME_BULK_QUOTES)
against real bodies (tests/provider-samples) and generated garbage: every body is either a
valid result or a typed provider error."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deallens.providers.alphavantage import (
    DailySeries,
    parse_bulk_quotes,
    parse_daily_series,
    parse_global_quote,
    parse_overview,
)
from deallens.providers.errors import (
    MalformedResponse,
    ProviderConfigError,
    ProviderError,
    RateLimited,
    UnknownSymbol,
)
from tests.conftest import SAMPLES


def sample(name: str) -> Any:
    return json.loads((SAMPLES / f"{name}.json").read_text())


def test_msft_sample_parses_with_decimals() -> None:
    quote = parse_global_quote(sample("alphavantage_global_quote"), "MSFT")
    assert quote.price == Decimal("112.1300")
    assert quote.change_percent == Decimal("-0.5852")
    assert quote.volume == 29062853
    assert quote.latest_trading_day == dt.date(2018, 10, 5)
    assert quote.low <= quote.price <= quote.high


def test_ibm_sample_parses() -> None:
    body = sample("alphavantage_global_quote_ibm")
    quote = parse_global_quote(body, "IBM")
    assert quote.symbol == "IBM"
    assert str(quote.price) == body["Global Quote"]["05. price"]


def test_symbol_is_matched_case_insensitively() -> None:
    assert parse_global_quote(sample("alphavantage_global_quote"), "msft").symbol == "MSFT"


@pytest.mark.parametrize(
    ("name", "error", "retry_after", "text"),
    [
        ("alphavantage_error_note_rate_limit_legacy_5_per_min", RateLimited, 60.0, "per-minute"),
        ("alphavantage_error_information_burst_1_per_second", RateLimited, 2.0, "burst"),
        ("alphavantage_error_information_daily_limit_25", RateLimited, 3600.0, "daily"),
        ("alphavantage_error_information_daily_limit_25_variant", RateLimited, 3600.0, "daily"),
        ("alphavantage_error_information_premium_endpoint", ProviderConfigError, None, "premium endpoint"),
        ("alphavantage_error_information_demo_key", ProviderConfigError, None, "demo API key"),
        ("alphavantage_error_message_apikey_missing", ProviderConfigError, None, "ALPHAVANTAGE_API_KEY"),
        ("alphavantage_error_message_unknown_function", ProviderConfigError, None, "does not exist"),
        ("alphavantage_error_message_invalid_call_global_quote", UnknownSymbol, None, "unknown symbol 'MSFT'"),
        ("alphavantage_global_quote_unknown_symbol_empty", UnknownSymbol, None, "empty quote"),
    ],
)
def test_error_bodies_map_to_typed_errors(
    name: str, error: type[ProviderError], retry_after: float | None, text: str
) -> None:
    with pytest.raises(error, match=text) as raised:
        parse_global_quote(sample(name), "MSFT")
    if retry_after is not None:
        assert isinstance(raised.value, RateLimited)
        assert raised.value.retry_after == retry_after
        assert raised.value.daily == (retry_after == 3600.0)
    # Permanent errors end the symbol's work; rate limits are retried later.
    assert raised.value.permanent == (error in (ProviderConfigError, UnknownSymbol))


def _quote(**changes: str) -> dict[str, Any]:
    body = sample("alphavantage_global_quote")
    body["Global Quote"].update(changes)
    return body


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"05. price": "-1.0000"}, "GLOBAL_QUOTE price: must not be negative"),
        ({"03. high": "100.0000"}, "high 100.0000 is below low 110.6400"),
        ({"05. price": "abc"}, "05. price is not a number"),
        ({"05. price": "NaN"}, "price: Input should be a finite number"),
        ({"06. volume": "12.5"}, "06. volume is not a whole number"),
        ({"06. volume": "-3"}, "06. volume is not a whole number"),
        ({"07. latest trading day": "yesterday"}, "latest_trading_day"),
        ({"01. symbol": "AAPL"}, "answered for 'AAPL', asked for 'MSFT'"),
        # Numbers no column could hold: a corrupt body, not a database error retried forever.
        ({"05. price": "1e13", "03. high": "2e13"}, "beyond any possible price"),
        ({"10. change percent": "99999999999%"}, "beyond any possible move"),
    ],
)
def test_impossible_values_are_rejected_with_a_reason(changes: dict[str, str], reason: str) -> None:
    with pytest.raises(MalformedResponse, match=reason):
        parse_global_quote(_quote(**changes), "MSFT")


def test_missing_field_is_named() -> None:
    body = sample("alphavantage_global_quote")
    del body["Global Quote"]["08. previous close"]
    with pytest.raises(MalformedResponse, match="missing 08. previous close"):
        parse_global_quote(body, "MSFT")


@pytest.mark.parametrize("body", [[], "text", 3, None, {"Global Quote": []}, {"Meta Data": {}}])
def test_wrong_shapes_are_malformed(body: Any) -> None:
    with pytest.raises(MalformedResponse):
        parse_global_quote(body, "MSFT")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
_quote_values = st.fixed_dictionaries(
    {key: st.one_of(st.text(max_size=12), st.none(), st.integers(), st.floats()) for key in sample("alphavantage_global_quote")["Global Quote"]}
)


@settings(max_examples=300, deadline=None)
@given(body=_json)
def test_garbage_never_crashes(body: Any) -> None:
    try:
        parse_global_quote(body, "MSFT")
    except ProviderError:
        pass


@settings(max_examples=300, deadline=None)
@given(values=_quote_values)
def test_garbage_quote_fields_never_pass_as_valid(values: dict[str, Any]) -> None:
    """Random field values either fail typed, or form a quote that satisfies every invariant."""
    try:
        quote = parse_global_quote({"Global Quote": values}, "MSFT")
    except ProviderError:
        return
    assert quote.symbol.upper() == "MSFT"
    assert quote.price >= 0 and quote.low >= 0 and quote.high >= quote.low
    assert quote.volume >= 0


# ------------------------------------------------------------------ TIME_SERIES_DAILY


def test_compact_msft_sample_parses_oldest_first() -> None:
    series = parse_daily_series(sample("alphavantage_time_series_daily_compact"), "MSFT")
    assert series.symbol == "MSFT"
    assert series.output_size == "compact"
    # "3. Last Refreshed" is "2018-05-10 13:58:33" in this sample: only its date is kept.
    assert series.last_refreshed == dt.date(2018, 5, 10)
    assert [bar.date for bar in series.bars] == [dt.date(2018, 5, 8), dt.date(2018, 5, 9), dt.date(2018, 5, 10)]
    first = series.bars[0]
    assert (first.open, first.high, first.low, first.close) == (
        Decimal("95.8456"),
        Decimal("96.1600"),
        Decimal("95.0631"),
        Decimal("95.8100"),
    )
    assert first.volume == 23484589
    assert series.rejected == []


def test_compact_ibm_2025_sample_has_exactly_100_bars() -> None:
    body = sample("alphavantage_time_series_daily_compact_ibm_2025")
    series = parse_daily_series(body, "IBM")
    assert len(series.bars) == 100 and series.rejected == []
    assert series.bars[0].date == dt.date(2024, 11, 6)
    assert series.bars[-1].date == series.last_refreshed == dt.date(2025, 4, 2)
    assert all(a.date < b.date for a, b in zip(series.bars, series.bars[1:]))
    for bar in series.bars:
        raw = body["Time Series (Daily)"][bar.date.isoformat()]
        assert str(bar.close) == raw["4. close"] and bar.volume == int(raw["5. volume"])


def test_full_sample_parses() -> None:
    series = parse_daily_series(sample("alphavantage_time_series_daily_full_crazzyghost"), "IBM")
    assert series.output_size == "full"
    assert [bar.date for bar in series.bars] == [dt.date(2020, 5, 7), dt.date(2020, 5, 8)]
    assert series.bars[-1].close == Decimal("121.7900")


def _series(**bar_changes: Any) -> dict[str, Any]:
    """The MSFT compact sample with fields of its middle bar (2018-05-09) changed."""
    body = sample("alphavantage_time_series_daily_compact")
    body["Time Series (Daily)"]["2018-05-09"].update(bar_changes)
    return body


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"3. low": "-1.0000"}, "low -1.0000 is negative"),
        (
            {"1. open": "-2", "2. high": "-1", "3. low": "-3", "4. close": "-2"},
            "low -3 is negative",
        ),
        ({"2. high": "94.0000"}, "high 94.0000 is below low 95.0500"),
        ({"1. open": "98.0000"}, "open 98.0000 is outside low 95.0500 to high 96.9700"),
        ({"1. open": "-96.0100"}, "open -96.0100 is outside low 95.0500 to high 96.9700"),
        ({"4. close": "95.0000"}, "close 95.0000 is outside low 95.0500 to high 96.9700"),
        ({"5. volume": "-5"}, "volume -5 is negative"),
    ],
)
def test_impossible_bar_is_dropped_with_its_reason(
    changes: dict[str, str], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="deallens.providers.alphavantage"):
        series = parse_daily_series(_series(**changes), "MSFT")
    assert series.rejected == [f"2018-05-09: {reason}"]
    assert [bar.date for bar in series.bars] == [dt.date(2018, 5, 8), dt.date(2018, 5, 10)]
    assert [record.levelno for record in caplog.records] == [logging.WARNING]
    assert f"2018-05-09: {reason}" in caplog.records[0].getMessage()


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("2018-05-11", "dated after the last refresh 2018-05-10"),
        ("2018-02-30", "key is not a YYYY-MM-DD date"),
        ("20180504", "key is not a YYYY-MM-DD date"),
        ("2018-W18-5", "key is not a YYYY-MM-DD date"),
        ("not a date", "key is not a YYYY-MM-DD date"),
    ],
)
def test_bar_with_an_impossible_date_is_dropped(key: str, reason: str) -> None:
    body = sample("alphavantage_time_series_daily_compact")
    body["Time Series (Daily)"][key] = body["Time Series (Daily)"]["2018-05-08"]
    series = parse_daily_series(body, "MSFT")
    assert series.rejected == [f"{key}: {reason}"]
    assert len(series.bars) == 3


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"2. high": "abc"}, "2018-05-09 2. high is not a number: 'abc'"),
        ({"4. close": ""}, "2018-05-09 4. close is not a number"),
        ({"1. open": 97.46}, "2018-05-09 1. open is float, expected a numeric string"),
        ({"3. low": None}, "2018-05-09 3. low is NoneType"),
        ({"4. close": "NaN"}, "2018-05-09 4. close is not a finite number"),
        ({"2. high": "Infinity"}, "2018-05-09 2. high is not a finite number"),
        ({"5. volume": "12.5"}, "2018-05-09 5. volume is not a whole number"),
        ({"5. volume": "1e30"}, "2018-05-09 5. volume is not a whole number"),
        ({"5. volume": 27278881}, "2018-05-09 5. volume is int, expected a numeric string"),
    ],
)
def test_a_value_that_is_not_a_number_fails_the_whole_body(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(MalformedResponse, match=message):
        parse_daily_series(_series(**changes), "MSFT")


def test_a_bar_that_is_not_an_object_or_lacks_a_field_fails_the_whole_body() -> None:
    body = _series()
    del body["Time Series (Daily)"]["2018-05-09"]["5. volume"]
    with pytest.raises(MalformedResponse, match="2018-05-09 is missing 5. volume"):
        parse_daily_series(body, "MSFT")
    body["Time Series (Daily)"]["2018-05-09"] = ["97.46"]
    with pytest.raises(MalformedResponse, match="2018-05-09 is list, expected an object"):
        parse_daily_series(body, "MSFT")


def test_a_non_number_in_a_bar_with_a_bad_key_still_fails_the_whole_body() -> None:
    """Values are read before keys are judged: a corrupt body is never partly stored."""
    body = sample("alphavantage_time_series_daily_compact")
    body["Time Series (Daily)"]["garbage"] = {**body["Time Series (Daily)"]["2018-05-08"], "2. high": "?"}
    with pytest.raises(MalformedResponse, match="garbage 2. high is not a number"):
        parse_daily_series(body, "MSFT")


def test_empty_series_is_well_formed_and_empty() -> None:
    body = sample("alphavantage_time_series_daily_compact")
    body["Time Series (Daily)"] = {}
    series = parse_daily_series(body, "MSFT")
    assert series.bars == [] and series.rejected == []
    assert series.last_refreshed == dt.date(2018, 5, 10)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "no 'Meta Data' and no 'Time Series \\(Daily\\)' object"),
        ({"Meta Data": sample("alphavantage_time_series_daily_compact")["Meta Data"]}, "no 'Time Series \\(Daily\\)'"),
        ({"Time Series (Daily)": {}}, "no 'Meta Data' object"),
        ({"Meta Data": [], "Time Series (Daily)": {}}, "no 'Meta Data' object"),
        (sample("alphavantage_global_quote"), "no 'Meta Data' and no"),
        (sample("alphavantage_time_series_intraday_5min"), "no 'Time Series \\(Daily\\)'"),
    ],
)
def test_missing_parts_are_named(body: dict[str, Any], message: str) -> None:
    with pytest.raises(MalformedResponse, match=message):
        parse_daily_series(body, "MSFT")


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"2. Symbol": "AAPL"}, "TIME_SERIES_DAILY answered for 'AAPL', asked for 'MSFT'"),
        ({"3. Last Refreshed": "yesterday"}, "3. Last Refreshed is not a date: 'yesterday'"),
        ({"3. Last Refreshed": "2018-05-10T13:58:33"}, "3. Last Refreshed is not a date"),
        ({"4. Output Size": "Huge"}, "4. Output Size is unknown: 'Huge'"),
        ({"2. Symbol": None}, "Meta Data is missing 2. Symbol"),
    ],
)
def test_bad_meta_data_is_malformed(meta: dict[str, Any], message: str) -> None:
    body = sample("alphavantage_time_series_daily_compact")
    body["Meta Data"].update(meta)
    with pytest.raises(MalformedResponse, match=message):
        parse_daily_series(body, "MSFT")


def test_series_symbol_is_matched_case_insensitively() -> None:
    assert parse_daily_series(sample("alphavantage_time_series_daily_compact"), "msft").symbol == "MSFT"


# ------------------------------------------------------------------ error bodies for the new functions

_ERROR_BODIES = [
    ("alphavantage_error_note_rate_limit_legacy_5_per_min", RateLimited, "per-minute"),
    ("alphavantage_error_information_burst_1_per_second", RateLimited, "burst"),
    ("alphavantage_error_information_daily_limit_25", RateLimited, "daily"),
    ("alphavantage_error_information_daily_limit_25_variant", RateLimited, "daily"),
    ("alphavantage_error_information_premium_endpoint", ProviderConfigError, "premium endpoint"),
    ("alphavantage_error_information_demo_key", ProviderConfigError, "demo API key"),
    ("alphavantage_error_message_apikey_missing", ProviderConfigError, "ALPHAVANTAGE_API_KEY"),
    ("alphavantage_error_message_unknown_function", ProviderConfigError, "does not exist"),
    ("alphavantage_error_message_invalid_call_time_series_daily", UnknownSymbol, "unknown symbol 'MSFT'"),
]


@pytest.mark.parametrize(("name", "error", "text"), _ERROR_BODIES)
@pytest.mark.parametrize(
    ("parse", "function"),
    [(parse_daily_series, "TIME_SERIES_DAILY"), (parse_overview, "OVERVIEW")],
    ids=["daily", "overview"],
)
def test_error_bodies_map_to_typed_errors_for_series_and_overview(
    parse: Callable[[Any, str], object], function: str, name: str, error: type[ProviderError], text: str
) -> None:
    with pytest.raises(error, match=text) as raised:
        parse(sample(name), "MSFT")
    assert raised.value.permanent == (error in (ProviderConfigError, UnknownSymbol))
    if error is UnknownSymbol or "premium" in text:
        assert function in str(raised.value)


# ------------------------------------------------------------------ OVERVIEW


@pytest.mark.parametrize(
    ("name", "symbol", "latest_quarter", "market_cap"),
    [
        ("alphavantage_overview", "IBM", dt.date(2020, 6, 30), 114234572800),
        ("alphavantage_overview_2021", "IBM", dt.date(2021, 9, 30), 106626228000),
        ("alphavantage_overview_aapl_2025", "AAPL", dt.date(2024, 12, 31), 3352782701000),
        ("alphavantage_overview_aame_2025_none_dash_values", "AAME", dt.date(2024, 9, 30), 32639700),
    ],
)
def test_overview_samples_parse(name: str, symbol: str, latest_quarter: dt.date, market_cap: int) -> None:
    body = sample(name)
    overview = parse_overview(body, symbol)
    assert overview.symbol == symbol
    assert overview.name == body["Name"] and overview.description == body["Description"]
    assert (overview.exchange, overview.currency, overview.country) == (body["Exchange"], "USD", "USA")
    assert (overview.sector, overview.industry) == (body["Sector"], body["Industry"])
    assert overview.latest_quarter == latest_quarter
    assert overview.market_cap == market_cap
    assert overview.shares_outstanding == int(body["SharesOutstanding"])
    assert overview.week52_high == Decimal(body["52WeekHigh"]) and overview.week52_low == Decimal(body["52WeekLow"])
    assert overview.fiscal_year_end == body["FiscalYearEnd"]
    assert overview.raw == body


def test_overview_ibm_2020_values_are_decimals() -> None:
    overview = parse_overview(sample("alphavantage_overview"), "IBM")
    assert overview.pe_ratio == Decimal("14.1327")
    assert overview.peg_ratio == Decimal("8.7525")
    assert overview.book_value == Decimal("23.076")
    assert overview.dividend_yield == Decimal("0.0529")
    assert overview.eps == Decimal("8.811")
    assert overview.beta == Decimal("1.2071")
    assert overview.analyst_target_price == Decimal("135.19")


def test_overview_placeholders_become_none_and_zero_stays_zero() -> None:
    overview = parse_overview(sample("alphavantage_overview_aame_2025_none_dash_values"), "AAME")
    assert overview.pe_ratio is None  # "None"
    assert overview.analyst_target_price is None  # "None"
    assert overview.peg_ratio == Decimal("0")  # "0" is a value
    assert overview.eps == Decimal("-0.36")
    assert overview.raw["PERatio"] == "None" and overview.raw["TrailingPE"] == "-"


@pytest.mark.parametrize("placeholder", ["None", "-", "", " "])
@pytest.mark.parametrize("key", ["Beta", "MarketCapitalization", "LatestQuarter", "Sector", "FiscalYearEnd"])
def test_every_placeholder_is_none_in_every_kind_of_field(key: str, placeholder: str) -> None:
    body = sample("alphavantage_overview_aapl_2025")
    body[key] = placeholder
    overview = parse_overview(body, "AAPL")
    attribute = {
        "Beta": "beta",
        "MarketCapitalization": "market_cap",
        "LatestQuarter": "latest_quarter",
        "Sector": "sector",
        "FiscalYearEnd": "fiscal_year_end",
    }[key]
    assert getattr(overview, attribute) is None
    assert overview.raw[key] == placeholder


def test_absent_optional_fields_are_none() -> None:
    body = {"Symbol": "AAPL", "Name": "Apple Inc"}
    overview = parse_overview(body, "AAPL")
    assert overview.market_cap is None and overview.sector is None and overview.latest_quarter is None


def test_empty_overview_is_an_unknown_symbol() -> None:
    with pytest.raises(UnknownSymbol, match="unknown symbol 'ZZZZ': OVERVIEW returned an empty object"):
        parse_overview({}, "ZZZZ")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"PERatio": "n/a"}, "OVERVIEW PERatio is not a number: 'n/a'"),
        ({"Beta": "NaN"}, "OVERVIEW Beta is not a finite number"),
        ({"MarketCapitalization": "3.5e12x"}, "OVERVIEW MarketCapitalization is not a number"),
        ({"SharesOutstanding": "1.5"}, "OVERVIEW SharesOutstanding is not a whole number"),
        ({"LatestQuarter": "Q4 2024"}, "OVERVIEW LatestQuarter is not a YYYY-MM-DD date: 'Q4 2024'"),
        ({"EPS": 6.31}, "OVERVIEW EPS is float, expected a string"),
        ({"Symbol": "MSFT"}, "OVERVIEW answered for 'MSFT', asked for 'AAPL'"),
        ({"Name": "None"}, "OVERVIEW is missing Name"),
    ],
)
def test_bad_overview_values_are_malformed(changes: dict[str, Any], message: str) -> None:
    body = sample("alphavantage_overview_aapl_2025")
    body.update(changes)
    with pytest.raises(MalformedResponse, match=message):
        parse_overview(body, "AAPL")


@pytest.mark.parametrize("body", [[], "text", None, {"Global Quote": {}}, {"Name": "Apple Inc"}])
def test_wrong_overview_shapes_are_malformed(body: Any) -> None:
    with pytest.raises(MalformedResponse):
        parse_overview(body, "AAPL")


# ------------------------------------------------------------------ REALTIME_BULK_QUOTES

EASTERN = ZoneInfo("America/New_York")


def test_bulk_demo_sample_parses() -> None:
    """The demo key's body (with its "message" about artificial data) parses like a premium one."""
    bulk = parse_bulk_quotes(sample("alphavantage_realtime_bulk_quotes_demo"), ["MSFT", "aapl", "IBM", "NVDA"])
    assert [quote.symbol for quote in bulk.quotes] == ["MSFT", "AAPL", "IBM"]
    assert bulk.unknown == ["NVDA"]
    msft = bulk.quotes[0]
    assert (msft.open, msft.high, msft.low, msft.price) == (
        Decimal("417.61"),
        Decimal("419.649"),
        Decimal("416.2601"),
        Decimal("418.16"),
    )
    assert msft.volume == 17145307
    assert (msft.previous_close, msft.change, msft.change_percent) == (
        Decimal("416.72"),
        Decimal("1.44"),
        Decimal("0.3456"),
    )
    # A bulk quote has a moment, not a trading day.
    assert msft.latest_trading_day is None
    assert msft.quoted_at == dt.datetime(2024, 10, 18, 19, 59, 55, 291000, tzinfo=EASTERN)
    assert msft.quoted_at.utcoffset() == dt.timedelta(hours=-4)


def test_bulk_premium_information_is_a_config_error() -> None:
    with pytest.raises(ProviderConfigError, match="REALTIME_BULK_QUOTES is a premium endpoint"):
        parse_bulk_quotes(sample("alphavantage_error_information_premium_endpoint"), ["MSFT"])


def _bulk(**changes: Any) -> dict[str, Any]:
    body = sample("alphavantage_realtime_bulk_quotes_demo")
    body["data"][0].update(changes)
    return body


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"endpoint": "Realtime Bulk Quotes"}, "no 'data' list"),
        (_bulk(close="abc"), "REALTIME_BULK_QUOTES MSFT close is not a number"),
        (_bulk(high="400"), "REALTIME_BULK_QUOTES MSFT quote: high 400 is below low 416.2601"),
        (_bulk(close="-1"), "REALTIME_BULK_QUOTES MSFT price: must not be negative"),
        (_bulk(volume="1.5"), "REALTIME_BULK_QUOTES MSFT volume is not a whole number"),
        (_bulk(timestamp="late"), "REALTIME_BULK_QUOTES MSFT timestamp is not a timestamp"),
        (_bulk(symbol=None), "an entry without a symbol"),
        ({"data": ["MSFT"]}, "data holds a str"),
    ],
)
def test_bad_bulk_bodies_are_malformed(body: dict[str, Any], message: str) -> None:
    with pytest.raises(MalformedResponse, match=message):
        parse_bulk_quotes(body, ["MSFT", "AAPL", "IBM"])


def test_bulk_missing_field_is_named() -> None:
    body = _bulk()
    del body["data"][0]["previous_close"]
    with pytest.raises(MalformedResponse, match="REALTIME_BULK_QUOTES MSFT is missing previous_close"):
        parse_bulk_quotes(body, ["MSFT", "AAPL", "IBM"])


def test_bulk_quote_for_a_symbol_not_requested_is_malformed() -> None:
    with pytest.raises(MalformedResponse, match="answered for AAPL, IBM, not requested"):
        parse_bulk_quotes(sample("alphavantage_realtime_bulk_quotes_demo"), ["MSFT"])


# ------------------------------------------------------------------ generated garbage

_PARSERS: list[Callable[[Any], object]] = [
    lambda body: parse_daily_series(body, "MSFT"),
    lambda body: parse_overview(body, "MSFT"),
    lambda body: parse_bulk_quotes(body, ["MSFT"]),
]


@settings(max_examples=200, deadline=None)
@given(body=_json, parser=st.sampled_from(_PARSERS))
def test_garbage_bodies_never_crash_the_new_parsers(body: Any, parser: Callable[[Any], object]) -> None:
    try:
        parser(body)
    except ProviderError:
        pass


_BAR_KEYS = ("1. open", "2. high", "3. low", "4. close", "5. volume")
_number_text = st.one_of(st.integers(-3, 12).map(str), st.decimals(min_value=-2, max_value=12, places=2).map(str))
_garbage_cell = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", "NaN", "-", "None", "1e999999999", "12%", " 7 "]),
    st.text(max_size=8),
    st.none(),
    st.integers(),
    st.floats(),
)
_bar = st.fixed_dictionaries(
    {key: _number_text for key in _BAR_KEYS[:4]} | {"5. volume": st.integers(-3, 10**6).map(str)}
)
_garbled_bar = st.builds(lambda bar, key, cell: {**bar, key: cell}, _bar, st.sampled_from(_BAR_KEYS), _garbage_cell)
_bar_value = st.one_of(_bar, _garbled_bar, st.none(), st.text(max_size=4), st.lists(_garbage_cell, max_size=2))
_day_key = st.one_of(
    st.dates(min_value=dt.date(2018, 4, 25), max_value=dt.date(2018, 5, 15)).map(dt.date.isoformat),
    st.text(max_size=12),
)
_META = sample("alphavantage_time_series_daily_compact")["Meta Data"]


def _series_body(bars: dict[str, Any], last_refreshed: str) -> dict[str, Any]:
    return {"Meta Data": {**_META, "3. Last Refreshed": last_refreshed}, "Time Series (Daily)": bars}


def _assert_invariants(series: DailySeries, bars_in_body: int) -> None:
    assert len(series.bars) + len(series.rejected) == bars_in_body
    for bar in series.bars:
        assert bar.low >= 0
        assert bar.low <= bar.open <= bar.high and bar.low <= bar.close <= bar.high
        assert bar.volume >= 0
        assert bar.date <= series.last_refreshed
    assert all(a.date < b.date for a, b in zip(series.bars, series.bars[1:]))


@settings(max_examples=300, deadline=None)
@given(
    bars=st.one_of(st.dictionaries(_day_key, _bar, max_size=6), st.dictionaries(_day_key, _bar_value, max_size=6)),
    last_refreshed=st.sampled_from(["2018-05-10", "2018-05-10 13:58:33", "2018-05-31", "garbage"]),
)
def test_garbage_bar_values_fail_typed_or_satisfy_every_invariant(bars: dict[str, Any], last_refreshed: str) -> None:
    try:
        series = parse_daily_series(_series_body(bars, last_refreshed), "MSFT")
    except ProviderError:
        return
    _assert_invariants(series, len(bars))


@settings(max_examples=200, deadline=None)
@given(
    bars=st.dictionaries(
        st.dates(min_value=dt.date(2018, 4, 1), max_value=dt.date(2018, 5, 20)).map(dt.date.isoformat),
        st.fixed_dictionaries(
            {key: st.decimals(min_value=-1, max_value=10, places=1).map(str) for key in _BAR_KEYS[:4]}
            | {"5. volume": st.integers(-2, 1000).map(str)}
        ),
        max_size=8,
    )
)
def test_numeric_bars_are_kept_exactly_when_possible(bars: dict[str, Any]) -> None:
    """Every value is a number here, so the body parses; a bar is kept iff it is possible."""
    series = parse_daily_series(_series_body(bars, "2018-05-10"), "MSFT")
    _assert_invariants(series, len(bars))
    kept = {bar.date.isoformat() for bar in series.bars}
    for key, raw in bars.items():
        low, high = Decimal(raw["3. low"]), Decimal(raw["2. high"])
        possible = (
            key <= "2018-05-10"
            and 0 <= low <= high
            and low <= Decimal(raw["1. open"]) <= high
            and low <= Decimal(raw["4. close"]) <= high
            and int(raw["5. volume"]) >= 0
        )
        assert (key in kept) == possible
