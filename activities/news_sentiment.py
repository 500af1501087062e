"""news.score_sentiment: score the unscored articles of an ingestion's ArticleRange.

Runs on the deallens-llm queue. Batches of SENTIMENT_BATCH_SIZE articles go to the LLM in one
structured-output call each; without a key, over the day's budget, or when the LLM fails for
a batch (refusal, invalid output twice, a permanent error such as a rejected key), that batch is
scored by the offline lexicon instead, so every article gets a score. A transient failure (429,
5xx, timeout) is retried by Temporal with the server's delay; on the activity's last attempt
the lexicon scores the rest instead of failing the ingestion. Each batch is claimed, scored and
stored in one transaction, so a retry or a second run never scores (or pays for) an article twice.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import permanent_database_errors, to_application_error
from deallens.contracts import ArticleRange, ScoreSentimentResult
from deallens.db import sentiment as sentiment_db
from deallens.db.sentiment import ArticleScore
from deallens.domain.news.sentiment import LEXICON_SOURCE, ArticleText, score_lexicon
from deallens.llm import sentiment as llm_sentiment
from deallens.llm.errors import LLMInvalidOutput, LLMRefused, LLMUnavailable
from deallens.llm.gateway import LLMGateway
from deallens.providers.errors import ProviderError

log = logging.getLogger(__name__)


def _lexicon(article: ArticleText) -> ArticleScore:
    score, label = score_lexicon(article.text)
    return ArticleScore(id=article.id, score=score, label=label, source=LEXICON_SOURCE)


def _last_attempt() -> bool:
    info = activity.info()
    policy = info.retry_policy
    return policy is not None and policy.maximum_attempts > 0 and info.attempt >= policy.maximum_attempts


class SentimentActivities:
    def __init__(self, engine: AsyncEngine, gateway: LLMGateway | None, *, batch_size: int = 20) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._engine = engine
        self._gateway = gateway
        self._batch_size = batch_size

    @activity.defn(name="news.score_sentiment")
    async def score_sentiment(self, request: ArticleRange) -> ScoreSentimentResult:
        if request.first_id > request.last_id:
            raise ApplicationError(
                f"invalid input: ArticleRange first_id {request.first_id} is after last_id {request.last_id}",
                type="InvalidInput",
                non_retryable=True,
            )
        workflow = activity.info().workflow_type or None
        use_llm = self._gateway is not None and self._gateway.available
        fall_back_on_transient = _last_attempt()
        counts = {"scored": 0, "llm": 0, "lexicon": 0, "llm_calls": 0}
        with permanent_database_errors():
            async with self._engine.connect() as conn:
                already = await sentiment_db.count_scored(conn, request.first_id, request.last_id)
                stranded_from = await sentiment_db.oldest_stranded(conn, request.first_id)
            while True:
                async with self._engine.begin() as conn:
                    batch = await sentiment_db.claim_unscored(
                        conn, request.first_id, request.last_id, self._batch_size, stranded_from=stranded_from
                    )
                    if not batch:
                        break
                    scores: dict[int, ArticleScore] = {}
                    if use_llm:
                        assert self._gateway is not None
                        try:
                            found, result = await llm_sentiment.score_batch(self._gateway, batch, workflow=workflow)
                        except LLMUnavailable as error:
                            # No key, switched off, or the day's budget is spent: the rest of this run too.
                            log.info("sentiment: %s; the lexicon scores the rest", error.message)
                            use_llm = False
                        except (LLMRefused, LLMInvalidOutput) as error:
                            counts["llm_calls"] += 1 if isinstance(error, LLMRefused) else 2
                            log.warning("sentiment: %s; the lexicon scores this batch", error)
                        except ProviderError as error:
                            counts["llm_calls"] += 1
                            if error.permanent:
                                log.warning("sentiment: %s; the lexicon scores the rest of this run", error)
                                use_llm = False
                            elif not fall_back_on_transient:
                                raise to_application_error(error) from None
                            else:
                                log.warning("sentiment: %s on the last attempt; the lexicon scores the rest", error)
                                use_llm = False
                        else:
                            counts["llm_calls"] += result.attempts
                            for article_id, scored in found.items():
                                scores[article_id] = ArticleScore(
                                    id=article_id, score=scored.score, label=scored.label, source=result.source
                                )
                    for article in batch:
                        if article.id not in scores:
                            scores[article.id] = _lexicon(article)
                    written = await sentiment_db.store_scores(conn, list(scores.values()))
                counts["scored"] += written
                by_llm = sum(1 for s in scores.values() if s.source != LEXICON_SOURCE)
                counts["llm"] += by_llm
                counts["lexicon"] += len(scores) - by_llm
                activity.heartbeat(counts["scored"])
        return ScoreSentimentResult(already_scored=already, **counts)
