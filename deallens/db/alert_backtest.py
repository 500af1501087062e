"""Backtesting a price or volume alert on stored daily bars, so a threshold can be tuned
before it is trusted.

The per-day measures (the day's high and low, the close against an earlier close, the volume
against the average of the previous bars) are window functions over ohlc_data, computed in
one statement. Firing is then decided in Python over the (at most a few thousand) resulting days,
because it is a sequential state machine mirroring live evaluation:

- edge-triggered: fires when the condition becomes true, re-arms when it is false again; the
  alert starts armed, as a newly created one does, so a condition already true on the first
  day of the period fires on that day;
- cooldown_seconds: a firing less than the cooldown after the previous one is suppressed, and
  the alert stays armed, so a condition still true once the cooldown has passed fires then;
- one_shot: nothing fires after the first firing.

Daily bars cannot show intraday order, so the conditions are their daily counterparts:
price_above is the day's high above the threshold (the price crossed it during the session),
price_below the day's low below it, percent_change the close against the previous close (a
window_minutes is approximated by close-to-close over ceil(window / 390) sessions, 390 being
the minutes of a regular NYSE session), volume_spike the volume against the average of the
previous 20 bars (at least 5 of them), volume_above the day's volume. Provisional bars (today's,
during the session) are excluded: they would be overwritten by the post-close sync.
Expiry, snoozes and `active` are ignored: the question is what the definition would have done.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from deallens.domain.alert_rules import PercentChange, PriceAbove, PriceBelow, VolumeAbove, VolumeSpike, parse_alert

MAX_DAYS = 3650
# Minutes of a regular NYSE session (09:30-16:00): how window_minutes maps to sessions.
SESSION_MINUTES = 390
# volume_spike compares against the average of this many previous bars, and needs this many at least.
VOLUME_BASELINE_BARS = 20
VOLUME_BASELINE_MIN_BARS = 5

SupportedRule = PriceAbove | PriceBelow | PercentChange | VolumeSpike | VolumeAbove

_ALERT = text(
    """
    SELECT a.id, a.kind, a.params, a.name, a.user_id, a.company_id, a.cooldown_seconds, a.one_shot, c.symbol
    FROM alerts a LEFT JOIN companies c ON c.id = a.company_id
    WHERE a.id = :alert_id
    """
)

# `{predicate}` is one of the constant fragments of `_predicate`, never user input. Window
# functions look back before the period (the previous close and volume average of its first
# days), so the scan starts `:lookback` bars before it, found through the (company_id, date) index.
_DAYS = """
    WITH lookback AS (
        SELECT COALESCE(
            (SELECT date FROM ohlc_data
             WHERE company_id = :company_id AND NOT provisional AND date < :start
             ORDER BY date DESC OFFSET CAST(:lookback AS integer) - 1 LIMIT 1),
            '-infinity'::date
        ) AS since
    ),
    series AS (
        SELECT b.date, b.high, b.low, b.close, b.volume,
               lag(b.close, CAST(:sessions AS integer)) OVER by_date AS base_close,
               avg(b.volume) OVER baseline AS average_volume,
               count(*) OVER baseline AS previous_bars
        FROM ohlc_data b, lookback
        WHERE b.company_id = :company_id AND NOT b.provisional AND b.date >= lookback.since AND b.date <= :today
        WINDOW by_date AS (ORDER BY b.date),
               baseline AS (by_date ROWS BETWEEN {baseline} PRECEDING AND 1 PRECEDING)
    ),
    measured AS (
        SELECT *, (close - base_close) / NULLIF(base_close, 0) * 100 AS change_percent FROM series
    )
    SELECT date, high, low, close, volume, base_close, change_percent, average_volume, previous_bars,
           COALESCE({predicate}, false) AS holds
    FROM measured
    WHERE date >= :start
    ORDER BY date
