"""One batch of analyses: cache lookup, the model (or the rules), and one stored insight per context.

For each context, in order: an insight stored under its cache key is reused (no call); else the
model is asked, and its checked answer stored; when the model cannot be asked (no key, LLM
switched off, today's budget spent) or fails for good (refusal, invalid twice, a rejected key),
the rules analyse the same figures and that is stored, under the rules' own cache key and
labelled source "rules", model "rules-v1". A transient failure (429, 5xx, timeout) is raised for
Temporal to retry, except on the activity's last attempt, when the rules take over; what was
stored before it is a cache hit on the retry, so nothing is paid for twice.

Each insight is written in its own transaction: a crash loses at most the one in flight.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine

from deallens.db import insights as insights_db
from deallens.domain.insights import rules
from deallens.domain.insights.context import InsightContext, moved_fields
from deallens.llm import insights as llm_insights
from deallens.llm.errors import LLMInvalidOutput, LLMRefused, LLMUnavailable
from deallens.llm.gateway import LLMGateway
from deallens.providers.errors import ProviderError

log = logging.getLogger(__name__)
RULES_VERSION = "rules-1"


class TransientLLMError(Exception):
    """A retryable provider error, raised after the batch's finished insights are stored."""

    def __init__(self, error: ProviderError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class RunCounts:
    analysed: int = 0  # new insights from the model
    reused: int = 0  # cache hits: stored insight, no call
    fallback: int = 0  # analysed by the rules
    llm_calls: int = 0
    changed: int = 0  # recommendations that differ from the subject's previous insight
    insight_ids: list[int] = field(default_factory=list)


def _summary(kind: str, analysis: BaseModel) -> str:
    data = analysis.model_dump()
    text = data.get("thesis") or data.get("strategic_rationale") or data.get("summary") or ""
    return str(text)[:400]


def _content(context: InsightContext, analysis: BaseModel, *, source: str, model: str, version: str,
             previous: insights_db.StoredInsight | None, recommendation: str | None) -> dict[str, Any]:
    content: dict[str, Any] = {
        "analysis": analysis.model_dump(mode="json"),
        "summary": _summary(context.kind, analysis),
        "generated_by": "rules" if source == rules.RULES_SOURCE else ("llm-simulated" if source.endswith("-sim") else "llm"),
        "prompt_version": version,
        "context": {
            "figures": {k: v for k, v in context.figures.items() if v is not None},
            "story_ids": [s.id for s in context.stories],
            "deal_ids": [d.id for d in context.deals],
            **{k: v for k, v in context.subject.items() if k in ("symbol", "data_as_of", "date", "status")},
        },
    }
    if previous is not None and recommendation is not None and previous.recommendation not in (None, recommendation):
        before = previous.content.get("context", {}).get("figures", {}) if isinstance(previous.content, dict) else {}
        content["changed"] = {
            "previous_recommendation": previous.recommendation,
            "previous_insight_id": previous.id,
            "moved": moved_fields(before, {k: v for k, v in context.figures.items() if v is not None}),
        }
    return content


def _rules(context: InsightContext, day: dt.date) -> BaseModel:
    if context.kind == "company":
        return rules.company_analysis(context)
    if context.kind == "deal":
        return rules.deal_analysis(context)
    return rules.market_summary(context, day)


async def run(
    engine: AsyncEngine,
    gateway: LLMGateway | None,
    contexts: Sequence[InsightContext],
    *,
    today: dt.date,
    workflow: str | None = None,
    force: bool = False,
    fall_back_on_transient: bool = False,
    heartbeat: Callable[[int], None] = lambda done: None,
) -> RunCounts:
    counts = RunCounts()
    use_llm = gateway is not None and gateway.available
    model = gateway.default_model if gateway is not None else "none"
    if not contexts:
        return counts
    kind = contexts[0].kind
    llm_keys = {id(c): llm_insights.cache_key(model, c) for c in contexts}
    rules_keys = {id(c): c.cache_key(rules.RULES_MODEL, RULES_VERSION) for c in contexts}
    async with engine.connect() as conn:
        cached = await insights_db.by_hash(conn, [*llm_keys.values(), *rules_keys.values()])
        previous = await insights_db.latest(conn, kind, [c.subject_id for c in contexts])
    pending: TransientLLMError | None = None
    try:
        for done, context in enumerate(contexts, start=1):
            hit = None if force else cached.get(llm_keys[id(context)])
            if hit is None and not use_llm and not force:
                hit = cached.get(rules_keys[id(context)])
            if hit is not None:
                counts.reused += 1
                counts.insight_ids.append(hit.id)
                heartbeat(done)
                continue
            analysis: BaseModel | None = None
            usage_ids: list[int] = []
            source, used_model, version, key = rules.RULES_SOURCE, rules.RULES_MODEL, RULES_VERSION, rules_keys[id(context)]
            if use_llm:
                assert gateway is not None
                try:
                    result = await llm_insights.analyse(gateway, context, workflow=workflow)
                except LLMUnavailable as error:
                    log.info("insights: %s; the rules analyse the rest", error.message)
                    use_llm = False
                except (LLMRefused, LLMInvalidOutput) as error:
                    counts.llm_calls += 1 if isinstance(error, LLMRefused) else 2
                    log.warning("insights: %s; the rules analyse subject %s", error, context.subject_id)
                except ProviderError as error:
                    counts.llm_calls += 1
                    if error.permanent:
                        log.warning("insights: %s; the rules analyse the rest of this run", error)
                        use_llm = False
                    elif not fall_back_on_transient:
                        pending = TransientLLMError(error)
                        break
                    else:
                        log.warning("insights: %s on the last attempt; the rules analyse the rest", error)
                        use_llm = False
                else:
                    counts.llm_calls += result.attempts
                    analysis, usage_ids = result.output, [result.usage_id]
                    source, used_model = result.source[:32], result.model
                    version, key = llm_insights.PROMPT_VERSION, llm_keys[id(context)]
            if analysis is None:
                analysis = _rules(context, today)
                counts.fallback += 1
            else:
                counts.analysed += 1
            recommendation = getattr(analysis, "recommendation", None)
            content = _content(context, analysis, source=source, model=used_model, version=version,
                               previous=previous.get(context.subject_id), recommendation=recommendation)
            counts.changed += 1 if "changed" in content else 0
            async with engine.begin() as conn:
                insight_id, _ = await insights_db.store(
                    conn, kind=context.kind, subject_id=context.subject_id, content=content,
                    recommendation=recommendation, model=used_model, source=source, input_hash=key,
                    usage_ids=usage_ids, replace=force,
                )
            counts.insight_ids.append(insight_id)
            heartbeat(done)
    finally:
        async with engine.begin() as conn:
            await insights_db.count_cache(conn, today, kind, hits=counts.reused, misses=counts.analysed,
                                          fallbacks=counts.fallback)
    if pending is not None:
        raise pending
    return counts


# ------------------------------------------------------------------------------ the Batch API path

BATCH_CUSTOM_ID = "company-{subject}-{key}"


def custom_id(context: InsightContext, key: str) -> str:
    return BATCH_CUSTOM_ID.format(subject=context.subject_id, key=key[:32])


async def prepare_batch(
    engine: AsyncEngine, gateway: LLMGateway, contexts: Sequence[InsightContext], *, workflow: str | None, force: bool,
) -> tuple[int | None, int, int]:
    """(job id or None, requests written, cache hits): one request per context not already analysed."""
    from deallens.db import llm_batches  # the Batch API module: only this path needs it

    keys = {id(c): llm_insights.cache_key(gateway.default_model, c) for c in contexts}
    async with engine.connect() as conn:
        cached = {} if force else await insights_db.by_hash(conn, list(keys.values()))
    todo = [c for c in contexts if keys[id(c)] not in cached]
    if not todo:
        return None, 0, len(contexts)
    requests = [
        llm_batches.BatchRequest(
            custom_id=custom_id(c, keys[id(c)]), model=gateway.default_model,
            messages=llm_insights.build_messages(c), schema=llm_insights.SCHEMAS[c.kind],
            max_output_tokens=llm_insights.MAX_OUTPUT_TOKENS[c.kind],
        )
        for c in todo
    ]
    job_id = await llm_batches.create_job(engine, purpose=llm_insights.PURPOSES["company"], workflow=workflow,
                                          requests=requests)
    async with engine.begin() as conn:
        await insights_db.count_cache(conn, dt.datetime.now(dt.UTC).date(), "company", hits=len(contexts) - len(todo),
                                      misses=0, fallbacks=0)
    return job_id, len(requests), len(contexts) - len(todo)


@dataclass
class BatchStoreCounts:
    analysed: int = 0
    fallback: int = 0
    rejected: int = 0
    changed: int = 0


async def store_batch(engine: AsyncEngine, job_id: int, *, simulated: bool, today: dt.date) -> BatchStoreCounts:
    """One insight per request of a collected job, exactly once: each is stored under its cache key.

    The context is read back from the request's own prompt, so the answer is checked against
    exactly the figures it was given, however long the batch took.
    """
    from deallens.db import llm_batches

    job = await llm_batches.get_job(engine, job_id)
    if job is None:
        raise ValueError(f"no batch job {job_id}")
    prompts = {item.custom_id: item.messages for item in await llm_batches.load_items(engine, job_id)}
    counts = BatchStoreCounts()
    async for result in llm_batches.job_results(engine, job_id):
        messages = prompts[result.custom_id]
        context = InsightContext.from_data(llm_insights.parse_context(messages[-1]["content"]))
        analysis: BaseModel | None = result.output
        if analysis is not None:
            reason = llm_insights.checker(context)(analysis)
            if reason:
                await llm_batches.reject_output(engine, job_id, result.custom_id, reason)
                counts.rejected += 1
                analysis = None
        async with engine.connect() as conn:
            previous = (await insights_db.latest(conn, context.kind, [context.subject_id])).get(context.subject_id)
        if analysis is not None:
            source = f"{job.model}-sim" if simulated else job.model
            used_model, version, key = job.model, llm_insights.PROMPT_VERSION, llm_insights.cache_key(job.model, context)
            usage_ids = [result.usage_id] if result.usage_id else []
            counts.analysed += 1
        else:
            analysis = _rules(context, today)
            source, used_model, version = rules.RULES_SOURCE, rules.RULES_MODEL, RULES_VERSION
            key, usage_ids = context.cache_key(rules.RULES_MODEL, RULES_VERSION), []
            counts.fallback += 1
        recommendation = getattr(analysis, "recommendation", None)
        content = _content(context, analysis, source=source, model=used_model, version=version,
                           previous=previous, recommendation=recommendation)
        content["via"] = "batch"
        counts.changed += 1 if "changed" in content else 0
        async with engine.begin() as conn:
            await insights_db.store(conn, kind=context.kind, subject_id=context.subject_id, content=content,
                                    recommendation=recommendation, model=used_model, source=source[:32],
                                    input_hash=key, usage_ids=usage_ids)
    async with engine.begin() as conn:
        await insights_db.count_cache(conn, today, "company", hits=0, misses=counts.analysed, fallbacks=counts.fallback)
    return counts
