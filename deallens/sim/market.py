"""Deterministic simulated market: daily bars since 2000 and minute-level intraday prices.

Each symbol follows a trend plus a mean-reverting (Ornstein-Uhlenbeck) deviation, so that
twenty-five years of history stay plausible (no symbol drifts to $0.01 or $1e6) while the
day-to-day moves look like a stock's. The walk is pinned so that the close on ANCHOR_DAY is
the universe's `base_price`, which keeps recent prices near the demo universe's levels.

Determinism: every random draw comes from a `random.Random` seeded with a string built from
(seed, symbol[, day]), and days are generated strictly in order, so the bar of a given day
never depends on how far the clock has moved. "Today" is the New York date of the clock:

- weekdays only (no holiday calendar: the real provider's calendar is not what is tested);
- a weekday's bar appears at 09:30 ET; until 16:00 ET it is provisional: open is final,
  close is the intraday price of the current minute, high/low/volume are "so far";
- from 16:00 ET the bar is final; before 09:30 and on weekends the latest bar is the
  previous weekday's.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import NamedTuple

from deallens.domain.universe import DEMO_COMPANIES, DemoCompany
from deallens.sim.clock import SESSION_MINUTES, SESSION_OPEN, eastern, is_weekday, previous_weekday

HISTORY_START = date(2000, 1, 3)  # a Monday: weekday index 0
ANCHOR_DAY = date(2024, 10, 1)  # the universe's base_price is the close of this day

# Real tickers the simulated provider knows although the demo database does not track them,
# so that "known to the provider but not tracked" can be exercised.
EXTRA_COMPANIES: tuple[DemoCompany, ...] = (
    DemoCompany("BA", "Boeing Company", "INDUSTRIALS", "Aerospace & Defense", "NYSE", Decimal("152.10")),
    DemoCompany("INTC", "Intel Corporation", "TECHNOLOGY", "Semiconductors", "NASDAQ", Decimal("23.40")),
    DemoCompany("AMD", "Advanced Micro Devices Inc", "TECHNOLOGY", "Semiconductors", "NASDAQ", Decimal("159.80")),
)
SIM_COMPANIES: tuple[DemoCompany, ...] = DEMO_COMPANIES + EXTRA_COMPANIES
_BY_SYMBOL = {c.symbol: c for c in SIM_COMPANIES}

_MEAN_REVERSION = 0.994  # OU coefficient per trading day: deviations from trend stay within ~±35%
_BRIDGE_MODES = 12  # Karhunen-Loeve terms of the intraday Brownian bridge


def sim_company(symbol: str) -> DemoCompany | None:
    """The company the simulated provider knows under `symbol` (case-insensitive), else None."""
    return _BY_SYMBOL.get(symbol.strip().upper())


def weekday_index(day: date) -> int:
    """Position of a weekday in the history (HISTORY_START is 0)."""
    weeks, remainder = divmod((day - HISTORY_START).days, 7)
    return weeks * 5 + remainder


def weekday_at(index: int) -> date:
    weeks, remainder = divmod(index, 5)
    return HISTORY_START + timedelta(days=weeks * 7 + remainder)


class Bar(NamedTuple):
    """One daily candle (a NamedTuple: ~7,000 are built per symbol, and it is hashable for caching)."""

    day: date
    open: float
    high: float
    low: float
    close: float
    volume: int


@dataclass(frozen=True, slots=True)
class Quote:
    """The latest bar as seen at `moment`, with the close of the bar before it."""

    symbol: str
    bar: Bar
    previous_close: float
    provisional: bool
    moment: datetime  # the clock reading, in US/Eastern


_NEXT_WEEKDAY = (timedelta(days=1),) * 4 + (timedelta(days=3),)


class PriceWalk:
    """One symbol's daily bars, generated in order and cached; extended as the clock moves on."""

    def __init__(self, seed: int, company: DemoCompany) -> None:
        self.symbol = company.symbol
        params = random.Random(f"walk-params:{seed}:{company.symbol}")
        self.daily_volatility = params.uniform(0.012, 0.026)
        self._growth_per_day = params.uniform(0.03, 0.11) / 252
        self._base_volume = math.exp(params.uniform(math.log(2e6), math.log(4e7)))
        self._log_base = math.log(float(company.base_price))
        self._rng = random.Random(f"walk:{seed}:{company.symbol}")
        self._anchor = weekday_index(ANCHOR_DAY)
        self._deviation: list[float] = []  # OU state per day
        self._draws: list[tuple[float, float, float, float]] = []  # uniforms: gap, high, low, volume
        self._bars: list[Bar] = []
        self._generate_state(self._anchor + 1)
        self._anchor_deviation = self._deviation[self._anchor]

    def _generate_state(self, count: int) -> None:
        # One Gaussian draw per day (the walk) and cheap uniform draws for the rest keep a
        # full 26-year history at a few tens of milliseconds per symbol.
        rng, sigma = self._rng, self.daily_volatility
        previous = self._deviation[-1] if self._deviation else 0.0
        while len(self._deviation) < count:
            previous = _MEAN_REVERSION * previous + sigma * rng.gauss(0.0, 1.0)
            self._deviation.append(previous)
            self._draws.append((rng.random(), rng.random(), rng.random(), rng.random()))

    def _extend(self, count: int) -> None:
        """Append bars up to `count` (locals only in the loop: it runs ~7,000 times per symbol)."""
        self._generate_state(count)
        sigma, exp, log = self.daily_volatility, math.exp, math.log
        offset = self._log_base - self._growth_per_day * self._anchor - self._anchor_deviation
        growth, deviation, draws, bars = self._growth_per_day, self._deviation, self._draws, self._bars
        previous_close = bars[-1].close if bars else max(0.01, round(exp(offset + deviation[0]), 2))
        day = weekday_at(len(bars))
        for index in range(len(bars), count):
            close = max(0.01, round(exp(offset + growth * index + deviation[index]), 2))
            gap, up, down, volume_noise = draws[index]
            open_ = max(0.01, round(previous_close * exp(0.8 * sigma * (gap - 0.5)), 2))
            # Excursions beyond the candle's body are exponential: -log(1 - u) ~ Exp(1).
            high = round(max(open_, close) * exp(-0.5 * sigma * log(1.0 - up)), 2)
            low = max(0.01, round(min(open_, close) * exp(0.5 * sigma * log(1.0 - down)), 2))
            move = abs(log(close / previous_close))
            volume = int(self._base_volume * exp(0.6 * (volume_noise - 0.5)) * (1 + 10 * move))
            bars.append(Bar(day, open_, high, low, close, volume))
            previous_close = close
            day += _NEXT_WEEKDAY[day.weekday()]

    def bars_through(self, day: date) -> list[Bar]:
        """Final bars from HISTORY_START through the weekday `day`, oldest first."""
        if day < HISTORY_START:
            raise ValueError(f"the simulated history starts on {HISTORY_START}; the clock says {day}")
        count = weekday_index(day) + 1
        if len(self._bars) < count:
            self._extend(count)
        return self._bars[:count]


