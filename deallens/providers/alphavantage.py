"""AlphaVantage over httpx: requests, and parsers for its response bodies.

AlphaVantage answers almost everything with HTTP 200 and reports failures inside the body:
`Note` or `Information` is a rate or quota limit (or a plan problem), `Error Message` an
invalid call (for one symbol: an unknown symbol), and an unknown symbol's GLOBAL_QUOTE is an
empty `{"Global Quote": {}}`. Numbers arrive as strings ("112.1300", "-0.5852%"): they are
parsed with Decimal and validated, and an impossible quote is rejected as malformed.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, field_validator, model_validator

from deallens.providers.errors import (
    MalformedResponse,
    ProviderConfigError,
    ProviderUnavailable,
    RateLimited,
    UnknownSymbol,
)

PROVIDER = "alphavantage"
# The key the local stand-in accepts when no real key is configured.
SIMULATED_KEY = "simulated"
# A per-minute limit clears within a minute; the free daily quota resets at midnight US/Eastern,
# so there is no point retrying sooner than an hour.
BURST_RETRY_SECONDS = 2.0
MINUTE_RETRY_SECONDS = 60.0
DAILY_RETRY_SECONDS = 3600.0


class Quote(BaseModel):
    """A GLOBAL_QUOTE, validated. Prices are Decimal, never float."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    open: Decimal
    high: Decimal
    low: Decimal
    price: Decimal
    volume: int
    latest_trading_day: dt.date
    previous_close: Decimal
    change: Decimal
    change_percent: Decimal

    # pydantic already rejects NaN and infinities for Decimal fields.
    @field_validator("open", "high", "low", "price", "previous_close", "volume")
    @classmethod
    def _non_negative(cls, value: Decimal | int) -> Decimal | int:
        if value < 0:
            raise ValueError("must not be negative")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Quote:
        if self.high < self.low:
            raise ValueError(f"high {self.high} is below low {self.low}")
        return self


_QUOTE_FIELDS = {
    "01. symbol": "symbol",
    "02. open": "open",
    "03. high": "high",
    "04. low": "low",
    "05. price": "price",
    "06. volume": "volume",
    "07. latest trading day": "latest_trading_day",
    "08. previous close": "previous_close",
    "09. change": "change",
    "10. change percent": "change_percent",
}


def _decimal(field: str, raw: object) -> Decimal:
    if not isinstance(raw, str):
        raise MalformedResponse(PROVIDER, f"{field} is {type(raw).__name__}, expected a numeric string")
    try:
        return Decimal(raw.strip().removesuffix("%"))
    except InvalidOperation:
        raise MalformedResponse(PROVIDER, f"{field} is not a number: {raw[:40]!r}") from None


def raise_for_error_body(body: Any, *, function: str, symbol: str | None = None) -> None:
    """Raise the typed error that an AlphaVantage HTTP-200 error body stands for, if it is one."""
    if not isinstance(body, dict):
        raise MalformedResponse(PROVIDER, f"{function} answered a JSON {type(body).__name__}, expected an object")
    for key in ("Note", "Information"):
        text = body.get(key)
        if isinstance(text, str):
            _raise_information(text, function)
    message = body.get("Error Message")
    if isinstance(message, str):
        lowered = message.lower()
        if "apikey" in lowered:
            raise ProviderConfigError(PROVIDER, "the API key is invalid or missing: set ALPHAVANTAGE_API_KEY")
        if "does not exist" in lowered:
            raise ProviderConfigError(PROVIDER, f"the API function {function} does not exist")
        if symbol is not None:
            raise UnknownSymbol(PROVIDER, symbol, f"{function} answered 'Invalid API call'")
        raise ProviderConfigError(PROVIDER, f"{function} answered 'Invalid API call': check its parameters")


