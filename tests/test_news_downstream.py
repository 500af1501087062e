"""Downstream counts a story once: a news_mention alert fires once per story, not once per
outlet copy, and the digest's top news lists stories with the number of outlets."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from deallens.db import digests, news
from deallens.db.alert_eval import EvalPolicy, evaluate
from deallens.db.alerts import add_alert
from deallens.db.demo import seed_demo
from deallens.domain.alert_rules import parse_alert
from deallens.domain.news.articles import CleanArticle, clean_article
from deallens.domain.news.linking import CompanyLinker
from deallens.notify.render import Renderer

PERIOD = dt.date(2026, 11, 28)
T0 = dt.datetime(2026, 11, 27, 18, 0, tzinfo=dt.UTC)  # inside the daily digest's window


def article(url: str, title: str, publisher: str, minutes: int, description: str | None = None) -> CleanArticle:
    raw = {"source": {"name": publisher}, "title": title, "description": description, "url": url,
           "publishedAt": (T0 + dt.timedelta(minutes=minutes)).isoformat()}
    return clean_article(raw, now=T0 + dt.timedelta(days=2))[0]


MERGER = "Pfizer agrees to acquire Seagen for $43 billion"
COPIES = [
    article("https://www.reuters.com/pfizer-seagen-1", MERGER, "Reuters", 0, "Pfizer Inc said it will buy Seagen."),
    article("https://finance.yahoo.com/news/pfizer-seagen-2", MERGER, "Yahoo Entertainment", 20, "Pfizer Inc said it will buy Seagen."),
    article("https://www.cnbc.com/pfizer-seagen-3", f"UPDATE 1-{MERGER}", "CNBC", 45, "Pfizer said it agreed to buy Seagen."),
]
OTHER = article("https://www.wsj.com/pfizer-cfo-4", "Pfizer names new chief financial officer", "The Wall Street Journal", 90)
LATE_COPY = article("https://www.benzinga.com/pfizer-seagen-5", f"{MERGER}: report", "Benzinga", 150, "Pfizer Inc to buy Seagen.")


async def sql(db: AsyncEngine, statement: str, **params: Any) -> list[Any]:
    async with db.begin() as conn:
        result = await conn.execute(text(statement), params)
        return list(result) if result.returns_rows else []


async def store(db: AsyncEngine, batch: list[CleanArticle]) -> news.StoreOutcome:
    linker = CompanyLinker(await news.link_targets(db))
    return await news.store_articles(db, batch, category="company", source="newsapi-sim", linker=linker)


async def test_news_mention_fires_once_per_story(db: AsyncEngine) -> None:
    await seed_demo(db)
    alert_id = await add_alert(db, parse_alert({"user_id": 2, "type": "news_mention", "symbol": "PFE", "cooldown_seconds": 0}))
    await sql(db, "UPDATE alerts SET created_at = :t WHERE id = :a", t=T0 - dt.timedelta(hours=1), a=alert_id)
    await sql(db, "DELETE FROM alerts WHERE id <> :a", a=alert_id)  # only this alert under test

    async def fire(minutes: int) -> list[Any]:
        policy = EvalPolicy(now=T0 + dt.timedelta(minutes=minutes), max_quote_age=dt.timedelta(minutes=30))
        return await evaluate(db, "news", policy, symbols=["PFE"])

    outcome = await store(db, COPIES)
    assert (outcome.stored, outcome.new_stories) == (3, 1)
    [first] = await fire(60)
    assert MERGER in first.message
    # A fourth outlet's copy of the same story arrives later: no second alert.
    await store(db, [LATE_COPY])
    assert await fire(160) == []
    # A different story fires, even when a copy of the fired story is newer than it.
    await store(db, [OTHER])
    [second] = await fire(170)
    assert "chief financial officer" in second.message
    keys = [row.dedup_key for row in await sql(db, "SELECT dedup_key FROM alert_history WHERE alert_id = :a ORDER BY id", a=alert_id)]
    assert len(keys) == 2 and all(key.startswith("story:") for key in keys)


async def test_news_mention_fires_for_a_story_that_arrives_after_a_later_published_one(db: AsyncEngine) -> None:
    # The feeds do not deliver in publication order: the market feed (every 15 minutes) brings
    # the CFO story at once, the company feed (each company every few hours) brings the merger
    # story, published earlier, after the alert fired on the CFO. "Since the last firing" is
    # what the system learned since, not what was published since: the merger still fires.
    await seed_demo(db)
    alert_id = await add_alert(db, parse_alert({"user_id": 2, "type": "news_mention", "symbol": "PFE", "cooldown_seconds": 0}))
    await sql(db, "UPDATE alerts SET created_at = :t WHERE id = :a", t=T0 - dt.timedelta(hours=1), a=alert_id)
    await sql(db, "DELETE FROM alerts WHERE id <> :a", a=alert_id)

    async def fire(minutes: int) -> list[Any]:
        policy = EvalPolicy(now=T0 + dt.timedelta(minutes=minutes), max_quote_age=dt.timedelta(minutes=30))
        return await evaluate(db, "news", policy, symbols=["PFE"])

    async def stored_at(minutes: int) -> None:
        await sql(db, "UPDATE news_articles SET created_at = :t WHERE created_at > :t", t=T0 + dt.timedelta(minutes=minutes))

    await store(db, [OTHER])  # published at +90
    await stored_at(95)
    [first] = await fire(100)
    assert "chief financial officer" in first.message
    await store(db, COPIES[:1])  # published at +0, stored at +150
    await stored_at(150)
    [late] = await fire(160)
    assert MERGER in late.message
    assert await fire(170) == []


async def test_digest_top_news_lists_stories_with_their_outlets(db: AsyncEngine) -> None:
    await seed_demo(db)
    await store(db, [*COPIES, OTHER, LATE_COPY])
    [max_id] = [row.id for row in await sql(db, "SELECT id FROM users WHERE email = 'max@deallens.local'")]
    pending, _, _ = await digests.plan(db, "daily", PERIOD, [max_id])
    contents, _, _ = await digests.load_batch(db, "daily", PERIOD, pending, public_base_url="http://x")
    [digest] = contents
    merger = [row for row in digest.news if "Seagen" in row.title]
    assert len(merger) == 1, [row.title for row in digest.news]
    # The lead (the first published copy) stands for the story, with the outlets that carried it.
    assert merger[0].title == MERGER and merger[0].publisher == "Reuters" and merger[0].outlets == 4
    assert [row.outlets for row in digest.news if "financial" in row.title] == [1]
    assert len(digest.news) == 2
    rendered = Renderer().render_digest(digest)
    assert "4 outlets" in rendered.text and "4 outlets" in rendered.html
