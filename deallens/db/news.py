"""Where a news article is stored: canonical-URL dedup, story assignment, company links.

One transaction per batch, under one advisory lock:

- the lock serialises story assignment across workers: two overlapping runs that both carry
  copies of one event would otherwise each open a story for it (neither sees the other's
  uncommitted rows). Ingestion batches are small and the work under the lock is a few
  set-based statements, so the lock costs little;
- articles whose canonical URL is stored already are duplicates; the INSERT's ON CONFLICT
  (canonical_url) DO NOTHING stays as the database's own guarantee;
- a new article joins the story of the same event within the window (deallens/domain/news/
  stories.py's StoryIndex, seeded with the window's stored articles) or opens a story, whose
  lead is its first published article; news_articles.story_id is set in the same INSERT;
- company links (deallens/domain/news/linking.py) are written in the same transaction, and
  the feed's fetch state moves on: a failure anywhere leaves nothing half-written.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from deallens.domain.news.articles import CleanArticle
from deallens.domain.news.linking import CompanyLink, CompanyLinker, LinkTarget
from deallens.domain.news.stories import DEFAULT_WINDOW, StoryIndex, StoryText

# A company fetched this recently goes to the back of the rotation.
ROTATION_PERIOD = dt.timedelta(hours=6)
# pg_advisory_xact_lock key of story assignment ("news" in ASCII).
STORY_LOCK_KEY = 0x6E657773

_PLAN_COMPANIES = text(
    """
    SELECT c.id
    FROM companies c
    WHERE c.quarantined_at IS NULL
    -- A company fetched within the rotation period waits for the others; among the rest the
    -- most watched go first, then the least recently fetched.
    ORDER BY coalesce(c.news_fetched_at > now() - make_interval(secs => :period), false),
             (SELECT count(*) FROM watchlist w WHERE w.company_id = c.id) DESC,
             c.news_fetched_at ASC NULLS FIRST, c.id
    LIMIT :limit
    """
)
_KNOWN_COMPANIES = text("SELECT id FROM companies WHERE id = ANY(CAST(:ids AS bigint[]))")
_COMPANY = text("SELECT id, symbol, name, aliases, news_fetched_at FROM companies WHERE id = :id")
_FEED = text("SELECT fetched_at FROM news_feeds WHERE name = :name")
_LINK_TARGETS = text("SELECT id, symbol, name, aliases FROM companies ORDER BY id")
_LINK_TARGETS_VERSION = text("SELECT count(*), max(updated_at), max(id) FROM companies")
_EXISTING = text(
    """
    SELECT canonical_url, coalesce(ingest_key = CAST(:key AS text), false) AS mine
    FROM news_articles WHERE canonical_url = ANY(CAST(:urls AS text[]))
    """
)
# What this ingestion (all its attempts) inserted.
_MINE = text(
    "SELECT count(*) AS n, min(id) AS first_id, max(id) AS last_id FROM news_articles WHERE ingest_key = :key"
)
_MY_SYMBOLS = text(
    """
    SELECT DISTINCT c.symbol FROM news_articles n
    JOIN news_company nc ON nc.news_id = n.id JOIN companies c ON c.id = nc.company_id
    WHERE n.ingest_key = :key ORDER BY c.symbol
    """
)
_WINDOW = text(
    """
    SELECT id, story_id, title, description, published_at,
           ARRAY(SELECT company_id FROM news_company nc WHERE nc.news_id = news_articles.id) AS companies
    FROM news_articles
    WHERE story_id IS NOT NULL AND published_at >= :start AND published_at <= :end
    ORDER BY published_at, id
    """
)
_SINCE = text(
    """
    SELECT id, story_id, title, description, published_at,
           ARRAY(SELECT company_id FROM news_company nc WHERE nc.news_id = news_articles.id) AS companies
    FROM news_articles
    WHERE id > :after AND story_id IS NOT NULL AND published_at >= :start
    ORDER BY published_at, id
    """
)
_STORY_IDS = text("SELECT nextval(pg_get_serial_sequence('news_stories', 'id')) FROM generate_series(1, :n)")
_INSERT_STORIES = text(
    """
    INSERT INTO news_stories (id, first_published_at, last_published_at, articles)
    SELECT id, published_at, published_at, 1
    FROM unnest(CAST(:ids AS bigint[]), CAST(:published AS timestamptz[])) AS s(id, published_at)
    """
)
_INSERT_ARTICLES = text(
    """
    INSERT INTO news_articles (url, canonical_url, title, description, content, author, publisher, image_url,
                               category, published_at, source, story_id, ingest_key)
    SELECT url, canonical_url, title, description, content, author, publisher, image_url,
           :category, published_at, :source, story_id, CAST(:ingest_key AS text)
    FROM unnest(CAST(:url AS text[]), CAST(:canonical_url AS text[]), CAST(:title AS text[]),
                CAST(:description AS text[]), CAST(:content AS text[]), CAST(:author AS text[]),
                CAST(:publisher AS text[]), CAST(:image_url AS text[]), CAST(:published_at AS timestamptz[]),
                CAST(:story_id AS bigint[]))
         AS a(url, canonical_url, title, description, content, author, publisher, image_url, published_at, story_id)
    ORDER BY published_at, canonical_url
    ON CONFLICT (canonical_url) DO NOTHING
    RETURNING id, canonical_url, story_id, published_at
    """
)
# The new rows' effect on their stories: counts, the published span, and the lead (the first
# published article; an earlier copy arriving late becomes the lead).
_UPDATE_STORIES = text(
    """
    UPDATE news_stories s SET
        articles = CASE WHEN s.id = ANY(CAST(:new_ids AS bigint[])) THEN x.n ELSE s.articles + x.n END,
        lead_article_id = CASE
            WHEN s.lead_article_id IS NULL OR x.first_at < s.first_published_at THEN x.first_id
            ELSE s.lead_article_id END,
        first_published_at = least(s.first_published_at, x.first_at),
        last_published_at = greatest(s.last_published_at, x.last_at)
    FROM (
        SELECT story_id, count(*) AS n, min(published_at) AS first_at, max(published_at) AS last_at,
               (array_agg(id ORDER BY published_at, id))[1] AS first_id
        FROM unnest(CAST(:ids AS bigint[]), CAST(:story_ids AS bigint[]), CAST(:published AS timestamptz[]))
             AS r(id, story_id, published_at)
        GROUP BY story_id
    ) x
    WHERE s.id = x.story_id
    """
)
# A story opened here whose every article lost its canonical URL to a concurrent insert
# (impossible under the lock, but never leave an empty story behind).
_DROP_EMPTY_STORIES = text(
    "DELETE FROM news_stories WHERE id = ANY(CAST(:ids AS bigint[])) AND lead_article_id IS NULL"
)
_INSERT_LINKS = text(
    """
    INSERT INTO news_company (news_id, company_id, relevance, found_in)
    SELECT * FROM unnest(CAST(:news_id AS bigint[]), CAST(:company_id AS bigint[]),
                         CAST(:relevance AS numeric[]), CAST(:found_in AS text[]))
    ON CONFLICT (news_id, company_id) DO NOTHING
    """
)
_SYMBOLS = text("SELECT symbol FROM companies WHERE id = ANY(CAST(:ids AS bigint[])) ORDER BY symbol")
_COMPANY_FETCHED = text("UPDATE companies SET news_fetched_at = :at WHERE id = :id")
_FEED_FETCHED = text(
    """
    INSERT INTO news_feeds (name, fetched_at) VALUES (:name, :at)
    ON CONFLICT (name) DO UPDATE SET fetched_at = greatest(news_feeds.fetched_at, excluded.fetched_at)
    """
)


@dataclass(slots=True)
class StoryCache:
    """A worker's StoryIndex kept between batches, topped up with what others stored since.

    Building the index costs a feature extraction per stored article of the window (tens of
    thousands on a busy day), far more than the batch itself, so a process keeps it: each
    batch adds only the rows stored since the last (read under the story lock, so no row is
    missed), and rebuilds when a batch reaches further back than the index covers. A failed
    batch drops the cache: the index may hold entries of rows that were rolled back.
    """

    window: dt.timedelta = DEFAULT_WINDOW
    index: StoryIndex | None = None
    covers_from: dt.datetime | None = None
    max_id: int = 0
    companies: dict[int, set[int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CompanyTarget:
    id: int
    symbol: str
    name: str
    aliases: tuple[str, ...]
    news_fetched_at: dt.datetime | None


@dataclass(slots=True)
class StoreOutcome:
    stored: int = 0
    duplicates: int = 0
    new_stories: int = 0
    joined_stories: int = 0
    links: int = 0
    first_id: int | None = None
    last_id: int | None = None
    symbols: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class FetchMark:
    """The fetch state a stored batch moves on: a company's, or a named feed's."""

    at: dt.datetime
    company_id: int | None = None
    feed: str | None = None


async def plan_companies(engine: AsyncEngine, company_ids: Sequence[int], limit: int) -> tuple[list[int], list[int]]:
    """(companies to fetch, asked-for ids that are not companies). No ids: most watched,
    then least recently fetched first, at most `limit`."""
    async with engine.connect() as conn:
        if company_ids:
            known = {row.id for row in await conn.execute(_KNOWN_COMPANIES, {"ids": list(company_ids)})}
            wanted = list(dict.fromkeys(company_ids))
            return [i for i in wanted if i in known], [i for i in wanted if i not in known]
        params = {"limit": limit, "period": ROTATION_PERIOD.total_seconds()}
        return [row.id for row in await conn.execute(_PLAN_COMPANIES, params)], []


async def company(engine: AsyncEngine, company_id: int) -> CompanyTarget | None:
    async with engine.connect() as conn:
        row = (await conn.execute(_COMPANY, {"id": company_id})).one_or_none()
    if row is None:
        return None
    return CompanyTarget(row.id, row.symbol, row.name, tuple(row.aliases or ()), row.news_fetched_at)


async def feed_fetched_at(engine: AsyncEngine, name: str) -> dt.datetime | None:
    async with engine.connect() as conn:
        return (await conn.execute(_FEED, {"name": name})).scalar_one_or_none()


async def link_targets_version(engine: AsyncEngine) -> tuple[object, ...]:
    """Changes whenever a company is added, renamed or given aliases: the linker's cache key."""
    async with engine.connect() as conn:
        return tuple((await conn.execute(_LINK_TARGETS_VERSION)).one())


