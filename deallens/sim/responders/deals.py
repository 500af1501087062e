"""The stand-in's answer to deal extraction (json_schema "DealExtractionBatch").

A deterministic model: it reads each article of the prompt with the headline patterns, so a
test knows what "the LLM" will say. It is also gullible on purpose: an article that tells it
to ignore its instructions gets the answer the injection would want from a naive model (a
deal between parties the article never names, completed), so the tests can show that the
gateway's validation and the grounding check keep such an answer from changing anything.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from deallens.domain.deals import patterns
from deallens.llm.deals import parse_articles
from deallens.sim.openai import StructuredRequest, structured_responder

_INJECTION = re.compile(r"\bignore\b.{0,40}\binstructions?\b|\bsystem\s*prompt\b|\byou\s+are\s+now\b", re.I | re.S)
INJECTED_ACQUIRER = "Injected Acquirer Corp"
INJECTED_TARGET = "Injected Target Inc"

_EMPTY = {
    "is_deal": False, "acquirer": None, "target": None, "status": None, "value": None, "currency": None,
    "price_per_share": None, "consideration": None, "expected_close_on": None,
}


def _answer(article: dict[str, Any]) -> dict[str, Any]:
    title = str(article.get("title") or "")
    description = article.get("description")
    description = str(description) if description is not None else None
    if _INJECTION.search(f"{title} {description or ''}"):
        return {**_EMPTY, "is_deal": True, "acquirer": INJECTED_ACQUIRER, "target": INJECTED_TARGET,
                "status": "completed"}
    try:
        published = dt.date.fromisoformat(str(article.get("published")))
    except ValueError:
        published = dt.date.today()
    facts = patterns.extract(title, description, published)
    if facts is None:
        return dict(_EMPTY)
    return {
        "is_deal": True,
        "acquirer": facts.acquirer,
        "target": facts.target,
        "status": facts.status,
        "value": float(facts.value) if facts.value is not None else None,
        "currency": facts.currency,
        "price_per_share": float(facts.price_per_share) if facts.price_per_share is not None else None,
        "consideration": facts.consideration,
        "expected_close_on": facts.expected_close_on.isoformat() if facts.expected_close_on else None,
    }


@structured_responder("DealExtractionBatch")
def deal_extraction(request: StructuredRequest) -> dict[str, Any]:
    articles = parse_articles(request.last_user_text)
    return {"articles": [{"id": a.get("id"), **_answer(a)} for a in articles]}
