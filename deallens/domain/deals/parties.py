"""Which tracked company a party named in the news is, if any.

Headlines name companies loosely ("Exxon", "Walt Disney Co.", "JPMorgan", "Google"), the
companies table formally ("Exxon Mobil Corporation"). A name is compared in its normalised
form (case, punctuation, a leading "The", legal suffixes such as Inc, Corp., plc, N.V. and
share-class tails dropped), first in full against names, aliases and symbols, then as the
leading or trailing words of exactly one company's name ("Exxon" → Exxon Mobil, "Disney" →
Walt Disney) when that is not ambiguous and not a single short word. A party that is no
tracked company keeps its name (deals.acquirer_name / target_name) and no company id.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from deallens.domain.aliases import KNOWN_ALIASES

LEGAL_SUFFIXES = frozenset(
    {
        "inc", "incorporated", "corp", "corporation", "co", "company", "ltd", "limited", "plc", "llc", "lp",
        "llp", "sa", "ag", "nv", "se", "spa", "bv", "ab", "asa", "oyj", "kk", "gmbh", "pte", "pty", "holdings",
        "holding", "group", "the", "class", "a", "b", "c",
    }
)
# Well-known other names (the news says "Google" for Alphabet): the linker's table, one source.
WELL_KNOWN_ALIASES = KNOWN_ALIASES
# A bare partial match must be at least this long (so "Co" or "GE" never match partially).
MIN_PARTIAL_CHARS = 4


def words(text: str) -> list[str]:
    """Case-folded words, as names are compared: "J.P. Morgan's" -> ['jp', 'morgan']."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = re.sub(r"['’]s\b", "", text)
    text = text.replace(".com", " ").replace("&", " and ")
    # Dotted initials are one word: "j.p. morgan" -> "jp morgan".
    text = re.sub(r"\b(?:[^\W\d_]\.){2,}", lambda m: m.group().replace(".", ""), text)
    return re.findall(r"[^\W_]+", text)


def normalise(name: str) -> str:
    """'The Walt Disney Co.' -> 'walt disney'; 'Amazon.com, Inc.' -> 'amazon'; "Pfizer's" -> 'pfizer'."""
    merged = words(name)
    while len(merged) > 1 and merged[-1] in LEGAL_SUFFIXES:
        merged.pop()
    while len(merged) > 1 and merged[0] == "the":
        merged.pop(0)
    return " ".join(merged)


@dataclass(frozen=True, slots=True)
class Company:
    company_id: int
    symbol: str
    name: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Party:
    """A resolved party: the tracked company (or None) and the name to keep."""

    company_id: int | None
    symbol: str | None
    name: str  # the company's name when tracked, else the name as the article gave it

    @property
    def key(self) -> str:
        """What identifies the party when matching deals: the company, else its normalised name."""
        return f"c:{self.company_id}" if self.company_id is not None else f"n:{normalise(self.name)}"


class PartyResolver:
    def __init__(self, companies: Iterable[Company]) -> None:
        self._exact: dict[str, Company | None] = {}
        self._by_symbol: dict[str, Company] = {}
        self._names: list[tuple[str, Company]] = []
        for company in companies:
            self._by_symbol[company.symbol.upper()] = company
            names = {normalise(company.name)}
            names.update(normalise(a) for a in (*company.aliases, *WELL_KNOWN_ALIASES.get(company.symbol.upper(), ())))
            for name in names:
                if not name:
                    continue
                # Two companies under one name: ambiguous, resolve neither.
                self._exact[name] = company if self._exact.get(name, company) is company else None
            self._names.append((normalise(company.name), company))

    def resolve(self, name: str) -> Party:
        company = self._lookup(name)
        if company is None:
            return Party(company_id=None, symbol=None, name=clean_name(name))
        return Party(company_id=company.company_id, symbol=company.symbol, name=company.name)

    def _lookup(self, name: str) -> Company | None:
        stripped = name.strip()
        # A ticker as written ("AAPL", "$AAPL"): upper case only, so "Apple" is not "APPLE".
        ticker = stripped.removeprefix("$")
        if ticker.isupper() and ticker in self._by_symbol and len(ticker) >= 2:
            return self._by_symbol[ticker]
        key = normalise(stripped)
        if not key:
            return None
        if key in self._exact:
            return self._exact[key]
        if len(key) < MIN_PARTIAL_CHARS:
            return None
        found = [
            company
            for full, company in self._names
            if full.startswith(key + " ") or full.endswith(" " + key)
        ]
        return found[0] if len(found) == 1 else None


def one_line(text: str) -> str:
    """Control and format characters (C0, C1, bidi overrides, zero-width) and line breaks as spaces."""
    cleaned = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs") else c for c in text)
    return " ".join(unicodedata.normalize("NFKC", cleaned).split())


def clean_name(name: str) -> str:
    """A party's name as stored when it is no tracked company: one line, trimmed, bounded."""
    one_line_name = one_line(name)
    return one_line_name.strip(" ,.;:'\"‘’“”")[:120]