async def link_targets(engine: AsyncEngine) -> list[LinkTarget]:
    async with engine.connect() as conn:
        return [
            LinkTarget(company_id=row.id, symbol=row.symbol, name=row.name, aliases=tuple(row.aliases or ()))
            for row in await conn.execute(_LINK_TARGETS)
        ]


def _story_text(title: str, description: str | None, published_at: dt.datetime) -> StoryText:
    return StoryText(title=title, description=description, published_at=published_at)


async def _window_rows(conn: AsyncConnection, articles: Sequence[CleanArticle], window: dt.timedelta) -> list[Any]:
    """The stored articles the batch could join, oldest first."""
    start = min(a.published_at for a in articles) - window
    end = max(a.published_at for a in articles) + window
    return list(await conn.execute(_WINDOW, {"start": start, "end": end}))


async def store_articles(
    engine: AsyncEngine,
    articles: Iterable[CleanArticle],
    *,
    category: str,
    source: str,
    linker: CompanyLinker,
    mark: FetchMark | None = None,
    window: dt.timedelta = DEFAULT_WINDOW,
    ingest_key: str | None = None,
    cache: StoryCache | None = None,
) -> StoreOutcome:
    """Store the batch's new articles with their stories and links; see the module's docstring.

    With `ingest_key` (one per ingestion, the same on every retry of it) the outcome's
    stored count, id range and symbols are those of every row that ingestion inserted, so a
    retry after a lost completion reports what its predecessor stored instead of nothing.
    """
    unique: dict[str, CleanArticle] = {}
    batch_duplicates = 0
    for article in articles:
        if article.canonical_url in unique:
            batch_duplicates += 1
        else:
            unique[article.canonical_url] = article
    outcome = StoreOutcome(duplicates=batch_duplicates)
    try:
        await _store(engine, unique, outcome, category=category, source=source, linker=linker, mark=mark,
                     window=cache.window if cache else window, ingest_key=ingest_key, cache=cache)
    except BaseException:
        if cache is not None:
            cache.index = None
        raise
    return outcome


