"""`python -m tests.fault_worker`: worker.py as it runs in production, with the activity
timeouts capped (FAULT_TIMEOUT_CAP_SECONDS, default 6) so that the fault tests see a lost
attempt retried within seconds.

A SIGKILLed worker is noticed by Temporal only when the attempt it held times out: after the
heartbeat timeout (20 s for sends, 1-3 min for provider and LLM calls) or, for the database
steps that do not heartbeat, the 60 s start-to-close timeout. That wait is the point of the
timeouts, not what the fault tests measure: they check what happens *after* it (the retry
finds the ledger, the claims and the transactions as the killed attempt left them). Capping
the wait keeps 20+ kills within the CI budget; bench/soak.py can run with the real timeouts
(FAULT_TIMEOUT_CAP_SECONDS=0).

The cap is a workflow outbound interceptor added to the client's interceptors, so every
workflow the worker runs schedules its activities with min(timeout, cap); nothing else about
the worker changes (same build_workers, same queues, same retry policies).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from temporalio import client as temporal_client_api
from temporalio import worker as temporal_worker

import temporal_client


def _capped(value: timedelta | None, cap: timedelta) -> timedelta | None:
    return None if value is None else min(value, cap)


class _CapOutbound(temporal_worker.WorkflowOutboundInterceptor):
    cap = timedelta(seconds=6)

    def start_activity(self, input: temporal_worker.StartActivityInput) -> Any:
        input.start_to_close_timeout = _capped(input.start_to_close_timeout, self.cap)
        # A heartbeat timeout at or above start-to-close is pointless; keep it under the cap.
        input.heartbeat_timeout = _capped(input.heartbeat_timeout, self.cap / 2)
        return super().start_activity(input)


class CapActivityTimeouts(temporal_client_api.Interceptor, temporal_worker.Interceptor):
    """Client interceptor that is also a worker interceptor (the SDK applies it to workers)."""

    def __init__(self, cap: timedelta) -> None:
        outbound = type("CappedOutbound", (_CapOutbound,), {"cap": cap})

        class Inbound(temporal_worker.WorkflowInboundInterceptor):
            def init(self, outbound_next: temporal_worker.WorkflowOutboundInterceptor) -> None:
                super().init(outbound(outbound_next))

        self._inbound = Inbound

    def workflow_interceptor_class(
        self, input: temporal_worker.WorkflowInterceptorClassInput
    ) -> type[temporal_worker.WorkflowInboundInterceptor]:
        return self._inbound


def install() -> None:
    seconds = float(os.environ.get("FAULT_TIMEOUT_CAP_SECONDS", "6"))
    if seconds <= 0:
        return
    base = temporal_client.interceptors
    cap = CapActivityTimeouts(timedelta(seconds=seconds))
    temporal_client.interceptors = lambda: [*base(), cap]  # type: ignore[assignment]


if __name__ == "__main__":
    install()
    import worker

    temporal_client.exit_skipping_teardown(worker.main([]))
