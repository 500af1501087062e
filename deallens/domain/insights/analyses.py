"""The three analyses' schemas: what the model must answer and what the rules produce.

Their class names are the json_schema names the stand-in dispatches on. Every number an
analysis relies on is listed in `figures` by the context's own name; the grounding check
(deallens/domain/insights/grounding.py) holds the prose to the same figures.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Recommendation = Literal["buy", "hold", "sell"]
Level = Literal["low", "medium", "high"]


class CitedFigure(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(max_length=64)]
    value: float


class CompanyAnalysis(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recommendation: Recommendation
    confidence: Annotated[float, Field(ge=0, le=1)]
    thesis: Annotated[str, Field(max_length=1200)]
    risks: Annotated[list[Annotated[str, Field(max_length=300)]], Field(max_length=6)]
    catalysts: Annotated[list[Annotated[str, Field(max_length=300)]], Field(max_length=6)]
    figures: Annotated[list[CitedFigure], Field(max_length=20)]


class DealAnalysis(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strategic_rationale: Annotated[str, Field(max_length=1200)]
    synergies: Annotated[str, Field(max_length=600)]
    regulatory_risk: Level
    financing_risk: Level
    likelihood_of_completion: Annotated[float, Field(ge=0, le=1)]
    figures: Annotated[list[CitedFigure], Field(max_length=20)]


class MarketSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    headline: Annotated[str, Field(max_length=200)]
    summary: Annotated[str, Field(max_length=1500)]
    notable: Annotated[list[Annotated[str, Field(max_length=300)]], Field(max_length=8)]
    figures: Annotated[list[CitedFigure], Field(max_length=20)]


Analysis = CompanyAnalysis | DealAnalysis | MarketSummary
SCHEMAS: dict[str, type[BaseModel]] = {"company": CompanyAnalysis, "deal": DealAnalysis, "market_summary": MarketSummary}


def prose(analysis: BaseModel) -> list[str]:
    """The free-text fields of an analysis (what the grounding and leak checks read)."""
    texts: list[str] = []
    for name, value in analysis:
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, list):
            texts.extend(v for v in value if isinstance(v, str))
    del name
    return texts
