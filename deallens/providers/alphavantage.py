"""AlphaVantage over httpx: requests, and parsers for its response bodies.

AlphaVantage answers almost everything with HTTP 200 and reports failures inside the body:
`Note` or `Information` is a rate or quota limit (or a plan problem), `Error Message` an
invalid call (for one symbol: an unknown symbol), and an unknown symbol's GLOBAL_QUOTE is an
empty `{"Global Quote": {}}` (its OVERVIEW an empty `{}`). Numbers arrive as strings
("112.1300", "-0.5852%"): they are parsed with Decimal and validated, and an impossible quote
is rejected as malformed. A daily series is judged bar by bar: a value that is not a number
makes the whole body malformed, an impossible bar is dropped with a reason.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, Literal
from zoneinfo import ZoneInfo

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, field_validator, model_validator

from deallens.providers.bounded import MIB, BodyLimits, get_bounded, retry_after_seconds
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
# The largest legitimate answer is a full TIME_SERIES_DAILY (25 years of bars: about 1.2 MB
# from the stand-in, ~2 MB from the real service); 16 MiB leaves room and still protects a worker.
DEFAULT_MAX_BODY_BYTES = 16 * MIB
# The whole exchange, headers to last byte (httpx's own timeout is per read).
DEFAULT_DEADLINE_SECONDS = 60.0
# REALTIME_BULK_QUOTES takes at most this many comma-separated symbols per call.
BULK_QUOTES_MAX_SYMBOLS = 100
# AlphaVantage labels its timestamps in US/Eastern (every series' "5. Time Zone").
_EASTERN = ZoneInfo("America/New_York")
# What OVERVIEW puts where it has no value ("0" is a real zero and stays one).
_PLACEHOLDERS = frozenset({"None", "-", ""})
# Volumes, share counts and market caps are stored as bigint.
_MAX_WHOLE = Decimal(2**63 - 1)
# Decimal exponents beyond this are no price, volume or ratio (and overflow arithmetic).
_MAX_EXPONENT = 40
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# "3. Last Refreshed" is a date, or a date and time when the series was taken intraday.
_LAST_REFRESHED = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})(?: [0-9]{2}:[0-9]{2}:[0-9]{2})?")

logger = logging.getLogger(__name__)


# What the columns hold (numeric(18,6), numeric(12,6), bigint): a larger value is not a
# real price but a corrupt body, and must fail as malformed here rather than as a database
# error retried forever.
MAX_PRICE = Decimal("1e12")
MAX_PERCENT = Decimal("1e6")
MAX_VOLUME = 2**63 - 1


def _storable_price(value: Decimal) -> Decimal:
    if abs(value) >= MAX_PRICE:
        raise ValueError(f"{value} is beyond any possible price")
    return value


class Quote(BaseModel):
    """A GLOBAL_QUOTE or one REALTIME_BULK_QUOTES entry, validated. Prices are Decimal, never float.

    `latest_trading_day` is None for bulk quotes: they carry a timestamp, not a trading day,
    and a pre-market, weekend or holiday timestamp does not name the session the prices belong
    to. `quoted_at` is that timestamp; GLOBAL_QUOTE reports none.
    """

    model_config = ConfigDict(frozen=True)

    symbol: str
    open: Decimal
    high: Decimal
    low: Decimal
    price: Decimal
    volume: int
    latest_trading_day: dt.date | None
    previous_close: Decimal
    change: Decimal
    change_percent: Decimal
    quoted_at: dt.datetime | None = None

    # pydantic already rejects NaN and infinities for Decimal fields.
    @field_validator("open", "high", "low", "price", "previous_close", "volume")
    @classmethod
    def _non_negative(cls, value: Decimal | int) -> Decimal | int:
        if value < 0:
            raise ValueError("must not be negative")
        return value

    @field_validator("open", "high", "low", "price", "previous_close", "change")
    @classmethod
    def _price_in_range(cls, value: Decimal) -> Decimal:
        return _storable_price(value)

    @field_validator("change_percent")
    @classmethod
    def _percent_in_range(cls, value: Decimal) -> Decimal:
        if abs(value) >= MAX_PERCENT:
            raise ValueError(f"{value}% is beyond any possible move")
        return value

    @field_validator("volume")
    @classmethod
    def _volume_in_range(cls, value: int) -> int:
        if value > MAX_VOLUME:
            raise ValueError(f"{value} is beyond any possible volume")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Quote:
        if self.high < self.low:
            raise ValueError(f"high {self.high} is below low {self.low}")
        return self


class BulkQuotes(BaseModel):
    """A REALTIME_BULK_QUOTES answer: the quotes, and the requested symbols it had no data for."""

    model_config = ConfigDict(frozen=True)

    quotes: list[Quote]
    unknown: list[str]


class DailyBar(BaseModel):
    """One TIME_SERIES_DAILY bar. Its validator is the single statement of what a possible bar is."""

    model_config = ConfigDict(frozen=True)

    date: dt.date
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int

    @model_validator(mode="after")
    def _possible(self) -> DailyBar:
        # low >= 0 and open, close within [low, high] leave no price negative.
        if self.high >= MAX_PRICE:
            raise ValueError(f"high {self.high} is beyond any possible price")
        if self.volume > MAX_VOLUME:
            raise ValueError(f"volume {self.volume} is beyond any possible volume")
        if self.low < 0:
            raise ValueError(f"low {self.low} is negative")
        if self.high < self.low:
            raise ValueError(f"high {self.high} is below low {self.low}")
        for name, value in (("open", self.open), ("close", self.close)):
            if not self.low <= value <= self.high:
                raise ValueError(f"{name} {value} is outside low {self.low} to high {self.high}")
        if self.volume < 0:
            raise ValueError(f"volume {self.volume} is negative")
        return self


class DailySeries(BaseModel):
    """A TIME_SERIES_DAILY answer: possible bars oldest first, and why each other bar was dropped.

    Empty `bars` means "nothing new", never "the history is gone": callers must not delete
    stored bars because of it.
    """

    model_config = ConfigDict(frozen=True)

    symbol: str
    last_refreshed: dt.date
    output_size: Literal["compact", "full"]
    bars: list[DailyBar]
    rejected: list[str]


class Overview(BaseModel):
    """The OVERVIEW fields the app uses, parsed; a placeholder ("None", "-", "") is None.

    `raw` keeps every field exactly as received, for companies.fundamentals.
    """

    model_config = ConfigDict(frozen=True)

    symbol: str
    name: str
    description: str | None
    exchange: str | None
    currency: str | None
    country: str | None
    sector: str | None
    industry: str | None
    market_cap: int | None
    pe_ratio: Decimal | None
    peg_ratio: Decimal | None
    book_value: Decimal | None
    dividend_yield: Decimal | None
    eps: Decimal | None
    beta: Decimal | None
    week52_high: Decimal | None
    week52_low: Decimal | None
    analyst_target_price: Decimal | None
    fiscal_year_end: str | None
    latest_quarter: dt.date | None
    shares_outstanding: int | None
    raw: dict[str, str]


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
    """The one reading of AlphaVantage's numeric strings ("112.1300", "-0.5852%") as Decimal."""
    if not isinstance(raw, str):
        raise MalformedResponse(PROVIDER, f"{field} is {type(raw).__name__}, expected a numeric string")
    try:
        value = Decimal(raw.strip().removesuffix("%"))
    except InvalidOperation:
        raise MalformedResponse(PROVIDER, f"{field} is not a number: {raw[:40]!r}") from None
    # "1e999999999" is a Decimal, but any arithmetic on it overflows: no real figure is that
    # large (or that small and not zero), so it is refused here, naming the field.
    if value.is_finite() and value != 0 and not -_MAX_EXPONENT <= value.adjusted() <= _MAX_EXPONENT:
        raise MalformedResponse(PROVIDER, f"{field} is out of any possible range: {raw[:40]!r}")
    return value


