"""Alert activities: where an alert fires (the set-based evaluation), signal-with-start of
the monitors after fresh data. Notification delivery is in activities/notifications.py."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy

from deallens.contracts import (
    AlertMonitorInput,
    EvaluateAlertsInput,
    EvaluateAlertsResult,
    FiringRef,
    NewDataInput,
    SignalMonitorsInput,
)
from activities.errors import permanent_database_errors
from deallens.db import alert_eval, notifications
from deallens.observability import metrics
from workflows import search_attributes

# Up to this many firings in one evaluation get a workflow each (notify-<id>); a larger
# burst is notified in batches by evaluation, not by starting thousands of workflows.
SINGLE_SENDS_MAX = 25


def monitor_id(kind: str) -> str:
    return f"alert-monitor-{kind}"


def monitor_start_options(kind: str) -> dict[str, Any]:
    """What every start of a monitor carries for the Web UI (its kind, searchable, and a summary)."""
    return {
        "search_attributes": search_attributes.attributes(kind=kind),
        "static_summary": f"alert monitor: {kind} alerts",
        "static_details": (
            f"Evaluates every active {kind} alert on a timer and on `new_data` signals from the syncs; "
            "starts notify-<alert_history_id> for what fires. DealLensSymbols/DealLensAlertIds list "
            "what this run fired. Query `status`; signals pause/resume; update `adjust`."
        ),
    }


async def wake_monitor(client: Client, kind: str, symbols: list[str], task_queue: str) -> None:
    """Signal-with-start: the monitor receives `new_data` (no symbols: evaluate everything),
    and is started if it was not running. Used after new data, and after a new alert (whose
    condition may already hold on stored data)."""
    await client.start_workflow(
        "AlertMonitor",
        AlertMonitorInput(kind=kind),
        id=monitor_id(kind),
        task_queue=task_queue,
        start_signal="new_data",
        start_signal_args=[NewDataInput(symbols=symbols)],
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        **monitor_start_options(kind),
    )


class AlertActivities:
    def __init__(self, engine: AsyncEngine, *, max_quote_age: dt.timedelta, sms_enabled: bool = False) -> None:
        self._engine = engine
        self._max_quote_age = max_quote_age
        # Only to describe the firings' channels in their notify-<id> summaries.
        self._sms_enabled = sms_enabled

    @activity.defn(name="alerts.evaluate")
    async def evaluate(self, request: EvaluateAlertsInput) -> EvaluateAlertsResult:
        policy = alert_eval.EvalPolicy(
            now=request.at, max_quote_age=self._max_quote_age, min_cooldown_seconds=request.min_cooldown_seconds
        )
        with permanent_database_errors(), metrics.alert_evaluation(request.kind) as fired_now:
            fired_now(len(await alert_eval.evaluate(self._engine, request.kind, policy, symbols=request.symbols)))
        # Every firing of this evaluation, not just this attempt's: an attempt that committed
        # but did not report back (worker lost) is retried with the same `at`, and its
        # firings must still be notified.
        fired = await notifications.evaluation_firings(self._engine, request.kind, request.at)
        ids = fired if len(fired) <= SINGLE_SENDS_MAX else []
        firings: list[FiringRef] = []
        symbols: list[str] = []
        alert_ids: list[int] = []
        if fired:
            # What the Web UI shows (search attributes, summaries): ids and symbols, bounded.
            refs = await notifications.firing_refs(self._engine, ids, sms_enabled=self._sms_enabled)
            firings = [FiringRef.model_validate(ref) for ref in refs]
            symbols, alert_ids = await notifications.evaluation_labels(
                self._engine, request.kind, request.at, limit=search_attributes.MAX_VALUES
            )
        return EvaluateAlertsResult(
            fired=len(fired), history_ids=ids, triggered_at=request.at,
            firings=firings, symbols=symbols, alert_ids=alert_ids,
        )

    @activity.defn(name="alerts.signal_monitors")
    async def signal_monitors(self, request: SignalMonitorsInput) -> None:
        """Signal-with-start: the monitor receives `new_data`, and is started if it was not running."""
        client = activity.client()
        for kind in request.kinds:
            await wake_monitor(client, kind, request.symbols, request.task_queue)
