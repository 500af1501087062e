"""Alert definitions: a pydantic discriminated union on `type`, stored in alerts.params.

The definition is validated at the edge (`starter.py alerts add`, the API) so that the
evaluator can trust what it reads. Errors name every wrong field in one line:
`threshold: Field required; symbol: Field required`.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: Annotated[int, Field(gt=0)]
    name: Annotated[str, Field(max_length=200)] | None = None
    cooldown_seconds: Annotated[int, Field(ge=0, le=30 * 86400)] = 3600
    one_shot: bool = False
    # Urgent alerts are delivered during the user's quiet hours too.
    urgent: bool = False
    expires_at: dt.datetime | None = None

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must include a timezone, e.g. 2026-12-31T21:00:00Z")
        return value


class _SymbolRule(_Rule):
    symbol: Annotated[str, Field(min_length=1, max_length=16)]

    @field_validator("symbol")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.strip().upper()


# What alerts.threshold (numeric(18,6)) holds: a larger value is refused here, naming the
# field, rather than by the database as a numeric overflow.
MAX_THRESHOLD = Decimal("1e12")


class PriceAbove(_SymbolRule):
    type: Literal["price_above"]
    threshold: Annotated[Decimal, Field(gt=0, lt=MAX_THRESHOLD, allow_inf_nan=False)]


class PriceBelow(_SymbolRule):
    type: Literal["price_below"]
    threshold: Annotated[Decimal, Field(gt=0, lt=MAX_THRESHOLD, allow_inf_nan=False)]


class PercentChange(_SymbolRule):
    """Move of at least `percent` (either direction unless `direction` says) against the
    previous close, or over `window_minutes` when given."""

    type: Literal["percent_change"]
    percent: Annotated[Decimal, Field(gt=0, le=1000)]
    direction: Literal["up", "down", "either"] = "either"
    window_minutes: Annotated[int, Field(gt=0, le=7 * 24 * 60)] | None = None


class VolumeSpike(_SymbolRule):
    """Volume at least `multiple` times the 20-day average."""

    type: Literal["volume_spike"]
    multiple: Annotated[Decimal, Field(gt=1, le=1000)]


class VolumeAbove(_SymbolRule):
    type: Literal["volume_above"]
    threshold: Annotated[int, Field(gt=0, lt=int(MAX_THRESHOLD))]


class NewsMention(_SymbolRule):
    type: Literal["news_mention"]
    keywords: Annotated[list[Annotated[str, Field(min_length=1, max_length=100)]], Field(max_length=20)] = []


class NewsSentiment(_SymbolRule):
    """The company's news sentiment crossing `threshold` (-1..1) in `direction`."""

    type: Literal["news_sentiment"]
    threshold: Annotated[Decimal, Field(ge=-1, le=1)]
    direction: Literal["above", "below"] = "below"


class DealNew(_Rule):
    """A new deal naming `symbol`, or any company on the user's watchlist when omitted."""

    type: Literal["deal_new"]
    symbol: Annotated[str, Field(min_length=1, max_length=16)] | None = None


class DealStatusChange(_Rule):
    """A status change of `deal_id`, or of any deal naming `symbol`, or any watched company's."""

    type: Literal["deal_status_change"]
    deal_id: Annotated[int, Field(gt=0)] | None = None
    symbol: Annotated[str, Field(min_length=1, max_length=16)] | None = None

    @model_validator(mode="after")
    def _one_subject(self) -> DealStatusChange:
        if self.deal_id is not None and self.symbol is not None:
            raise ValueError("give deal_id or symbol, not both")
        return self


AlertRule = Annotated[
    PriceAbove | PriceBelow | PercentChange | VolumeSpike | VolumeAbove | NewsMention | NewsSentiment | DealNew | DealStatusChange,
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[AlertRule] = TypeAdapter(AlertRule)

KIND_BY_TYPE = {
    "price_above": "price",
    "price_below": "price",
    "percent_change": "price",
    "volume_spike": "volume",
    "volume_above": "volume",
    "news_mention": "news",
    "news_sentiment": "news",
    "deal_new": "deal",
    "deal_status_change": "deal",
}

# Fields that are columns of `alerts`, not part of the stored params.
_COLUMN_FIELDS = {"user_id", "name", "cooldown_seconds", "one_shot", "expires_at", "symbol", "deal_id"}


class InvalidAlert(ValueError):
    """One line naming the field and what is wrong with it."""


def parse_alert(data: object) -> AlertRule:
    """The validated rule, or `InvalidAlert` naming every wrong or missing field in one line
    (`threshold: Field required; symbol: Field required`), so a fix takes one round, not one per field."""
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as error:
        problems: list[str] = []
        for item in error.errors():
            problem = _describe(item)
            if problem not in problems:
                problems.append(problem)
        raise InvalidAlert("; ".join(problems)) from None


def _describe(item: ErrorDetails) -> str:
    # The discriminator's own tag is a location, not a field the user wrote.
    field = ".".join(str(part) for part in item["loc"] if str(part) not in KIND_BY_TYPE)
    message = item["msg"].removeprefix("Value error, ")
    if item["type"] == "union_tag_invalid":
        field, message = "type", f"unknown alert type; expected one of {', '.join(KIND_BY_TYPE)}"
    elif item["type"] == "union_tag_not_found":
        field, message = "type", f"is required; one of {', '.join(KIND_BY_TYPE)}"
    # A model-level check has no single field: its message names the fields itself.
    return f"{field}: {message}" if field else message


def alert_params(rule: AlertRule) -> dict[str, object]:
    """What goes into alerts.params: the type and its parameters, JSON-ready (`urgent` only when set)."""
    params = rule.model_dump(mode="json", exclude=_COLUMN_FIELDS, exclude_none=True)
    if not params.get("urgent"):
        params.pop("urgent", None)
    return params