def _finite_decimal(field: str, raw: object) -> Decimal:
    """`_decimal`, refusing "NaN" and "Infinity" here rather than in a model, so the message names the field."""
    value = _decimal(field, raw)
    if not value.is_finite():
        raise MalformedResponse(PROVIDER, f"{field} is not a finite number: {str(raw)[:40]!r}")
    return value


def _whole_number(field: str, raw: object) -> int:
    """A count (volume, shares, market cap) that fits a bigint; its sign is for the caller to judge.

    The bound is checked before int() so that "1e999999999" cannot build a huge integer.
    """
    value = _finite_decimal(field, raw)
    if not -_MAX_WHOLE <= value <= _MAX_WHOLE or value != value.to_integral_value():
        raise MalformedResponse(PROVIDER, f"{field} is not a whole number: {str(raw)[:40]!r}")
    return int(value)


def _iso_date(raw: object) -> dt.date | None:
    """`raw` if it is exactly a YYYY-MM-DD date, else None (fromisoformat alone also takes "20240105")."""
    if not isinstance(raw, str) or not _ISO_DATE.fullmatch(raw):
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        return None


def _date(field: str, raw: object) -> dt.date:
    day = _iso_date(raw)
    if day is None:
        raise MalformedResponse(PROVIDER, f"{field} is not a YYYY-MM-DD date: {str(raw)[:40]!r}")
    return day