@lru_cache(maxsize=512)
def intraday_path(seed: int, symbol: str, bar: Bar) -> tuple[float, ...]:
    """Prices at each minute 0..390 of the session of `bar`: open at 0, close at 390.

    A Brownian bridge (sum of sine modes) around the straight line from open to close, its
    upper and lower excursions scaled so that the path just reaches the bar's high and low:
    the intraday view never contradicts the final daily bar, and by the close the
    provisional high/low have become the final ones.
    """
    rng = random.Random(f"intraday:{seed}:{symbol}:{bar.day.isoformat()}")
    modes = [rng.gauss(0.0, 1.0) * math.sqrt(2) / (k * math.pi) for k in range(1, _BRIDGE_MODES + 1)]
    times = [minute / SESSION_MINUTES for minute in range(SESSION_MINUTES + 1)]
    line = [bar.open + (bar.close - bar.open) * t for t in times]
    bridge = [sum(z * math.sin(k * math.pi * t) for k, z in enumerate(modes, start=1)) for t in times]
    up = min(((bar.high - y) / b for y, b in zip(line, bridge) if b > 0), default=0.0)
    down = min(((y - bar.low) / -b for y, b in zip(line, bridge) if b < 0), default=0.0)
    path = (y + (up if b > 0 else down) * b for y, b in zip(line, bridge))
    return tuple(min(bar.high, max(bar.low, round(price, 2))) for price in path)


def session_position(now: datetime) -> tuple[date, int | None]:
    """The day of the latest bar at `now`, and the session minute (0..389) if it is trading."""
    local = eastern(now)
    today = local.date()
    if is_weekday(today):
        opened = local.replace(hour=SESSION_OPEN.hour, minute=SESSION_OPEN.minute, second=0, microsecond=0)
        minutes = int((local - opened).total_seconds() // 60)
        if minutes >= SESSION_MINUTES:
            return today, None
        if minutes >= 0:
            return today, minutes
    return previous_weekday(today), None


class Market:
    """All simulated symbols for one seed. Not thread-safe (one event loop serves it)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._walks: dict[str, PriceWalk] = {}

    def walk(self, company: DemoCompany) -> PriceWalk:
        walk = self._walks.get(company.symbol)
        if walk is None:
            walk = self._walks[company.symbol] = PriceWalk(self.seed, company)
        return walk

    def daily_bars(self, company: DemoCompany, now: datetime) -> list[Bar]:
        """Every bar up to the latest one at `now`, oldest first; the last may be provisional."""
        day, minute = session_position(now)
        walk = self.walk(company)
        bars = walk.bars_through(day)
        if minute is not None:
            bars = [*bars[:-1], self._provisional(walk, bars[-1], minute)]
        return bars

    def quote(self, company: DemoCompany, now: datetime) -> Quote:
        day, minute = session_position(now)
        walk = self.walk(company)
        final = walk.bars_through(day)[-2:]
        bar = final[-1] if minute is None else self._provisional(walk, final[-1], minute)
        previous_close = final[0].close if len(final) == 2 else bar.open
        return Quote(company.symbol, bar, previous_close, minute is not None, eastern(now))

    def _provisional(self, walk: PriceWalk, final: Bar, minute: int) -> Bar:
        so_far = intraday_path(self.seed, walk.symbol, final)[: minute + 1]
        volume = int(final.volume * (minute + 1) / SESSION_MINUTES)
        return final._replace(high=max(so_far), low=min(so_far), close=so_far[-1], volume=volume)
