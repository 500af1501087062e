"""deals.track: deals from the M&A articles of an ingestion's ArticleRange.

Runs on the deallens-llm queue. The range's deal-relevant articles not checked before are
read in batches (by the LLM through the gateway when it is available, else, and for whatever
it cannot answer, by the headline patterns), then matched to deals, created, moved through
their statuses and marked checked in one transaction per batch (deallens/db/deals.py). A
transient LLM failure is retried by Temporal with the server's delay; on the last attempt
the patterns read the rest instead of failing the ingestion. The result is read back from
the markers this run wrote, so a retry reports what a lost first attempt did (and the deal
monitor still hears of it), while a second run over the same range reports nothing.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import permanent_database_errors, to_application_error
from deallens.contracts import ArticleRange, TrackDealsResult
from deallens.db import deals as deals_db
from deallens.domain.deals.extractor import DealExtractor, PatternExtractor
from deallens.llm.deals import LLMDealExtractor
from deallens.llm.gateway import LLMGateway
from deallens.providers.errors import ProviderError

log = logging.getLogger(__name__)


def _last_attempt() -> bool:
    info = activity.info()
    policy = info.retry_policy
    return policy is not None and policy.maximum_attempts > 0 and info.attempt >= policy.maximum_attempts


def _run_id() -> str:
    """The same on every attempt of this activity, different for any other run."""
    info = activity.info()
    return f"{info.workflow_id}/{info.workflow_run_id}/{info.activity_id}"


class DealActivities:
    def __init__(self, engine: AsyncEngine, gateway: LLMGateway | None, *, batch_size: int = 20) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._engine = engine
        self._gateway = gateway
        self._batch_size = batch_size

    def _extractor(self) -> DealExtractor:
        if self._gateway is None or not self._gateway.available:
            return PatternExtractor()
        return LLMDealExtractor(
            self._gateway, workflow=activity.info().workflow_type or None, fall_back_on_transient=_last_attempt()
        )

    @activity.defn(name="deals.track")
    async def track(self, request: ArticleRange) -> TrackDealsResult:
        if request.first_id > request.last_id:
            raise ApplicationError(
                f"invalid input: ArticleRange first_id {request.first_id} is after last_id {request.last_id}",
                type="InvalidInput",
                non_retryable=True,
            )
        extractor = self._extractor()
        try:
            with permanent_database_errors():
                summary = await deals_db.track(
                    self._engine, request.first_id, request.last_id, extractor,
                    checked_by=_run_id(), batch_size=self._batch_size, progress=activity.heartbeat,
                )
        except ProviderError as error:
            raise to_application_error(error) from None
        return TrackDealsResult(
            checked=summary.checked, created=summary.created, status_changes=summary.status_changes,
            symbols=summary.symbols,
        )
