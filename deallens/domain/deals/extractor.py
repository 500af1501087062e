"""The extractor interface both paths implement: articles in, one DealFacts (or None) each."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from deallens.domain.deals import patterns
from deallens.domain.deals.facts import DealFacts


@dataclass(frozen=True, slots=True)
class ArticleText:
    """What deal extraction reads of an article: untrusted text, bounded."""

    id: int
    title: str
    description: str | None
    published_at: dt.datetime  # aware


@dataclass(frozen=True, slots=True)
class Extraction:
    facts: DealFacts | None  # None: no deal in this article
    source: str  # who read it: "patterns" or the LLM's model ("gpt-4o-mini", "gpt-4o-mini-sim")


class DealExtractor(Protocol):
    async def extract(self, articles: Sequence[ArticleText]) -> list[Extraction]:
        """One result per article, in order."""
        ...


class PatternExtractor:
    """The deterministic path: headline patterns (patterns.py), no network, no budget."""

    async def extract(self, articles: Sequence[ArticleText]) -> list[Extraction]:
        return [extract_by_patterns(a) for a in articles]


def extract_by_patterns(article: ArticleText) -> Extraction:
    facts = patterns.extract(article.title, article.description, article.published_at.date())
    return Extraction(facts, patterns.SOURCE)