def _validated_quote(where: str, values: dict[str, object]) -> Quote:
    try:
        return Quote.model_validate(values)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "quote"
        message = first["msg"].removeprefix("Value error, ")
        raise MalformedResponse(PROVIDER, _line(f"{where} {field}: {message}")) from None


def _line(text: str, limit: int = 240) -> str:
    """One bounded line for an error message: a hostile body may put anything in a value it quotes."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


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
        if name == "symbol":
            values[name] = value
        elif name == "latest_trading_day":
            # Parsed here: the model also takes None, which only a bulk quote may carry.
            values[name] = _date("GLOBAL_QUOTE latest_trading_day", value)
        elif name == "volume":
            values[name] = _volume(value)
        else:
            values[name] = _decimal(key, value)
    quote = _validated_quote("GLOBAL_QUOTE", values)
    if quote.symbol.upper() != symbol.upper():
        raise MalformedResponse(PROVIDER, f"GLOBAL_QUOTE answered for {quote.symbol[:16]!r}, asked for {symbol!r}")
    return quote


def _volume(raw: object) -> int:
    # isdigit() also takes other scripts' digits and any length: int() of those is refused or huge.
    if not isinstance(raw, str) or not raw.strip().isascii() or not raw.strip().isdigit() or len(raw.strip()) > 19:
        raise MalformedResponse(PROVIDER, f"06. volume is not a whole number: {str(raw)[:40]!r}")
    return int(raw)


_BULK_DECIMALS = {
    "open": "open",
    "high": "high",
    "low": "low",
    "close": "price",
    "previous_close": "previous_close",
    "change": "change",
    "change_percent": "change_percent",
}


def parse_bulk_quotes(body: Any, symbols: list[str]) -> BulkQuotes:
    """The validated quotes in a REALTIME_BULK_QUOTES body, and which of `symbols` it left out.

    A symbol the provider does not know is simply absent from "data". One impossible entry
    makes the whole body malformed, as for GLOBAL_QUOTE. The demo key's body (with its
    "message" about artificial data) parses like any other.
    """
    raise_for_error_body(body, function="REALTIME_BULK_QUOTES")
    data = body.get("data")
    if not isinstance(data, list):
        raise MalformedResponse(PROVIDER, "REALTIME_BULK_QUOTES body has no 'data' list")
    quotes = [_bulk_quote(entry) for entry in data]
    requested = {symbol.upper() for symbol in symbols}
    unexpected = [quote.symbol for quote in quotes if quote.symbol.upper() not in requested]
    if unexpected:
        named = _line(", ".join(symbol[:16] for symbol in unexpected[:5]), 120)
        raise MalformedResponse(PROVIDER, f"REALTIME_BULK_QUOTES answered for {named}, not requested")
    answered = {quote.symbol.upper() for quote in quotes}
    return BulkQuotes(quotes=quotes, unknown=[symbol for symbol in symbols if symbol.upper() not in answered])


def _bulk_quote(entry: object) -> Quote:
    if not isinstance(entry, dict):
        kind = type(entry).__name__
        raise MalformedResponse(PROVIDER, f"REALTIME_BULK_QUOTES data holds a {kind}, expected an object")
    symbol = entry.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        raise MalformedResponse(PROVIDER, "REALTIME_BULK_QUOTES has an entry without a symbol")
    where = f"REALTIME_BULK_QUOTES {symbol[:16]}"
    missing = [key for key in (*_BULK_DECIMALS, "volume", "timestamp") if key not in entry]
    if missing:
        raise MalformedResponse(PROVIDER, f"{where} is missing {', '.join(missing)}")
    values: dict[str, object] = {
        name: _finite_decimal(f"{where} {key}", entry[key]) for key, name in _BULK_DECIMALS.items()
    }
    values.update(
        symbol=symbol,
        volume=_whole_number(f"{where} volume", entry["volume"]),
        latest_trading_day=None,
        quoted_at=_eastern_timestamp(f"{where} timestamp", entry["timestamp"]),
    )
    return _validated_quote(where, values)


def _eastern_timestamp(field: str, raw: object) -> dt.datetime:
    """"2024-10-18 19:59:55.291" in US/Eastern, AlphaVantage's zone (that sample ends at 20:00 ET post-market)."""
    if not isinstance(raw, str):
        raise MalformedResponse(PROVIDER, f"{field} is {type(raw).__name__}, expected a timestamp string")
    try:
        moment = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise MalformedResponse(PROVIDER, f"{field} is not a timestamp: {raw[:40]!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=_EASTERN)


_BAR_PRICES = {"1. open": "open", "2. high": "high", "3. low": "low", "4. close": "close"}
_BAR_VOLUME = "5. volume"
_META_KEYS = ("2. Symbol", "3. Last Refreshed", "4. Output Size")
_OUTPUT_SIZES: dict[str, Literal["compact", "full"]] = {"compact": "compact", "full size": "full"}


def parse_daily_series(body: Any, symbol: str) -> DailySeries:
    """The bars of a TIME_SERIES_DAILY body, oldest first, or the typed error the body stands for.

    Every value is read before any bar is judged, so one value that is not a number makes the
    whole body malformed: nothing is stored from a corrupt body. A bar whose numbers read but
    cannot be (see DailyBar), dated after the last refresh or keyed by a non-date is dropped
    with a reason in `rejected`; the rest of the series stands.
    """
    raise_for_error_body(body, function="TIME_SERIES_DAILY", symbol=symbol)
    missing = [repr(key) for key in ("Meta Data", "Time Series (Daily)") if not isinstance(body.get(key), dict)]
    if missing:
        raise MalformedResponse(PROVIDER, f"TIME_SERIES_DAILY body has no {' and no '.join(missing)} object")
    answered, last_refreshed, output_size = _series_meta(body["Meta Data"], symbol)
    numbers = {str(key): _bar_numbers(str(key), raw) for key, raw in body["Time Series (Daily)"].items()}
    bars: list[DailyBar] = []
    rejected: list[str] = []
    # A key that fullmatches YYYY-MM-DD sorts like its date, so the bars come out oldest first.
    for key, values in sorted(numbers.items()):
        try:
            bars.append(_daily_bar(key, values, last_refreshed))
        except ValueError as error:
            rejected.append(f"{key[:40]}: {error}")
            logger.warning("TIME_SERIES_DAILY %s: dropped the bar %s", answered, rejected[-1])
    return DailySeries(
        symbol=answered, last_refreshed=last_refreshed, output_size=output_size, bars=bars, rejected=rejected
    )


def _series_meta(meta: dict[str, Any], symbol: str) -> tuple[str, dt.date, Literal["compact", "full"]]:
    """Symbol, last refresh date and output size from "Meta Data"."""
    missing = [key for key in _META_KEYS if not isinstance(meta.get(key), str)]
    if missing:
        raise MalformedResponse(PROVIDER, f"TIME_SERIES_DAILY Meta Data is missing {', '.join(missing)}")
    answered: str = meta["2. Symbol"]
    if answered.upper() != symbol.upper():
        raise MalformedResponse(PROVIDER, f"TIME_SERIES_DAILY answered for {answered[:16]!r}, asked for {symbol!r}")
    refreshed = meta["3. Last Refreshed"]
    match = _LAST_REFRESHED.fullmatch(refreshed)
    last_refreshed = _iso_date(match[1]) if match else None
    if last_refreshed is None:
        raise MalformedResponse(PROVIDER, f"TIME_SERIES_DAILY 3. Last Refreshed is not a date: {refreshed[:40]!r}")
    size = meta["4. Output Size"]
    output_size = _OUTPUT_SIZES.get(size.strip().lower())
    if output_size is None:
        raise MalformedResponse(PROVIDER, f"TIME_SERIES_DAILY 4. Output Size is unknown: {size[:40]!r}")
    return answered, last_refreshed, output_size


def _bar_numbers(key: str, raw: object) -> dict[str, Decimal | int]:
    """The five numbers of the bar under `key`; MalformedResponse if any is not a number."""
    where = f"TIME_SERIES_DAILY {key[:40]}"
    if not isinstance(raw, dict):
        raise MalformedResponse(PROVIDER, f"{where} is {type(raw).__name__}, expected an object")
    missing = [field for field in (*_BAR_PRICES, _BAR_VOLUME) if field not in raw]
    if missing:
        raise MalformedResponse(PROVIDER, f"{where} is missing {', '.join(missing)}")
    numbers: dict[str, Decimal | int] = {
        name: _finite_decimal(f"{where} {field}", raw[field]) for field, name in _BAR_PRICES.items()
    }
    numbers["volume"] = _whole_number(f"{where} {_BAR_VOLUME}", raw[_BAR_VOLUME])
    return numbers


def _daily_bar(key: str, numbers: dict[str, Decimal | int], last_refreshed: dt.date) -> DailyBar:
    """The bar under `key`, or ValueError saying why it cannot be one."""
    day = _iso_date(key)
    if day is None:
        raise ValueError("key is not a YYYY-MM-DD date")
    if day > last_refreshed:
        raise ValueError(f"dated after the last refresh {last_refreshed}")
    try:
        return DailyBar.model_validate({"date": day, **numbers})
    except ValidationError as error:
        raise ValueError(error.errors()[0]["msg"].removeprefix("Value error, ")) from None


def _text(field: str, raw: str) -> str:
    """A text field as received; it takes `field` only to share the signature of the other readers."""
    return raw


# OVERVIEW field -> (Overview attribute, reader); an absent field or a placeholder is None.
_OVERVIEW_FIELDS: dict[str, tuple[str, Callable[[str, str], object]]] = {
    "Description": ("description", _text),
    "Exchange": ("exchange", _text),
    "Currency": ("currency", _text),
    "Country": ("country", _text),
    "Sector": ("sector", _text),
    "Industry": ("industry", _text),
    "MarketCapitalization": ("market_cap", _whole_number),
    "PERatio": ("pe_ratio", _finite_decimal),
    "PEGRatio": ("peg_ratio", _finite_decimal),
    "BookValue": ("book_value", _finite_decimal),
    "DividendYield": ("dividend_yield", _finite_decimal),
    "EPS": ("eps", _finite_decimal),
    "Beta": ("beta", _finite_decimal),
    "52WeekHigh": ("week52_high", _finite_decimal),
    "52WeekLow": ("week52_low", _finite_decimal),
    "AnalystTargetPrice": ("analyst_target_price", _finite_decimal),
    "FiscalYearEnd": ("fiscal_year_end", _text),
    "LatestQuarter": ("latest_quarter", _date),
    "SharesOutstanding": ("shares_outstanding", _whole_number),
}


def parse_overview(body: Any, symbol: str) -> Overview:
    """The company overview in an OVERVIEW body, or the typed error the body stands for.

    AlphaVantage answers `{}` for a symbol it does not know. A value that is neither a
    placeholder nor readable in its field's type makes the body malformed.
    """
    raise_for_error_body(body, function="OVERVIEW", symbol=symbol)
    if not body:
        raise UnknownSymbol(PROVIDER, symbol, "OVERVIEW returned an empty object")
    for key, value in body.items():
        if not isinstance(value, str):
            raise MalformedResponse(PROVIDER, _line(f"OVERVIEW {str(key)[:40]} is {type(value).__name__}, expected a string"))
    raw: dict[str, str] = body
    missing = [key for key in ("Symbol", "Name") if raw.get(key, "").strip() in _PLACEHOLDERS]
    if missing:
        raise MalformedResponse(PROVIDER, f"OVERVIEW is missing {', '.join(missing)}")
    if raw["Symbol"].upper() != symbol.upper():
        raise MalformedResponse(PROVIDER, f"OVERVIEW answered for {raw['Symbol'][:16]!r}, asked for {symbol!r}")
    values: dict[str, object] = {"symbol": raw["Symbol"], "name": raw["Name"], "raw": dict(raw)}
    for key, (name, read) in _OVERVIEW_FIELDS.items():
        text = raw.get(key, "")
        values[name] = None if text.strip() in _PLACEHOLDERS else read(f"OVERVIEW {key}", text)
    return Overview.model_validate(values)


class AlphaVantageClient:
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
        self._api_key = api_key or SecretStr(SIMULATED_KEY)
        self._limits = BodyLimits(max_bytes=max_body_bytes, deadline_seconds=deadline_seconds)
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

    async def daily_series(self, symbol: str, *, full: bool = False) -> DailySeries:
        """The last 100 daily bars, or with `full` the whole history (20+ years; one call either way)."""
        params = {"function": "TIME_SERIES_DAILY", "symbol": symbol, "outputsize": "full" if full else "compact"}
        return parse_daily_series(await self._get(params), symbol)

    async def overview(self, symbol: str) -> Overview:
        body = await self._get({"function": "OVERVIEW", "symbol": symbol})
        return parse_overview(body, symbol)

    async def bulk_quotes(self, symbols: list[str]) -> BulkQuotes:
        """Quotes for up to 100 symbols in one call (premium keys only).

        ValueError before any request for no symbols or more than 100: the provider would
        answer "Invalid API call" and the call would count against the quota.
        """
        if not 1 <= len(symbols) <= BULK_QUOTES_MAX_SYMBOLS:
            raise ValueError(f"REALTIME_BULK_QUOTES takes 1 to {BULK_QUOTES_MAX_SYMBOLS} symbols, got {len(symbols)}")
        body = await self._get({"function": "REALTIME_BULK_QUOTES", "symbol": ",".join(symbols)})
        return parse_bulk_quotes(body, symbols)

    async def _get(self, params: dict[str, str]) -> Any:
        function = params["function"]
        query = {**params, "apikey": self._api_key.get_secret_value()}
        response = await get_bounded(self._http, "/query", params=query, provider=PROVIDER, what=function, limits=self._limits)
        if response.status_code == 429:
            # A gateway in front of the service; its Retry-After (when sent) is the next attempt's delay.
            delay = retry_after_seconds(response.headers)
            raise RateLimited(
                PROVIDER,
                f"{function} answered HTTP 429" + (f" (Retry-After {delay:g}s)" if delay is not None else ""),
                retry_after=MINUTE_RETRY_SECONDS if delay is None else delay,
            )
        if response.status_code >= 500:
            raise ProviderUnavailable(PROVIDER, f"{function} answered HTTP {response.status_code}")
        if response.status_code != 200:
            raise ProviderConfigError(PROVIDER, f"{function} answered HTTP {response.status_code}")
        try:
            return json.loads(response.content)
        except ValueError:
            raise MalformedResponse(PROVIDER, f"{function} answered a body that is not JSON") from None
