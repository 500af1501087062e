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


class DealExtractor(Protocol):
    name: str  # recorded with each article it read: "patterns" or the LLM path's name

    async def extract(self, articles: Sequence[ArticleText]) -> list[DealFacts | None]:
        """One result per article, in order."""
        ...


class PatternExtractor:
    """The deterministic path: headline patterns (patterns.py), no network, no budget."""

    name = "patterns"

    async def extract(self, articles: Sequence[ArticleText]) -> list[DealFacts | None]:
        return [patterns.extract(a.title, a.description, a.published_at.date()) for a in articles]