def _raise_information(text: str, function: str) -> None:
    lowered = text.lower()
    if "premium endpoint" in lowered:
        raise ProviderConfigError(
            PROVIDER, f"{function} is a premium endpoint: set ALPHAVANTAGE_PREMIUM=false or use a premium key"
        )
    if "demo" in lowered and "api key" in lowered and "rate limit" not in lowered:
        raise ProviderConfigError(PROVIDER, "the demo API key only serves demo symbols: set ALPHAVANTAGE_API_KEY")
    # Order matters: the burst text also mentions "25 requests per day", and the legacy
    # per-minute Note also mentions "500 calls per day".
    if "per second" in lowered:
        raise RateLimited(PROVIDER, "burst rate limit reached (1 request per second)", retry_after=BURST_RETRY_SECONDS)
    if "per minute" in lowered:
        raise RateLimited(PROVIDER, "per-minute rate limit reached", retry_after=MINUTE_RETRY_SECONDS)
    if "per day" in lowered:
        raise RateLimited(PROVIDER, "daily request quota reached", retry_after=DAILY_RETRY_SECONDS, daily=True)
    # Any other Note/Information text: treat as a limit that clears soon.
    raise RateLimited(PROVIDER, "request rate limit reached", retry_after=MINUTE_RETRY_SECONDS)


def parse_global_quote(body: Any, symbol: str) -> Quote:
    """The validated quote in a GLOBAL_QUOTE body, or the typed error the body stands for."""
    raise_for_error_body(body, function="GLOBAL_QUOTE", symbol=symbol)
    raw = body.get("Global Quote")
    if not isinstance(raw, dict):
        raise MalformedResponse(PROVIDER, "GLOBAL_QUOTE body has no 'Global Quote' object")
    if not raw:
        raise UnknownSymbol(PROVIDER, symbol, "GLOBAL_QUOTE returned an empty quote")
    missing = [key for key in _QUOTE_FIELDS if key not in raw]
    if missing:
        raise MalformedResponse(PROVIDER, f"GLOBAL_QUOTE is missing {', '.join(missing)}")
    values: dict[str, object] = {}
    for key, name in _QUOTE_FIELDS.items():
        value = raw[key]
        if name in {"symbol", "latest_trading_day"}:
            values[name] = value
        elif name == "volume":
            values[name] = _volume(value)
        else:
            values[name] = _decimal(key, value)
    try:
        quote = Quote.model_validate(values)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "quote"
        message = first["msg"].removeprefix("Value error, ")
        raise MalformedResponse(PROVIDER, f"GLOBAL_QUOTE {where}: {message}") from None
    if quote.symbol.upper() != symbol.upper():
        raise MalformedResponse(PROVIDER, f"GLOBAL_QUOTE answered for {quote.symbol!r}, asked for {symbol!r}")
    return quote


def _volume(raw: object) -> int:
    if not isinstance(raw, str) or not raw.strip().isdigit():
        raise MalformedResponse(PROVIDER, f"06. volume is not a whole number: {str(raw)[:40]!r}")
    return int(raw)


class AlphaVantageClient:
    """The real HTTP client. With no key it sends a placeholder that only the stand-in accepts."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: SecretStr | None,
        timeout: float = 15.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._api_key = api_key or SecretStr(SIMULATED_KEY)
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            headers={"User-Agent": "deallens-workers/0.1"},
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def global_quote(self, symbol: str) -> Quote:
        body = await self._get({"function": "GLOBAL_QUOTE", "symbol": symbol})
        return parse_global_quote(body, symbol)

    async def _get(self, params: dict[str, str]) -> Any:
        function = params["function"]
        query = {**params, "apikey": self._api_key.get_secret_value()}
        try:
            response = await self._http.get("/query", params=query)
        except httpx.TimeoutException:
            raise ProviderUnavailable(PROVIDER, f"{function} timed out") from None
        except httpx.HTTPError as error:
            # The message of a transport error names the host, never the query string.
            raise ProviderUnavailable(PROVIDER, f"{function} failed: {type(error).__name__}") from None
        if response.status_code == 429:
            raise RateLimited(PROVIDER, f"{function} answered HTTP 429", retry_after=MINUTE_RETRY_SECONDS)
        if response.status_code >= 500:
            raise ProviderUnavailable(PROVIDER, f"{function} answered HTTP {response.status_code}")
        if response.status_code != 200:
            raise ProviderConfigError(PROVIDER, f"{function} answered HTTP {response.status_code}")
        try:
            return json.loads(response.content)
        except ValueError:
            raise MalformedResponse(PROVIDER, f"{function} answered a body that is not JSON") from None
