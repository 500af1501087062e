"""The workflows by name: sync, news ingest, insights, notify, digest, backfill.

Each command builds the same input the schedules give (deallens/contracts.py), validated here,
and starts the workflow under an ID of the schedule's name (`cli-<schedule id>-<UTC time>`)
or, for a firing's notification, the engine's own `notify-<alert_history id>`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from typing import Any

from cli.common import Start, build, common_options, iso_date, positive_int, print_result, stamp
from deallens.config import ConfigError, Settings
from deallens.contracts import (
    DigestInput,
    GenerateCompanyInsightsInput,
    GenerateDealInsightsInput,
    GenerateMarketSummaryInput,
    IngestCompanyNewsInput,
    IngestDealNewsInput,
    IngestMarketNewsInput,
    OHLCProgress,
    SendAlertNotificationInput,
    SyncCompanyPricesInput,
    SyncDailyOHLCInput,
    SyncFundamentalsInput,
)

# AlphaVantage's compact daily series holds the last 100 sessions (about 140 calendar days):
# a backfill reaching further back asks for the full history.
COMPACT_DAYS = 140


def register(commands: Any) -> None:
    sync = commands.add_parser("sync", help="start a market-data sync now").add_subparsers(dest="action", required=True)
    prices = sync.add_parser("prices", help="SyncCompanyPrices: latest quotes (no symbols: every tracked company)")
    prices.add_argument("symbols", nargs="*", metavar="SYMBOL")
    prices.add_argument("--force", action="store_true", help="fetch even outside market hours")
    common_options(prices)
    ohlc = sync.add_parser("ohlc", help="SyncDailyOHLC: daily bars through the last closed session")
    ohlc.add_argument("symbols", nargs="*", metavar="SYMBOL")
    ohlc.add_argument("--full", action="store_true", help="the full history, not the last 100 sessions")
    common_options(ohlc)
    fundamentals = sync.add_parser("fundamentals", help="SyncFundamentals: company overview fields")
    fundamentals.add_argument("symbols", nargs="*", metavar="SYMBOL")
    common_options(fundamentals)

    news = commands.add_parser("news", help="start a news ingestion now").add_subparsers(dest="action", required=True)
    ingest = news.add_parser("ingest", help="IngestMarketNews, IngestCompanyNews or IngestDealNews")
    ingest.add_argument("feed", choices=["market", "company", "deals"])
    ingest.add_argument("--company-id", type=positive_int, action="append", dest="company_ids", metavar="N",
                        help="company: these companies (repeat); default by priority")
    common_options(ingest)

    insights = commands.add_parser("insights", help="start an AI analysis now").add_subparsers(dest="action", required=True)
    company = insights.add_parser("company", help="GenerateCompanyInsights")
    company.add_argument("--company-id", type=positive_int, action="append", dest="company_ids", metavar="N")
    company.add_argument("--force", action="store_true", help="analyse even when the context is unchanged")
    company.add_argument("--batch", action="store_true", help="through the OpenAI Batch API")
    common_options(company)
    deal = insights.add_parser("deal", help="GenerateDealInsights")
    deal.add_argument("--deal-id", type=positive_int, action="append", dest="deal_ids", metavar="N")
    deal.add_argument("--force", action="store_true")
    common_options(deal)
    market = insights.add_parser("market", help="GenerateMarketSummary")
    market.add_argument("--date", type=iso_date, help="the trading day (default: today's, New York)")
    market.add_argument("--force", action="store_true")
    common_options(market)

    notify = commands.add_parser("notify", help="SendAlertNotification for one firing (alert_history id)")
    notify.add_argument("alert_history_id", type=positive_int, metavar="ALERT_HISTORY_ID")
    common_options(notify)

    digest = commands.add_parser("digest", help="SendDailyDigest or SendWeeklySummary now")
    digest.add_argument("kind", choices=["daily", "weekly"])
    digest.add_argument("--date", type=iso_date, help="the local date to send for (default: whoever is due now)")
    digest.add_argument("--user-id", type=positive_int, action="append", dest="user_ids", metavar="N")
    common_options(digest)

    backfill = commands.add_parser("backfill", help="fill daily bars, with a progress bar").add_subparsers(dest="action", required=True)
    bars = backfill.add_parser("ohlc", help="SyncDailyOHLC for a date range; the bar follows its `progress` query")
    bars.add_argument("symbols", nargs="*", metavar="SYMBOL")
    bars.add_argument("--from", type=iso_date, required=True, dest="start", metavar="YYYY-MM-DD")
    bars.add_argument("--to", type=iso_date, dest="end", metavar="YYYY-MM-DD", help="default: the last closed session")
    common_options(bars, wait=False)


def _start(args: argparse.Namespace, today: dt.date) -> Start:
    at = stamp()
    if args.command == "sync":
        workflow, model, schedule = {
            "prices": ("SyncCompanyPrices", SyncCompanyPricesInput, "sync-company-prices"),
            "ohlc": ("SyncDailyOHLC", SyncDailyOHLCInput, "sync-daily-ohlc"),
            "fundamentals": ("SyncFundamentals", SyncFundamentalsInput, "sync-fundamentals"),
        }[args.action]
        fields: dict[str, Any] = {"symbols": args.symbols}
        if args.action == "prices":
            fields["force"] = args.force
        if args.action == "ohlc":
            fields["full"] = args.full
        return Start(workflow, build(model, **fields), f"cli-{schedule}-{at}")
    if args.command == "news":
        if args.company_ids and args.feed != "company":
            raise ConfigError("--company-id: only for `news ingest company`")
        workflow, argument, schedule = {
            "market": ("IngestMarketNews", lambda: build(IngestMarketNewsInput), "ingest-market-news"),
            "company": ("IngestCompanyNews", lambda: build(IngestCompanyNewsInput, company_ids=args.company_ids or []), "ingest-company-news"),
            "deals": ("IngestDealNews", lambda: build(IngestDealNewsInput), "ingest-deal-news"),
        }[args.feed]
        return Start(workflow, argument(), f"cli-{schedule}-{at}")
    if args.command == "insights":
        if args.action == "company":
            argument = build(GenerateCompanyInsightsInput, company_ids=args.company_ids or [], force=args.force, batch=args.batch)
            return Start("GenerateCompanyInsights", argument, f"cli-generate-company-insights-{at}")
        if args.action == "deal":
            argument = build(GenerateDealInsightsInput, deal_ids=args.deal_ids or [], force=args.force)
            return Start("GenerateDealInsights", argument, f"cli-generate-deal-insights-{at}")
        argument = build(GenerateMarketSummaryInput, date=args.date, force=args.force)
        return Start("GenerateMarketSummary", argument, f"cli-generate-market-summary-{at}")
    if args.command == "notify":
        # The engine's own ID: a firing is notified by one workflow at a time.
        return Start("SendAlertNotification", build(SendAlertNotificationInput, alert_history_id=args.alert_history_id),
                     f"notify-{args.alert_history_id}")
    if args.command == "digest":
        workflow = {"daily": "SendDailyDigest", "weekly": "SendWeeklySummary"}[args.kind]
        argument = build(DigestInput, date=args.date, user_ids=args.user_ids)
        when = args.date.isoformat() if args.date else at
        return Start(workflow, argument, f"cli-{args.kind}-digest-{when}")
    # backfill ohlc
    if args.end is not None and args.end < args.start:
        raise ConfigError(f"--to: {args.end} is before --from {args.start}")
    if args.end is not None and args.end > today:
        raise ConfigError(f"--to: {args.end} is in the future (today is {today})")
    full = (today - args.start).days > COMPACT_DAYS
    return Start("SyncDailyOHLC", build(SyncDailyOHLCInput, symbols=args.symbols, full=full),
                 f"cli-backfill-ohlc-{args.start}-{at}")


async def _backfill(start: Start, settings: Settings, task_queue: str, args: argparse.Namespace) -> int:
    """Start, then draw the bar from the workflow's `progress` query until its result is in."""
    from temporalio.client import WorkflowFailureError
    from tqdm import tqdm

    from cli.common import client

    span = f"{args.start} to {args.end or 'the last closed session'}"
    mode = "full history" if start.argument.full else "last 100 sessions"  # type: ignore[attr-defined]
    temporal = await client(settings)
    handle = await temporal.start_workflow(start.workflow, start.argument, id=start.workflow_id, task_queue=task_queue)
    print(f"started {start.workflow} {start.workflow_id} on {task_queue}: daily bars {span} ({mode})", flush=True)
    result_task = asyncio.ensure_future(handle.result())
    with tqdm(total=0, unit="company", desc="backfill ohlc", file=sys.stderr, dynamic_ncols=True) as bar:
        while True:
            done, _ = await asyncio.wait({result_task}, timeout=0.5)
            try:
                progress = await handle.query("progress", result_type=OHLCProgress)
            except Exception:  # noqa: BLE001 - the run may have just closed; the result says the rest
                progress = None
            if progress is not None:
                bar.total = progress.planned
                bar.n = progress.done
                bar.set_postfix(failed=progress.failed, skipped=progress.skipped)
                bar.refresh()
            if done:
                break
    try:
        result = result_task.result()
    except WorkflowFailureError as error:
        print(f"starter: {start.workflow_id} failed: {getattr(error.cause, 'message', None) or error.cause}", file=sys.stderr)
        return 1
    print_result(result)
    await _report_coverage(settings, start.argument.symbols, args.start, args.end or result.get("session_date"))  # type: ignore[attr-defined]
    return 0


async def _report_coverage(settings: Settings, symbols: list[str], since: dt.date, until: Any) -> None:
    """What the range holds now, per company: the backfill's effect, read from the database."""
    from deallens.db.engine import create_engine
    from deallens.db.ohlc import coverage

    if settings.database_url is None or until is None:
        return
    end = until if isinstance(until, dt.date) else dt.date.fromisoformat(str(until))
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        rows = await coverage(engine, symbols, since, end)
    finally:
        await engine.dispose()
    print(f"daily bars stored from {since} to {end}:")
    for row in rows:
        span = f"{row.first} .. {row.last}" if row.bars else "none"
        print(f"  {row.symbol:<8} {row.bars:>6} bar(s)  {span}")


async def run(args: argparse.Namespace, settings: Settings) -> int:
    today = dt.datetime.now(dt.UTC).date()
    start = _start(args, today)
    if args.command == "backfill" and not args.show_command:
        return await _backfill(start, settings, args.task_queue, args)
    return await start.run(settings, args.task_queue, wait=getattr(args, "wait", False), show_command=args.show_command)


COMMANDS = ("sync", "news", "insights", "notify", "digest", "backfill")
