"""What an analysis is given: computed figures and short, sanitised text, and its cache key.

A context is plain data. Its canonical JSON (sorted keys, rounded figures) is both what the
model reads and what is hashed: the cache key is sha256(model, prompt version, that JSON), so
an unchanged context finds its stored insight and no call is made, and nothing the model was
not shown can change the key.

News text is untrusted. A headline that reads like an instruction to the model ("ignore
previous instructions", "system prompt", "you are now") is withheld: the context keeps the
story's id, date and sentiment, with the title replaced by a marker, so an injection cannot
reach the prompt at all (the prompt's delimiters and the output checks are the second and
third lines of defence).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

WITHHELD_TITLE = "[headline withheld: it contained instructions addressed to the model]"
_INJECTION = re.compile(
    r"\bignore\b.{0,40}\b(instructions?|prompts?|rules)\b|\b(system|developer)\s*prompt\b|\byou\s+are\s+now\b"
    r"|\bdisregard\b.{0,40}\b(instructions?|above)\b|\brate\s+this\b",
    re.I | re.S,
)
MAX_TITLE_CHARS = 200
# Fundamentals the model is given (companies.fundamentals keys, deallens/providers/alphavantage.py).
FUNDAMENTAL_FIGURES = ("pe_ratio", "peg_ratio", "eps", "beta", "dividend_yield", "book_value", "analyst_target_price")


def looks_like_injection(text: str) -> bool:
    return bool(_INJECTION.search(text))


def clean_title(title: str) -> str:
    text = " ".join(title.split())[:MAX_TITLE_CHARS]
    return WITHHELD_TITLE if looks_like_injection(text) else text


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value if not isinstance(value, str) else Decimal(value))
    except (ValueError, ArithmeticError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def fundamental_figures(fundamentals: dict[str, Any] | None) -> dict[str, float | None]:
    data = fundamentals or {}
    out: dict[str, float | None] = {}
    for name in FUNDAMENTAL_FIGURES:
        value = _number(data.get(name))
        out[name] = None if value is None else round(value, 4 if name == "dividend_yield" else 2)
    market_cap = _number(data.get("market_cap"))
    out["market_cap_billions"] = None if market_cap is None else round(market_cap / 1e9, 2)
    return out


@dataclass(frozen=True, slots=True)
class StoryItem:
    id: int
    published: dt.date
    title: str
    sentiment: str | None
    score: float | None

    def data(self) -> dict[str, Any]:
        return {"id": self.id, "published": self.published.isoformat(), "title": self.title,
                "sentiment": self.sentiment, "sentiment_score": self.score}


@dataclass(frozen=True, slots=True)
class DealItem:
    id: int
    role: str  # "acquirer" or "target" (of the company whose context this is)
    counterparty: str | None
    status: str
    price_per_share: float | None
    value_usd_millions: float | None
    expected_close_on: dt.date | None

    def data(self) -> dict[str, Any]:
        return {"id": self.id, "role": self.role, "counterparty": self.counterparty, "status": self.status,
                "offer_per_share": self.price_per_share, "value_usd_millions": self.value_usd_millions,
                "expected_close_on": self.expected_close_on.isoformat() if self.expected_close_on else None}


@dataclass(frozen=True, slots=True)
class InsightContext:
    """One analysis' input: kind, subject, figures (the only numbers the model may cite) and items."""

    kind: str  # "company", "deal", "market_summary"
    subject_id: int | None
    subject: dict[str, Any]  # names, symbol, sector, dates: descriptive, not figures
    figures: dict[str, float | None]
    stories: tuple[StoryItem, ...] = ()
    deals: tuple[DealItem, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)  # lists of rows (top movers, sectors) for the summary

    def data(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "kind": self.kind,
            "subject_id": self.subject_id,
            "subject": self.subject,
            "figures": {k: v for k, v in sorted(self.figures.items()) if v is not None},
            "stories": [s.data() for s in self.stories],
            "deals": [d.data() for d in self.deals],
        }
        if self.extra:
            value["extra"] = self.extra
        return value

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> InsightContext:
        """The context back from `data()` (as a batch request's prompt holds it): same JSON, same key."""
        stories = tuple(
            StoryItem(id=s["id"], published=dt.date.fromisoformat(s["published"]), title=s["title"],
                      sentiment=s.get("sentiment"), score=s.get("sentiment_score"))
            for s in data.get("stories", [])
        )
        deals = tuple(
            DealItem(id=d["id"], role=d["role"], counterparty=d.get("counterparty"), status=d["status"],
                     price_per_share=d.get("offer_per_share"), value_usd_millions=d.get("value_usd_millions"),
                     expected_close_on=dt.date.fromisoformat(d["expected_close_on"]) if d.get("expected_close_on") else None)
            for d in data.get("deals", [])
        )
        return cls(kind=data["kind"], subject_id=data.get("subject_id"), subject=dict(data.get("subject", {})),
                   figures=dict(data.get("figures", {})), stories=stories, deals=deals, extra=dict(data.get("extra", {})))

    def canonical_json(self) -> str:
        return json.dumps(self.data(), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)

    def cache_key(self, model: str, prompt_version: str) -> str:
        return hashlib.sha256(f"{model}\n{prompt_version}\n{self.canonical_json()}".encode()).hexdigest()

    def known_numbers(self) -> list[float]:
        """Every number the model was given: figures, items' numbers, the rows of `extra`."""
        numbers = [v for v in self.figures.values() if v is not None]
        for story in self.stories:
            numbers.extend(x for x in (story.score,) if x is not None)
        for deal in self.deals:
            numbers.extend(x for x in (deal.price_per_share, deal.value_usd_millions) if x is not None)
        _collect(self.extra, numbers)
        return numbers


def _collect(value: Any, into: list[float]) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        into.append(float(value))
    elif isinstance(value, dict):
        for item in value.values():
            _collect(item, into)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _collect(item, into)


def moved_fields(before: dict[str, float | None], after: dict[str, float | None]) -> list[str]:
    """Figure names whose value differs (or appeared, or went away) between two contexts."""
    names = sorted(set(before) | set(after))
    return [n for n in names if before.get(n) != after.get(n)]
