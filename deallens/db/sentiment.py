"""Sentiment of stored articles: claim the unscored ones of a range, store scores once.

An article is scored once: the claim takes only rows without a score and locks them
(`FOR UPDATE SKIP LOCKED`) for the transaction that scores them, so two runs over the same
range never both pay for one article; the store writes only rows still without a score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from deallens.db import stranded
from deallens.db.models import NewsArticle
from deallens.domain.news.sentiment import ArticleText

# news_articles.sentiment_label arrives with the news schema (migration 0007). Until it exists
# the label is derivable from the score (deallens.domain.news.sentiment.label_for); once it
# does, it is written with the score.
HAS_LABEL_COLUMN = "sentiment_label" in NewsArticle.__table__.c

# The range's unscored articles, and those a stopped run left unscored (deallens/db/stranded.py).
_CLAIM = text(
    f"""
    SELECT id, title, description FROM news_articles a
     WHERE {stranded.in_range_or_stranded("a")} AND sentiment_score IS NULL
     ORDER BY id
     LIMIT :limit
       FOR UPDATE SKIP LOCKED
    """
)
_OLDEST_STRANDED = text(stranded.oldest_candidate("a", "a.sentiment_score IS NULL"))

_COUNT_SCORED = text(
    "SELECT count(*) FROM news_articles WHERE id BETWEEN :first_id AND :last_id AND sentiment_score IS NOT NULL"
)

_STORE = text(
    """
    UPDATE news_articles AS a
       SET sentiment_score = v.score, sentiment_source = v.source
      FROM unnest(CAST(:ids AS bigint[]), CAST(:scores AS numeric[]), CAST(:sources AS text[])) AS v(id, score, source)
     WHERE a.id = v.id AND a.sentiment_score IS NULL
    """
)

_STORE_WITH_LABEL = text(
    """
    UPDATE news_articles AS a
       SET sentiment_score = v.score, sentiment_source = v.source, sentiment_label = v.label
      FROM unnest(CAST(:ids AS bigint[]), CAST(:scores AS numeric[]), CAST(:sources AS text[]),
                  CAST(:labels AS text[])) AS v(id, score, source, label)
     WHERE a.id = v.id AND a.sentiment_score IS NULL
    """
)


@dataclass(frozen=True, slots=True)
class ArticleScore:
    id: int
    score: float
    label: str
    source: str


async def oldest_stranded(conn: AsyncConnection, first_id: int) -> int | None:
    """The first article below the range that a stopped run left unscored, if any."""
    return (await conn.execute(_OLDEST_STRANDED, stranded.params(first_id))).scalar_one_or_none()


async def claim_unscored(
    conn: AsyncConnection, first_id: int, last_id: int, limit: int, *, stranded_from: int | None = None
) -> list[ArticleText]:
    """Up to `limit` unscored articles of the range (and stranded ones from `stranded_from`),
    locked until `conn`'s transaction ends."""
    params = {**stranded.params(first_id), "last_id": last_id, "limit": limit,
              "stranded_from": first_id if stranded_from is None else stranded_from}
    rows = await conn.execute(_CLAIM, params)
    return [ArticleText(id=r.id, title=r.title, description=r.description) for r in rows]


async def count_scored(conn: AsyncConnection, first_id: int, last_id: int) -> int:
    return int((await conn.execute(_COUNT_SCORED, {"first_id": first_id, "last_id": last_id})).scalar_one())


async def store_scores(conn: AsyncConnection, scores: Sequence[ArticleScore]) -> int:
    """Write the scores of still-unscored articles in one statement; answers how many were written."""
    if not scores:
        return 0
    params: dict[str, list[object]] = {
        "ids": [s.id for s in scores],
        "scores": [Decimal(str(round(s.score, 4))) for s in scores],
        "sources": [s.source[:32] for s in scores],
    }
    statement = _STORE
    if HAS_LABEL_COLUMN:
        params["labels"] = [s.label for s in scores]
        statement = _STORE_WITH_LABEL
    result = await conn.execute(statement, params)
    return int(result.rowcount or 0)
