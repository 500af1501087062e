"""`python starter.py health [--json]`: gathers the facts (Temporal here, the database through
deallens/db/health.py) and prints the verdicts of deallens/ops/health.py, one line each.

Temporal is asked for: the namespace, the pollers of every task queue the worker serves (with
their build ids), every schedule schedules.py defines (paused or not, next run) and each alert
monitor (running, paused through its `status` query, or missing). When Temporal or the database
cannot be reached, the checks that need it are left out and the verdict is down (exit 2).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

from sqlalchemy.exc import ArgumentError, DBAPIError

from deallens.config import DEVSTACK_ENV_FILE, ConfigError, Settings, devstack_env_file
from deallens.db.engine import create_engine, database_problem
from deallens.db.migrate import current_revision, head_revision
from deallens.ops.health import (
    Check,
    MonitorState,
    Pollers,
    ScheduleState,
    Status,
    deliveries_check,
    exit_code,
    freshness_checks,
    monitor_check,
    queue_check,
    quota_check,
    report,
    schedule_check,
    stuck_margin,
)

TIMEOUT = 10.0
QUERY_TIMEOUT = 5.0


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _config_and_providers(settings: Settings, used: dict[str, int] | None, llm: str | None) -> list[Check]:
    source = f"; with the settings of `make run` in {DEVSTACK_ENV_FILE}" if devstack_env_file() else ""
    checks = [Check("config", Status.OK, f"ok (log level {settings.log_level}{source})")]
    try:
        settings.check_providers()
        misconfigured = False
    except ConfigError:
        misconfigured = True
    for name, simulated, url, per_day in (
        ("alphavantage", settings.alphavantage_simulated, settings.alphavantage_base_url, settings.alphavantage_calls_per_day),
        ("newsapi", settings.newsapi_simulated, settings.newsapi_base_url, settings.newsapi_calls_per_day),
        ("openai", settings.openai_simulated, settings.openai_base_url, None),
    ):
        if misconfigured and simulated and url.startswith("https://"):
            checks.append(Check(f"provider {name}", Status.DEGRADED,
                                f"MISCONFIGURED: no API key, and the URL is the real provider's ({url})"))
        elif used is None:  # the database is unreachable: no ledger to read
            checks.append(Check(f"provider {name}", Status.OK, f"{'simulated' if simulated else 'real'} at {url}",
                                {"simulated": simulated, "url": url}))
        else:
            check = quota_check(name, simulated=simulated, url=url, calls_per_day=per_day, used_today=used.get(name, 0))
            if name == "openai" and llm:
                check = Check(check.name, check.status, f"{check.detail}; {llm}", check.data)
            checks.append(check)
    return checks


async def _smtp(settings: Settings) -> list[Check]:
    from deallens.notify.email import SmtpConfig, probe

    if not settings.email_enabled:
        return [Check("email", Status.OK, f"OFF: {settings.email_off_reason.removeprefix('email is OFF: ')}")]  # type: ignore[union-attr]
    checks = [Check("email", Status.OK, f"SMTP {settings.smtp_host}:{settings.smtp_port} ({settings.smtp_tls})")]
    try:
        greeting = await asyncio.wait_for(probe(SmtpConfig.from_settings(settings)), timeout=TIMEOUT)
        checks.append(Check("smtp", Status.OK, f"ok, EHLO answered ({greeting[:80]})"))
    except Exception as error:  # noqa: BLE001 - any failure to speak SMTP is the finding
        checks.append(Check("smtp", Status.DEGRADED, f"UNREACHABLE at {settings.smtp_host}:{settings.smtp_port}: {_first_line(error)}"))
    return checks


async def _database(settings: Settings, now: dt.datetime) -> tuple[list[Check], dict[str, int] | None, str | None]:
    from deallens.db import health as db_health
    from deallens.db import llm_budget
    from deallens.domain.budget import ledger_day

    if settings.database_url is None:
        return [Check("database", Status.DOWN, "FAILED: DATABASE_URL: not set; export postgresql+asyncpg://user@host:5432/db, or use `make run`")], None, None
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        current, head = await current_revision(engine), head_revision()
        if current != head:
            return [Check("database", Status.DOWN, f"BEHIND (at {current or 'empty'}, code needs {head})")], None, None
        checks = [Check("database", Status.OK, "ok", {"revision": current})]
        margin = stuck_margin(settings.notify_claim_seconds)
        counts = await db_health.deliveries(engine, margin=margin)
        checks.append(deliveries_check(
            counts.parked, counts.stuck, lease_seconds=settings.notify_claim_seconds, margin=margin, retrying=counts.retrying
        ))
        newest = await db_health.newest(engine)
        checks += freshness_checks(now, quote_at=newest.quote_at, bar_date=newest.bar_date,
                                   article_at=newest.article_at, insight_at=newest.insight_at)
        # Each ledger's own day: New York's for AlphaVantage, UTC for NewsAPI (activities/news.py).
        used = await db_health.calls_today(engine, {"alphavantage": ledger_day(now), "newsapi": now.astimezone(dt.UTC).date()})
        committed, _ = await llm_budget.committed(engine, now.date())
        budget = settings.llm_daily_budget_usd
        llm = f"${max(budget - committed, 0):.2f} of ${budget} LLM budget left today"
        return checks, used, llm
    except (OSError, DBAPIError, ArgumentError, ValueError) as error:
        return [Check("database", Status.DOWN, f"FAILED: {database_problem(error)}")], None, None
    finally:
        await engine.dispose()


async def _temporal(settings: Settings, task_queue: str) -> list[Check]:
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, DescribeTaskQueueRequest
    from temporalio.client import WorkflowExecutionStatus
    from temporalio.service import RPCError, RPCStatusCode

    from activities.alerts import monitor_id
    from deallens.contracts import MonitorStatus
    from schedules import ALERT_KINDS, SCHEDULES
    from temporal_client import connect
    from workflows import queues

    where = f"at {settings.temporal_address}"
    try:
        client = await asyncio.wait_for(connect(settings), timeout=TIMEOUT)
        await asyncio.wait_for(client.service_client.check_health(), timeout=TIMEOUT)
    except (RuntimeError, OSError, TimeoutError, RPCError) as error:
        return [Check("temporal", Status.DOWN, f"FAILED {where}: {_first_line(error)}")]
    namespace = client.namespace
    try:
        await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=namespace), timeout=dt.timedelta(seconds=TIMEOUT))
    except RPCError as error:
        return [Check("temporal", Status.DOWN, f"FAILED {where}: namespace {namespace}: {error.message}")]
    checks = [Check("temporal", Status.OK, f"ok {where} namespace {namespace}")]

    async def pollers(queue: str, kind: int) -> list[Any]:
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(namespace=namespace, task_queue=TaskQueue(name=queue), task_queue_type=kind),  # type: ignore[arg-type]
            timeout=dt.timedelta(seconds=TIMEOUT),
        )
        return list(response.pollers)

    for queue in (task_queue, *(queues.provider_queue(task_queue, s) for s in (queues.ALPHAVANTAGE_SUFFIX, queues.NEWSAPI_SUFFIX, queues.LLM_SUFFIX))):
        main = queue == task_queue
        workflow_side = await pollers(queue, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW) if main else []
        activity_side = await pollers(queue, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)
        builds = sorted({
            p.deployment_options.build_id or p.worker_version_capabilities.build_id
            for p in (*workflow_side, *activity_side)
            if p.deployment_options.build_id or p.worker_version_capabilities.build_id
        })
        checks.append(queue_check(Pollers(queue, len(workflow_side), len(activity_side), tuple(builds)), main=main))

    for definition in SCHEDULES:
        try:
            described = await client.get_schedule_handle(definition.id).describe()
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            checks.append(schedule_check(ScheduleState(definition.id, present=False)))
            continue
        state = described.schedule.state
        upcoming = described.info.next_action_times
        checks.append(schedule_check(ScheduleState(
            definition.id, present=True, paused=state.paused, note=state.note or None,
            next_run=upcoming[0] if upcoming else None,
        )))

    async def monitor(kind: str) -> Check:
        handle = client.get_workflow_handle(monitor_id(kind))
        try:
            described = await handle.describe()
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            described = None
        if described is None or described.status != WorkflowExecutionStatus.RUNNING:
            return monitor_check(MonitorState(kind, running=False))
        try:
            status = await handle.query("status", result_type=MonitorStatus, rpc_timeout=dt.timedelta(seconds=QUERY_TIMEOUT))
        except (RPCError, TimeoutError) as error:
            # Running in history, but no worker answers: its queue has no poller (see above).
            return Check(f"monitor {kind}", Status.DEGRADED,
                         f"NOT ANSWERING its status query (is a worker polling its queue?): {_first_line(error)}")
        return monitor_check(MonitorState(
            kind, running=True, paused=status.paused, reason=status.pause_reason,
            evaluations=status.evaluations, last_evaluation_at=status.last_evaluation_at,
            failed_evaluations=status.failed_evaluations, failing_since=status.failing_since, last_error=status.last_error,
        ))

    # Side by side: a monitor whose worker is gone costs one query timeout, not one each.
    checks += await asyncio.gather(*(monitor(kind) for kind in ALERT_KINDS))
    return checks


async def gather(settings: Settings, *, task_queue: str, now: dt.datetime | None = None) -> list[Check]:
    now = now or dt.datetime.now(dt.UTC)
    database, used, llm = await _database(settings, now)
    checks = _config_and_providers(settings, used, llm)
    checks += await _smtp(settings)
    checks += database
    try:
        checks += await _temporal(settings, task_queue)
    except Exception as error:  # noqa: BLE001 - a refused call mid-way: say which, do not trace back
        checks.append(Check("temporal", Status.DOWN, f"FAILED while checking: {_first_line(error)}"))
    return checks


async def run(settings: Settings, *, as_json: bool, task_queue: str) -> int:
    checks = await gather(settings, task_queue=task_queue)
    if as_json:
        print(json.dumps(report(checks), indent=2))
    else:
        for check in checks:
            print(check.line())
        code = exit_code(checks)
        print(f"health: {Status(code).name.lower()} (exit {code})")
    return exit_code(checks)
