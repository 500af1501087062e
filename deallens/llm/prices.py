"""USD prices per 1M tokens, per model: what llm_usage.cost_usd and the budget are computed from.

The packaged table (`openai_prices_per_1m_tokens_usd.csv`) is a copy of
tests/provider-samples/openai_prices_per_1m_tokens_usd.csv, whose `source` column names where
each row came from (OpenAI's pricing page as quoted by maintained packages, 2025). Prices change
and OpenAI no longer lists some of these models, so OPENAI_PRICES_FILE may point at a CSV of
the same columns to replace it. A model without a price is refused before any call: a call we
cannot price is a call the budget cannot bound.

Requests sent through the Batch API (deallens/llm/batch.py) cost `batch_multiplier` times the
table's prices: OpenAI bills batches at 50%, the default when a CSV has no such column.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

PACKAGED_PRICES = Path(__file__).with_name("openai_prices_per_1m_tokens_usd.csv")
_COLUMNS = ("model", "input_usd_per_1m", "cached_input_usd_per_1m", "output_usd_per_1m")
# Optional column: a CSV without it prices batches at OpenAI's 50%.
BATCH_COLUMN = "batch_multiplier"
DEFAULT_BATCH_MULTIPLIER = Decimal("0.5")
_MILLION = Decimal(1_000_000)
# llm_usage.cost_usd is numeric(12, 6): costs are kept to the micro-dollar.
_MICRO = Decimal("0.000001")


class PriceTableError(ValueError):
    """The price table cannot be read; the message is one line naming the file and row."""


@dataclass(frozen=True, slots=True)
class ModelPrice:
    input_per_1m: Decimal
    cached_input_per_1m: Decimal
    output_per_1m: Decimal
    batch_multiplier: Decimal = DEFAULT_BATCH_MULTIPLIER

    def batch(self) -> ModelPrice:
        """The price of the same model through the Batch API."""
        m = self.batch_multiplier
        return ModelPrice(self.input_per_1m * m, self.cached_input_per_1m * m, self.output_per_1m * m, Decimal(1))

    def cost(self, *, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> Decimal:
        """USD for one call. `prompt_tokens` includes the cached ones (as OpenAI reports it)."""
        cached = min(cached_tokens, prompt_tokens)
        usd = (
            (prompt_tokens - cached) * self.input_per_1m
            + cached * self.cached_input_per_1m
            + completion_tokens * self.output_per_1m
        ) / _MILLION
        return usd.quantize(_MICRO, rounding="ROUND_CEILING")


class PriceTable:
    def __init__(self, prices: dict[str, ModelPrice]) -> None:
        self._prices = dict(prices)

    @classmethod
    def load(cls, path: Path | None = None) -> PriceTable:
        path = path or PACKAGED_PRICES
        try:
            with path.open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                missing = [c for c in _COLUMNS if c not in (reader.fieldnames or ())]
                if missing:
                    raise PriceTableError(f"{path.name}: missing column(s) {', '.join(missing)}")
                prices: dict[str, ModelPrice] = {}
                for line, row in enumerate(reader, start=2):
                    try:
                        batch = (row.get(BATCH_COLUMN) or "").strip()
                        price = ModelPrice(
                            *(Decimal(row[c].strip()) for c in _COLUMNS[1:]),
                            batch_multiplier=Decimal(batch) if batch else DEFAULT_BATCH_MULTIPLIER,
                        )
                    except (InvalidOperation, AttributeError):
                        raise PriceTableError(f"{path.name} line {line}: prices must be numbers") from None
                    if min(price.input_per_1m, price.cached_input_per_1m, price.output_per_1m) < 0:
                        raise PriceTableError(f"{path.name} line {line}: prices must not be negative")
                    if not 0 < price.batch_multiplier <= 1:
                        raise PriceTableError(f"{path.name} line {line}: {BATCH_COLUMN} must be in (0, 1]")
                    prices[row["model"].strip()] = price
        except OSError as error:
            raise PriceTableError(f"{path}: cannot read the price table ({error.strerror})") from None
        if not prices:
            raise PriceTableError(f"{path.name}: no prices")
        return cls(prices)

    def get(self, model: str) -> ModelPrice | None:
        """The model's price; a dated snapshot ("gpt-4o-2024-08-06") falls back to its family."""
        if model in self._prices:
            return self._prices[model]
        family = max((name for name in self._prices if model.startswith(name + "-")), key=len, default=None)
        return self._prices[family] if family else None

    @property
    def models(self) -> list[str]:
        return sorted(self._prices)
