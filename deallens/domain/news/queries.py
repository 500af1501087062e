"""What each news feed asks NewsAPI for (its `q` syntax: "phrases", OR, parentheses).

A company is searched by its name and aliases, never the bare ticker: "F", "NOW" or "ALL"
as a query pulls every article using the word. Legal suffixes are dropped ("Apple Inc" is
written "Apple" in headlines), and each name is a quoted phrase.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# General market news (IngestMarketNews' /v2/everything query, beside business top headlines).
MARKET_QUERY = '"stock market" OR "Wall Street" OR stocks OR "S&P 500" OR Nasdaq OR "Dow Jones" OR earnings'
# M&A news (IngestDealNews): the words deals are reported with, as the old system used them.
DEAL_TERMS = (
    "merger", "acquisition", "acquire", "takeover", "buyout", '"tender offer"', '"agrees to buy"',
    '"in talks to acquire"', '"calls off"', '"to buy"',
)
DEAL_QUERY = " OR ".join(DEAL_TERMS)

_LEGAL_SUFFIXES = {
    "inc", "inc.", "incorporated", "corp", "corp.", "corporation", "co", "co.", "company", "ltd", "ltd.",
    "limited", "plc", "llc", "l.p.", "lp", "sa", "s.a.", "ag", "nv", "n.v.", "se", "holdings", "group",
    "class", "a", "b", "c", "&", "the",
}
# NewsAPI caps q at 500 characters.
MAX_QUERY_LENGTH = 500


def short_name(name: str) -> str:
    """"Apple Inc" -> "Apple", "Alphabet Inc Class A" -> "Alphabet", "Amazon.com Inc" -> "Amazon"."""
    words = name.replace(",", " ").split()
    while len(words) > 1 and words[-1].lower() in _LEGAL_SUFFIXES:
        words.pop()
    return " ".join(words).removesuffix(".com")


def _phrase(name: str) -> str | None:
    cleaned = re.sub(r'["()]', " ", name)
    cleaned = " ".join(cleaned.split())
    return f'"{cleaned}"' if len(cleaned) >= 2 else None


def company_query(name: str, aliases: Iterable[str] = ()) -> str:
    """`"Apple" OR "Apple Inc" OR "iPhone maker"` within NewsAPI's length limit."""
    phrases: list[str] = []
    for candidate in (short_name(name), name, *aliases):
        phrase = _phrase(candidate)
        if phrase and phrase.lower() not in {p.lower() for p in phrases}:
            phrases.append(phrase)
    query = ""
    for phrase in phrases:
        longer = f"{query} OR {phrase}" if query else phrase
        if len(longer) > MAX_QUERY_LENGTH:
            break
        query = longer
    return query
