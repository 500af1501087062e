"""Storing news in a real PostgreSQL: canonical-URL dedup, stories, links, overlapping runs,
nothing half-written."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from deallens.db import news
from deallens.db.demo import seed_demo
from deallens.domain.news.articles import CleanArticle, clean_article
from deallens.domain.news.linking import CompanyLinker

T0 = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


def article(url: str, title: str, description: str | None = None, *, minutes: int = 0, publisher: str = "Reuters") -> CleanArticle:
    raw = {
        "source": {"id": None, "name": publisher},
        "title": title,
        "description": description,
        "url": url,
        "publishedAt": (T0 + dt.timedelta(minutes=minutes)).isoformat(),
    }
    return clean_article(raw, now=T0 + dt.timedelta(days=1))[0]


APPLE_DEAL = article(
    "https://www.reuters.com/2026/03/10/apple-to-acquire-peloton-1a2b",
    "Apple agrees to acquire Peloton for $5 billion",
    "Apple Inc (NASDAQ: AAPL) said it agreed to buy Peloton in a cash deal.",
)
APPLE_DEAL_COPY = article(
    "https://finance.yahoo.com/news/apple-agrees-acquire-peloton-5-120000123.html",
    "Apple agrees to acquire Peloton for $5 billion",
    "Apple Inc (NASDAQ: AAPL) said it agreed to buy Peloton in a cash deal.",
    minutes=25,
    publisher="Yahoo Entertainment",
)
APPLE_DEAL_REWRITE = article(
    "https://www.cnbc.com/2026/03/10/apple-buys-peloton.html",
    "UPDATE 1-Apple agrees to buy Peloton for $5 billion",
    "Apple said it agreed to acquire the fitness company Peloton in a cash deal.",
    minutes=70,
    publisher="CNBC",
)
APPLE_BEAT = article(
    "https://www.wsj.com/articles/apple-beats-estimates-11",
    "Apple shares jump after quarterly earnings beat estimates",
    "Apple Inc reported stronger-than-expected profit.",
    minutes=90,
    publisher="The Wall Street Journal",
)
APPLE_MISS = article(
    "https://www.bloomberg.com/news/articles/apple-misses-estimates-22",
    "Apple shares slide after quarterly earnings miss estimates",
    "Apple Inc reported weaker-than-expected profit.",
    minutes=120,
    publisher="Bloomberg",
)
BATCH = [APPLE_DEAL, APPLE_DEAL_COPY, APPLE_DEAL_REWRITE, APPLE_BEAT, APPLE_MISS]


async def rows(db: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with db.connect() as conn:
        return list(await conn.execute(text(sql), params))


@pytest.fixture
async def linker(db: AsyncEngine) -> CompanyLinker:
    await seed_demo(db)
    return CompanyLinker(await news.link_targets(db))


async def store(db: AsyncEngine, batch: list[CleanArticle], linker: CompanyLinker, **kwargs: Any) -> news.StoreOutcome:
    return await news.store_articles(db, batch, category="company", source="newsapi-sim", linker=linker, **kwargs)


async def test_a_batch_is_stored_once_with_stories_and_links(db: AsyncEngine, linker: CompanyLinker) -> None:
    first = await store(db, BATCH, linker)
    assert (first.stored, first.duplicates, first.new_stories, first.joined_stories) == (5, 0, 3, 2)
    assert first.first_id is not None and first.last_id == first.first_id + 4
    assert "AAPL" in first.symbols
    stories = await rows(
        db,
        """SELECT s.id, s.articles, s.lead_article_id, s.first_published_at, a.title AS lead_title,
                  (SELECT count(*) FROM news_articles x WHERE x.story_id = s.id) AS members
           FROM news_stories s JOIN news_articles a ON a.id = s.lead_article_id ORDER BY s.id""",
    )
    assert [(s.articles, s.members) for s in stories] == [(3, 3), (1, 1), (1, 1)]
    # The deal story's lead is its first published article; beat and miss stay apart.
    assert stories[0].lead_title == APPLE_DEAL.title and stories[0].first_published_at == T0
    assert (await rows(db, "SELECT count(*) FROM news_articles WHERE story_id IS NULL"))[0][0] == 0
    links = await rows(
        db,
        """SELECT n.title, c.symbol, nc.found_in, nc.relevance FROM news_company nc
           JOIN news_articles n ON n.id = nc.news_id JOIN companies c ON c.id = nc.company_id""",
    )
    apple = [link for link in links if link.symbol == "AAPL"]
    assert len(apple) == 5 and all(link.found_in in ("title", "description") and 0 < link.relevance <= 1 for link in apple)
    assert sum(link.found_in == "title" for link in apple) >= 4

    again = await store(db, BATCH, linker)
    assert (again.stored, again.duplicates, again.new_stories) == (0, 5, 0) and again.first_id is None
    assert (await rows(db, "SELECT count(*) FROM news_articles"))[0][0] == 5


async def test_tracking_parameters_and_url_variants_add_nothing(db: AsyncEngine, linker: CompanyLinker) -> None:
    await store(db, [APPLE_DEAL], linker)
    variants = [
        article(APPLE_DEAL.url + "?utm_source=newsapi&utm_medium=referral", APPLE_DEAL.title),
        article(APPLE_DEAL.url.replace("www.", "amp.") + "/amp", APPLE_DEAL.title),
        article(APPLE_DEAL.url.replace("https://www.", "http://m.") + "/?fbclid=x#top", APPLE_DEAL.title),
    ]
    outcome = await store(db, variants, linker)
    assert (outcome.stored, outcome.duplicates) == (0, 3)
    assert (await rows(db, "SELECT count(*) FROM news_articles"))[0][0] == 1


async def test_overlapping_runs_store_each_article_once_and_one_story_per_event(
    db: AsyncEngine, linker: CompanyLinker
) -> None:
    # Two runs carry the same event through different outlets and both carry one article.
    run_a = [APPLE_DEAL, APPLE_BEAT]
    run_b = [APPLE_DEAL_COPY, APPLE_BEAT, APPLE_DEAL_REWRITE]
    outcomes = await asyncio.gather(*(store(db, batch, linker) for batch in (run_a, run_b, run_a, run_b)))
    assert sum(o.stored for o in outcomes) == 4
    assert (await rows(db, "SELECT count(*) FROM news_articles"))[0][0] == 4
    assert (await rows(db, "SELECT count(*) FROM news_stories"))[0][0] == 2
    deal_story = await rows(
        db, "SELECT count(DISTINCT story_id) FROM news_articles WHERE title ILIKE '%Peloton%'"
    )
    assert deal_story[0][0] == 1


async def test_a_copy_arriving_later_joins_the_stored_story(db: AsyncEngine, linker: CompanyLinker) -> None:
    await store(db, [APPLE_DEAL_COPY], linker)
    later = await store(db, [APPLE_DEAL, APPLE_DEAL_REWRITE], linker)
    assert (later.stored, later.new_stories, later.joined_stories) == (2, 0, 2)
    [story] = await rows(db, "SELECT s.articles, a.url FROM news_stories s JOIN news_articles a ON a.id = s.lead_article_id")
    # The earlier-published article became the lead although it arrived second.
    assert story.articles == 3 and story.url == APPLE_DEAL.url


async def test_fetch_state_moves_with_the_batch_and_a_failure_leaves_nothing(db: AsyncEngine, linker: CompanyLinker) -> None:
    [apple] = [row.id for row in await rows(db, "SELECT id FROM companies WHERE symbol = 'AAPL'")]
    mark = news.FetchMark(at=T0 + dt.timedelta(hours=3), company_id=apple)
    with pytest.raises(IntegrityError):
        # category violates its CHECK: the articles, stories, links and fetch state all roll back.
        await news.store_articles(db, BATCH, category="gossip", source="newsapi-sim", linker=linker, mark=mark)
    for table in ("news_articles", "news_stories", "news_company"):
        assert (await rows(db, f"SELECT count(*) FROM {table}"))[0][0] == 0
    assert (await news.company(db, apple)).news_fetched_at is None  # type: ignore[union-attr]
    await store(db, BATCH, linker, mark=mark)
    assert (await news.company(db, apple)).news_fetched_at == mark.at  # type: ignore[union-attr]
    await store(db, [], linker, mark=news.FetchMark(at=T0, feed="market"))
    assert await news.feed_fetched_at(db, "market") == T0


async def test_company_rotation_most_watched_then_least_recently_fetched(db: AsyncEngine, linker: CompanyLinker) -> None:
    first, unknown = await news.plan_companies(db, [], 3)
    symbols = {row.id: row.symbol for row in await rows(db, "SELECT id, symbol FROM companies")}
    # AAPL is on two demo watchlists, every other watched company on one.
    assert symbols[first[0]] == "AAPL" and unknown == []
    async with db.begin() as conn:
        await conn.execute(text("UPDATE companies SET news_fetched_at = now() WHERE id = ANY(:ids)"), {"ids": first})
    second, _ = await news.plan_companies(db, [], 3)
    assert not set(first) & set(second)
    asked, unknown = await news.plan_companies(db, [first[1], 999_999, first[1]], 3)
    assert asked == [first[1]] and unknown == [999_999]


async def test_a_retried_ingestion_reports_what_its_lost_attempt_stored(db: AsyncEngine, linker: CompanyLinker) -> None:
    # The first attempt committed but its completion was lost; the retry fetches the same batch.
    first = await store(db, BATCH, linker, ingest_key="wf/run/1")
    retry = await store(db, BATCH, linker, ingest_key="wf/run/1")
    assert (retry.stored, retry.duplicates, retry.first_id, retry.last_id) == (5, 0, first.first_id, first.last_id)
    assert retry.symbols == first.symbols and "AAPL" in retry.symbols
    # Another ingestion of the same batch stored nothing and reports nothing.
    other = await store(db, BATCH, linker, ingest_key="wf/run/2")
    assert (other.stored, other.duplicates, other.first_id, other.symbols) == (0, 5, None, [])


async def test_a_kept_story_index_sees_what_other_workers_stored(db: AsyncEngine, linker: CompanyLinker) -> None:
    cache = news.StoryCache()
    await store(db, [APPLE_BEAT], linker, cache=cache)
    # Another worker (no shared cache) stores the deal; this worker's next batch carries a copy.
    await store(db, [APPLE_DEAL], linker)
    outcome = await store(db, [APPLE_DEAL_COPY, APPLE_MISS], linker, cache=cache)
    assert (outcome.stored, outcome.new_stories, outcome.joined_stories) == (2, 1, 1)
    assert (await rows(db, "SELECT count(*) FROM news_stories"))[0][0] == 3
    # A failed batch drops the kept index (it may hold rows that were rolled back).
    with pytest.raises(IntegrityError):
        await news.store_articles(db, [APPLE_DEAL_REWRITE], category="gossip", source="x", linker=linker, cache=cache)
    assert cache.index is None
    later = await store(db, [APPLE_DEAL_REWRITE], linker, cache=cache)
    assert (later.stored, later.new_stories) == (1, 0)


async def test_the_same_wording_about_other_companies_is_another_story(db: AsyncEngine, linker: CompanyLinker) -> None:
    template = "{} shares jump after quarterly earnings beat estimates"
    batch = [
        article(f"https://www.reuters.com/{name}-beat", template.format(name), f"{name} reported stronger profit.", minutes=i)
        for i, name in enumerate(["Apple", "Microsoft", "Nvidia"])
    ]
    batch.append(article("https://finance.yahoo.com/apple-beat-copy", template.format("Apple"), "Apple reported stronger profit.", minutes=30))
    outcome = await store(db, batch, linker)
    assert (outcome.stored, outcome.new_stories, outcome.joined_stories) == (4, 3, 1)
