"""python schedules.py apply [--dry-run]: make the Temporal schedules match this file.

Schedules replace the old beat scheduler: they live in the Temporal server (no singleton
process), survive restarts and show in the Web UI. Market-hours jobs are written in the
exchange's own clock (America/New_York), so DST needs no second entry; the workflows
themselves skip holidays and early closes with the NYSE calendar.

`apply` creates what is missing and updates what differs; it never deletes a schedule it
does not know (delete those in the Web UI or with `temporal schedule delete`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from pydantic import BaseModel
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from activities.alerts import monitor_id, monitor_start_options
from deallens.config import ConfigError, load_settings
from deallens.contracts import (
    AlertMonitorInput,
    CleanupMarketDataInput,
    DigestInput,
    GenerateCompanyInsightsInput,
    GenerateDealInsightsInput,
    GenerateMarketSummaryInput,
    IngestCompanyNewsInput,
    IngestDealNewsInput,
    IngestMarketNewsInput,
    RetryParkedInput,
    SyncCompanyPricesInput,
    SyncDailyOHLCInput,
    SyncFundamentalsInput,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError

from workflows import queues, search_attributes

ALERT_KINDS = ("price", "volume", "news", "deal")

EXCHANGE_TZ = "America/New_York"


@dataclass(frozen=True)
class ScheduleDef:
    id: str
    workflow: str
    input: BaseModel
    crons: tuple[str, ...]
    time_zone: str
    overlap: ScheduleOverlapPolicy
    catchup: timedelta
    note: str
    timeout: timedelta = timedelta(hours=1)
    # Random delay per run, so that jobs sharing a minute do not all call at once.
    jitter: timedelta | None = None

    def schedule(self, task_queue: str) -> Schedule:
        return Schedule(
            action=ScheduleActionStartWorkflow(
                self.workflow,
                self.input,
                # The server appends the scheduled time to this ID for each run.
                id=self.id,
                task_queue=task_queue,
                execution_timeout=self.timeout,
                # Each run says in the Web UI which schedule started it and why.
                static_summary=f"{self.id}: {self.note}",
                static_details=f"Started by the `{self.id}` schedule ({' | '.join(self.crons)} {self.time_zone}); see schedules.py.",
            ),
            spec=ScheduleSpec(cron_expressions=list(self.crons), time_zone_name=self.time_zone, jitter=self.jitter),
            policy=SchedulePolicy(overlap=self.overlap, catchup_window=self.catchup),
        )


SCHEDULES: tuple[ScheduleDef, ...] = (
    ScheduleDef(
        id="sync-company-prices",
        workflow="SyncCompanyPrices",
        input=SyncCompanyPricesInput(),
        # Every minute 09:30-15:59 ET on weekdays; the workflow skips holidays and early closes.
        crons=("30-59 9 * * 1-5", "* 10-15 * * 1-5"),
        time_zone=EXCHANGE_TZ,
        # A sync still running when the next minute comes: skip, the next one will be fresher.
        overlap=ScheduleOverlapPolicy.SKIP,
        catchup=timedelta(minutes=1),
        note="latest quotes in market hours",
    ),
    ScheduleDef(
        id="sync-daily-ohlc",
        workflow="SyncDailyOHLC",
        input=SyncDailyOHLCInput(),
        # After the close (13:00 on early-close days, 16:00 otherwise); the workflow catches up
        # every company that is behind, so a missed day is filled by the next run.
        crons=("30 16 * * 1-5",),
        time_zone=EXCHANGE_TZ,
        overlap=ScheduleOverlapPolicy.SKIP,
        catchup=timedelta(hours=12),
        note="daily bars after the close, catching up missed days",
    ),
    ScheduleDef(
        id="sync-fundamentals",
        workflow="SyncFundamentals",
        input=SyncFundamentalsInput(),
        crons=("0 8 * * 1-5",),
        time_zone=EXCHANGE_TZ,
        overlap=ScheduleOverlapPolicy.SKIP,
        catchup=timedelta(hours=1),
        note="company fundamentals before the open, stalest first",
    ),
    ScheduleDef(
        id="cleanup-market-data",
        workflow="CleanupMarketData",
        input=CleanupMarketDataInput(),
        crons=("0 2 * * *",),
        time_zone=EXCHANGE_TZ,
        overlap=ScheduleOverlapPolicy.SKIP,
        catchup=timedelta(days=1),
        note="retention per table",
    ),
    ScheduleDef(
        id="send-daily-digest",
        workflow="SendDailyDigest",
        # Hourly: each run sends to the users whose local digest time (DIGEST_HOUR, or their
        # own digest_hour, in their time zone) has come, once per local date (the ledger).
        input=DigestInput(),
        crons=("0 * * * *",),
        time_zone="UTC",
        overlap=ScheduleOverlapPolicy.SKIP,
        # A missed hour is caught up by the next run (it picks users up to 6 hours late).
        catchup=timedelta(hours=1),
        note="daily digest at each user's local hour",
        timeout=timedelta(hours=6),
    ),
    ScheduleDef(
        id="send-weekly-summary",
        workflow="SendWeeklySummary",
        input=DigestInput(),
        # Local Sunday evening (WEEKLY_SUMMARY_HOUR) falls on Sunday or Monday in UTC in
        # every zone from UTC-12 to UTC+14.
        crons=("0 * * * 0,1",),
        time_zone="UTC",
        overlap=ScheduleOverlapPolicy.SKIP,
        catchup=timedelta(hours=1),
        note="weekly summary on each user's Sunday evening",
        timeout=timedelta(hours=6),
    ),
    # News, as the old system had it (UTC): general news every 15 minutes 12:00-23:00, company
    # news every 30 minutes offset by 10, deal news every 30 minutes; each with jitter.
    ScheduleDef(
        id="ingest-market-news",
        workflow="IngestMarketNews",
        input=IngestMarketNewsInput(),
        crons=("*/15 12-22 * * *", "0 23 * * *"),
        time_zone="UTC",
        overlap=ScheduleOverlapPolicy.SKIP,
        catchup=timedelta(minutes=15),
        note="business headlines and market news",
        timeout=timedelta(minutes=30),
        jitter=timedelta(minutes=1),
    ),
    ScheduleDef(
        id="ingest-company-news",
        workflow="IngestCompanyNews",
        input=IngestCompanyNewsInput(),
        crons=("10,40 * * * *",),
        time_zone="UTC",
        overlap=ScheduleOverlapPolicy.SKIP,
        catchup=timedelta(minutes=30),
        note="company news, most watched and least recently fetched first",
        timeout=timedelta(minutes=30),
        jitter=timedelta(minutes=2),
    ),
    ScheduleDef(
        id="ingest-deal-news",
        workflow="IngestDealNews",
        input=IngestDealNewsInput(),
        crons=("0,30 * * * *",),
        time_zone="UTC",
        overlap=ScheduleOverlapPolicy.SKIP,
        catchup=timedelta(minutes=30),
        note="M&A news, tracked as deals",
        timeout=timedelta(minutes=30),
        jitter=timedelta(minutes=2),
    ),
    # AI insights, as the old system's "every 4-8 hours depending on type". Unchanged contexts
    # are cache hits (no LLM call), so a run over quiet data costs nothing.
    ScheduleDef(
        id="generate-company-insights",
        workflow="GenerateCompanyInsights",
        input=GenerateCompanyInsightsInput(),
        crons=("20 */6 * * *",),
        time_zone="UTC",
        overlap=ScheduleOverlapPolicy.SKIP,
        catchup=timedelta(hours=1),
        note="company analyses of watchlisted companies whose context changed",
        timeout=timedelta(hours=3),
        jitter=timedelta(minutes=5),
    ),
    ScheduleDef(
        id="generate-deal-insights",
        workflow="GenerateDealInsights",
        input=GenerateDealInsightsInput(),
        crons=("50 */4 * * *",),
        time_zone="UTC",
        overlap=ScheduleOverlapPolicy.SKIP,
        catchup=timedelta(hours=1),
        note="deal analyses of open deals whose facts or prices changed",
        timeout=timedelta(hours=2),
        jitter=timedelta(minutes=5),
    ),
    ScheduleDef(
        id="generate-market-summary",
        # After the close and the daily bars (16:30 ET); the workflow skips NYSE holidays.
        workflow="GenerateMarketSummary",
        input=GenerateMarketSummaryInput(),
        crons=("15 17 * * 1-5",),
        time_zone=EXCHANGE_TZ,
        overlap=ScheduleOverlapPolicy.SKIP,
        catchup=timedelta(hours=6),
        note="market summary after each trading day's close",
        timeout=timedelta(hours=1),
    ),
    # Self-healing: parked deliveries go again a few times over a day (15 min, 2 h, 8 h after
    # parking) before `notifications failed` lists them as needing a person.
    ScheduleDef(
        id="retry-parked-deliveries",
        workflow="RetryParkedDeliveries",
        input=RetryParkedInput(),
        crons=("*/15 * * * *",),
        time_zone="UTC",
        overlap=ScheduleOverlapPolicy.SKIP,
        catchup=timedelta(minutes=15),
        note="parked deliveries retried automatically, with backoff",
        timeout=timedelta(minutes=10),
        jitter=timedelta(minutes=1),
    ),
)


async def apply(client: Client, *, dry_run: bool, task_queue: str = queues.DEFAULT) -> list[str]:
    """Create or update each schedule; returns one line per schedule saying what happened."""
    report = []
    if not dry_run:
        # Before anything starts a workflow that sets them (the monitors below, the syncs).
        added = await search_attributes.ensure_registered(client)
        if added:
            report.append(f"registered the search attributes {', '.join(added)}")
    for definition in SCHEDULES:
        schedule = definition.schedule(task_queue)
        if dry_run:
            report.append(f"would apply {definition.id}: {definition.workflow} {' | '.join(definition.crons)} {definition.time_zone} ({definition.note})")
            continue
        try:
            await client.create_schedule(definition.id, schedule)
            report.append(f"created {definition.id} ({definition.note})")
        except ScheduleAlreadyRunningError:

            def _replace(current: ScheduleUpdateInput, schedule: Schedule = schedule) -> ScheduleUpdate:
                # The definition comes from this file; the state (paused by an operator, with
                # its note) stays as the operator left it.
                schedule.state = current.description.schedule.state
                return ScheduleUpdate(schedule=schedule)

            await client.get_schedule_handle(definition.id).update(_replace)
            report.append(f"updated {definition.id} ({definition.note})")
    if dry_run:
        report.append(f"would make sure the search attributes {', '.join(k.name for k in search_attributes.ALL)} exist")
    for kind in ALERT_KINDS:
        if dry_run:
            report.append(f"would make sure {monitor_id(kind)} runs")
            continue
        handle = await client.start_workflow(
            "AlertMonitor",
            AlertMonitorInput(kind=kind),
            id=monitor_id(kind),
            task_queue=task_queue,
            # Running already (the usual case): keep it, with its state and settings.
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            **monitor_start_options(kind),
        )
        report.append(f"{monitor_id(kind)} running (run {handle.result_run_id or handle.run_id})")
    return report


async def _main(dry_run: bool) -> int:
    from temporal_client import connect

    settings = load_settings()
    if dry_run:
        for line in await apply(None, dry_run=True):  # type: ignore[arg-type]
            print(line)
        return 0
    try:
        client = await connect(settings)
    except RuntimeError as error:
        raise ConfigError(f"TEMPORAL_ADDRESS: cannot reach Temporal at {settings.temporal_address}: {error}") from None
    try:
        lines = await apply(client, dry_run=False)
    except RPCError as error:
        raise ConfigError(f"Temporal refused to apply the schedules: {error.message}") from None
    for line in lines:
        print(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python schedules.py", description="Apply the Temporal schedules.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    apply_parser = commands.add_parser("apply", help="create or update every schedule")
    apply_parser.add_argument("--dry-run", action="store_true", help="print what would be applied, change nothing")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(_main(args.dry_run))
    except ConfigError as error:
        print(f"schedules: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    from deallens.observability.tracing import CLI_SERVICE, traced_process
    from temporal_client import exit_skipping_teardown

    # Traces only when OTEL_EXPORTER_OTLP_ENDPOINT is set: a started workflow joins the CLI's trace.
    with traced_process(CLI_SERVICE):
        code = main()
    exit_skipping_teardown(code)
