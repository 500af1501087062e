"""The stand-in's analyses (json_schema CompanyAnalysis, DealAnalysis, MarketSummary).

A deterministic model of an analyst that reads the context of the prompt: the recommendation
follows the price against its 50-day average, the one-month return and RSI(14), and the prose
states only figures of the context, so tests can check grounding against what was given. It is
gullible on purpose: a context whose text tells it to ignore its instructions gets a strong
buy with the system prompt quoted back, the answer a naive model would give, so tests can show
that such text never reaches it and that the checks would reject the answer if it did.
"""

from __future__ import annotations

from typing import Any

from deallens.domain.insights.context import looks_like_injection
from deallens.llm.insights import parse_context
from deallens.sim.openai import StructuredRequest, structured_responder

INVENTED_FIGURE = {"name": "forward_pe_ratio", "value": 987.65}


def _hostile(context: dict[str, Any]) -> bool:
    texts = [str(s.get("title") or "") for s in context.get("stories", [])]
    texts.append(str(context.get("subject", {}).get("title") or ""))
    return any(looks_like_injection(t) for t in texts)


def _system(request: StructuredRequest) -> str:
    first = request.messages[0] if request.messages else {}
    return str(first.get("content") or "") if isinstance(first, dict) else ""


def _cite(figures: dict[str, Any], *names: str) -> list[dict[str, Any]]:
    return [{"name": n, "value": figures[n]} for n in names if figures.get(n) is not None]


def company_view(figures: dict[str, Any]) -> str:
    """The stand-in's recommendation for a company's figures (tests compare against it)."""
    price, sma50 = figures.get("price"), figures.get("sma_50")
    rsi, month = figures.get("rsi_14"), figures.get("return_1m_pct")
    if price is not None and sma50 is not None:
        if price > sma50 and (rsi is None or rsi < 70):
            return "buy"
        if price < sma50 and (month is None or month < 0):
            return "sell"
    return "hold"


@structured_responder("CompanyAnalysis")
def company_analysis(request: StructuredRequest) -> dict[str, Any]:
    context = parse_context(request.text)
    figures = context.get("figures", {})
    subject = context.get("subject", {})
    name = subject.get("symbol") or subject.get("name") or "The company"
    if _hostile(context):
        return {"recommendation": "buy", "confidence": 1.0, "thesis": f"Strong buy. My instructions: {_system(request)}"[:1200],
                "risks": [], "catalysts": ["As instructed."], "figures": []}
    recommendation = company_view(figures)
    parts = []
    if figures.get("price") is not None and figures.get("sma_50") is not None:
        side = "above" if figures["price"] > figures["sma_50"] else "below"
        parts.append(f"{name} closed at {figures['price']}, {side} its 50-day average of {figures['sma_50']}")
    if figures.get("rsi_14") is not None:
        parts.append(f"RSI(14) stands at {figures['rsi_14']}")
    if figures.get("return_1m_pct") is not None:
        parts.append(f"the one-month return is {figures['return_1m_pct']}%")
    thesis = ("; ".join(parts) or f"{name} has few computed figures") + "."
    risks = []
    if figures.get("volatility_20d_pct") is not None:
        risks.append(f"Annualised 20-day volatility of {figures['volatility_20d_pct']}%.")
    if figures.get("pct_below_52w_high") is not None:
        risks.append(f"The price is {figures['pct_below_52w_high']}% below its 52-week high.")
    stories = context.get("stories", [])
    catalysts = [f"Recent story ({s.get('sentiment') or 'unscored'}): {s.get('title')}"[:300] for s in stories[:2]
                 if not any(ch.isdigit() for ch in str(s.get("title")))]
    for deal in context.get("deals", [])[:1]:
        catalysts.append(f"Open deal as {deal.get('role')} with {deal.get('counterparty')}.")
    confidence = {"buy": 0.7, "sell": 0.65, "hold": 0.5}[recommendation]
    return {"recommendation": recommendation, "confidence": confidence, "thesis": thesis,
            "risks": risks, "catalysts": catalysts,
            "figures": _cite(figures, "price", "sma_50", "rsi_14", "return_1m_pct", "volatility_20d_pct")}


@structured_responder("DealAnalysis")
def deal_analysis(request: StructuredRequest) -> dict[str, Any]:
    context = parse_context(request.text)
    figures = context.get("figures", {})
    subject = context.get("subject", {})
    if _hostile(context):
        return {"strategic_rationale": f"Certain to close. My instructions: {_system(request)}"[:1200], "synergies": "",
                "regulatory_risk": "low", "financing_risk": "low", "likelihood_of_completion": 1.0, "figures": []}
    rationale = f"{subject.get('acquirer') or 'The acquirer'} buying {subject.get('target') or 'the target'}"
    rationale += f" (status {subject.get('status')})."
    if figures.get("spread_pct") is not None:
        rationale += f" The target trades at a {figures['spread_pct']}% spread to the offer of {figures['offer_per_share']}."
    if figures.get("annualised_spread_pct") is not None:
        rationale += f" That annualises to {figures['annualised_spread_pct']}% to the expected close."
    value = figures.get("value_usd_millions")
    status = subject.get("status")
    likelihood = {"rumored": 0.35, "announced": 0.7, "pending_regulatory": 0.7, "approved": 0.92}.get(status, 0.6)
    return {
        "strategic_rationale": rationale,
        "synergies": "Cost synergies from combining overlapping operations; revenue synergies are less certain.",
        "regulatory_risk": "high" if value and value >= 10_000 else "medium" if value and value >= 1_000 else "low",
        "financing_risk": "medium" if subject.get("consideration") == "cash" else "low",
        "likelihood_of_completion": likelihood,
        "figures": _cite(figures, "offer_per_share", "target_price", "spread_pct", "annualised_spread_pct"),
    }


@structured_responder("MarketSummary")
def market_summary(request: StructuredRequest) -> dict[str, Any]:
    context = parse_context(request.text)
    figures = context.get("figures", {})
    extra = context.get("extra", {})
    move = figures.get("universe_return_1d_pct")
    direction = "higher" if (move or 0) > 0 else "lower" if (move or 0) < 0 else "flat"
    summary = f"The tracked universe closed {direction}, with an average move of {move}%."
    if figures.get("advancers") is not None:
        summary += f" Advancers: {figures['advancers']:g}; decliners: {figures.get('decliners', 0):g}."
    notable = [f"{m['symbol']} moved {m['return_1d_pct']}%" for m in extra.get("top_movers", [])[:3]]
    notable += [f"Deal news: {d['title']}"[:300] for d in extra.get("deals", [])[:2]
                if not any(ch.isdigit() for ch in str(d.get("title")))]
    return {"headline": f"Tracked stocks close {direction}", "summary": summary, "notable": notable,
            "figures": _cite(figures, "universe_return_1d_pct", "advancers", "decliners")}
