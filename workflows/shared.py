"""Workflow-side helpers used by more than one workflow."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.market_data import MarketDataActivities
    from deallens.contracts import MarketSessionInput, MarketSessionResult
    from workflows.policies import DB_RETRY, DB_TIMEOUT


async def market_session() -> MarketSessionResult:
    """The NYSE session at the workflow's now (the calendar library runs in an activity)."""
    return await workflow.execute_activity_method(
        MarketDataActivities.market_session,
        MarketSessionInput(at=workflow.now()),
        start_to_close_timeout=DB_TIMEOUT,
        retry_policy=DB_RETRY,
        summary="NYSE session now (calendar)",
    )
