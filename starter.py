"""python starter.py COMMAND: operate DealLens.

  migrate                 apply database migrations
  seed-demo               seed the demo universe into an empty database
  health [--json]         Temporal, workers per queue, schedules, monitors, database, SMTP,
                          providers and quota, parked/stuck deliveries, data freshness;
                          exit 0 healthy, 1 degraded, 2 down
  alerts add '<json>'     create an alert, print its id (e.g. '{"user_id": 1, "type":
                          "price_above", "symbol": "AAPL", "threshold": 200}'), and wake
                          its kind's monitor so it is evaluated on the stored data at once
  alerts backtest --alert-id N [--days 90]
                          when a price or volume alert would have fired on stored daily bars
  notifications failed [--limit N]
                          deliveries parked as failed (alerts per channel, digests)
  notifications retry [--alert-id N ...]
                          mark failed deliveries pending again and start their workflows
  notifications unsubscribe TOKEN [--list all|alerts|daily|weekly]
                          apply an unsubscribe token (e.g. from a mailto: unsubscribe)

Workflows by name (each with --task-queue, --wait for the result, --show-command for the
equivalent `temporal` command): sync prices|ohlc|fundamentals [SYMBOL ...] [--force],
news ingest market|company|deals, insights company|deal|market, notify ALERT_HISTORY_ID,
digest daily|weekly [--date] [--user-id N], backfill ohlc --from D [--to D] (progress bar);
monitors status|pause|resume|adjust, schedules list|trigger|pause|unpause.

Workflows are also started with `temporal workflow start --type NAME --task-queue deallens
--input '{...}'` or from the Web UI; schedules with `python schedules.py apply`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy.exc import ArgumentError, DBAPIError
from temporalio.service import RPCError

from deallens.config import ConfigError, Settings, configure_logging, load_settings
from deallens.db.alert_backtest import MAX_DAYS, BacktestError, backtest, format_report
from deallens.db.alerts import add_alert
from deallens.db.demo import seed_demo
from deallens.db.engine import create_engine, database_problem
from deallens.db.migrate import current_revision, head_revision, upgrade_to_head
from deallens.domain.alert_rules import KIND_BY_TYPE, InvalidAlert, parse_alert


def _database_url(settings: Settings) -> str:
    if settings.database_url is None:
        raise ConfigError("DATABASE_URL: not set; export postgresql+asyncpg://user@host:5432/db, or use `make run`")
    return settings.database_url


async def _with_engine(settings: Settings, action: Callable[..., Awaitable[int]], *args: object) -> int:
    engine = create_engine(_database_url(settings), pool_size=2)
    try:
        return await action(engine, *args)
    finally:
        await engine.dispose()


async def _migrate(engine) -> int:  # type: ignore[no-untyped-def]
    before = await current_revision(engine)
    after = await upgrade_to_head(engine)
    print(f"database at migration {after}" + ("" if before == after else f" (was {before or 'empty'})"))
    return 0


async def _seed(engine) -> int:  # type: ignore[no-untyped-def]
    report = await seed_demo(engine)
    if report.seeded:
        print(f"seeded {report.companies} companies, {report.users} users, {report.alerts} alerts")
    else:
        print("database already has users: demo seed skipped")
    return 0


# An alert definition is a few hundred characters; a larger one is a mistake (or an attack on the parser).
MAX_DEFINITION_CHARS = 10_000


async def _alerts_add(engine, raw: str, settings: Settings, task_queue: str) -> int:  # type: ignore[no-untyped-def]
    if len(raw) > MAX_DEFINITION_CHARS:
        raise InvalidAlert(f"the definition is {len(raw)} characters, at most {MAX_DEFINITION_CHARS}")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as error:
        raise InvalidAlert(f"the definition is not JSON: {error.msg} at column {error.colno}") from None
    except RecursionError:
        raise InvalidAlert("the definition is not JSON an alert can be: nested too deeply") from None
    rule = parse_alert(data)
    alert_id = await add_alert(engine, rule)
    print(alert_id, flush=True)
    await _wake_monitor(settings, KIND_BY_TYPE[rule.type], getattr(rule, "symbol", None), task_queue)
    return 0


async def _wake_monitor(settings: Settings, kind: str, symbol: str | None, task_queue: str) -> None:
    """A new alert whose condition already holds on stored data fires now, not at the next
    sync (which may be `unchanged`, or hours away outside market hours). The alert is stored
    either way: an unreachable Temporal only delays its first evaluation, so it is a warning."""
    from temporalio.service import RPCError

    from activities.alerts import monitor_id, wake_monitor
    from temporal_client import connect

    try:
        client = await asyncio.wait_for(connect(settings), timeout=10)
        await asyncio.wait_for(wake_monitor(client, kind, [symbol] if symbol else [], task_queue), timeout=10)
    except (RuntimeError, OSError, TimeoutError, RPCError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(
            f"starter: alert stored, but {monitor_id(kind)} was not woken (Temporal at {settings.temporal_address}: "
            f"{reason}); it is evaluated at the monitor's next poll or new data",
            file=sys.stderr,
        )


async def _alerts_backtest(engine, alert_id: int, days: int) -> int:  # type: ignore[no-untyped-def]
    print("\n".join(format_report(await backtest(engine, alert_id, days))))
    return 0


def _backtest_days(value: str) -> int:
    """--days: calendar days back from today, bounded so a typo cannot scan decades."""
    if not value.isdigit() or not 1 <= int(value) <= MAX_DAYS:
        raise argparse.ArgumentTypeError(f"must be a whole number of days from 1 to {MAX_DAYS}, got {value!r}")
    return int(value)


async def _notifications_failed(engine, limit: int) -> int:  # type: ignore[no-untyped-def]
    from deallens.db.notifications import failed
    from deallens.domain.redelivery import MAX_AUTO_RETRIES, next_auto_retry

    rows = await failed(engine, limit, include_waiting=True)
    if not rows:
        print("no failed deliveries")
        return 0
    print(f"{'what':<7} {'ref':<24} {'channel':<7} {'status':<7} {'attempts':>8}  {'next':<22} {'to':<32} error")
    waiting = 0
    for row in rows:
        ref = f"alert_history {row.ref}" if row.what == "alert" else f"{row.kind} {row.period} user {row.ref}"
        error = (row.error or "").replace("\n", " ")[:120]
        status = "stuck" if row.status == "pending" else row.status
        due = next_auto_retry(row.updated_at, row.auto_retries) if row.status == "failed" else None
        if due is not None:
            waiting += 1
            upcoming = f"auto {row.auto_retries + 1}/{MAX_AUTO_RETRIES} {due:%m-%d %H:%M}Z"
        else:
            upcoming = "needs a person"
        print(f"{row.what:<7} {ref:<24} {row.channel:<7} {status:<7} {row.attempts:>8}  {upcoming:<22} {row.email:<32} {error}")
    print(
        f"{len(rows)} failed or stuck, {len(rows) - waiting} of them need a person (the others are retried "
        "automatically); re-send now with `python starter.py notifications retry`"
    )
    return 0


async def _notifications_retry(settings: Settings, alert_ids: list[int] | None, task_queue: str) -> int:
    """Re-send what is parked (or stuck): per firing `notify-<id>`, per digest date one workflow.

    A firing or digest date whose workflow is still running is left alone (it would not see a
    row re-queued behind it); the claims on each delivery keep two senders off one row anyway.
    """
    from temporalio.client import WorkflowExecutionStatus
    from temporalio.common import WorkflowIDReusePolicy
    from temporalio.service import RPCError

    from deallens.contracts import DigestInput, FiringRef, SendAlertNotificationInput
    from deallens.db import notifications as ledger
    from temporal_client import connect
    from workflows import search_attributes

    try:
        client = await connect(settings)
    except RuntimeError as error:
        raise ConfigError(f"TEMPORAL_ADDRESS: cannot reach Temporal at {settings.temporal_address}: {error}") from None

    async def running(workflow_id: str) -> bool:
        try:
            description = await client.get_workflow_handle(workflow_id).describe()
        except RPCError:
            return False  # never ran (or its history is gone)
        return description.status == WorkflowExecutionStatus.RUNNING

    async def start(workflow: str, argument: object, workflow_id: str, labels: dict[str, Any]) -> bool:
        if await running(workflow_id):
            print(f"{workflow_id} is still running: left as it is (retry again once it has finished)")
            return False
        await client.start_workflow(
            workflow, argument, id=workflow_id, task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE, **labels,
        )
        return True

    engine = create_engine(_database_url(settings), pool_size=1)
    alerts_started = digests_started = 0
    try:
        alerts, digest_groups = await ledger.retry_candidates(engine, alert_ids)
        for history_id in alerts:
            workflow_id = f"notify-{history_id}"
            if await running(workflow_id):
                print(f"{workflow_id} is still running: left as it is (retry again once it has finished)")
                continue
            await ledger.requeue_alerts(engine, [history_id])
            refs = await ledger.firing_refs(engine, [history_id], sms_enabled=settings.sms_enabled)
            labels = (
                search_attributes.notify_start_options(FiringRef.model_validate(refs[0]), "starter.py notifications retry")
                if refs
                else {}
            )
            try:
                await start(
                    "SendAlertNotification", SendAlertNotificationInput(alert_history_id=history_id), workflow_id, labels
                )
            except Exception:
                for channel in ("email", "push", "sms"):
                    await ledger.park(engine, [history_id], channel, "retry could not start its workflow")
                raise
            alerts_started += 1
        workflow_type = {"daily": "SendDailyDigest", "weekly": "SendWeeklySummary"}
        for (kind, period), user_ids in sorted(digest_groups.items()):
            workflow_id = f"retry-{kind}-digest-{period.isoformat()}"
            if await running(workflow_id):
                print(f"{workflow_id} is still running: left as it is (retry again once it has finished)")
                continue
            await ledger.requeue_digests(engine, kind, period, user_ids)
            await start(
                workflow_type[kind], DigestInput(date=period, user_ids=user_ids), workflow_id,
                {"static_summary": f"retry of {len(user_ids)} parked {kind} digest(s) for {period.isoformat()}"},
            )
            digests_started += len(user_ids)
            print(f"started {workflow_id} for {len(user_ids)} user(s)")
    finally:
        await engine.dispose()
    print(f"re-sending {alerts_started} alert notification(s) and {digests_started} digest(s)")
    return 0


async def _notifications_unsubscribe(engine, token: str, list_name: str) -> int:  # type: ignore[no-untyped-def]
    from deallens.db.notifications import UNSUBSCRIBE_LISTS, unsubscribe

    email = await unsubscribe(engine, token, list_name)
    if email is None:
        print("unknown unsubscribe token", file=sys.stderr)
        return 1
    print(f"{email}: unsubscribed from {UNSUBSCRIBE_LISTS[list_name][1]}")
    return 0


async def _costs(engine, days: int, budget) -> int:  # type: ignore[no-untyped-def]
    """LLM spend by day, model and workflow, tokens, the insight cache's hit rate, budget left today."""
    import datetime as dt

    from deallens.db import insights as insights_db
    from deallens.db import llm_budget

    today = dt.datetime.now(dt.UTC).date()
    async with engine.connect() as conn:
        rows = await insights_db.spend(conn, today, days)
        hits, misses, fallbacks = await insights_db.cache_counts(conn, today, days)
    committed, _ = await llm_budget.committed(engine, today)
    print(f"LLM spend over the last {days} day(s) (UTC days)")
    print(f"{'day':<10} {'model':<16} {'workflow':<26} {'calls':>6} {'ok':>5} {'prompt':>9} {'cached':>9} {'output':>8} {'usd':>10}")
    for r in rows:
        print(f"{r.day.isoformat():<10} {r.model[:16]:<16} {r.workflow[:26]:<26} {r.calls:>6} {r.ok:>5} "
              f"{r.prompt_tokens:>9} {r.cached_tokens:>9} {r.completion_tokens:>8} {r.cost_usd:>10.6f}")
    total = sum((r.cost_usd for r in rows), start=type(committed)(0))
    print(f"total ${total:.6f} in {sum(r.calls for r in rows)} call(s)")
    asked = hits + misses + fallbacks
    rate = f"{hits / asked:.1%}" if asked else "n/a"
    print(f"insight cache: {hits} hit(s), {misses} analysed, {fallbacks} rule-based; hit rate {rate}")
    print(f"budget today ({today.isoformat()}): ${committed:.6f} of ${budget} committed, ${max(budget - committed, 0):.6f} left")
    return 0


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value!r}")
    return number


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python starter.py", description="Operate DealLens.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("migrate", help="apply database migrations")
    commands.add_parser("seed-demo", help="seed the demo universe into an empty database")
    health = commands.add_parser("health", help="check Temporal, workers, schedules, monitors, database, email, providers, deliveries, freshness")
    health.add_argument("--json", action="store_true", dest="as_json", help="one JSON document for machines")
    health.add_argument("--task-queue", default="deallens", help="the queue the workers serve (default deallens)")
    alerts = commands.add_parser("alerts", help="manage alerts").add_subparsers(dest="action", required=True)
    add = alerts.add_parser("add", help="create an alert from a JSON definition; prints its id")
    add.add_argument("definition", help='e.g. \'{"user_id": 1, "type": "price_above", "symbol": "AAPL", "threshold": 200}\'')
    add.add_argument("--task-queue", default="deallens", help="where the workers listen (default deallens)")
    backtest_parser = alerts.add_parser("backtest", help="when a price or volume alert would have fired on stored daily bars")
    backtest_parser.add_argument("--alert-id", type=int, required=True, metavar="N")
    backtest_parser.add_argument("--days", type=_backtest_days, default=90, help=f"calendar days back from today, 1..{MAX_DAYS} (default 90)")
    notify = commands.add_parser("notifications", help="failed deliveries and unsubscribes").add_subparsers(
        dest="action", required=True
    )
    failed_parser = notify.add_parser("failed", help="list deliveries parked as failed")
    failed_parser.add_argument("--limit", type=_positive_int, default=200)
    retry_parser = notify.add_parser("retry", help="re-send failed deliveries (all, or the alert firings named)")
    retry_parser.add_argument("--alert-id", type=_positive_int, action="append", metavar="N", dest="alert_ids",
                              help="an alert_history id; repeat for several (default: every failed delivery)")
    retry_parser.add_argument("--task-queue", default="deallens", help="where the workers listen (default deallens)")
    unsub = notify.add_parser("unsubscribe", help="apply an unsubscribe token")
    unsub.add_argument("token")
    unsub.add_argument("--list", default="all", choices=["all", "alerts", "daily", "weekly"], dest="list_name")
    costs = commands.add_parser("costs", help="LLM spend by day, model and workflow; cache hit rate; budget left today")
    costs.add_argument("--days", type=_positive_int, default=7, help="UTC days back, today included (default 7)")
    from cli import operate, start

    start.register(commands)
    operate.register(commands)
    args = parser.parse_args(argv)

    try:
        settings = load_settings()
        configure_logging(
            "WARNING" if settings.log_level == "INFO" else settings.log_level,
            settings.log_format,
            secrets=settings.secret_values(),
        )
        if args.command == "migrate":
            return asyncio.run(_with_engine(settings, _migrate))
        if args.command == "seed-demo":
            return asyncio.run(_with_engine(settings, _seed))
        if args.command == "health":
            from cli import health as health_cli

            return asyncio.run(health_cli.run(settings, as_json=args.as_json, task_queue=args.task_queue))
        if args.command in start.COMMANDS:
            return asyncio.run(start.run(args, settings))
        if args.command == "monitors":
            return asyncio.run(operate.monitors(args, settings))
        if args.command == "schedules":
            return asyncio.run(operate.schedules(args, settings))
        if args.command == "costs":
            return asyncio.run(_with_engine(settings, _costs, args.days, settings.llm_daily_budget_usd))
        if args.command == "notifications":
            if args.action == "failed":
                return asyncio.run(_with_engine(settings, _notifications_failed, args.limit))
            if args.action == "retry":
                return asyncio.run(_notifications_retry(settings, args.alert_ids, args.task_queue))
            return asyncio.run(_with_engine(settings, _notifications_unsubscribe, args.token, args.list_name))
        if args.action == "backtest":
            return asyncio.run(_with_engine(settings, _alerts_backtest, args.alert_id, args.days))
        return asyncio.run(_with_engine(settings, _alerts_add, args.definition, settings, args.task_queue))
    except BacktestError as error:
        print(error, file=sys.stderr)
        return 2
    except InvalidAlert as error:
        print(f"invalid alert: {error}", file=sys.stderr)
        return 2
    except ConfigError as error:
        print(f"starter: {error}", file=sys.stderr)
        return 2
    except RPCError as error:
        print(f"starter: Temporal refused: {error.message}", file=sys.stderr)
        return 1
    except (OSError, DBAPIError, ArgumentError, ValueError) as error:
        print(f"starter: cannot use the database: {database_problem(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    from deallens.observability.tracing import CLI_SERVICE, traced_process
    from temporal_client import exit_skipping_teardown

    # Traces only when OTEL_EXPORTER_OTLP_ENDPOINT is set: a started workflow joins the CLI's trace.
    with traced_process(CLI_SERVICE):
        code = main()
    exit_skipping_teardown(code)
