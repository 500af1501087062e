"""AlphaVantage stand-in: GET /query with GLOBAL_QUOTE, TIME_SERIES_DAILY, OVERVIEW, REALTIME_BULK_QUOTES.

It answers the way the real service does, which is what the client's error mapping must
survive: every body is HTTP 200 and JSON, errors included. A missing key, a bad call, a
rate limit and a premium-only endpoint are told apart only by the body's single key
("Error Message", "Note" or "Information") and its text; the texts below are the real ones
(see provider-samples/SOURCES.md). Numbers are strings with 4 decimals, volumes integers
as strings, percentages with a trailing "%".

Functions the real service has but this stand-in does not simulate (TIME_SERIES_INTRADAY,
SYMBOL_SEARCH, NEWS_SENTIMENT, ...) answer "does not exist", so an unexpected call is loud.
"""

from __future__ import annotations

import random
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.applications import Starlette
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from deallens.domain.universe import DemoCompany
from deallens.sim.clock import Clock, eastern, system_clock, utc
from deallens.sim.faults import (
    COMMON_KINDS,
    EMPTY,
    FaultRule,
    SimController,
    answer,
    control_routes,
    gateway_error,
    json_response,
    read_json,
    validated,
)
from deallens.sim.market import Bar, Market, Quote, sim_company

# Exact texts of the real service (provider-samples/alphavantage_error_*.json).
APIKEY_MISSING = (
    "the parameter apikey is invalid or missing. Please claim your free API key on "
    "(https://www.alphavantage.co/support/#api-key). It should take less than 20 seconds."
)
INVALID_CALL = (
    "Invalid API call. Please retry or visit the documentation (https://www.alphavantage.co/documentation/) for {function}."
)
UNKNOWN_FUNCTION = "This API function ({function}) does not exist."
NOTE_PER_MINUTE = (
    "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute and 500 calls per day. "
    "Please visit https://www.alphavantage.co/premium/ if you would like to target a higher API call frequency."
)
INFORMATION_DAILY = (
    "We have detected your API key as {apikey} and our standard API rate limit is 25 requests per day. "
    "Please subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to instantly remove all daily rate limits."
)
INFORMATION_BURST = (
    "Thank you for using Alpha Vantage! Please consider spreading out your free API requests more sparingly "
    "(1 request per second). You may subscribe to any of the premium plans at https://www.alphavantage.co/premium/ "
    "to lift the free key rate limit (25 requests per day) and instantly remove all daily rate limits."
)
INFORMATION_PREMIUM = (
    "Thank you for using Alpha Vantage! This is a premium endpoint. You may subscribe to any of the premium plans at "
    "https://www.alphavantage.co/premium/ to instantly unlock all premium endpoints"
)
INFORMATION_DEMO_KEY = (
    "The **demo** API key is for demo purposes only. Please claim your free API key at "
    "(https://www.alphavantage.co/support/#api-key) to explore our full API offerings. It takes fewer than 20 seconds, "
    "and we are committed to making it free forever."
)

GLOBAL_QUOTE = "GLOBAL_QUOTE"
TIME_SERIES_DAILY = "TIME_SERIES_DAILY"
OVERVIEW = "OVERVIEW"
REALTIME_BULK_QUOTES = "REALTIME_BULK_QUOTES"
BULK_QUOTES_MAX_SYMBOLS = 100
COMPACT_BARS = 100

FAULT_KINDS: frozenset[str] = COMMON_KINDS | {
    "note",
    "information_daily",
    "information_burst",
    "error_message",
    "premium",
    "demo_key",
}


