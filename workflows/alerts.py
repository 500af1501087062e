"""Alert workflows: one long-running AlertMonitor per alert kind, and notification starts.

A monitor waits on a durable timer (its interval) or a `new_data` signal from the sync that
just stored fresh data, evaluates in one set-based SQL activity, and starts notification
work for what fired. Price and volume monitors sleep through closed market hours (but still
evaluate `new_data`, e.g. from a forced sync). History stays bounded by continue-as-new.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.alerts import AlertActivities
    from deallens.contracts import (
        DEFAULT_MONITOR_INTERVALS,
        AdjustInput,
        AlertMonitorInput,
        EvaluateAlertsInput,
        EvaluateAlertsResult,
        FiringRef,
        MonitorSettings,
        MonitorStatus,
        NewDataInput,
        PauseInput,
        SendAlertNotificationBatchInput,
        SendAlertNotificationInput,
    )
    from workflows import search_attributes
    from workflows.inputs import validated
    from workflows.policies import DB_RETRY, DB_TIMEOUT, MONITOR_EVAL_RETRY
    from workflows.shared import market_session

MARKET_HOURS_KINDS = frozenset({"price", "volume"})
# Wake-ups (signals, timers, pauses) allowed per evaluation before continuing as new.
PASSES_PER_EVALUATION = 5


@workflow.defn(name="AlertMonitor")
class AlertMonitor:
    @workflow.init
    def __init__(self, raw: Any = None) -> None:
        # State comes from the input here, not in run(): a signal or update delivered with
        # the start (signal-with-start, or an adjust right after start) runs its handler
        # before run() and must find the state it changes.
        self._input_error: ApplicationError | None = None
        try:
            self._state = validated(AlertMonitorInput, raw)
        except ApplicationError as error:
            self._input_error, self._state = error, AlertMonitorInput(kind="price")
        self._settings = self._state.settings or MonitorSettings(
            interval_seconds=DEFAULT_MONITOR_INTERVALS[self._state.kind]
        )
        self._paused, self._pause_reason = self._state.paused, self._state.pause_reason
        self._pending: set[str] = set(self._state.pending_symbols)
        self._pending_all = self._state.pending_all
        self._wake = False
        # What this run fired, for its search attributes (a new run starts afresh).
        self._fired_symbols: set[str] = set()
        self._fired_alert_ids: set[int] = set()

    @workflow.run
    async def run(self, raw: Any = None) -> None:
        if self._input_error is not None:
            raise self._input_error
        runs_evaluations = passes = 0

        while True:
            # Checked on every pass, paused or not: a paused monitor still receives a
            # `new_data` signal a minute, and its history must stay bounded too.
            per_run = self._state.evaluations_per_run
            if (
                runs_evaluations >= per_run
                or passes >= PASSES_PER_EVALUATION * per_run
                or workflow.info().is_continue_as_new_suggested()
            ):
                await workflow.wait_condition(workflow.all_handlers_finished)
                if workflow.patched(search_attributes.UPSERT_PATCH):
                    # The next run lists only what it fires itself (not inherited).
                    workflow.continue_as_new(
                        self._carry_over(), search_attributes=search_attributes.attributes(kind=self._state.kind)
                    )
                workflow.continue_as_new(self._carry_over())
            passes += 1
            timer_due = await self._wait()
            if self._paused:
                continue
            if self._pending or self._pending_all:
                symbols = None if self._pending_all else sorted(self._pending)
                self._pending, self._pending_all = set(), False
                await self._evaluate(symbols)
            elif timer_due:
                await self._evaluate(None)
            else:
                continue
            runs_evaluations += 1

    async def _wait(self) -> bool:
        """Until there is something to do; True when the polling interval came due."""
        self._wake = False
        if self._paused:
            await workflow.wait_condition(lambda: self._wake or not self._paused, timeout_summary="paused")
            return False
        if self._pending or self._pending_all:
            return False
        try:
            delay = await self._poll_delay()
            await workflow.wait_condition(
                lambda: self._wake or bool(self._pending) or self._pending_all,
                timeout=delay,
                timeout_summary=f"next {self._state.kind} poll in {delay} (or new_data)",
            )
        except asyncio.TimeoutError:
            return await self._polling_allowed()
        return False

    async def _poll_delay(self) -> timedelta:
        interval = timedelta(seconds=self._settings.interval_seconds)
        if self._state.kind not in MARKET_HOURS_KINDS:
            return interval
        session = await market_session()
        if session.is_open:
            return interval
        # Closed: sleep until the next open (a `new_data` signal still wakes us).
        return max(interval, session.opens_at - workflow.now())

    async def _polling_allowed(self) -> bool:
        if self._state.kind not in MARKET_HOURS_KINDS:
            return True
        return (await market_session()).is_open

    async def _evaluate(self, symbols: list[str] | None) -> None:
        request = EvaluateAlertsInput(
            kind=self._state.kind,
            at=workflow.now(),
            symbols=symbols,
            min_cooldown_seconds=self._settings.cooldown_seconds,
        )
        if not workflow.patched("monitor-survives-failed-evaluations"):
            result = await workflow.execute_activity_method(
                AlertActivities.evaluate, request, start_to_close_timeout=DB_TIMEOUT, retry_policy=DB_RETRY
            )
        else:
            try:
                result = await workflow.execute_activity_method(
                    AlertActivities.evaluate,
                    request,
                    start_to_close_timeout=DB_TIMEOUT,
                    retry_policy=MONITOR_EVAL_RETRY,
                    summary=f"evaluate {self._state.kind} alerts" + (f" for {', '.join(symbols[:10])}" if symbols else ""),
                )
            except ActivityError as error:
                self._record_failure(error)
                return
        if self._state.failed_evaluations:
            workflow.logger.info(
                "%s alert evaluation works again after %d failed", self._state.kind, self._state.failed_evaluations
            )
        self._state = self._state.model_copy(update={"failed_evaluations": 0, "failing_since": None, "last_error": None})
        self._label(result)
        self._state = self._state.model_copy(
            update={
                "evaluations": self._state.evaluations + 1,
                "fired_total": self._state.fired_total + result.fired,
                "last_evaluation_at": result.triggered_at,
                "last_evaluation_fired": result.fired,
            }
        )
        if result.history_ids:
            refs = {ref.history_id: ref for ref in result.firings}
            # Started together: one workflow task for all, not a round trip each.
            await asyncio.gather(
                *(
                    self._start_child(
                        "SendAlertNotification",
                        SendAlertNotificationInput(alert_history_id=history_id),
                        f"notify-{history_id}",
                        self._single_labels(history_id, refs.get(history_id)),
                    )
                    for history_id in result.history_ids
                )
            )
        elif result.fired:
            batch = SendAlertNotificationBatchInput(kind=self._state.kind, triggered_at=result.triggered_at)
            await self._start_child(
                "SendAlertNotificationBatch",
                batch,
                f"notify-batch-{self._state.kind}-{result.triggered_at.isoformat()}",
                self._burst_labels(result),
            )

    def _label(self, result: EvaluateAlertsResult) -> None:
        """List what this run fired in its search attributes (only when that grows)."""
        symbols = self._fired_symbols | set(result.symbols)
        alert_ids = self._fired_alert_ids | set(result.alert_ids)
        if (symbols, alert_ids) == (self._fired_symbols, self._fired_alert_ids):
            return
        self._fired_symbols, self._fired_alert_ids = symbols, alert_ids
        if workflow.patched(search_attributes.UPSERT_PATCH):
            workflow.upsert_search_attributes(search_attributes.updates(symbols=symbols, alert_ids=alert_ids))

    def _single_labels(self, history_id: int, ref: FiringRef | None) -> dict[str, Any]:
        if ref is None:  # a result recorded before firings were described
            return {"static_summary": f"{self._state.kind} alert firing {history_id}"}
        return search_attributes.notify_start_options(ref, started_by=workflow.info().workflow_id)

    def _burst_labels(self, result: EvaluateAlertsResult) -> dict[str, Any]:
        kind = self._state.kind
        return {
            "search_attributes": search_attributes.attributes(
                symbols=result.symbols, alert_ids=result.alert_ids, kind=kind
            ),
            "static_summary": f"burst of {result.fired} {kind} alert firings at {result.triggered_at.isoformat()}",
            "static_details": (
                f"Every firing of the {kind} evaluation at {result.triggered_at.isoformat()}, delivered by channel "
                f"in chunks, a page of firings at a time. Started by {workflow.info().workflow_id}."
            ),
        }

    async def _start_child(self, workflow_type: str, argument: Any, workflow_id: str, labels: dict[str, Any]) -> None:
        try:
            await workflow.start_child_workflow(
                workflow_type,
                argument,
                id=workflow_id,
                # Notifications must outlive this run (continue-as-new) and a terminated monitor.
                parent_close_policy=ParentClosePolicy.ABANDON,
                execution_timeout=timedelta(days=2),
                **labels,
            )
        except WorkflowAlreadyStartedError:
            # Still running from an earlier attempt. (A closed notify-<id> may run again:
            # the notification_deliveries ledger, unique per firing and channel, makes a
            # second run deliver nothing twice.)
            pass

    def _record_failure(self, error: ActivityError) -> None:
        cause = error.cause
        reason = f"{getattr(cause, 'type', None) or type(cause).__name__}: {getattr(cause, 'message', str(cause))}"
        self._state = self._state.model_copy(
            update={
                "failed_evaluations": self._state.failed_evaluations + 1,
                "failing_since": self._state.failing_since or workflow.now(),
                "last_error": reason[:500],
            }
        )
        workflow.logger.warning(
            "%s alert evaluation failed (%d in a row since %s): %s; the monitor keeps running and tries again "
            "at its next wake-up",
            self._state.kind, self._state.failed_evaluations, self._state.failing_since, reason,
        )

    def _carry_over(self) -> AlertMonitorInput:
        return self._state.model_copy(
            update={
                "settings": self._settings,
                "paused": self._paused,
                "pause_reason": self._pause_reason,
                "pending_symbols": sorted(self._pending),
                "pending_all": self._pending_all,
            }
        )

    @workflow.signal(name="new_data")
    def new_data(self, raw: dict[str, Any] | None = None) -> None:
        try:
            signal = NewDataInput.model_validate(raw or {})
        except ValueError:
            workflow.logger.warning("ignored a new_data signal with invalid input: %r", raw)
            return
        if signal.symbols:
            self._pending |= set(signal.symbols)
        else:
            self._pending_all = True
        # Wakes a paused monitor too, only to count the pass: its history grows with every
        # signal, so it must reach the continue-as-new check.
        self._wake = True

    @workflow.signal(name="pause")
    def pause(self, raw: dict[str, Any] | None = None) -> None:
        try:
            reason = PauseInput.model_validate(raw or {}).reason
        except ValueError:
            reason = ""  # a pause with a malformed reason still pauses
        self._paused, self._pause_reason = True, reason or None
        self._wake = True

    @workflow.signal(name="resume")
    def resume(self, raw: dict[str, Any] | None = None) -> None:
        self._paused, self._pause_reason = False, None
        self._wake = True

    @workflow.update(name="adjust")
    def adjust(self, raw: dict[str, Any]) -> MonitorSettings:
        change = AdjustInput.model_validate(raw)
        self._settings = self._settings.model_copy(update=change.model_dump(exclude_none=True))
        self._wake = True  # re-arm the timer with the new interval
        return self._settings

    @adjust.validator
    def _validate_adjust(self, raw: dict[str, Any]) -> None:
        try:
            change = AdjustInput.model_validate(raw)
        except ValueError as error:
            first = error.errors()[0]  # type: ignore[attr-defined]
            field = ".".join(str(part) for part in first["loc"]) or "input"
            raise ValueError(f"{field}: {first['msg']}") from None
        if change.interval_seconds is None and change.cooldown_seconds is None:
            raise ValueError("give interval_seconds and/or cooldown_seconds")

    @workflow.query(name="status")
    def status(self) -> MonitorStatus:
        return MonitorStatus(
            kind=self._state.kind,
            paused=self._paused,
            pause_reason=self._pause_reason,
            settings=self._settings,
            pending_symbols=sorted(self._pending),
            pending_all=self._pending_all,
            evaluations=self._state.evaluations,
            fired_total=self._state.fired_total,
            last_evaluation_at=self._state.last_evaluation_at,
            last_evaluation_fired=self._state.last_evaluation_fired,
            failed_evaluations=self._state.failed_evaluations,
            failing_since=self._state.failing_since,
            last_error=self._state.last_error,
        )
