"""Technical indicators of one company, from the aggregates of its recent daily bars.

The aggregates (`BarAggregates`) come from one set-based SQL query for a whole batch of
companies (deallens/db/insight_context.py, window functions over ohlc_data); this module turns
them into the rounded figures the model is given. `aggregates_from_bars` computes the same
aggregates from a plain bar list: the reference the SQL is tested against, and the per-company
baseline of bench/insights.py.

Definitions (trading days, counted back from the company's latest bar):
- returns over 1, 5 and 21 bars (one month), and year to date against the last close of the
  previous calendar year;
- SMA 20 and 50 of closes (None with fewer bars);
- 20-day volatility: sample standard deviation of the last 20 daily log returns, annualised
  with sqrt(252), in percent;
- RSI(14), Cutler's variant: simple averages of the last 14 gains and losses (Wilder's
  smoothing depends on the whole history, so two stores of different length would disagree);
- volume of the latest bar against the average of the 20 bars before it;
- 52-week range: highest high and lowest low of bars within 365 days of the latest bar.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

TRADING_DAYS_PER_YEAR = 252
MONTH_BARS = 21
RSI_PERIOD = 14
VOLATILITY_BARS = 20
VOLUME_AVERAGE_BARS = 20
# Bars further back than this are never needed (52 weeks plus the previous year's last close).
LOOKBACK_DAYS = 372


@dataclass(frozen=True, slots=True)
class Bar:
    date: dt.date
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True, slots=True)
class BarAggregates:
    """What SQL computes per company in one pass; None where there are too few bars."""

    company_id: int
    as_of: dt.date
    bars: int
    close: float
    close_1d: float | None
    close_5d: float | None
    close_1m: float | None
    close_prev_year: float | None
    sma_20: float | None
    sma_50: float | None
    log_return_stddev_20: float | None
    avg_gain_14: float | None
    avg_loss_14: float | None
    volume: float
    avg_volume_20: float | None
    high_52w: float
    low_52w: float


def _change_pct(now: float, then: float | None) -> float | None:
    if then is None or then == 0:
        return None
    return round((now / then - 1) * 100, 2)


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def figures(agg: BarAggregates) -> dict[str, float | None]:
    """The rounded indicator figures of a context (names are the prompt's and the validator's)."""
    rsi: float | None = None
    if agg.avg_gain_14 is not None and agg.avg_loss_14 is not None:
        if agg.avg_loss_14 == 0:
            rsi = 100.0 if agg.avg_gain_14 > 0 else 50.0
        else:
            rsi = 100 - 100 / (1 + agg.avg_gain_14 / agg.avg_loss_14)
    volatility = (
        agg.log_return_stddev_20 * math.sqrt(TRADING_DAYS_PER_YEAR) * 100
        if agg.log_return_stddev_20 is not None
        else None
    )
    return {
        "price": _r(agg.close),
        "return_1d_pct": _change_pct(agg.close, agg.close_1d),
        "return_5d_pct": _change_pct(agg.close, agg.close_5d),
        "return_1m_pct": _change_pct(agg.close, agg.close_1m),
        "return_ytd_pct": _change_pct(agg.close, agg.close_prev_year),
        "sma_20": _r(agg.sma_20),
        "sma_50": _r(agg.sma_50),
        "price_vs_sma_50_pct": _change_pct(agg.close, agg.sma_50),
        "volatility_20d_pct": _r(volatility),
        "rsi_14": _r(rsi, 1),
        "volume_vs_avg_20": _r(agg.volume / agg.avg_volume_20, 2) if agg.avg_volume_20 else None,
        "high_52w": _r(agg.high_52w),
        "low_52w": _r(agg.low_52w),
        "pct_below_52w_high": _r((1 - agg.close / agg.high_52w) * 100) if agg.high_52w else None,
    }


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def aggregates_from_bars(company_id: int, bars: Sequence[Bar]) -> BarAggregates | None:
    """The aggregates of `bars` (any order), as the SQL computes them; None without bars."""
    if not bars:
        return None
    ordered = sorted(bars, key=lambda b: b.date, reverse=True)  # latest first, like the SQL's row_number
    latest = ordered[0]
    closes = [b.close for b in ordered]

    def back(n: int) -> float | None:
        return closes[n] if len(closes) > n else None

    def window(n: int) -> float | None:
        return _mean(closes[:n]) if len(closes) >= n else None

    changes = [closes[i] - closes[i + 1] for i in range(min(RSI_PERIOD, len(closes) - 1))]
    log_returns = [math.log(closes[i] / closes[i + 1]) for i in range(min(VOLATILITY_BARS, len(closes) - 1))]
    stddev = None
    if len(log_returns) >= VOLATILITY_BARS:
        mean = _mean(log_returns)
        stddev = math.sqrt(sum((x - mean) ** 2 for x in log_returns) / (len(log_returns) - 1))
    prior_volumes = [b.volume for b in ordered[1 : VOLUME_AVERAGE_BARS + 1]]
    year_start = dt.date(latest.date.year, 1, 1)
    previous_year = next((b.close for b in ordered if b.date < year_start), None)
    in_52w = [b for b in ordered if b.date > latest.date - dt.timedelta(days=365)]
    return BarAggregates(
        company_id=company_id,
        as_of=latest.date,
        bars=len(ordered),
        close=latest.close,
        close_1d=back(1),
        close_5d=back(5),
        close_1m=back(MONTH_BARS),
        close_prev_year=previous_year,
        sma_20=window(20),
        sma_50=window(50),
        log_return_stddev_20=stddev,
        avg_gain_14=_mean([max(c, 0.0) for c in changes]) if len(changes) >= RSI_PERIOD else None,
        avg_loss_14=_mean([max(-c, 0.0) for c in changes]) if len(changes) >= RSI_PERIOD else None,
        volume=latest.volume,
        avg_volume_20=_mean(prior_volumes) if len(prior_volumes) >= VOLUME_AVERAGE_BARS else None,
        high_52w=max(b.high for b in in_52w),
        low_52w=min(b.low for b in in_52w),
    )
