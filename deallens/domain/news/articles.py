"""One provider article judged: either a clean article to store, or the reason it is skipped.

Feeds send what they send: no url or title, dates that do not parse, a 10 MB body, invalid
UTF-8 (kept as lone surrogates by the client's decoding, so that one bad article does not
make the whole page unreadable), NUL bytes PostgreSQL refuses, HTML in fields. Each of these
is a reason, counted in the ingestion's result; nothing about a bad article reaches the
database. Markup in a title means the feed is broken (titles are plain text everywhere), so
that article is skipped; markup in a description or content is reduced to its text.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from deallens.domain.news.urls import UnusableUrl, canonical_url


class SkipReason(StrEnum):
    NOT_AN_OBJECT = "not_an_object"
    NO_URL = "no_url"
    BAD_URL = "bad_url"
    NO_TITLE = "no_title"
    BAD_DATE = "bad_date"
    TOO_LARGE = "too_large"
    INVALID_TEXT = "invalid_text"  # invalid UTF-8, NUL or other control characters
    HTML_TITLE = "html_in_title"
    REMOVED = "removed"  # NewsAPI's placeholder for a withdrawn article ("[Removed]")


# Longest accepted field, in characters; more is not an article but a broken feed.
MAX_TITLE = 1_000
MAX_DESCRIPTION = 10_000
MAX_CONTENT = 100_000
MAX_SHORT = 500  # author, source name
# An article dated further ahead than this is a bad clock or a bad feed.
FUTURE_TOLERANCE = dt.timedelta(hours=6)

_TAG = re.compile(r"<\s*/?\s*[A-Za-z][^<>]{0,2000}>")
_HIDDEN = re.compile(r"<\s*(script|style|iframe|noscript)\b.*?<\s*/\s*\1\s*>", re.IGNORECASE | re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_SPACE = re.compile(r"\s+")
_REMOVED = "[Removed]"


@dataclass(frozen=True, slots=True)
class CleanArticle:
    url: str
    canonical_url: str
    title: str
    description: str | None
    content: str | None
    author: str | None
    publisher: str | None
    image_url: str | None
    published_at: dt.datetime


class Skipped(Exception):
    def __init__(self, reason: SkipReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


def _checked(value: object, limit: int) -> str | None:
    """A text field: None when absent or blank; Skipped for text no column may hold."""
    if value is None or not isinstance(value, str):
        return None
    if len(value) > limit:
        raise Skipped(SkipReason.TOO_LARGE)
    if _SURROGATE.search(value) or _CONTROL.search(value):
        raise Skipped(SkipReason.INVALID_TEXT)
    value = value.strip()
    return value or None


def _plain(value: str | None) -> tuple[str | None, bool]:
    """The text of a field that may hold markup, and whether it did."""
    if value is None or ("<" not in value and "&" not in value):
        return value, False
    had_markup = bool(_TAG.search(value))
    text = _HIDDEN.sub(" ", value)
    text = _TAG.sub(" ", text)
    text = _SPACE.sub(" ", html.unescape(text)).strip()
    return text or None, had_markup


def _published(value: object, now: dt.datetime) -> dt.datetime:
    if not isinstance(value, str) or not value.strip():
        raise Skipped(SkipReason.BAD_DATE)
    try:
        moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Skipped(SkipReason.BAD_DATE) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    moment = moment.astimezone(dt.UTC)
    if moment > now + FUTURE_TOLERANCE or moment.year < 1990:
        raise Skipped(SkipReason.BAD_DATE)
    return moment


def clean_article(raw: Any, *, now: dt.datetime) -> tuple[CleanArticle, bool]:
    """The article to store and whether markup was stripped from it; Skipped with the reason otherwise."""
    if not isinstance(raw, dict):
        raise Skipped(SkipReason.NOT_AN_OBJECT)
    url = _checked(raw.get("url"), 4_096)
    if url is None:
        raise Skipped(SkipReason.NO_URL)
    title = _checked(raw.get("title"), MAX_TITLE)
    if title is None:
        raise Skipped(SkipReason.NO_TITLE)
    if title == _REMOVED:
        raise Skipped(SkipReason.REMOVED)
    if _TAG.search(title):
        raise Skipped(SkipReason.HTML_TITLE)
    try:
        canonical = canonical_url(url)
    except UnusableUrl:
        raise Skipped(SkipReason.BAD_URL) from None
    title = _SPACE.sub(" ", html.unescape(title)).strip()
    description, markup_d = _plain(_checked(raw.get("description"), MAX_DESCRIPTION))
    content, markup_c = _plain(_checked(raw.get("content"), MAX_CONTENT))
    source = raw.get("source")
    publisher = _checked(source.get("name"), MAX_SHORT) if isinstance(source, dict) else None
    image = _checked(raw.get("urlToImage"), 4_096)
    article = CleanArticle(
        url=url,
        canonical_url=canonical,
        title=title,
        description=description,
        content=content,
        author=_checked(raw.get("author"), MAX_SHORT),
        publisher=publisher,
        image_url=image if image and image.startswith(("http://", "https://")) else None,
        published_at=_published(raw.get("publishedAt"), now),
    )
    return article, markup_d or markup_c
