"""Every number an analysis states must be one it was given (within rounding).

Checked two ways: each cited figure must name a context figure and carry its value, and each
number written in the prose must match some number of the context (figures, deal terms,
sentiment scores, movers). A number written with d decimals matches a given value v when it is
v rounded to d decimals (half a unit of the last written digit, and 0.5 % for large values
written short: "$1.2bn" for 1,234.5 million is not accepted, "1,235" is); signs may be dropped
("fell 3.2%" for -3.2). Period lengths of the indicators (14-day RSI, 50-day average) and
years are not figures. A failed check is returned as a reason, which the gateway treats like a
schema violation (asked once more, then given up).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import BaseModel

from deallens.domain.insights.analyses import prose
from deallens.domain.insights.context import InsightContext

_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(?![\w])")
# Periods that name an indicator rather than state a figure (and the bounds of a 0-1 scale).
_PERIODS = frozenset({0, 1, 5, 14, 20, 21, 50, 52, 200, 365})
_RELATIVE_TOLERANCE = 0.005


def _matches(written: float, decimals: int, given: Iterable[float]) -> bool:
    half_unit = 0.5 * 10 ** (-decimals) + 1e-9
    for value in given:
        magnitude = abs(value)
        if abs(written - magnitude) <= half_unit or abs(written - value) <= half_unit:
            return True
        if magnitude >= 10 and abs(written - magnitude) <= magnitude * _RELATIVE_TOLERANCE:
            return True
    return False


def prose_numbers(text: str) -> list[tuple[float, int, str]]:
    """(value, decimals written, as written) of each number in the text."""
    found = []
    for match in _NUMBER.finditer(_DATE.sub(" ", text)):
        whole, fraction = match.group(1), match.group(2)
        literal = whole.replace(",", "") + (f".{fraction}" if fraction else "")
        found.append((float(literal), len(fraction or ""), match.group(0)))
    return found


def ungrounded(analysis: BaseModel, context: InsightContext) -> str | None:
    """Why the analysis cites a number it was not given, or None when every number is grounded."""
    figures = {k: v for k, v in context.figures.items() if v is not None}
    for cited in getattr(analysis, "figures", []):
        if cited.name not in figures:
            return f"figure {cited.name!r} is not one of the given figures"
        value = figures[cited.name]
        decimals = min(6, len(repr(float(cited.value)).partition(".")[2].rstrip("0")))
        if not _matches(cited.value, decimals, [value]):
            return f"figure {cited.name} is given as {value}, the answer says {cited.value}"
    given = context.known_numbers()
    # Numbers inside the given headlines and titles were given too ("$5 billion" quoted from a story).
    titles = [s.title for s in context.stories] + [str(context.subject.get("title") or "")]
    titles += [str(row.get("title") or "") for row in context.extra.get("deals", []) if isinstance(row, dict)]
    given = given + [value for title in titles for value, _, _ in prose_numbers(title)]
    for text in prose(analysis):
        for value, decimals, literal in prose_numbers(text):
            if decimals == 0 and (value in _PERIODS or 1900 <= value <= 2100):
                continue
            if not _matches(value, decimals, given):
                return f"the number {literal} in the text is not one of the given figures"
    return None


def leaks(analysis: BaseModel, secrets: Iterable[str], *, window: int = 40) -> str | None:
    """Why the analysis quotes the prompt (any `window` characters of it), or None."""
    texts = [" ".join(t.split()).lower() for t in prose(analysis)]
    for secret in secrets:
        normal = " ".join(secret.split()).lower()
        for start in range(0, max(1, len(normal) - window + 1), window // 2):
            piece = normal[start : start + window]
            if len(piece) == window and any(piece in t for t in texts):
                return "the answer quotes the instructions"
    return None