async def _store(
    engine: AsyncEngine,
    unique: dict[str, CleanArticle],
    outcome: StoreOutcome,
    *,
    category: str,
    source: str,
    linker: CompanyLinker,
    mark: FetchMark | None,
    window: dt.timedelta,
    ingest_key: str | None,
    cache: StoryCache | None,
) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": STORY_LOCK_KEY})
        if unique:
            found = list(await conn.execute(_EXISTING, {"urls": list(unique), "key": ingest_key}))
            existing = {row.canonical_url for row in found}
            # Rows an earlier attempt of this ingestion stored are not duplicates of it.
            outcome.duplicates += sum(1 for row in found if not row.mine)
            fresh = sorted(
                (a for url, a in unique.items() if url not in existing), key=lambda a: (a.published_at, a.canonical_url)
            )
            if fresh:
                await _insert(
                    conn, fresh, outcome, category=category, source=source, linker=linker, window=window,
                    ingest_key=ingest_key, cache=cache,
                )
        if ingest_key is not None:
            mine = (await conn.execute(_MINE, {"key": ingest_key})).one()
            outcome.stored, outcome.first_id, outcome.last_id = mine.n, mine.first_id, mine.last_id
            outcome.symbols = [row[0] for row in await conn.execute(_MY_SYMBOLS, {"key": ingest_key})]
        if mark is not None:
            if mark.company_id is not None:
                await conn.execute(_COMPANY_FETCHED, {"id": mark.company_id, "at": mark.at})
            if mark.feed is not None:
                await conn.execute(_FEED_FETCHED, {"name": mark.feed, "at": mark.at})


