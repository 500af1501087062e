"""The GLOBAL_QUOTE parser against real AlphaVantage bodies (shared/provider-samples) and
generated garbage: every body is either a valid quote or a typed provider error."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deallens.providers.alphavantage import parse_global_quote
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
