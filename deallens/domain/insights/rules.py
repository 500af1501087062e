"""Deterministic analyses from the same figures, for when the model cannot be asked.

Used over budget, without a key, or when the LLM failed for good; stored with
source "rules" and model RULES_MODEL, so they are never taken for the model's work. The same
context always gives the same analysis, and its prose states only given figures (it passes
the grounding check like a model's answer must).
"""

from __future__ import annotations

import datetime as dt

from deallens.domain.insights.analyses import CitedFigure, CompanyAnalysis, DealAnalysis, MarketSummary
from deallens.domain.insights.context import InsightContext

RULES_MODEL = "rules-v1"
RULES_SOURCE = "rules"


def _cite(context: InsightContext, *names: str) -> list[CitedFigure]:
    return [CitedFigure(name=n, value=v) for n in names if (v := context.figures.get(n)) is not None]


def company_score(figures: dict[str, float | None]) -> tuple[int, list[str], list[str]]:
    """(score, reasons for, reasons against): trend, momentum, RSI extremes, news tone."""
    score, pros, cons = 0, [], []
    price, sma20, sma50 = figures.get("price"), figures.get("sma_20"), figures.get("sma_50")
    if price is not None and sma50 is not None:
        if price > sma50:
            score += 1
            pros.append(f"the price ({price}) is above its 50-day average ({sma50})")
        elif price < sma50:
            score -= 1
            cons.append(f"the price ({price}) is below its 50-day average ({sma50})")
    if sma20 is not None and sma50 is not None and sma20 != sma50:
        if sma20 > sma50:
            score += 1
            pros.append(f"the 20-day average ({sma20}) is above the 50-day average")
        else:
            score -= 1
            cons.append(f"the 20-day average ({sma20}) is below the 50-day average")
    month = figures.get("return_1m_pct")
    if month is not None and abs(month) >= 5:
        score += 1 if month > 0 else -1
        (pros if month > 0 else cons).append(f"the one-month return is {month}%")
    rsi = figures.get("rsi_14")
    if rsi is not None and rsi >= 70:
        score -= 1
        cons.append(f"RSI(14) at {rsi} is overbought")
    elif rsi is not None and rsi <= 30:
        score += 1
        pros.append(f"RSI(14) at {rsi} is oversold")
    tone = figures.get("news_sentiment_avg")
    if tone is not None and abs(tone) >= 0.2:
        score += 1 if tone > 0 else -1
        (pros if tone > 0 else cons).append(f"recent news sentiment averages {tone}")
    return score, pros, cons


def company_analysis(context: InsightContext) -> CompanyAnalysis:
    score, pros, cons = company_score(context.figures)
    recommendation = "buy" if score >= 2 else "sell" if score <= -2 else "hold"
    name = context.subject.get("symbol") or context.subject.get("name") or "The company"
    lead = {"buy": "Rule-based signals are positive", "sell": "Rule-based signals are negative",
            "hold": "Rule-based signals are mixed"}[recommendation]
    thesis = f"{lead} for {name}: " + ("; ".join(pros + cons) or "too few figures to judge") + "."
    risks = [c[0].upper() + c[1:] for c in cons] or ["No negative signal among the computed figures."]
    catalysts = [p[0].upper() + p[1:] for p in pros] or ["No positive signal among the computed figures."]
    return CompanyAnalysis(
        recommendation=recommendation,
        confidence=round(min(0.9, 0.4 + 0.1 * abs(score)), 2),
        thesis=thesis,
        risks=risks[:6],
        catalysts=catalysts[:6],
        figures=_cite(context, "price", "sma_20", "sma_50", "return_1m_pct", "rsi_14", "news_sentiment_avg"),
    )


_LIKELIHOOD = {"rumored": 0.3, "announced": 0.7, "pending": 0.75, "approved": 0.9}


def deal_analysis(context: InsightContext) -> DealAnalysis:
    status = str(context.subject.get("status") or "announced")
    likelihood = _LIKELIHOOD.get(status, 0.6)
    spread = context.figures.get("spread_pct")
    rationale = f"Rule-based view of a deal with status {status}."
    if spread is not None:
        rationale += f" The target trades at a merger-arbitrage spread of {spread}% to the offer."
        annual = context.figures.get("annualised_spread_pct")
        if annual is not None:
            rationale += f" Annualised to the expected close that is {annual}%."
    value = context.figures.get("value_usd_millions")
    regulatory = "high" if value is not None and value >= 10_000 else "medium" if value is not None and value >= 1_000 else "low"
    return DealAnalysis(
        strategic_rationale=rationale,
        synergies="Not assessed by the rules: no model was asked.",
        regulatory_risk=regulatory,
        financing_risk="medium" if str(context.subject.get("consideration")) == "cash" else "low",
        likelihood_of_completion=likelihood,
        figures=_cite(context, "offer_per_share", "target_price", "spread_pct", "annualised_spread_pct", "value_usd_millions"),
    )


def market_summary(context: InsightContext, day: dt.date) -> MarketSummary:
    move = context.figures.get("universe_return_1d_pct")
    direction = "rose" if (move or 0) > 0 else "fell" if (move or 0) < 0 else "was flat"
    headline = f"Tracked universe {direction} on {day.isoformat()}"
    summary = headline + (f": the average one-day return was {move}%." if move is not None else ".")
    notable: list[str] = []
    for row in context.extra.get("top_movers", [])[:5]:
        notable.append(f"{row['symbol']} {row['return_1d_pct']}%")
    for row in context.extra.get("deals", [])[:3]:
        notable.append(f"Deal: {row['title']}")
    return MarketSummary(headline=headline[:200], summary=summary, notable=notable[:8],
                         figures=_cite(context, "universe_return_1d_pct", "advancers", "decliners"))
