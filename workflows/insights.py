"""AI insight workflows: GenerateCompanyInsights, GenerateDealInsights, GenerateMarketSummary.

Each run plans its subjects, then hands them in batches to one analysing activity each on the
deallens-llm queue (the queue's rate limit and the gateway's budget hold across workers). The
batch's contexts, answers and insights never enter history: results are counts and ids.
Unchanged contexts are cache hits inside the activity, so a scheduled run over unchanged data
makes no LLM call; a batch that fails for good is reported and the others still run.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.insights import InsightActivities
    from deallens.contracts import (
        AnalyseCompaniesInput,
        AnalyseDealsInput,
        GenerateCompanyInsightsInput,
        GenerateDealInsightsInput,
        GenerateInsightsResult,
        GenerateMarketSummaryInput,
        InsightBatchResult,
        MarketSummaryInput,
        PlanCompanyInsightsInput,
        PrepareCompanyBatchInput,
        StoreBatchInsightsInput,
    )
    from workflows.llm_batch import run_batch_job
    from workflows import queues, search_attributes
    from workflows.inputs import validated
    from workflows.policies import DB_RETRY, DB_TIMEOUT, LLM_HEARTBEAT, LLM_RETRY, LLM_TIMEOUT

# Companies per analysing activity: one call each, so a batch is a few minutes of calls at most.
COMPANY_BATCH = 20
# Batches in flight at once; the LLM queue's rate limit spaces the calls anyway.
PARALLEL_BATCHES = 4
LLM_SCHEDULE_TIMEOUT = timedelta(hours=2)


def _failure_text(error: BaseException) -> str:
    if not isinstance(error, ActivityError):
        raise error
    cause = error.cause
    if isinstance(cause, ApplicationError):
        return f"{cause.type}: {cause.message}" if cause.type else cause.message
    return str(cause or error)


async def _analyse(method: Any, request: Any) -> InsightBatchResult:
    return await workflow.execute_activity_method(
        method,
        request,
        task_queue=queues.provider_queue(workflow.info().task_queue, queues.LLM_SUFFIX),
        start_to_close_timeout=LLM_TIMEOUT,
        schedule_to_close_timeout=LLM_SCHEDULE_TIMEOUT,
        heartbeat_timeout=LLM_HEARTBEAT,
        retry_policy=LLM_RETRY,
        summary=f"LLM analysis: {type(request).__name__.removesuffix('Input')}",
    )


def _add(total: GenerateInsightsResult, part: InsightBatchResult) -> GenerateInsightsResult:
    return total.model_copy(update={
        "analysed": total.analysed + part.analysed,
        "reused": total.reused + part.reused,
        "fallback": total.fallback + part.fallback,
        "llm_calls": total.llm_calls + part.llm_calls,
        "changed": total.changed + part.changed,
        "without_context": [*total.without_context, *part.without_context],
        "skipped": part.skipped or total.skipped,
    })


@workflow.defn(name="GenerateCompanyInsights")
class GenerateCompanyInsights:
    @workflow.run
    async def run(self, raw: Any = None) -> GenerateInsightsResult:
        request = validated(GenerateCompanyInsightsInput, raw)
        plan = await workflow.execute_activity_method(
            InsightActivities.plan_companies,
            PlanCompanyInsightsInput(company_ids=request.company_ids),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
            summary="plan the watchlisted companies to analyse",
        )
        if plan.company_ids and workflow.patched(search_attributes.UPSERT_PATCH):
            # DealLensCompanyIds: which companies this run analyses (known after the plan).
            workflow.upsert_search_attributes(search_attributes.updates(company_ids=plan.company_ids))
        as_of = workflow.now().date()
        result = GenerateInsightsResult(kind="company", requested=len(plan.company_ids), unknown_ids=plan.unknown_ids)
        if request.batch:
            return await self._batch(request, plan.company_ids, as_of, result)
        batches = [plan.company_ids[i : i + COMPANY_BATCH] for i in range(0, len(plan.company_ids), COMPANY_BATCH)]
        failed: dict[str, str] = {}
        for wave in range(0, len(batches), PARALLEL_BATCHES):
            group = batches[wave : wave + PARALLEL_BATCHES]
            outcomes = await asyncio.gather(
                *(_analyse(InsightActivities.analyse_companies,
                           AnalyseCompaniesInput(company_ids=ids, as_of=as_of, force=request.force)) for ids in group),
                return_exceptions=True,
            )
            for ids, outcome in zip(group, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    failed[str(ids[0])] = _failure_text(outcome)
                else:
                    result = _add(result, outcome)
        return result.model_copy(update={"failed": failed})

    async def _batch(
        self, request: GenerateCompanyInsightsInput, company_ids: list[int], as_of: Any, result: GenerateInsightsResult
    ) -> GenerateInsightsResult:
        """Half price: one Batch API job for every company not cached, waited for on durable timers."""
        prepared = await workflow.execute_activity_method(
            InsightActivities.prepare_company_batch,
            PrepareCompanyBatchInput(company_ids=company_ids, as_of=as_of, force=request.force),
            start_to_close_timeout=LLM_TIMEOUT,
            retry_policy=DB_RETRY,
            summary=f"prepare a Batch API job for {len(company_ids)} companies",
        )
        result = result.model_copy(update={"reused": prepared.reused, "without_context": prepared.without_context})
        if prepared.job_id is None:
            return result
        await run_batch_job(prepared.job_id)
        stored = await workflow.execute_activity_method(
            InsightActivities.store_batch,
            StoreBatchInsightsInput(job_id=prepared.job_id),
            start_to_close_timeout=LLM_TIMEOUT,
            heartbeat_timeout=None,
            retry_policy=DB_RETRY,
            summary=f"store the analyses of batch job {prepared.job_id}",
        )
        return result.model_copy(update={
            "analysed": stored.analysed, "fallback": stored.fallback, "changed": stored.changed,
            "llm_calls": prepared.requests,
        })


@workflow.defn(name="GenerateDealInsights")
class GenerateDealInsights:
    @workflow.run
    async def run(self, raw: Any = None) -> GenerateInsightsResult:
        request = validated(GenerateDealInsightsInput, raw)
        result = GenerateInsightsResult(kind="deal", requested=len(request.deal_ids))
        outcome = await _analyse(
            InsightActivities.analyse_deals,
            AnalyseDealsInput(deal_ids=request.deal_ids or None, as_of=workflow.now().date(), force=request.force),
        )
        return _add(result, outcome)


@workflow.defn(name="GenerateMarketSummary")
class GenerateMarketSummary:
    @workflow.run
    async def run(self, raw: Any = None) -> GenerateInsightsResult:
        request = validated(GenerateMarketSummaryInput, raw)
        outcome = await _analyse(
            InsightActivities.market_summary,
            MarketSummaryInput(date=request.date, at=workflow.now(), force=request.force),
        )
        return _add(GenerateInsightsResult(kind="market_summary", requested=1), outcome)