async def _insert(
    conn: AsyncConnection,
    fresh: list[CleanArticle],
    outcome: StoreOutcome,
    *,
    category: str,
    source: str,
    linker: CompanyLinker,
    window: dt.timedelta,
    ingest_key: str | None,
    cache: StoryCache | None,
) -> None:
    # The index is fed the stored window as the batch moves forward in time (it forgets what
    # is older than its newest entry minus two windows, so seeding it all at once would lose
    # the early part of a batch spanning days).
    needed_from = fresh[0].published_at - window
    if cache is not None and cache.index is not None and cache.covers_from is not None and cache.covers_from <= needed_from:
        index, story_companies = cache.index, cache.companies
        seeds = list(await conn.execute(_SINCE, {"after": cache.max_id, "start": needed_from}))
    else:
        index, story_companies = StoryIndex(window), {}
        seeds = await _window_rows(conn, fresh, window)
        if cache is not None:
            cache.index, cache.covers_from, cache.companies = index, needed_from, story_companies
    if cache is not None:
        cache.max_id = max([cache.max_id, *(row.id for row in seeds)])
    # Story ids are drawn before matching (one per article at most; unused ones are gaps in
    # the sequence), so that the index only ever holds real ids, also when it is kept.
    spare = [row[0] for row in await conn.execute(_STORY_IDS, {"n": len(fresh)})]
    # Linking and matching are CPU work (milliseconds an article): in a thread, so that the
    # worker's event loop keeps heartbeating and serving other activities meanwhile. Only
    # the holder of the story lock touches the index.
    links, real, opened, new_ids = await asyncio.to_thread(
        _assign, fresh, seeds, index, story_companies, spare, linker, window
    )
    if opened:
        await conn.execute(
            _INSERT_STORIES, {"ids": new_ids, "published": [fresh[p].published_at for p in opened]}
        )
    rows = (
        await conn.execute(
            _INSERT_ARTICLES,
            {
                "category": category,
                "source": source,
                "ingest_key": ingest_key,
                "url": [a.url for a in fresh],
                "canonical_url": [a.canonical_url for a in fresh],
                "title": [a.title for a in fresh],
                "description": [a.description for a in fresh],
                "content": [a.content for a in fresh],
                "author": [a.author for a in fresh],
                "publisher": [a.publisher for a in fresh],
                "image_url": [a.image_url for a in fresh],
                "published_at": [a.published_at for a in fresh],
                "story_id": real,
            },
        )
    ).all()
    outcome.duplicates += len(fresh) - len(rows)
    outcome.stored = len(rows)
    if rows:
        await conn.execute(
            _UPDATE_STORIES,
            {
                "new_ids": new_ids,
                "ids": [r.id for r in rows],
                "story_ids": [r.story_id for r in rows],
                "published": [r.published_at for r in rows],
            },
        )
        outcome.first_id = min(r.id for r in rows)
        outcome.last_id = max(r.id for r in rows)
        if cache is not None:
            # This batch's rows are in the index already (added while matching).
            cache.max_id = max(cache.max_id, outcome.last_id)
    if new_ids:
        await conn.execute(_DROP_EMPTY_STORIES, {"ids": new_ids})
    opened_set = set(new_ids)
    outcome.new_stories = len({r.story_id for r in rows if r.story_id in opened_set})
    # Every stored article but the first of each new story joined a story of the same event.
    outcome.joined_stories = len(rows) - outcome.new_stories
    links_of = {a.canonical_url: found for a, found in zip(fresh, links, strict=True)}
    news_ids: list[int] = []
    company_ids: list[int] = []
    relevance: list[Decimal] = []
    found_in: list[str] = []
    for row in rows:
        for link in links_of[row.canonical_url]:
            news_ids.append(row.id)
            company_ids.append(link.company_id)
            relevance.append(Decimal(str(round(min(max(link.relevance, 0.0), 1.0), 4))))
            found_in.append(link.found_in)
    if news_ids:
        await conn.execute(
            _INSERT_LINKS,
            {"news_id": news_ids, "company_id": company_ids, "relevance": relevance, "found_in": found_in},
        )
        outcome.links = len(news_ids)
        outcome.symbols = [row[0] for row in await conn.execute(_SYMBOLS, {"ids": sorted(set(company_ids))})]


