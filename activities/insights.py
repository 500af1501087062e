"""AI insight activities: plan (default queue) and analyse (deallens-llm queue).

Thin adapters over deallens/llm/insight_runs.py: contexts are assembled set-based for the
whole batch (deallens/db/insight_context.py), each subject is a cache hit, an LLM analysis
or a rule-based fallback, stored in its own transaction. A transient LLM failure is retried
by Temporal with the server's delay (the subjects already stored are cache hits then); on the
activity's last attempt the rules finish the batch instead of failing the run.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from activities.errors import permanent_database_errors, to_application_error
from deallens.contracts import (
    AnalyseCompaniesInput,
    AnalyseDealsInput,
    InsightBatchResult,
    MarketSummaryInput,
    PlanCompanyInsightsInput,
    PlanCompanyInsightsResult,
    PrepareCompanyBatchInput,
    PrepareCompanyBatchResult,
    StoreBatchInsightsInput,
    StoreBatchInsightsResult,
)
from deallens.db import insight_context
from deallens.db import insights as insights_db
from deallens.domain.insights.context import InsightContext
from deallens.domain.market_calendar import is_trading_day
from deallens.llm import insight_runs
from deallens.llm.errors import LLMBatchJobError
from deallens.llm.gateway import LLMGateway
from temporalio.exceptions import ApplicationError

EXCHANGE_TZ = zoneinfo.ZoneInfo("America/New_York")


def _last_attempt() -> bool:
    info = activity.info()
    policy = info.retry_policy
    return policy is not None and policy.maximum_attempts > 0 and info.attempt >= policy.maximum_attempts


class InsightActivities:
    def __init__(self, engine: AsyncEngine, gateway: LLMGateway | None) -> None:
        self._engine = engine
        self._gateway = gateway

    @activity.defn(name="insights.plan_companies")
    async def plan_companies(self, request: PlanCompanyInsightsInput) -> PlanCompanyInsightsResult:
        with permanent_database_errors():
            async with self._engine.connect() as conn:
                if not request.company_ids:
                    return PlanCompanyInsightsResult(company_ids=await insights_db.watchlisted_company_ids(conn))
                known = await insights_db.existing_company_ids(conn, request.company_ids)
        asked = list(dict.fromkeys(request.company_ids))
        return PlanCompanyInsightsResult(
            company_ids=[i for i in asked if i in known], unknown_ids=[i for i in asked if i not in known]
        )

    async def _run(self, contexts: list[InsightContext], today: dt.date, force: bool) -> InsightBatchResult:
        try:
            counts = await insight_runs.run(
                self._engine, self._gateway, contexts, today=today, force=force,
                workflow=activity.info().workflow_type or None, fall_back_on_transient=_last_attempt(),
                heartbeat=activity.heartbeat,
            )
        except insight_runs.TransientLLMError as error:
            raise to_application_error(error.error) from None
        return InsightBatchResult(
            analysed=counts.analysed, reused=counts.reused, fallback=counts.fallback, llm_calls=counts.llm_calls,
            changed=counts.changed, insight_ids=counts.insight_ids,
        )

    @activity.defn(name="insights.analyse_companies")
    async def analyse_companies(self, request: AnalyseCompaniesInput) -> InsightBatchResult:
        with permanent_database_errors():
            async with self._engine.connect() as conn:
                contexts = await insight_context.company_contexts(conn, request.company_ids, request.as_of)
            result = await self._run([contexts[i] for i in sorted(contexts)], request.as_of, request.force)
        missing = [i for i in request.company_ids if i not in contexts]
        return result.model_copy(update={"without_context": missing})

    @activity.defn(name="insights.analyse_deals")
    async def analyse_deals(self, request: AnalyseDealsInput) -> InsightBatchResult:
        with permanent_database_errors():
            async with self._engine.connect() as conn:
                contexts = await insight_context.deal_contexts(conn, request.deal_ids, request.as_of)
            result = await self._run([contexts[i] for i in sorted(contexts)], request.as_of, request.force)
        missing = [i for i in (request.deal_ids or []) if i not in contexts]
        return result.model_copy(update={"without_context": missing})

    @activity.defn(name="insights.market_summary")
    async def market_summary(self, request: MarketSummaryInput) -> InsightBatchResult:
        day = request.date or request.at.astimezone(EXCHANGE_TZ).date()
        if not is_trading_day(day):
            return InsightBatchResult(skipped=f"{day.isoformat()} is not a NYSE trading day")
        with permanent_database_errors():
            async with self._engine.connect() as conn:
                context = await insight_context.market_context(conn, day)
            if context is None:
                return InsightBatchResult(skipped=f"no daily bars for {day.isoformat()}")
            return await self._run([context], day, request.force)

    # ------------------------------------------------------------ the Batch API path

    @activity.defn(name="insights.prepare_company_batch")
    async def prepare_company_batch(self, request: PrepareCompanyBatchInput) -> PrepareCompanyBatchResult:
        """Contexts of the companies, cache hits left out, the rest written as one batch job."""
        if self._gateway is None:
            raise ApplicationError("no LLM gateway on this worker", type="LLMConfigError", non_retryable=True)
        with permanent_database_errors():
            async with self._engine.connect() as conn:
                contexts = await insight_context.company_contexts(conn, request.company_ids, request.as_of)
            try:
                job_id, requests, reused = await insight_runs.prepare_batch(
                    self._engine, self._gateway, [contexts[i] for i in sorted(contexts)],
                    workflow=activity.info().workflow_type or None, force=request.force,
                )
            except LLMBatchJobError as error:
                raise ApplicationError(f"invalid input: {error}", type="InvalidInput", non_retryable=True) from None
        return PrepareCompanyBatchResult(
            job_id=job_id, requests=requests, reused=reused,
            without_context=[i for i in request.company_ids if i not in contexts],
        )

    @activity.defn(name="insights.store_batch")
    async def store_batch(self, request: StoreBatchInsightsInput) -> StoreBatchInsightsResult:
        """One insight per request of the collected job, exactly once (idempotent on the cache key)."""
        simulated = self._gateway.simulated if self._gateway is not None else False
        with permanent_database_errors():
            try:
                counts = await insight_runs.store_batch(
                    self._engine, request.job_id, simulated=simulated, today=dt.datetime.now(dt.UTC).date()
                )
            except ValueError as error:
                raise ApplicationError(f"invalid input: {error}", type="InvalidInput", non_retryable=True) from None
        return StoreBatchInsightsResult(
            analysed=counts.analysed, fallback=counts.fallback, rejected=counts.rejected, changed=counts.changed
        )
