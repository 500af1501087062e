"""Company linking: which tracked companies an article is about, how strongly, and where.

Evidence, strongest first: exchange notation ("NYSE: F", "NASDAQ:AAPL"), cashtags ($MSFT),
the company's name with a legal suffix ("Microsoft Corp."), its name or an alias
("Microsoft", "Google" for Alphabet), and a bare ticker ("AAPL"). Names and aliases are found
with one Aho-Corasick automaton (pyahocorasick: C, one pass over the text whatever the number
of patterns, and it reports every overlapping match, which word-boundary and longest-match
checks need; flashtext is pure Python and keeps only non-overlapping longest matches).
Tickers, cashtags and exchange notations are found by regular expressions and looked up in
a dict, which costs the same with 20 or 5,000 companies.

Precision rules:
- a ticker that is also a word or a common acronym (A, ALL, IT, NOW, ON, F, T, COST, NET,
  CAT, KEY, AI, ...) and every one-letter ticker links only as a cashtag or in exchange
  notation; bare tickers are not read in all-caps text;
- a name must appear with a capital letter ("apple pie" is not Apple Inc.), on word boundaries;
- a name that is also an ordinary word (Apple, Target, Gap, Shell, Block, ...) needs business
  context in the article (business words, or another company named without doubt, as in
  "Walmart, Target and Costco") or a legal suffix, and is refused before words like "pie" or
  "between" and right after another capitalised word ("Harrison Ford", "Times Square");
- when two companies' names overlap ("Bank of America" / "America"), the longer match wins.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import ahocorasick

from deallens.domain.aliases import KNOWN_ALIASES

FoundIn = Literal["title", "description"]


@dataclass(frozen=True, slots=True)
class LinkTarget:
    company_id: int
    symbol: str
    name: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CompanyLink:
    company_id: int
    relevance: float
    found_in: FoundIn
    matched: str



# Tickers that are words or common acronyms: linked only as $TICKER or EXCHANGE: TICKER.
COMMON_WORD_TICKERS: frozenset[str] = frozenset(
    """
    A ALL AM AN ANY ARE AS AT BE BIG BY CAN CAR CARS CASH CAT COST DO EAT EVER EYE FAST FIVE FOR
    FUN GO GOLD GOOD HAS HE HI HOME HOPE IT JOB KEY LIFE LOVE LOW MAIN MAN ME NET NEW NEXT NICE NOW
    OK ON ONE OPEN OR OUT PAY PEAK PLAY REAL RUN SAFE SAVE SEE SHE SO TALK TEAM TECH TRUE TWO UP US
    VERY WELL WORK YOU ZONE AIR ARM BILL BOX CORE CUBE DOOR FOLD FORM GAME GLAD HEAR HIGH JOE LAZY
    LIVE MASS MIND MOVE NOTE PLUS POOL RIDE ROCK SITE SKY STAR TELL TRIP WASH WIN WING WOOD WORD
    AI AR CEO CFO COO CTO DOJ EPS ETF EU EV FDA FED FTC GDP IPO LLC NYSE OTC PC PM SEC SPAC TV UK USA
    USD VR API CPI ESG HR IRS LNG OPEC PR QE ROI RV SUV UN WHO IP ED PE EPA ECB IMF IRA HD MA GDP
    """.split()
)

# Names that are also ordinary words: they need business context in the article.
COMMON_WORD_NAMES: frozenset[str] = frozenset(
    """
    apple target gap visa oracle shell ford block square snap match ball amazon meta alphabet
    coherent progressive southern discover general united american best chase dollar delta monster
    compass unity zoom booking marathon apache devon pioneer baker mosaic abbott travelers hartford
    crown church genuine principal regions citizens paramount public global corning dominion
    carnival chewy key cat cost net now on all it
    """.split()
)

_BUSINESS_CONTEXT = re.compile(
    r"\b(?:shares?|stocks?|earnings|revenue|sales?|profits?|quarter|quarterly|investors?|analysts?|"
    r"ceo|cfo|chief|executive|deals?|acquir\w*|acquisition|merger|takeover|buy(?:s|out)?|bid|"
    r"billion|million|market|nasdaq|nyse|dow|s&p|wall street|guidance|outlook|forecasts?|dividend|"
    r"buyback|lawsuit|sues?|sued|regulators?|antitrust|iphone|ipad|mac|app store|company|inc|corp|"
    r"layoffs?|jobs|valuation|rating|upgrade[sd]?|downgrade[sd]?|launch\w*|unveil\w*|"
    r"partnership|customers?|users?|shoppers?|smartphone|chips?|software|cloud|ai|streaming|results|"
    r"retailers?|stores?|discounts?|fares|fees|tariffs?|automakers?|carmakers?|airlines?|"
    r"carriers?|utilit(?:y|ies)|power demand|costs?|brand|subscribers?|recall\w*|plants?)\b"
)
# Words after a common-word name that make it the word, not the company.
_NOT_A_COMPANY_AFTER = frozenset(
    "pie pies juice cider tree trees orchard orchards sauce crumble seeds blossom picking pickers "
    "rainforest river basin rainforests lock locks party parties tart tarts puree vinegar between".split()
)

# Legal suffixes that may follow a name: "Microsoft Corp.", "Apple Inc", "Shell plc".
_LEGAL_SUFFIX = re.compile(
    r"^(?:,?\s+(?:inc|incorporated|corp|corporation|co|company|ltd|limited|plc|llc|l\.?p|"
    r"holdings?|group|n\.?v|s\.?a|ag|se|asa|ab|nv|sa)\b\.?)+",
    re.IGNORECASE,
)
_NAME_SUFFIX_WORDS = frozenset(
    "inc incorporated corp corporation co company ltd limited plc llc lp holdings holding group "
    "nv sa ag se asa ab class a b c cl the & and technologies technology international".split()
)

_UPPER = re.compile(r"[A-Z]")
_LOWER = re.compile(r"[a-z]")
_CASHTAG = re.compile(r"(?<![\w$])\$([A-Za-z][A-Za-z0-9]{0,5}(?:\.[A-Za-z])?)\b")
_EXCHANGE = re.compile(
    r"\b(?:NYSE(?:\s?American|\s?Arca|\s?MKT)?|NASDAQ(?:GS|GM|CM)?|AMEX|TSXV?|LSE|OTC(?:QX|QB)?|Cboe|BATS)"
    r"\s*:\s*([A-Z][A-Z0-9]{0,5}(?:\.[A-Z])?)\b",
    re.IGNORECASE,
)
_TICKER = re.compile(r"(?<![\w$.&'-])([A-Z][A-Z0-9]{1,5}(?:\.[A-Z])?)(?![\w&'-])")

# Relevance of one piece of evidence: its kind, times where it was found.
_KIND_WEIGHT = {"exchange": 1.0, "cashtag": 0.95, "legal_name": 0.95, "name": 0.9, "alias": 0.85, "ticker": 0.8}
_PLACE_WEIGHT: dict[FoundIn, float] = {"title": 1.0, "description": 0.75}
_REPEAT_BONUS = 0.05
_MAX_REPEAT_BONUS = 0.1


def _core_name(name: str) -> str:
    """"Microsoft Corporation" -> "Microsoft", "The Walt Disney Co." -> "Walt Disney"."""
    words = name.replace(",", " ").split()
    if len(words) > 1 and words[0].lower() == "the":
        words = words[1:]
    while len(words) > 1 and words[-1].lower().rstrip(".") in _NAME_SUFFIX_WORDS:
        words.pop()
    return " ".join(words)


def _fold(text: str) -> str:
    """Lower case with the same length as `text` (the automaton's offsets index the original)."""
    text = unicodedata.normalize("NFC", text)
    folded = text.lower()
    return folded if len(folded) == len(text) else "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


@dataclass(frozen=True, slots=True)
class _Pattern:
    company: int  # index into the linker's targets
    kind: Literal["name", "alias"]
    text: str  # as written in the name or alias
    ambiguous: bool


@dataclass(slots=True)
class _Evidence:
    weight: float
    found_in: FoundIn
    matched: str
    count: int = 1


# How many texts' links a linker remembers (copies arrive within hours of each other).
_RECENT_TEXTS = 4_096


class CompanyLinker:
    """Links articles to a fixed set of companies; build once per batch, reuse for every article."""

    def __init__(self, companies: Iterable[LinkTarget]) -> None:
        self._targets = tuple(companies)
        self._by_symbol: dict[str, list[int]] = {}
        patterns: dict[str, list[_Pattern]] = {}
        for index, target in enumerate(self._targets):
            symbol = target.symbol.strip().upper()
            self._by_symbol.setdefault(symbol, []).append(index)
            for kind, variant in self._variants(target, symbol):
                key = _fold(variant)
                if len(key) < 2:
                    continue
                ambiguous = key in COMMON_WORD_NAMES or (key.isalpha() and key.upper() in COMMON_WORD_TICKERS)
                entries = patterns.setdefault(key, [])
                if not any(p.company == index for p in entries):
                    entries.append(_Pattern(index, kind, variant, ambiguous))
        self._automaton = ahocorasick.Automaton()
        for key, entries in patterns.items():
            self._automaton.add_word(key, (len(key), tuple(entries)))
        if patterns:
            self._automaton.make_automaton()
        self._empty = not patterns
        # Syndicated copies repeat title and description: the links of recent texts, kept
        # (links are immutable; each caller gets its own list).
        self._recent: dict[tuple[str, str | None], tuple[CompanyLink, ...]] = {}

    @staticmethod
    def _variants(target: LinkTarget, symbol: str) -> list[tuple[Literal["name", "alias"], str]]:
        name = target.name.strip()
        core = _core_name(name)
        variants: list[tuple[Literal["name", "alias"], str]] = [("name", core)]
        if core.lower().endswith(".com"):
            variants.append(("name", core[:-4]))
        for alias in (*KNOWN_ALIASES.get(symbol, ()), *target.aliases):
            alias = alias.strip()
            if alias and alias != core:
                variants.append(("alias", alias))
        return variants

    def link(self, title: str, description: str | None) -> list[CompanyLink]:
        """One link per company found, the most relevant first."""
        key = (title, description)
        found = self._recent.get(key)
        if found is None:
            if len(self._recent) >= _RECENT_TEXTS:
                self._recent.clear()
            found = self._recent[key] = tuple(self._link(title, description))
        return list(found)

    def _link(self, title: str, description: str | None) -> list[CompanyLink]:
        evidence: dict[int, _Evidence] = {}
        pending: list[tuple[int, str, FoundIn, str]] = []  # common-word names awaiting context
        for place, text in (("title", title), ("description", description)):
            if text:
                self._scan(unicodedata.normalize("NFC", text), place, evidence, pending)
        if pending:
            # A common-word name is the company when the article is business news: business
            # words, or another company named without doubt ("Walmart, Target and Costco").
            whole = f"{title}\n{description or ''}".lower()
            if evidence or _BUSINESS_CONTEXT.search(whole):
                for index, kind, place, matched in pending:
                    _note(evidence, index, kind, place, matched)
        links = [
            CompanyLink(
                company_id=self._targets[index].company_id,
                relevance=round(min(1.0, e.weight + min(_MAX_REPEAT_BONUS, _REPEAT_BONUS * (e.count - 1))), 3),
                found_in=e.found_in,
                matched=e.matched,
            )
            for index, e in evidence.items()
        ]
        links.sort(key=lambda link: (-link.relevance, link.found_in != "title", link.company_id))
        return links

    def _scan(
        self, text: str, place: FoundIn, evidence: dict[int, _Evidence], pending: list[tuple[int, str, FoundIn, str]]
    ) -> None:
        exchange_spans: list[tuple[int, int]] = []
        for match in _EXCHANGE.finditer(text):
            exchange_spans.append(match.span())
            for index in self._by_symbol.get(match.group(1).upper(), ()):
                _note(evidence, index, "exchange", place, match.group(0))
        for match in _CASHTAG.finditer(text):
            for index in self._by_symbol.get(match.group(1).upper(), ()):
                _note(evidence, index, "cashtag", place, match.group(0))
        upper, lower = len(_UPPER.findall(text)), len(_LOWER.findall(text))
        shouting = upper > 1.5 * lower  # more than 60% of the letters in capitals
        if not shouting:
            for match in _TICKER.finditer(text):
                symbol = match.group(1)
                if symbol in COMMON_WORD_TICKERS or any(s <= match.start() < e for s, e in exchange_spans):
                    continue
                for index in self._by_symbol.get(symbol, ()):
                    _note(evidence, index, "ticker", place, symbol)
        if not self._empty:
            self._scan_names(text, place, shouting, evidence, pending)

    def _scan_names(
        self,
        text: str,
        place: FoundIn,
        shouting: bool,
        evidence: dict[int, _Evidence],
        pending: list[tuple[int, str, FoundIn, str]],
    ) -> None:
        folded = _fold(text)
        found: list[tuple[int, int, _Pattern]] = []
        for end, (length, entries) in self._automaton.iter(folded):
            start = end - length + 1
            if start > 0 and (folded[start - 1].isalnum() or folded[start - 1] in "@#$&-"):
                continue
            after = end + 1
            if after < len(folded) and (folded[after].isalnum() or folded[after] in "&" or folded[after : after + 2] == "-m"):
                continue
            written = text[start:after]
            for pattern in entries:
                if self._looks_like_name(written, pattern, shouting):
                    found.append((start, after, pattern))
        # An overlapping longer match of another company wins: "Bank of America" over "America".
        for start, end, pattern in found:
            if any(
                other.company != pattern.company and s <= start and end <= e and (e - s) > (end - start)
                for s, e, other in found
            ):
                continue
            suffix = _LEGAL_SUFFIX.match(text[end:])
            kind = "legal_name" if suffix else pattern.kind
            matched = text[start : end + suffix.end()].strip() if suffix else text[start:end]
            if not pattern.ambiguous or suffix:
                _note(evidence, pattern.company, kind, place, matched)
            elif self._may_be_company(text, folded, start, end, shouting or _is_title_case(text)):
                pending.append((pattern.company, kind, place, matched))

    @staticmethod
    def _looks_like_name(written: str, pattern: _Pattern, shouting: bool) -> bool:
        """Written as a name: as in the pattern, or capitalised; never all lower case."""
        if written == pattern.text or shouting:
            return True
        first = next((c for c in written if c.isalpha()), "")
        expected = next((c for c in pattern.text if c.isalpha()), "")
        if expected.islower():  # "eBay", "iRobot", "onsemi": as written or capitalised
            return first.isupper() or written == pattern.text
        return first.isupper()

    @staticmethod
    def _may_be_company(text: str, folded: str, start: int, end: int, every_word_capitalised: bool) -> bool:
        """A common-word name not used as the word: "apple pie", "Harrison Ford", "Times Square"."""
        following = re.match(r"[\s'’s-]*([a-z]+)", folded[end:])
        if following and following.group(1) in _NOT_A_COMPANY_AFTER:
            return False
        if every_word_capitalised:
            return True
        # Directly after another capitalised word, it is part of some other name.
        return not re.search(r"[A-Z][\w'&.-]* $", text[:start])


def _note(evidence: dict[int, _Evidence], index: int, kind: str, place: FoundIn, matched: str) -> None:
    weight = _KIND_WEIGHT[kind] * _PLACE_WEIGHT[place]
    found = evidence.get(index)
    if found is None:
        evidence[index] = _Evidence(weight, place, matched)
        return
    found.count += 1
    if weight > found.weight:
        found.weight, found.found_in, found.matched = weight, place, matched


def _is_title_case(text: str) -> bool:
    long_words = [w for w in re.findall(r"[A-Za-z][\w'&.-]*", text) if len(w) >= 4]
    return len(long_words) >= 3 and sum(w[0].isupper() for w in long_words) >= 0.7 * len(long_words)
