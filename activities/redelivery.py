"""The self-healing step: re-queue parked deliveries whose automatic retry has come."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from activities.errors import permanent_database_errors
from deallens.contracts import ParkedDigestGroup, RequeuedDeliveries, RetryParkedInput
from deallens.db import redelivery


class RedeliveryActivities:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @activity.defn(name="notifications.requeue_parked")
    async def requeue_parked(self, request: RetryParkedInput) -> RequeuedDeliveries:
        with permanent_database_errors():
            requeued = await redelivery.requeue_due(self._engine, request.limit)
        return RequeuedDeliveries(
            alert_history_ids=requeued.alert_history_ids,
            digests=[
                ParkedDigestGroup(kind=kind, period=period, user_ids=users)  # type: ignore[arg-type]
                for (kind, period), users in requeued.digests.items()
            ],
        )
