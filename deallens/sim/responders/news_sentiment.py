"""The stand-in's answer to a news sentiment batch: the offline lexicon's reading of each article.

Derived from the prompt, so a test can check that each id got the score of its own text, and a
demo shows plausible sentiment. The lexicon's score is nudged (x0.9) so that rows scored by the
simulated LLM and by the fallback can be told apart in tests.
"""

from __future__ import annotations

from typing import Any

from deallens.domain.news.sentiment import label_for, score_lexicon
from deallens.llm.sentiment import ARTICLES_OPEN, parse_articles
from deallens.sim.openai import StructuredRequest, structured_responder

LLM_SCALE = 0.9


def simulated_score(title: str, description: str | None) -> float:
    text = title if not description else f"{title}. {description}"
    return round(score_lexicon(text)[0] * LLM_SCALE, 4)


@structured_responder("NewsSentimentBatch")
def news_sentiment(request: StructuredRequest) -> dict[str, Any]:
    prompts = [m["content"] for m in request.messages if m.get("role") == "user" and ARTICLES_OPEN in m["content"]]
    answers = []
    for article in parse_articles(prompts[0] if prompts else ""):
        score = simulated_score(str(article.get("title") or ""), article.get("description"))  # type: ignore[arg-type]
        answers.append({"id": article.get("id"), "score": score, "label": label_for(score)})
    return {"articles": answers}
