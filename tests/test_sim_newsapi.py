"""The NewsAPI stand-in over real HTTP: sample shapes, Developer-plan limits, errors, query
syntax, planted duplicates and faults."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from deallens.domain.universe import DEMO_COMPANIES
from deallens.sim.clock import ManualClock
from deallens.sim.faults import SimController
from deallens.sim.newsapi import SOURCES, articles_for_day, make_app, short_name
from deallens.sim.serve import serve_asgi

SAMPLES = Path(__file__).resolve().parent / "provider-samples"
NOW = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
SEED = 3
ALL_DOMAINS = ",".join(sorted({s.domain for s in SOURCES}))
DEAL_WORDS = re.compile(r"acquire|acquisition|merger|takeover|bid|sale to", re.IGNORECASE)


def sample(name: str) -> Any:
    return json.loads((SAMPLES / f"{name}.json").read_text())


@dataclass
class Sim:
    client: httpx.AsyncClient
    controller: SimController
    clock: ManualClock

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params, headers={"X-Api-Key": "news-key"})

    async def ok(self, path: str, **params: Any) -> dict[str, Any]:
        response = await self.get(path, **params)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
async def news() -> AsyncIterator[Sim]:
    clock = ManualClock(NOW)
    app = make_app(seed=SEED, clock=clock)
    async with serve_asgi(app) as url, httpx.AsyncClient(base_url=url) as client:
        yield Sim(client, app.state.sim, clock)


@pytest.fixture(autouse=True)
def fresh(news: Sim) -> Sim:
    news.controller.faults.clear()
    news.controller.stats.reset()
    news.clock.set(NOW)
    return news


def assert_article_shape(article: dict[str, Any], reference: dict[str, Any]) -> None:
    assert list(article) == list(reference)
    assert list(article["source"]) == list(reference["source"])
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", article["publishedAt"])
    assert article["url"].startswith("https://")
    if article["content"] is not None:
        assert re.search(r"\u2026 \[\+\d+ chars\]$", article["content"]), article["content"]


async def test_everything_has_the_sample_shape(news: Sim) -> None:
    reference = sample("newsapi_everything_bitcoin_2020")
    body = await news.ok("/v2/everything", q="Apple", pageSize=30)
    assert list(body) == list(reference)
    assert body["status"] == "ok" and body["totalResults"] >= len(body["articles"]) > 0
    for article in body["articles"]:
        assert_article_shape(article, reference["articles"][0])
        text = " ".join(filter(None, (article["title"], article["description"], article["content"])))
        assert "apple" in text.lower()
    stamps = [a["publishedAt"] for a in body["articles"]]
    assert stamps == sorted(stamps, reverse=True)  # sortBy defaults to publishedAt
    assert all(datetime.fromisoformat(s.replace("Z", "+00:00")) <= NOW for s in stamps)


async def test_top_headlines_have_source_suffixed_titles_and_page_size_20(news: Sim) -> None:
    reference = sample("newsapi_top_headlines_us_2024")
    body = await news.ok("/v2/top-headlines", country="us")
    assert list(body) == list(reference)
    assert len(body["articles"]) == 20 < body["totalResults"]
    for article in body["articles"]:
        assert_article_shape(article, reference["articles"][0])
        assert article["title"].endswith(f" - {article['source']['name']}")
    technology = await news.ok("/v2/top-headlines", country="us", category="technology")
    assert 0 < technology["totalResults"] < body["totalResults"]
    assert (await news.ok("/v2/top-headlines", country="fr"))["totalResults"] == 0


async def test_same_seed_same_bodies_other_seed_different() -> None:
    async def body(seed: int) -> bytes:
        app = make_app(seed=seed, clock=lambda: NOW)
        async with serve_asgi(app) as url, httpx.AsyncClient(base_url=url) as client:
            return (await client.get("/v2/everything", params={"q": "shares", "apiKey": "k"})).content

    first, again, other = await asyncio.gather(body(1), body(1), body(2))
    assert first == again != other


async def test_api_key_errors(news: Sim) -> None:
    missing = await news.client.get("/v2/everything", params={"q": "Apple"})
    assert (missing.status_code, missing.json()) == (401, sample("newsapi_error_401_apiKeyMissing"))
    invalid = await news.client.get("/v2/everything", params={"q": "Apple", "apiKey": "invalid"})
    assert (invalid.status_code, invalid.json()) == (401, sample("newsapi_error_401_apiKeyInvalid"))
    by_param = await news.client.get("/v2/everything", params={"q": "Apple", "apiKey": "k"})
    assert by_param.status_code == 200


async def test_parameter_errors(news: Sim) -> None:
    missing = await news.get("/v2/everything", language="en")
    assert (missing.status_code, missing.json()) == (400, sample("newsapi_error_400_parametersMissing"))
    mixed = await news.get("/v2/top-headlines", sources="reuters", country="us")
    assert (mixed.status_code, mixed.json()) == (400, sample("newsapi_error_400_parametersIncompatible"))
    bad = await news.get("/v2/everything", q="Apple", pageSize="lots")
    assert bad.status_code == 400 and bad.json()["code"] == "parameterInvalid"


async def test_developer_plan_result_limit(news: Sim) -> None:
    too_many = await news.get("/v2/everything", q="shares", pageSize=90, page=2)
    assert (too_many.status_code, too_many.json()) == (426, sample("newsapi_error_426_maximumResultsReached"))
    last_allowed = await news.ok("/v2/everything", domains=ALL_DOMAINS, pageSize=50, page=2)
    assert len(last_allowed["articles"]) == 50 and last_allowed["totalResults"] > 100
    first_page = await news.ok("/v2/everything", domains=ALL_DOMAINS, pageSize=50, page=1)
    assert not {a["url"] for a in first_page["articles"]} & {a["url"] for a in last_allowed["articles"]}
    headlines = await news.get("/v2/top-headlines", country="us", pageSize=40, page=3)
    assert headlines.status_code == 426 and headlines.json()["code"] == "maximumResultsReached"


async def test_from_older_than_thirty_days_is_refused(news: Sim) -> None:
    reference = sample("newsapi_error_parameterInvalid_too_far_in_past")
    response = await news.get("/v2/everything", q="Apple", **{"from": "2026-01-15"})
    assert response.status_code == 426  # the real status is unconfirmed (see newsapi.py)
    body = response.json()
    assert list(body) == list(reference) and body["code"] == reference["code"]
    assert body["message"] == (
        "You are trying to request results too far in the past. Your plan permits you to request articles as far back "
        "as 2026-02-08, but you have requested 2026-01-15. You may need to upgrade to a paid plan."
    )
    window = await news.ok("/v2/everything", domains=ALL_DOMAINS, pageSize=100, **{"from": "2026-03-09", "to": "2026-03-09"})
    assert window["articles"] and all(a["publishedAt"].startswith("2026-03-09") for a in window["articles"])


async def test_query_syntax(news: Sim) -> None:
    async def total(q: str, **extra: Any) -> int:
        return (await news.ok("/v2/everything", q=q, pageSize=1, **extra))["totalResults"]

    apple, microsoft = await total("Apple"), await total("Microsoft")
    both = await total("Apple AND Microsoft")
    assert apple > 0 and microsoft > 0
    assert await total("apple OR microsoft") == apple + microsoft - both
    assert await total("Apple NOT Microsoft") == apple - both
    assert await total("Apple -Microsoft") == apple - both
    assert await total("(Apple OR Microsoft) AND +Apple") == apple
    talks = await total('"merger talks"')
    assert 0 < await total('+"merger talks" -Walmart') <= talks
    assert await total('"talks merger"') == 0
    phrase = await news.ok("/v2/everything", q='"merger talks"', pageSize=100)
    for article in phrase["articles"]:
        text = " ".join(filter(None, (article["title"], article["description"], article["content"]))).lower()
        assert "merger talks" in text
    in_title = await news.ok("/v2/everything", qInTitle="acquire", pageSize=100)
    assert in_title["articles"] and all("acquire" in a["title"].lower() for a in in_title["articles"])
    bad = await news.get("/v2/everything", q="(Apple")
    assert bad.status_code == 400 and bad.json()["code"] == "parameterInvalid"


async def test_planted_duplicates_syndication_and_tracking_urls(news: Sim) -> None:
    syndicated = tracked = False
    for offset in range(10):
        day = (NOW - timedelta(days=offset + 1)).date().isoformat()
        body = await news.ok("/v2/everything", domains=ALL_DOMAINS, pageSize=100, **{"from": day, "to": day})
        articles = body["articles"]
        assert body["totalResults"] == len(articles) <= 100
        by_title: dict[str, set[str]] = {}
        for article in articles:
            by_title.setdefault(article["title"], set()).add(article["source"]["name"])
        syndicated |= any(len(names) > 1 for names in by_title.values())
        urls = {a["url"] for a in articles}
        tracked |= any("?utm_source=" in u and u.split("?")[0] in urls for u in urls)
    assert syndicated and tracked


def test_stories_name_universe_companies_and_one_in_five_is_m_and_a() -> None:
    names = {short_name(c) for c in DEMO_COMPANIES}
    originals = [
        a for offset in range(30) for a in articles_for_day(SEED, (NOW - timedelta(days=offset)).date()) if a.original
    ]
    assert 30 * 30 <= len(originals) <= 30 * 45
    assert all(any(name in a.title for name in names) for a in originals)
    share = sum(bool(DEAL_WORDS.search(a.title)) for a in originals) / len(originals)
    assert 0.12 < share < 0.3
    assert any(a.author is None for a in originals) and any(a.author == "" for a in originals)
    assert any(a.description is None for a in originals) and any(a.url_to_image is None for a in originals)
    assert any(a.source.id is None for a in originals) and any(a.source.id for a in originals)


async def test_the_clock_publishes_today_s_stories(news: Sim) -> None:
    morning = await news.ok("/v2/top-headlines", country="us", pageSize=100)
    news.clock.advance(hours=4)
    afternoon = await news.ok("/v2/top-headlines", country="us", pageSize=100)
    newest = max(a["publishedAt"] for a in afternoon["articles"])
    assert newest > max(a["publishedAt"] for a in morning["articles"])
    assert newest <= "2026-03-10T19:00:00Z"


@pytest.mark.parametrize(
    ("kind", "status", "reference"),
    [
        ("http_429", 429, "newsapi_error_429_rateLimited"),
        ("api_key_invalid", 401, "newsapi_error_401_apiKeyInvalid"),
    ],
)
async def test_error_faults_answer_the_real_bodies_once(news: Sim, kind: str, status: int, reference: str) -> None:
    news.controller.faults.add(kind, count=1, match="/v2/everything")
    top = await news.get("/v2/top-headlines", country="us")
    assert top.status_code == 200
    faulted = await news.get("/v2/everything", q="Apple")
    assert (faulted.status_code, faulted.json()) == (status, sample(reference))
    assert (await news.get("/v2/everything", q="Apple")).status_code == 200
    assert news.controller.stats.faults == {kind: 1}


async def test_server_errors_empty_and_malformed(news: Sim) -> None:
    news.controller.faults.add("http_500", count=1)
    error = await news.get("/v2/everything", q="Apple")
    assert error.status_code == 500
    assert list(error.json()) == ["status", "code", "message"] and error.json()["code"] == "unexpectedError"
    news.controller.faults.add("http_503", count=1)
    assert (await news.get("/v2/everything", q="Apple")).status_code == 503
    news.controller.faults.add("empty", count=1)
    assert await news.ok("/v2/everything", q="Apple") == {"status": "ok", "totalResults": 0, "articles": []}
    news.controller.faults.add("malformed_json", count=1)
    broken = await news.get("/v2/everything", q="Apple")
    assert broken.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        broken.json()
    stats = (await news.client.get("/_sim/stats")).json()
    assert stats["by_endpoint"] == {"/v2/everything": 4}
    assert stats["faults"] == {"empty": 1, "http_500": 1, "http_503": 1, "malformed_json": 1}


def test_each_deal_moves_forward_through_its_stages_without_churn() -> None:
    """The stand-in's deal news reports one stage a day, in order, and every headline of a
    stage reads (to the rules extractor) as that stage: a tracked deal never flips between two
    statuses on one day's news, as it did when review and approval shared a stage."""
    from datetime import date

    from deallens.domain.deals import patterns
    from deallens.domain.deals.status import _RANK  # the forward order of statuses
    from deallens.sim.newsapi import _STAGE_TEMPLATES, DEAL_CYCLE_DAYS, deal_stage, deals_for

    start = date(2026, 11, 2)
    for number, _deal in enumerate(deals_for(7)):
        stages = [deal_stage(7, number, start + timedelta(days=d)) for d in range(2 * DEAL_CYCLE_DAYS)]
        # One whole cycle, from its first rumour: ranks never go down until it closes.
        first = next(i for i in range(1, len(stages)) if stages[i] == "rumored" and stages[i - 1] != "rumored")
        cycle = stages[first:first + DEAL_CYCLE_DAYS]
        ranked = [_RANK.get(stage, 5) for stage in cycle]
        assert ranked == sorted(ranked), cycle
        assert cycle[-1] in ("completed", "terminated")
        assert {"announced", "pending_regulatory", "approved"} <= set(cycle)
    values = {"A": "Pfizer", "T": "Seagen", "V": "43", "A_full": "Pfizer Inc", "T_full": "Seagen Inc"}
    for stage, templates in _STAGE_TEMPLATES.items():
        for title, description in templates:
            facts = patterns.extract(title.format(**values), description.format(**values), start)
            if stage == "rumored" and facts is None:
                continue  # a rumour may be too vague for the rules; never another stage
            assert facts is not None and facts.status == stage, (stage, title)