class RateLimits(BaseModel):
    """Calls allowed per API key; None means unlimited. Body of `POST /_sim/limits`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    calls_per_minute: int | None = Field(default=None, ge=1)
    calls_per_day: int | None = Field(default=None, ge=1)


class UsageLedger:
    """Accepted calls per API key: a sliding 60-second window and a count per UTC day of the clock.

    Refused calls are not recorded, as on the real service, so a client that backs off
    gets its budget back when the window slides.
    """

    def __init__(self) -> None:
        self._recent: dict[str, deque[datetime]] = {}
        self._daily: dict[str, tuple[date, int]] = {}

    def refusal(self, apikey: str, now: datetime, limits: RateLimits) -> str | None:
        """"day" or "minute" when this call is over a limit, else None."""
        now = utc(now)
        if limits.calls_per_day is not None:
            day, used = self._daily.get(apikey, (now.date(), 0))
            if day == now.date() and used >= limits.calls_per_day:
                return "day"
        if limits.calls_per_minute is not None:
            recent = self._recent.setdefault(apikey, deque())
            while recent and recent[0] <= now - timedelta(minutes=1):
                recent.popleft()
            if len(recent) >= limits.calls_per_minute:
                return "minute"
        return None

    def record(self, apikey: str, now: datetime) -> None:
        now = utc(now)
        self._recent.setdefault(apikey, deque()).append(now)
        day, used = self._daily.get(apikey, (now.date(), 0))
        self._daily[apikey] = (now.date(), used + 1 if day == now.date() else 1)

    def clear(self) -> None:
        """Forget every call (a fresh day and minute for every key)."""
        self._recent.clear()
        self._daily.clear()

    def used_today(self, apikey: str, now: datetime) -> int:
        day, used = self._daily.get(apikey, (utc(now).date(), 0))
        return used if day == utc(now).date() else 0


class AlphaVantageController(SimController):
    """`app.state.sim` of the AlphaVantage stand-in: faults, stats, and the rate limits in force."""

    def __init__(self, seed: int, limits: RateLimits) -> None:
        super().__init__(seed, FAULT_KINDS, normalize_match=str.upper)
        self.limits = limits
        self.usage = UsageLedger()

    def set_limits(self, *, calls_per_minute: int | None, calls_per_day: int | None) -> RateLimits:
        self.limits = RateLimits(calls_per_minute=calls_per_minute, calls_per_day=calls_per_day)
        return self.limits


def make_app(
    *,
    seed: int = 0,
    clock: Clock | None = None,
    premium: bool = False,
    calls_per_minute: int | None = None,
    calls_per_day: int | None = None,
    companies: Sequence[DemoCompany] = (),
) -> Starlette:
    """The AlphaVantage stand-in. `premium` makes REALTIME_BULK_QUOTES answer like a premium key;
    `companies` are known besides the simulated universe (bench/load.py's 500 symbols)."""
    now: Clock = clock or system_clock
    controller = AlphaVantageController(seed, RateLimits(calls_per_minute=calls_per_minute, calls_per_day=calls_per_day))
    service = _AlphaVantage(Market(seed), premium, {c.symbol.upper(): c for c in companies})

    async def query(request: Request) -> Response:
        params = request.query_params
        function = params.get("function", "").strip().upper()

        async def handle() -> Response:
            apikey = params.get("apikey", "").strip()
            if not apikey:
                return _body({"Error Message": APIKEY_MISSING})
            moment = now()
            refusal = controller.usage.refusal(apikey, moment, controller.limits)
            if refusal is not None:
                controller.stats.rate_limit_refusals += 1
                if refusal == "day":
                    return _body({"Information": INFORMATION_DAILY.format(apikey=apikey)})
                return _body({"Note": NOTE_PER_MINUTE})
            controller.usage.record(apikey, moment)
            return _body(service.dispatch(function, params, moment))

        return await answer(controller, function, request, handle, _fault_response)

    async def set_limits(request: Request) -> Response:
        data = await read_json(request)
        if isinstance(data, Response):
            return data
        update = validated(RateLimits, data)
        if isinstance(update, Response):
            return update
        merged = {**controller.limits.model_dump(), **update.model_dump(include=update.model_fields_set)}
        controller.limits = RateLimits(**merged)
        return json_response(controller.limits.model_dump())

    async def get_limits(request: Request) -> Response:
        return json_response(controller.limits.model_dump())

    app = Starlette(
        routes=[
            Route("/query", query, methods=["GET"]),
            Route("/_sim/limits", set_limits, methods=["POST"]),
            Route("/_sim/limits", get_limits, methods=["GET"]),
            *control_routes(controller),
        ]
    )
    app.state.sim = controller
    return app


def _body(body: dict[str, Any]) -> Response:
    """Every AlphaVantage answer: HTTP 200, JSON indented by 4 like the real service."""
    return json_response(body, 200, indent=4)


def _fault_response(rule: FaultRule, request: Request) -> Response:
    params = request.query_params
    function = params.get("function", "").strip().upper()
    match rule.kind:
        case "http_429":
            return gateway_error(429)
        case "http_500":
            return gateway_error(500)
        case "http_503":
            return gateway_error(503)
        case "note":
            return _body({"Note": NOTE_PER_MINUTE})
        case "information_daily":
            return _body({"Information": INFORMATION_DAILY.format(apikey=params.get("apikey", ""))})
        case "information_burst":
            return _body({"Information": INFORMATION_BURST})
        case "error_message":
            return _body({"Error Message": INVALID_CALL.format(function=function)})
        case "premium":
            return _body({"Information": INFORMATION_PREMIUM})
        case "demo_key":
            return _body({"Information": INFORMATION_DEMO_KEY})
        case _:
            assert rule.kind == EMPTY, rule.kind
            return _body({"Global Quote": {}} if function == GLOBAL_QUOTE else {})


def _decimal4(value: float) -> str:
    """AlphaVantage's "112.1300" style (and never "-0.0000")."""
    return f"{round(value, 4) + 0.0:.4f}"


def _compact(value: float) -> str:
    """The bulk-quotes style: shortest float text, "236.0", "419.649"."""
    return repr(round(value, 4) + 0.0)


def _plain(value: float, places: int) -> str:
    """OVERVIEW style: at most `places` decimals, no trailing zeros ("0.04", "35.37", "2")."""
    text = f"{round(value, places) + 0.0:.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass(frozen=True, slots=True)
class _AlphaVantage:
    market: Market
    premium: bool
    # Companies known beyond the simulated universe (upper-case symbol -> company): a load
    # test's hundreds of symbols.
    extra: dict[str, DemoCompany] = field(default_factory=dict)

    def company(self, symbol: str) -> DemoCompany | None:
        return self.extra.get(symbol.strip().upper()) or sim_company(symbol)

    def dispatch(self, function: str, params: QueryParams, moment: datetime) -> dict[str, Any]:
        symbol = params.get("symbol", "").strip()
        match function:
            case "GLOBAL_QUOTE":
                return self.global_quote(symbol, moment)
            case "TIME_SERIES_DAILY":
                return self.time_series_daily(symbol, params.get("outputsize", "compact"), moment)
            case "OVERVIEW":
                return self.overview(symbol, moment)
            case "REALTIME_BULK_QUOTES":
                return self.bulk_quotes(symbol, moment)
            case _:
                return {"Error Message": UNKNOWN_FUNCTION.format(function=params.get("function", ""))}

    def global_quote(self, symbol: str, moment: datetime) -> dict[str, Any]:
        if not symbol:
            return {"Error Message": INVALID_CALL.format(function=GLOBAL_QUOTE)}
        company = self.company(symbol)
        if company is None:
            return {"Global Quote": {}}
        quote = self.market.quote(company, moment)
        bar, change = quote.bar, quote.bar.close - quote.previous_close
        return {
            "Global Quote": {
                "01. symbol": company.symbol,
                "02. open": _decimal4(bar.open),
                "03. high": _decimal4(bar.high),
                "04. low": _decimal4(bar.low),
                "05. price": _decimal4(bar.close),
                "06. volume": str(bar.volume),
                "07. latest trading day": bar.day.isoformat(),
                "08. previous close": _decimal4(quote.previous_close),
                "09. change": _decimal4(change),
                "10. change percent": f"{_decimal4(100 * change / quote.previous_close)}%",
            }
        }

    def time_series_daily(self, symbol: str, outputsize: str, moment: datetime) -> dict[str, Any]:
        company = self.company(symbol) if symbol else None
        if company is None:
            return {"Error Message": INVALID_CALL.format(function=TIME_SERIES_DAILY)}
        full = outputsize.strip().lower() == "full"
        bars = self.market.daily_bars(company, moment)
        latest = self.market.quote(company, moment)
        refreshed = latest.bar.day.isoformat()
        if latest.provisional:
            refreshed = f"{refreshed} {latest.moment:%H:%M:%S}"
        return {
            "Meta Data": {
                "1. Information": "Daily Prices (open, high, low, close) and Volumes",
                "2. Symbol": company.symbol,
                "3. Last Refreshed": refreshed,
                "4. Output Size": "Full size" if full else "Compact",
                "5. Time Zone": "US/Eastern",
            },
            "Time Series (Daily)": {
                bar.day.isoformat(): {
                    "1. open": _decimal4(bar.open),
                    "2. high": _decimal4(bar.high),
                    "3. low": _decimal4(bar.low),
                    "4. close": _decimal4(bar.close),
                    "5. volume": str(bar.volume),
                }
                for bar in reversed(bars if full else bars[-COMPACT_BARS:])
            },
        }

    def bulk_quotes(self, symbols: str, moment: datetime) -> dict[str, Any]:
        if not self.premium:
            return {"Information": INFORMATION_PREMIUM}
        requested = [s.strip() for s in symbols.split(",") if s.strip()]
        if not requested or len(requested) > BULK_QUOTES_MAX_SYMBOLS:
            return {"Error Message": INVALID_CALL.format(function=REALTIME_BULK_QUOTES)}
        data = []
        for symbol in requested:
            company = self.company(symbol)
            if company is not None:
                data.append(self._bulk_entry(self.market.quote(company, moment)))
        return {"endpoint": "Realtime Bulk Quotes", "data": data}

    def _bulk_entry(self, quote: Quote) -> dict[str, str]:
        bar, change = quote.bar, quote.bar.close - quote.previous_close
        if quote.provisional:
            extended = bar.close
        else:
            minute = quote.moment.replace(second=0, microsecond=0).isoformat()
            drift = random.Random(f"extended:{self.market.seed}:{quote.symbol}:{minute}").gauss(0.0, 0.002)
            extended = round(bar.close * (1 + drift), 2)
        return {
            "symbol": quote.symbol,
            "timestamp": f"{quote.moment:%Y-%m-%d %H:%M:%S}.{quote.moment.microsecond // 1000:03d}",
            "open": _compact(bar.open),
            "high": _compact(bar.high),
            "low": _compact(bar.low),
            "close": _compact(bar.close),
            "volume": str(bar.volume),
            "previous_close": _compact(quote.previous_close),
            "change": _compact(change),
            "change_percent": f"{round(100 * change / quote.previous_close, 4) + 0.0:.4f}",
            "extended_hours_quote": _compact(extended),
            "extended_hours_change": _compact(extended - bar.close),
            "extended_hours_change_percent": f"{round(100 * (extended - bar.close) / bar.close, 5) + 0.0:.5f}",
        }

    def overview(self, symbol: str, moment: datetime) -> dict[str, Any]:
        if not symbol:
            return {"Error Message": INVALID_CALL.format(function=OVERVIEW)}
        company = self.company(symbol)
        if company is None:
            return {}
        # Fundamentals refresh daily: price-based fields use completed sessions only.
        bars = self.market.daily_bars(company, moment)
        if self.market.quote(company, moment).provisional:
            bars = bars[:-1]
        return _overview(company, bars, eastern(moment).date(), self.market.seed)


_CITIES = (
    ("NEW YORK", "NY"), ("SAN JOSE", "CA"), ("SEATTLE", "WA"), ("AUSTIN", "TX"),
    ("CHICAGO", "IL"), ("BOSTON", "MA"), ("ATLANTA", "GA"), ("DALLAS", "TX"),
)
_STREETS = ("MAIN STREET", "MARKET STREET", "PARK AVENUE", "INNOVATION WAY", "COMMERCE DRIVE", "RIVER ROAD")
_SUFFIXES = {"inc", "co", "corporation", "company", "group", "class", "a", "&", "platforms", "systems"}


def _latest_quarter(today: date) -> date:
    """The last calendar quarter end whose figures would be reported by `today` (~45 days later)."""
    reported = today - timedelta(days=45)
    quarter_start_month = 3 * ((reported.month - 1) // 3) + 1
    return date(reported.year, quarter_start_month, 1) - timedelta(days=1)


def _overview(company: DemoCompany, bars: list[Bar], today: date, seed: int) -> dict[str, str]:
    """Fundamentals fixed per (seed, symbol); price-based fields follow the simulated prices."""
    rng = random.Random(f"overview:{seed}:{company.symbol}")
    price = bars[-1].close
    year = bars[-252:]
    closes = [b.close for b in bars]
    shares = int(round(rng.uniform(8e10, 2.5e12) / float(company.base_price), -5))
    market_cap = shares * price
    revenue = market_cap / rng.uniform(2.0, 11.0)
    gross_margin = rng.uniform(0.35, 0.7)
    operating_margin = gross_margin * rng.uniform(0.3, 0.6)
    profit_margin = operating_margin * rng.uniform(0.6, 0.85)
    ebitda = revenue * operating_margin * 1.15
    eps = revenue * profit_margin / shares
    book_value = price / rng.uniform(2.0, 20.0)
    pays_dividend = rng.random() < 0.75
    dividend = price * rng.uniform(0.004, 0.035) if pays_dividend else 0.0
    enterprise_value = market_cap * rng.uniform(0.95, 1.1)
    ratings = [rng.randint(0, 12), rng.randint(5, 25), rng.randint(3, 15), rng.randint(0, 4), rng.randint(0, 3)]
    city, state = rng.choice(_CITIES)
    quarter = _latest_quarter(today)
    dividend_date = quarter + timedelta(days=45)
    words = [w for w in re.split(r"[^A-Za-z0-9&.]+", company.name) if w.lower() not in _SUFFIXES]
    site = re.sub(r"[^a-z0-9]", "", "".join(words).lower().removesuffix(".com"))
    return {
        "Symbol": company.symbol,
        "AssetType": "Common Stock",
        "Name": company.name,
        "Description": (
            f"{company.name} operates in the {company.industry.lower()} industry. The company is part of the "
            f"{company.sector.title()} sector, is listed on the {company.exchange} and is headquartered in "
            f"{city.title()}, {state}. (Simulated profile.)"
        ),
        "CIK": str(rng.randint(1_000, 1_999_999)),
        "Exchange": company.exchange,
        "Currency": "USD",
        "Country": "USA",
        "Sector": company.sector,
        "Industry": company.industry.upper(),
        "Address": f"{rng.randint(1, 9999)} {rng.choice(_STREETS)}, {city}, {state}, US",
        "OfficialSite": f"https://www.{site}.com",
        "FiscalYearEnd": rng.choice(("December", "December", "September", "June", "January")),
        "LatestQuarter": quarter.isoformat(),
        "MarketCapitalization": str(int(market_cap)),
        "EBITDA": str(int(round(ebitda, -3))),
        "PERatio": _plain(price / eps, 2),
        "PEGRatio": _plain(rng.uniform(0.8, 3.5), 3),
        "BookValue": _plain(book_value, 3),
        "DividendPerShare": _plain(dividend, 2) if pays_dividend else "None",
        "DividendYield": _plain(dividend / price, 4) if pays_dividend else "None",
        "EPS": _plain(eps, 2),
        "RevenuePerShareTTM": _plain(revenue / shares, 2),
        "ProfitMargin": _plain(profit_margin, 3),
        "OperatingMarginTTM": _plain(operating_margin, 3),
        "ReturnOnAssetsTTM": _plain(profit_margin * rng.uniform(0.2, 0.6), 3),
        "ReturnOnEquityTTM": _plain(profit_margin * rng.uniform(0.8, 3.0), 3),
        "RevenueTTM": str(int(round(revenue, -3))),
        "GrossProfitTTM": str(int(round(revenue * gross_margin, -3))),
        "DilutedEPSTTM": _plain(eps * 0.99, 2),
        "QuarterlyEarningsGrowthYOY": _plain(rng.uniform(-0.2, 0.4), 3),
        "QuarterlyRevenueGrowthYOY": _plain(rng.uniform(-0.1, 0.25), 3),
        "AnalystTargetPrice": _plain(price * rng.uniform(0.95, 1.25), 2),
        "AnalystRatingStrongBuy": str(ratings[0]),
        "AnalystRatingBuy": str(ratings[1]),
        "AnalystRatingHold": str(ratings[2]),
        "AnalystRatingSell": str(ratings[3]),
        "AnalystRatingStrongSell": str(ratings[4]),
        "TrailingPE": _plain(price / eps, 2),
        "ForwardPE": _plain(price / (eps * rng.uniform(1.02, 1.3)), 2),
        "PriceToSalesRatioTTM": _plain(market_cap / revenue, 2),
        "PriceToBookRatio": _plain(price / book_value, 2),
        "EVToRevenue": _plain(enterprise_value / revenue, 2),
        "EVToEBITDA": _plain(enterprise_value / ebitda, 2),
        "Beta": _plain(rng.uniform(0.5, 1.8), 3),
        "52WeekHigh": _plain(max(b.high for b in year), 2),
        "52WeekLow": _plain(min(b.low for b in year), 2),
        "50DayMovingAverage": _plain(sum(closes[-50:]) / len(closes[-50:]), 2),
        "200DayMovingAverage": _plain(sum(closes[-200:]) / len(closes[-200:]), 2),
        "SharesOutstanding": str(shares),
        "DividendDate": dividend_date.isoformat() if pays_dividend else "None",
        "ExDividendDate": (dividend_date - timedelta(days=3)).isoformat() if pays_dividend else "None",
    }
