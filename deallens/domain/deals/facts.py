"""What one article says about one deal: the common result of both extractors.

Every field is optional except the two parties and the status: an article that does not name
both sides of a transaction and what happened to it is not deal news we can track.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from deallens.domain.deals.status import DealStatus

Consideration = Literal["cash", "stock", "mixed"]
# Larger than any deal ever made (about $200 billion so far): a bigger number is a misreading.
MAX_DEAL_VALUE = Decimal("5e12")
MAX_PRICE_PER_SHARE = Decimal("1e6")
NAME_MAX = 120


@dataclass(frozen=True, slots=True)
class DealFacts:
    acquirer: str
    target: str
    status: DealStatus
    value: Decimal | None = None  # in `currency`, whole units (not millions)
    currency: str | None = None
    price_per_share: Decimal | None = None  # in `currency`
    consideration: Consideration | None = None
    expected_close_on: dt.date | None = None
    # Which extractor produced it ("patterns" or the LLM's model name): deal_events.details.
    source: str = "patterns"

    def __post_init__(self) -> None:
        if not self.acquirer or not self.target:
            raise ValueError("a deal needs both parties")
        if self.value is not None and not (0 < self.value <= MAX_DEAL_VALUE):
            raise ValueError(f"implausible deal value {self.value}")
        if self.price_per_share is not None and not (0 < self.price_per_share <= MAX_PRICE_PER_SHARE):
            raise ValueError(f"implausible price per share {self.price_per_share}")