def _assign(
    fresh: list[CleanArticle],
    seeds: list[Any],
    index: StoryIndex,
    story_companies: dict[int, set[int]],
    spare: list[int],
    linker: CompanyLinker,
    window: dt.timedelta,
) -> tuple[list[list[CompanyLink]], list[int], list[int], list[int]]:
    """(links per article, story per article, positions opening a story, the new story ids)."""
    links = [linker.link(a.title, a.description) for a in fresh]

    def feed(seed: Any) -> None:
        index.add(seed.story_id, _story_text(seed.title, seed.description, seed.published_at))
        story_companies.setdefault(seed.story_id, set()).update(seed.companies or ())

    next_seed = 0
    real: list[int] = []
    opened: list[int] = []
    new_ids: list[int] = []
    for position, article in enumerate(fresh):
        horizon = article.published_at + window
        while next_seed < len(seeds) and seeds[next_seed].published_at <= horizon:
            feed(seeds[next_seed])
            next_seed += 1
        story_text = _story_text(article.title, article.description, article.published_at)
        story = index.match(story_text)
        mine = {link.company_id for link in links[position]}
        known = story_companies.get(story, set()) if story is not None else set()
        if story is not None and mine and known and not mine & known:
            # Same wording about other companies ("Apple beats estimates" / "Microsoft beats
            # estimates"): another event, whatever the text similarity says.
            story = None
        if story is None:
            story = spare[len(new_ids)]
            opened.append(position)
            new_ids.append(story)
        real.append(story)
        # Every stored article is in the index, as seeding from the table would have put it.
        index.add(story, story_text)
        story_companies.setdefault(story, set()).update(mine)
    for seed in seeds[next_seed:]:
        feed(seed)
    return links, real, opened, new_ids
