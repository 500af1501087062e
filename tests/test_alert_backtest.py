"""`starter.py alerts backtest`: when a price or volume alert would have fired on stored daily
bars, with the live evaluation's edge triggering, cooldown and one-shot."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from deallens.db.alert_backtest import BacktestError, BacktestReport, backtest, format_report
from deallens.db.alerts import add_alert
from deallens.domain.alert_rules import parse_alert
from starter import main as starter_main
from tests.conftest import ROOT

TODAY = dt.date(2026, 9, 18)

_INSERT_BAR = text(
    """
    INSERT INTO ohlc_data (company_id, date, open, high, low, close, volume, provisional, source)
    SELECT id, :date, :close, :high, :low, :close, :volume, :provisional, 'alphavantage-sim'
    FROM companies WHERE symbol = 'AAPL'
    """
)


def ago(days: int, today: dt.date = TODAY) -> dt.date:
    return today - dt.timedelta(days=days)


def bar(
    date: dt.date,
    close: float,
    *,
    high: float | None = None,
    low: float | None = None,
    volume: int = 1_000_000,
    provisional: bool = False,
) -> dict[str, Any]:
    """A bar opening at its close; high and low default to the close."""
    return {
        "date": date,
        "close": close,
        "high": close if high is None else high,
        "low": close if low is None else low,
        "volume": volume,
        "provisional": provisional,
    }


@pytest.fixture
async def market(db: AsyncEngine) -> AsyncEngine:
    """User 1 and the company AAPL, no bars."""
    async with db.begin() as conn:
        await conn.execute(text("INSERT INTO users (email) VALUES ('ada@deallens.local')"))
        await conn.execute(text("INSERT INTO companies (symbol, name) VALUES ('AAPL', 'Apple Inc.')"))
    return db


async def store(engine: AsyncEngine, bars: list[dict[str, Any]]) -> None:
    async with engine.begin() as conn:
        await conn.execute(_INSERT_BAR, bars)


async def alert(engine: AsyncEngine, **definition: Any) -> int:
    return await add_alert(engine, parse_alert({"user_id": 1, "symbol": "AAPL", **definition}))


def fired(report: BacktestReport) -> list[dt.date]:
    return [firing.date for firing in report.firings]


async def test_price_above_fires_on_each_crossing_and_rearms_when_false(market: AsyncEngine) -> None:
    await store(market, [
        bar(ago(7), 228, high=229),
        bar(ago(6), 224, high=225),
        bar(ago(5), 230, high=231),  # crosses: fires
        bar(ago(4), 231, high=232),  # stays above: already fired
        bar(ago(3), 232, high=233),
        bar(ago(2), 227, high=228),  # below again: re-arms
        bar(ago(1), 229, high=230.5),  # crosses again: fires
    ])
    alert_id = await alert(market, type="price_above", threshold=230)
    report = await backtest(market, alert_id, 10, today=TODAY)
    assert format_report(report) == [
        f"backtest of alert {alert_id} (price_above AAPL threshold=230 cooldown_seconds=3600 one_shot=false)"
        " from 2026-09-09 to 2026-09-18, daily bars",
        "2026-09-13  AAPL high 231.00 > 230.00",
        "2026-09-17  AAPL high 230.50 > 230.00",
        "2 firings in 10 days (7 sessions with data; condition true on 4 sessions)",
    ]


async def test_price_below_reads_the_days_low(market: AsyncEngine) -> None:
    await store(market, [bar(ago(4), 120), bar(ago(3), 116, low=114.5), bar(ago(2), 116), bar(ago(1), 115, low=115)])
    alert_id = await alert(market, type="price_below", threshold="115", name="AAPL dips")
    report = await backtest(market, alert_id, 5, today=TODAY)
    assert format_report(report)[0].startswith(f'backtest of alert {alert_id} ("AAPL dips": price_below AAPL threshold=115 ')
    assert [f.observation for f in report.firings] == ["AAPL low 114.50 < 115.00"]
    assert fired(report) == [ago(3)]  # a low equal to the threshold did not cross it


@pytest.mark.parametrize(
    ("direction", "observations"),
    [
        ("up", ["AAPL close 102.00 +2.00% vs 100.00 (threshold +2%)"]),
        ("down", ["AAPL close 98.00 -2.97% vs 101.00 (threshold -2%)"]),
        ("either", ["AAPL close 102.00 +2.00% vs 100.00 (threshold +/-2%)", "AAPL close 98.00 -2.97% vs 101.00 (threshold +/-2%)"]),
    ],
)
async def test_percent_change_compares_with_the_previous_close(
    market: AsyncEngine, direction: str, observations: list[str]
) -> None:
    await store(market, [bar(ago(4), 100), bar(ago(3), 102), bar(ago(2), 101), bar(ago(1), 98)])
    alert_id = await alert(market, type="percent_change", percent=2, direction=direction)
    report = await backtest(market, alert_id, 5, today=TODAY)
    assert [f.observation for f in report.firings] == observations
    assert report.condition_days == len(observations)


async def test_percent_change_window_is_approximated_by_sessions(market: AsyncEngine) -> None:
    await store(market, [bar(ago(4), 100), bar(ago(3), 101), bar(ago(2), 103), bar(ago(1), 104)])
    alert_id = await alert(market, type="percent_change", percent=3, direction="up", window_minutes=780)
    lines = format_report(await backtest(market, alert_id, 5, today=TODAY))
    assert lines[1] == "note: window_minutes=780 is approximated by close-to-close over 2 sessions (ceil(780 / 390))"
    # 103 vs 100 two sessions back: +3%; 104 vs 101: +2.97%, and one session back never 3%.
    assert lines[2:] == [
        "2026-09-16  AAPL close 103.00 +3.00% vs 100.00 (threshold +3%)",
        "1 firing in 5 days (4 sessions with data; condition true on 1 session)",
    ]


async def test_volume_spike_against_previous_twenty_bars_from_before_the_period(market: AsyncEngine) -> None:
    baseline = [bar(ago(day), 100, volume=1_000_000 if day % 2 else 3_000_000) for day in range(40, 20, -1)]
    await store(market, [*baseline, bar(ago(2), 100, volume=4_000_000), bar(ago(1), 100, volume=4_100_000)])
    alert_id = await alert(market, type="volume_spike", multiple=2)
    report = await backtest(market, alert_id, 3, today=TODAY)
    # The period holds two bars; the average is of the 20 bars before each, mostly outside it.
    assert [f.observation for f in report.firings] == [
        "AAPL volume 4,000,000 = 2.00x the average 2,000,000 of the previous 20 bars (>= 2x)"
    ]
    assert (report.sessions, report.condition_days) == (2, 2)


async def test_volume_spike_needs_five_previous_bars(market: AsyncEngine) -> None:
    volumes = [1_000_000] * 4 + [3_000_000, 3_000_000]
    await store(market, [bar(ago(6 - i), 100, volume=v) for i, v in enumerate(volumes)])
    alert_id = await alert(market, type="volume_spike", multiple=2)
    report = await backtest(market, alert_id, 10, today=TODAY)
    # The first spike has 4 previous bars: no baseline. The second has 5 (average 1.4M).
    assert [f.observation for f in report.firings] == [
        "AAPL volume 3,000,000 = 2.14x the average 1,400,000 of the previous 5 bars (>= 2x)"
    ]


async def test_volume_above(market: AsyncEngine) -> None:
    volumes = [100_000_000, 160_000_000, 170_000_000, 90_000_000, 150_000_000]
    await store(market, [bar(ago(5 - i), 100, volume=v) for i, v in enumerate(volumes)])
    alert_id = await alert(market, type="volume_above", threshold=150_000_000)
    report = await backtest(market, alert_id, 10, today=TODAY)
    assert fired(report) == [ago(4), ago(1)]
    assert report.firings[0].observation == "AAPL volume 160,000,000 >= 150,000,000"


async def test_cooldown_suppresses_a_firing_and_the_alert_stays_armed(market: AsyncEngine) -> None:
    above = [True, False, True, True, True, False, True]
    await store(market, [bar(ago(7 - i), 229, high=231 if a else 229) for i, a in enumerate(above)])
    alert_id = await alert(market, type="price_above", threshold=230, cooldown_seconds=3 * 86400)
    report = await backtest(market, alert_id, 10, today=TODAY)
    # Day 3 re-crosses 2 days after the firing: suppressed, still armed, so day 4 (3 days
    # after) fires though the condition did not become true again; day 7 re-crosses.
    assert fired(report) == [ago(7), ago(4), ago(1)]
    assert report.condition_days == 5


async def test_one_shot_stops_after_the_first_firing(market: AsyncEngine) -> None:
    await store(market, [bar(ago(3), 229, high=231), bar(ago(2), 229), bar(ago(1), 229, high=231)])
    alert_id = await alert(market, type="price_above", threshold=230, one_shot=True)
    report = await backtest(market, alert_id, 10, today=TODAY)
    assert fired(report) == [ago(3)]
    assert report.condition_days == 2


async def test_provisional_bars_are_ignored(market: AsyncEngine) -> None:
    await store(market, [bar(ago(2), 229), bar(ago(1), 229), bar(TODAY, 235, high=236, provisional=True)])
    alert_id = await alert(market, type="price_above", threshold=230)
    report = await backtest(market, alert_id, 10, today=TODAY)
    assert format_report(report)[1:] == ["0 firings in 10 days (2 sessions with data; condition true on 0 sessions)"]


async def test_only_the_requested_days_are_replayed(market: AsyncEngine) -> None:
    highs = {12: 231, 10: 231, 9: 231, 8: 225, 3: 231}
    await store(market, [bar(ago(d), 225, high=highs.get(d, 225)) for d in range(12, 0, -1)])
    alert_id = await alert(market, type="price_above", threshold=230)
    report = await backtest(market, alert_id, 10, today=TODAY)
    # 10 days ending today start 9 days ago; the alert starts armed, as a new one would.
    assert (report.start, report.end) == (ago(9), TODAY)
    assert fired(report) == [ago(9), ago(3)]
    assert (report.sessions, report.condition_days) == (9, 2)


async def test_no_bars_says_how_to_get_them(market: AsyncEngine) -> None:
    await store(market, [bar(ago(40), 229)])
    alert_id = await alert(market, type="price_above", threshold=230)
    assert format_report(await backtest(market, alert_id, 30, today=TODAY))[1:] == [
        "no stored bars for AAPL between 2026-08-20 and 2026-09-18; fetch them with the SyncDailyOHLC workflow: "
        "temporal workflow start --type SyncDailyOHLC --task-queue deallens --input '{\"symbols\": [\"AAPL\"]}'"
    ]


@pytest.mark.parametrize("definition", [{"type": "news_mention", "keywords": ["merger"]}, {"type": "deal_new", "symbol": None}])
async def test_news_and_deal_alerts_are_refused(market: AsyncEngine, definition: dict[str, Any]) -> None:
    alert_id = await alert(market, **definition)
    with pytest.raises(BacktestError) as refused:
        await backtest(market, alert_id, 30, today=TODAY)
    assert str(refused.value) == f"backtest supports price and volume alerts (alert {alert_id} is {definition['type']})"


async def test_cli_errors_are_one_line_with_exit_code_2(
    market: AsyncEngine, database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    news_id = await alert(market, type="news_mention")
    for alert_id, message in [
        ("999", "backtest: no alert with id 999"),
        (str(news_id), f"backtest supports price and volume alerts (alert {news_id} is news_mention)"),
    ]:
        # In-process (a thread: main() runs its own event loop); the subprocess path is below.
        assert await asyncio.to_thread(starter_main, ["alerts", "backtest", "--alert-id", alert_id]) == 2
        assert capsys.readouterr() == ("", message + "\n")


@pytest.mark.parametrize("days", ["0", "3651", "ninety", "-5"])
def test_days_out_of_range_is_a_usage_error(days: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        starter_main(["alerts", "backtest", "--alert-id", "1", "--days", days])
    assert exited.value.code == 2
    assert f"argument --days: must be a whole number of days from 1 to 3650, got '{days}'" in capsys.readouterr().err


async def test_cli_prints_the_report(market: AsyncEngine, database_url: str) -> None:
    today = dt.datetime.now(dt.UTC).date()
    await store(market, [bar(ago(4, today), 229), bar(ago(3, today), 230, high=231.4), bar(ago(2, today), 229)])
    alert_id = await alert(market, type="price_above", threshold=230)
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "starter.py", "alerts", "backtest", "--alert-id", str(alert_id), "--days", "30"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1:] == [
        f"{ago(3, today)}  AAPL high 231.40 > 230.00",
        "1 firing in 30 days (3 sessions with data; condition true on 1 session)",
    ]
    assert result.stderr == ""