"""


class BacktestError(Exception):
    """One line for the operator: why this alert cannot be backtested."""


@dataclass(frozen=True, slots=True)
class _Day:
    """One stored session with the measures the conditions read (None where history is short)."""

    date: dt.date
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int
    base_close: Decimal | None
    change_percent: Decimal | None
    average_volume: Decimal | None
    previous_bars: int
    holds: bool


@dataclass(frozen=True, slots=True)
class Firing:
    date: dt.date
    observation: str  # e.g. "AAPL high 231.40 > 230.00"


@dataclass(frozen=True, slots=True)
class BacktestReport:
    alert_id: int
    description: str  # type, symbol and parameters, as stored
    symbol: str
    start: dt.date
    end: dt.date
    days: int
    firings: list[Firing]
    sessions: int  # stored non-provisional bars in the period
    condition_days: int  # sessions on which the condition held, fired or not
    approximation: str | None  # how a definition finer than a day was mapped onto daily bars


async def backtest(engine: AsyncEngine, alert_id: int, days: int, *, today: dt.date | None = None) -> BacktestReport:
    """When alert `alert_id` would have fired on the stored daily bars of the `days` calendar
    days ending `today` (default: today in UTC). `BacktestError` for an unknown alert or one
    that is not about price or volume."""
    end = today or dt.datetime.now(dt.UTC).date()
    start = end - dt.timedelta(days=days - 1)
    async with engine.connect() as conn:
        alert = (await conn.execute(_ALERT, {"alert_id": alert_id})).one_or_none()
        if alert is None:
            raise BacktestError(f"backtest: no alert with id {alert_id}")
        if alert.kind not in ("price", "volume"):
            raise BacktestError(f"backtest supports price and volume alerts (alert {alert_id} is {alert.params['type']})")
        rule = _rule(alert)
        predicate, parameters = _predicate(rule)
        sessions = _sessions(rule)
        rows = await conn.execute(
            text(_DAYS.format(predicate=predicate, baseline=VOLUME_BASELINE_BARS)),
            {
                **parameters,
                "company_id": alert.company_id,
                "start": start,
                "today": end,
                "sessions": sessions,
                "lookback": max(VOLUME_BASELINE_BARS, sessions),
            },
        )
        series = [_Day(**row._mapping) for row in rows]
    fired = _fire(series, dt.timedelta(seconds=alert.cooldown_seconds), alert.one_shot)
    return BacktestReport(
        alert_id=alert_id,
        description=_describe(alert),
        symbol=alert.symbol,
        start=start,
        end=end,
        days=days,
        firings=[Firing(day.date, _observe(rule, alert.symbol, day)) for day in fired],
        sessions=len(series),
        condition_days=sum(day.holds for day in series),
        approximation=_approximation(rule),
    )


def format_report(report: BacktestReport) -> list[str]:
    """The lines `starter.py alerts backtest` prints: header, one per firing, summary."""
    lines = [f"backtest of alert {report.alert_id} ({report.description}) from {report.start} to {report.end}, daily bars"]
    if report.approximation:
        lines.append(f"note: {report.approximation}")
    if not report.sessions:
        lines.append(
            f"no stored bars for {report.symbol} between {report.start} and {report.end}; fetch them with the "
            f"SyncDailyOHLC workflow: temporal workflow start --type SyncDailyOHLC --task-queue deallens "
            f"--input '{{\"symbols\": [\"{report.symbol}\"]}}'"
        )
        return lines
    lines += [f"{firing.date}  {firing.observation}" for firing in report.firings]
    lines.append(
        f"{_count(len(report.firings), 'firing')} in {_count(report.days, 'day')} "
        f"({_count(report.sessions, 'session')} with data; condition true on {_count(report.condition_days, 'session')})"
    )
    return lines


def _rule(alert: Any) -> SupportedRule:
    """The stored definition parsed back (typed values, defaults filled), columns overriding."""
    rule = parse_alert(
        {
            **alert.params,
            "user_id": alert.user_id,
            "symbol": alert.symbol,
            "cooldown_seconds": alert.cooldown_seconds,
            "one_shot": alert.one_shot,
        }
    )
    assert isinstance(rule, SupportedRule)  # kind is price or volume
    return rule


def _sessions(rule: SupportedRule) -> int:
    """How many sessions back percent_change compares the close with (1: the previous close)."""
    if isinstance(rule, PercentChange) and rule.window_minutes is not None:
        return math.ceil(rule.window_minutes / SESSION_MINUTES)
    return 1


def _predicate(rule: SupportedRule) -> tuple[str, dict[str, object]]:
    """The condition as SQL over the measured columns, with its parameters."""
    match rule:
        case PriceAbove():
            return "high > CAST(:threshold AS numeric)", {"threshold": rule.threshold}
        case PriceBelow():
            return "low < CAST(:threshold AS numeric)", {"threshold": rule.threshold}
        case PercentChange(direction="up"):
            return "change_percent >= CAST(:percent AS numeric)", {"percent": rule.percent}
        case PercentChange(direction="down"):
            return "change_percent <= -CAST(:percent AS numeric)", {"percent": rule.percent}
        case PercentChange():
            return "abs(change_percent) >= CAST(:percent AS numeric)", {"percent": rule.percent}
        case VolumeSpike():
            return (
                f"previous_bars >= {VOLUME_BASELINE_MIN_BARS} AND average_volume > 0"
                " AND volume >= CAST(:multiple AS numeric) * average_volume",
                {"multiple": rule.multiple},
            )
        case VolumeAbove():
            return "volume >= CAST(:threshold AS bigint)", {"threshold": rule.threshold}


def _fire(series: list[_Day], cooldown: dt.timedelta, one_shot: bool) -> list[_Day]:
    """The days the alert fires: edge-triggered, cooldown-suppressed (staying armed), one-shot."""
    fired: list[_Day] = []
    armed = True
    for day in series:
        if not day.holds:
            armed = True
        elif armed and (not fired or day.date - fired[-1].date >= cooldown):
            fired.append(day)
            armed = False
            if one_shot:
                break
    return fired


def _observe(rule: SupportedRule, symbol: str, day: _Day) -> str:
    """What was seen on a firing day, against the threshold it crossed."""
    match rule:
        case PriceAbove():
            return f"{symbol} high {_price(day.high)} > {_price(rule.threshold)}"
        case PriceBelow():
            return f"{symbol} low {_price(day.low)} < {_price(rule.threshold)}"
        case PercentChange():
            assert day.change_percent is not None and day.base_close is not None  # the condition held
            bound = {"up": "+", "down": "-", "either": "+/-"}[rule.direction] + _number(rule.percent)
            return (
                f"{symbol} close {_price(day.close)} {day.change_percent:+.2f}% vs {_price(day.base_close)}"
                f" (threshold {bound}%)"
            )
        case VolumeSpike():
            assert day.average_volume is not None  # the condition held
            return (
                f"{symbol} volume {day.volume:,} = {day.volume / day.average_volume:.2f}x the average "
                f"{day.average_volume:,.0f} of the previous {day.previous_bars} bars (>= {_number(rule.multiple)}x)"
            )
        case VolumeAbove():
            return f"{symbol} volume {day.volume:,} >= {rule.threshold:,}"


def _describe(alert: Any) -> str:
    """Names the alert as stored: `"AAPL breaks 230": price_above AAPL threshold=230 cooldown_seconds=3600 one_shot=false`."""
    name = f'"{alert.name}": ' if alert.name else ""
    parameters = " ".join(f"{key}={value}" for key, value in alert.params.items() if key != "type")
    return (
        f"{name}{alert.params['type']} {alert.symbol} {parameters} "
        f"cooldown_seconds={alert.cooldown_seconds} one_shot={str(alert.one_shot).lower()}"
    )


def _approximation(rule: SupportedRule) -> str | None:
    if isinstance(rule, PercentChange) and rule.window_minutes is not None:
        sessions = _sessions(rule)
        return (
            f"window_minutes={rule.window_minutes} is approximated by close-to-close over "
            f"{_count(sessions, 'session')} (ceil({rule.window_minutes} / {SESSION_MINUTES}))"
        )
    return None


def _price(value: Decimal) -> str:
    """Two decimals like a quote; more only when the value has them (a 0.155 threshold)."""
    cents = value.quantize(Decimal("0.01"))
    return f"{cents:.2f}" if cents == value else f"{value.normalize():f}"


def _number(value: Decimal) -> str:
    return f"{value.normalize():f}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
