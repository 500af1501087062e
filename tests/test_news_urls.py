"""Canonical article URLs and the judging of one provider article (bad input, point 9)."""

from __future__ import annotations

import datetime as dt

import pytest

from deallens.domain.news.articles import SkipReason, Skipped, clean_article
from deallens.domain.news.urls import UnusableUrl, canonical_url

ARTICLE = "https://www.reuters.com/2026/03/10/apple-to-acquire-peloton-1a2b3c4d"
NOW = dt.datetime(2026, 3, 10, 15, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "variant",
    [
        ARTICLE,
        ARTICLE + "/",
        ARTICLE + "#comments",
        ARTICLE + "?utm_source=newsapi&utm_medium=referral&utm_campaign=rss",
        ARTICLE + "?fbclid=IwAR0abc&gclid=x&msclkid=y&mc_cid=1&mc_eid=2&ocid=msn&cmpid=rss",
        ARTICLE.replace("https://", "http://"),
        ARTICLE.replace("www.reuters.com", "WWW.Reuters.COM"),
        ARTICLE.replace("www.", "m.") + "/",
        ARTICLE.replace("www.", "amp.") + "/amp",
        ARTICLE.replace("www.", "") + ".amp",
        ARTICLE.replace("https://www.reuters.com", "https://www.reuters.com:443"),
        ARTICLE + "?outputType=amp",
    ],
)
def test_variants_of_one_article_share_one_canonical_url(variant: str) -> None:
    assert canonical_url(variant) == "https://reuters.com/2026/03/10/apple-to-acquire-peloton-1a2b3c4d"


def test_meaningful_query_parameters_stay_and_are_sorted() -> None:
    a = canonical_url("https://example.com/article.php?id=7&page=2&utm_source=x")
    b = canonical_url("https://www.example.com/article.php?page=2&id=7")
    assert a == b == "https://example.com/article.php?id=7&page=2"
    assert canonical_url("https://example.com/article.php?id=8") != a


def test_different_articles_and_hosts_stay_different() -> None:
    assert canonical_url(ARTICLE) != canonical_url(ARTICLE.replace("1a2b3c4d", "9f8e7d6c"))
    assert canonical_url(ARTICLE) != canonical_url(ARTICLE.replace("reuters.com", "cnbc.com"))
    # A subdomain that is not a www/mobile/amp form is another site.
    assert canonical_url("https://finance.yahoo.com/news/x") != canonical_url("https://sports.yahoo.com/news/x")


@pytest.mark.parametrize(
    "url", ["", "   ", "javascript:alert(1)", "ftp://example.com/x", "/relative/path", "https://localhost/x", "https://exa mple.com/x"]
)
def test_unusable_urls_are_refused(url: str) -> None:
    with pytest.raises(UnusableUrl):
        canonical_url(url)


def _raw(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "source": {"id": "reuters", "name": "Reuters"},
        "author": "Jane Smith",
        "title": "Apple to acquire Peloton for $5 billion",
        "description": "Apple Inc said it agreed to buy Peloton.",
        "url": ARTICLE,
        "urlToImage": "https://images.reuters.com/x.jpg",
        "publishedAt": "2026-03-10T12:00:00Z",
        "content": "Apple Inc said… [+1200 chars]",
    }
    base.update(fields)
    return base


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"url": None}, SkipReason.NO_URL),
        ({"url": ""}, SkipReason.NO_URL),
        ({"url": "javascript:alert(1)"}, SkipReason.BAD_URL),
        ({"title": None}, SkipReason.NO_TITLE),
        ({"title": "  "}, SkipReason.NO_TITLE),
        ({"title": "[Removed]"}, SkipReason.REMOVED),
        ({"publishedAt": "yesterday"}, SkipReason.BAD_DATE),
        ({"publishedAt": None}, SkipReason.BAD_DATE),
        ({"publishedAt": "2031-01-01T00:00:00Z"}, SkipReason.BAD_DATE),
        ({"content": "x" * (10 * 1024 * 1024)}, SkipReason.TOO_LARGE),
        ({"title": "Bad \udcff bytes"}, SkipReason.INVALID_TEXT),
        ({"description": "NUL \x00 inside"}, SkipReason.INVALID_TEXT),
        ({"title": "<b>Bold</b> claim"}, SkipReason.HTML_TITLE),
    ],
)
def test_bad_articles_are_skipped_with_their_reason(fields: dict[str, object], reason: SkipReason) -> None:
    with pytest.raises(Skipped) as caught:
        clean_article(_raw(**fields), now=NOW)
    assert caught.value.reason is reason


def test_not_an_object_is_skipped() -> None:
    with pytest.raises(Skipped) as caught:
        clean_article("an article", now=NOW)
    assert caught.value.reason is SkipReason.NOT_AN_OBJECT


def test_markup_in_description_is_reduced_to_text() -> None:
    article, stripped = clean_article(
        _raw(description="<p>Apple &amp; Peloton <script>steal()</script><a href='x'>agree</a></p>"), now=NOW
    )
    assert stripped and article.description == "Apple & Peloton agree"
    clean, stripped = clean_article(_raw(), now=NOW)
    assert not stripped
    assert clean.canonical_url == canonical_url(ARTICLE) and clean.publisher == "Reuters"
    assert clean.published_at == dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)
