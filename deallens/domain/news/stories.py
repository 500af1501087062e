"""Story grouping: the copies of one real-world event across outlets become one story.

Two articles are the same event when their headlines (and descriptions) say the same thing
within a time window: a syndicated wire copy, or a rewrite by another outlet. Wording alone
is not enough, because the hard cases are near-identical headlines about different events of
one company ("Apple beats estimates" / "Apple misses estimates", "X in talks to buy Y" /
"X agrees to buy Y" / "X calls off bid for Y"). So the decision has two parts:

1. Vetoes that wording similarity cannot override: opposite polarity (beat/miss, up/down,
   upgrade/downgrade, raise/cut), different deal stages, different amounts or percentages in
   the headlines, different quarters or years, and too far apart in time.
2. A similarity score over canonical tokens (synonyms folded: "tops"/"beats", "buy"/"acquire",
   "forecasts"/"estimates"; outlet suffixes like " - Reuters" dropped), with rapidfuzz's
   character ratio on the headline for copies with small edits (C++: cheap enough to call
   on every candidate).

StoryIndex avoids comparing all pairs: exact headline copies are found by a dict, and the
rest through MinHash LSH over each article's specific tokens (names, numbers, rare words;
the generic vocabulary is left out so that rewrites share a larger part of what is left).
The MinHash and the band index are a few lines of numpy and dicts rather than
datasketch's MinHashLSH: measured here, datasketch took ~350 µs per article (MinHash object
plus its storage layer), about 3,000 articles/s, too slow for the 100,000-article benchmark;
the same algorithm on a signature array costs a small fraction of that. Candidates are
ranked by how many bands they share (an estimate of their Jaccard similarity) and only the
best few are scored, so a hot company with thousands of articles in the window does not make
a lookup quadratic.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from rapidfuzz import fuzz

DEFAULT_WINDOW = timedelta(hours=48)
# Chosen on tests/labelled/story_pairs.jsonl (see its README and tests/test_news_stories.py).
SAME_EVENT_THRESHOLD = 0.5
# Amounts within this relative difference are the same amount rounded ("$68.7 billion" / "$69 billion").
_AMOUNT_TOLERANCE = 0.03


@dataclass(frozen=True, slots=True)
class StoryText:
    title: str
    description: str | None
    published_at: datetime  # timezone-aware


# --- text normalisation -------------------------------------------------------------------

# " - Reuters", " | CNBC", " — Bloomberg": NewsAPI titles often end with the outlet's name.
_OUTLET_SUFFIX = re.compile(r"\s+[-|\u2013\u2014:]\s+[A-Z][\w.&' ]{1,40}$")
_SPACE = re.compile(r"\s+")

# Multi-word phrases folded to one concept token before tokenising.
_PHRASES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"\bchief executive(?: officer)?\b", " ceo "),
        (r"\bchief financial officer\b|\bfinance chief\b", " cfo "),
        (r"\bwall street\b", " street "),
        (r"\b(?:call|calls|called|calling) off\b", " terminate "),
        (r"\b(?:walk|walks|walked) away\b", " terminate "),
        (r"\b(?:take|takes|took) over\b", " acquire "),
        (r"\b(?:snap|snaps|snapped) up\b", " acquire "),
        (r"\b(?:lay|lays|laid) off\b", " layoff "),
        (r"\bjob cuts?\b", " layoff "),
        (r"\bshare (?:repurchase|buyback)s?\b", " buyback "),
        (r"\b(?:better|stronger)[- ]than[- ]expected\b", " beat "),
        (r"\b(?:worse|weaker)[- ]than[- ]expected\b", " miss "),
        (r"\b(?:falls?|fell|come|comes|came) (?:in )?(?:short|below)\b", " miss "),
        (r"\b(?:per cent|percent|pct)\b", "%"),
        (r"\b(?:first|1st)[- ]quarter\b|\bq1\b|\b1q\b", " q1 "),
        (r"\b(?:second|2nd)[- ]quarter\b|\bq2\b|\b2q\b", " q2 "),
        (r"\b(?:third|3rd)[- ]quarter\b|\bq3\b|\b3q\b", " q3 "),
        (r"\b(?:fourth|4th)[- ]quarter\b|\bq4\b|\b4q\b", " q4 "),
    )
)

_MONEY = re.compile(
    r"(?:us\$|\$|€|£|¥|\busd ?|\beur ?|\bgbp ?)(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)"
    r"(?:\s*(trillion|tn|billion|bn|b|million|mln|mn|m|thousand|k)\b)?"
)
_SCALE = {
    "trillion": 1e12, "tn": 1e12, "billion": 1e9, "bn": 1e9, "b": 1e9,
    "million": 1e6, "mln": 1e6, "mn": 1e6, "m": 1e6, "thousand": 1e3, "k": 1e3,
}
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")
_NUMBER = re.compile(r"\b(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)\b")
_YEAR = re.compile(r"\b(?:fy ?)?((?:19|20)\d\d)\b")
_QUARTER = re.compile(r"\bq([1-4])\b")
_WORD = re.compile(r"[a-z][a-z0-9&'.-]*[a-z0-9]|[a-z]")

# Words folded into one concept each: rewrites of one headline use different verbs.
_SYNONYMS: dict[str, str] = {}
for _concept, _words in {
    "acquire": "buy buys bought buying acquire acquires acquired acquiring acquisition acquisitions "
               "purchase purchases purchased purchasing takeover takeovers",
    "merge": "merger mergers merge merges merged merging combine combines combined combination tie-up",
    "deal": "deal deals agreement agreements pact transaction",
    "beat": "beat beats topped tops surpass surpasses surpassed exceed exceeds exceeded outpaces",
    "miss": "miss misses missed disappoint disappoints disappointed disappointing",
    "estimate": "estimate estimates expectations expectation consensus projections views forecasts",
    "up": "rise rises rose rising jump jumps jumped surge surges surged soar soars soared climb climbs "
          "climbed gain gains gained rally rallies rallied higher leap leaps leaped spike spikes spiked "
          "advance advances advanced pop pops popped rebound rebounds",
    "down": "fall falls fell falling drop drops dropped slide slides slid slump slumps slumped plunge "
            "plunges plunged tumble tumbles tumbled sink sinks sank decline declines declined slip slips "
            "slipped lower sheds shed dive dives dived skid skids retreat retreats crater craters sag sags",
    "shares": "share shares stock stocks",
    "profit": "profit profits earnings income eps",
    "revenue": "revenue revenues sales",
    "guidance": "guidance outlook forecast",
    "layoff": "layoffs jobs job positions workers staff employees",
    "lawsuit": "lawsuit lawsuits sue sues sued suit",
    "approve": "approve approves approved approval clears cleared greenlight greenlights",
    "complete": "complete completes completed closes closed finalize finalizes finalized finalise",
    "terminate": "terminate terminates terminated scrap scraps scrapped abandon abandons abandoned",
    "reject": "reject rejects rejected rebuff rebuffs rebuffed spurn spurns spurned",
    "talks": "talks negotiations discussions",
    "regulator": "regulator regulators antitrust watchdog ftc doj cma",
    "upgrade": "upgrade upgrades upgraded",
    "downgrade": "downgrade downgrades downgraded",
    "buyback": "buyback buybacks repurchase repurchases",
    "dividend": "dividend dividends payout",
    "bid": "bid bids offer offers proposal",
    "launch": "launch launches launched unveil unveils unveiled introduce introduces introduced debut debuts",
    "appoint": "appoint appoints appointed names named hires hired taps tapped",
    "cut": "cut cuts cutting slash slashes slashed trim trims lowers lowered reduce reduces reduced",
    "raise": "raise raises raised lift lifts lifted boost boosts boosted hike hikes hiked",
}.items():
    for _word in _words.split():
        _SYNONYMS[_word] = _concept

_STOPWORDS = frozenset(
    "a an the and or but of to in on for at by with from as is are was were be been its it this that "
    "after before over amid into than about says said say new report reports reported sources source "
    "could would will may might can as has have had not no more most their his her they them us "
    "what why how who when where which while inc corp co ltd plc company companies group "
    "year quarter quarterly week month day today analyst analysts investors market markets "
    "per amid despite".split()
)
# Concept tokens and common business words: shared by unrelated stories, so they neither
# anchor a match nor take part in the LSH signature.
_GENERIC = frozenset(_SYNONYMS.values()) | frozenset(
    "street ceo cfo billion million percent strong weak record sharply big biggest top key "
    "plans plan move moves set sets first second third fourth new chief executive officer board "
    "price target rating hold buy sell neutral demand growth results result".split()
)


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    for suffix in ("ing", "ed"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            word = word[: -len(suffix)]
            break
    return word.rstrip("e") if len(word) > 4 else word


def _amount(number: str, scale: str | None) -> float:
    return float(number.replace(",", "")) * _SCALE.get(scale or "", 1.0)


def _clean(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).replace("\u2019", "'").replace("\u2018", "'")
    return _SPACE.sub(" ", text).strip()


def strip_outlet(title: str) -> str:
    """The headline without a trailing " - Outlet" (wire copies differ only by it)."""
    return _OUTLET_SUFFIX.sub("", _clean(title))


# --- polarity and deal stage --------------------------------------------------------------

# Pairs of opposite classes: a headline saying one and a headline saying the other are
# different events, however similar the rest of their wording.
_POLARITY: tuple[tuple[re.Pattern[str], re.Pattern[str]], ...] = (
    (re.compile(r"\bbeat\b|\babove (?:estimate|street|forecast)"), re.compile(r"\bmiss\b|\bbelow (?:estimate|street|forecast)")),
    (re.compile(r"\bup\b"), re.compile(r"\bdown\b")),
    (re.compile(r"\bupgrade\b"), re.compile(r"\bdowngrade\b")),
    (re.compile(r"\braise (?:\w+ )?(?:guidance|dividend|estimate)"), re.compile(r"\bcut (?:\w+ )?(?:guidance|dividend|estimate)")),
    (re.compile(r"\bapprove\b"), re.compile(r"\b(?:reject|block\w*|oppos\w*)\b")),
)

# Deal stages, in headline words (after synonym folding), strongest first: a headline gets
# the first that matches ("completes acquisition after regulators approve" is completed).
# Two headlines about one pair of companies at different stages are different events. "X to
# acquire Y" alone is an agreed deal, but not when the headline also says talks or a bid.
_STAGES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("terminated", re.compile(r"\bterminate\b")),
    ("completed", re.compile(r"\bcomplete\b")),
    ("approved", re.compile(r"\bapprove\b")),
    ("rejected", re.compile(r"\breject\b")),
    ("agreed", re.compile(r"\b(?:agree\w*|sign\w*|strike\w*|struck|announce\w*)\b")),
    ("regulatory", re.compile(r"\b(?:regulator|probe\w*|investigat\w*|review\w*|block\w*|challeng\w*|scrutiny)\b")),
    ("bid", re.compile(r"\b(?:bid|unsolicited|hostile|sweeten\w*)\b")),
    ("rumor", re.compile(r"\b(?:talks|explor\w*|consider\w*|weigh\w*|mull\w*|approach\w*|eyes?|eyeing|near\w*|said to|people familiar|interest in|potential)\b")),
    ("agreed", re.compile(r"\b(?:(?:to|will) (?:acquire|buy|purchase|merge|combine)|in (?:a )?(?:\S+ ){0,3}deal)\b")),
)


def _stage(text: str) -> str | None:
    return next((name for name, pattern in _STAGES if pattern.search(text)), None)


@dataclass(frozen=True, slots=True)
class _Features:
    published_at: datetime
    title_key: str
    title_tokens: frozenset[str]
    tokens: frozenset[str]  # title and description
    specific: frozenset[str]  # tokens that identify the event: names, numbers, rare words
    polarity: tuple[int, ...]  # per _POLARITY pair: +1, -1 or 0 (neither or both)
    stage: str | None
    title_amounts: tuple[float, ...]
    title_percents: tuple[float, ...]
    title_counts: tuple[float, ...]
    quarters: frozenset[str]
    years: frozenset[str]


def _canonical_words(text: str) -> list[str]:
    words: list[str] = []
    for word in _WORD.findall(text):
        word = word.strip("'.-")
        if not word or word in _STOPWORDS:
            continue
        concept = _SYNONYMS.get(word)
        words.append(concept if concept else _stem(word))
    return words


def _numbers(text: str) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...], str]:
    """Amounts, percentages and other counts in `text`, and the text with them replaced by tokens."""
    amounts = tuple(_amount(m.group(1), m.group(2)) for m in _MONEY.finditer(text))
    text = _MONEY.sub(lambda m: f" amt{float(f'{_amount(m.group(1), m.group(2)):.2g}'):.0f} ", text)
    percents = tuple(float(m.group(1)) for m in _PERCENT.finditer(text))
    text = _PERCENT.sub(lambda m: f" pct{float(m.group(1)):g} ", text)
    years = {m.group(1) for m in _YEAR.finditer(text)}
    counts = tuple(
        float(m.group(1).replace(",", ""))
        for m in _NUMBER.finditer(text)
        if m.group(1) not in years and not text[max(0, m.start() - 3) : m.start()].endswith(("amt", "pct"))
    )
    text = _NUMBER.sub(lambda m: f" n{m.group(1).replace(',', '')} ", text)
    return amounts, percents, counts, text


def _features(story: StoryText) -> _Features:
    if story.published_at.tzinfo is None:
        raise ValueError("StoryText.published_at must be timezone-aware")
    title = strip_outlet(story.title).lower()
    description = _clean(story.description or "").lower()
    for pattern, replacement in _PHRASES:
        title = pattern.sub(replacement, title)
        description = pattern.sub(replacement, description)
    amounts, percents, counts, title_text = _numbers(title)
    _, _, _, description_text = _numbers(description)
    title_words = _canonical_words(title_text)
    description_words = _canonical_words(description_text)
    folded_title = " ".join(title_words)
    polarity = tuple(
        (1 if positive.search(folded_title) else 0) - (1 if negative.search(folded_title) else 0)
        for positive, negative in _POLARITY
    )
    stage_text = f"{folded_title} {title}"
    stage = _stage(stage_text)
    both = f"{title} {description}"
    tokens = frozenset(title_words) | frozenset(description_words)
    return _Features(
        published_at=story.published_at,
        title_key=" ".join(_WORD.findall(strip_outlet(story.title).lower())),
        title_tokens=frozenset(title_words),
        tokens=tokens,
        specific=frozenset(t for t in tokens if t not in _GENERIC and not (t[0] == "n" and t[1:2].isdigit())),
        polarity=polarity,
        stage=stage,
        title_amounts=amounts,
        title_percents=percents,
        title_counts=counts,
        quarters=frozenset(_QUARTER.findall(both)),
        years=frozenset(m.group(1) for m in _YEAR.finditer(both)),
    )


def _values_disagree(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """Both name values and none of them match (within rounding)."""
    if not a or not b:
        return False
    return not any(abs(x - y) <= _AMOUNT_TOLERANCE * max(abs(x), abs(y), 1e-9) for x in a for y in b)


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def _vetoed(a: _Features, b: _Features, window: timedelta) -> bool:
    if abs(a.published_at - b.published_at) > window:
        return True
    if any(x * y < 0 for x, y in zip(a.polarity, b.polarity, strict=True)):
        return True
    if a.stage and b.stage and a.stage != b.stage:
        return True
    if (
        _values_disagree(a.title_amounts, b.title_amounts)
        or _values_disagree(a.title_percents, b.title_percents)
        or _values_disagree(a.title_counts, b.title_counts)
    ):
        return True
    if a.quarters and b.quarters and not (a.quarters & b.quarters):
        return True
    return bool(a.years and b.years and not (a.years & b.years))


def _similarity(a: _Features, b: _Features) -> float:
    """In [0, 1]: how much of the two articles' wording is the same, synonyms folded."""
    if not (a.specific & b.specific):
        return 0.0  # nothing names the same thing: a company, a product, an amount
    if a.title_key == b.title_key:
        return 1.0
    ratio = fuzz.ratio(a.title_key, b.title_key) / 100.0
    title = _jaccard(a.title_tokens, b.title_tokens)
    smaller = min(len(a.title_tokens), len(b.title_tokens))
    containment = len(a.title_tokens & b.title_tokens) / smaller if smaller >= 3 else 0.0
    overall = _jaccard(a.tokens, b.tokens)
    specific = _jaccard(a.specific, b.specific)
    return max(ratio, 0.45 * title + 0.25 * containment + 0.15 * overall + 0.15 * specific)


def _score(a: _Features, b: _Features, window: timedelta) -> float:
    return 0.0 if _vetoed(a, b, window) else _similarity(a, b)


def same_event(a: StoryText, b: StoryText) -> bool:
    """Whether two articles report the same real-world event (the pairwise decision)."""
    return _score(_features(a), _features(b), DEFAULT_WINDOW) >= SAME_EVENT_THRESHOLD


# --- the index ----------------------------------------------------------------------------

_BANDS = 16
_ROWS = 2
_PRIME = 4_294_967_311  # the first prime above 2**32
_rng = np.random.default_rng(20261201)
_A = _rng.integers(1, 2**32 - 1, size=_BANDS * _ROWS, dtype=np.uint64)
_B = _rng.integers(0, 2**32 - 1, size=_BANDS * _ROWS, dtype=np.uint64)
# How many of the candidates sharing the most bands are scored.
_MAX_CANDIDATES = 24


def _band_keys(tokens: frozenset[str]) -> list[tuple[int, int, int]]:
    if not tokens:
        return []
    hashes = np.fromiter((zlib.crc32(t.encode()) for t in tokens), dtype=np.uint64, count=len(tokens))
    signature = ((_A[:, None] * hashes[None, :] + _B[:, None]) % _PRIME).min(axis=1).tolist()
    return [(band, signature[band * _ROWS], signature[band * _ROWS + 1]) for band in range(_BANDS)]


@dataclass(slots=True)
class _Entry:
    story_id: int
    features: _Features
    keys: list[tuple[int, int, int]]


class StoryIndex:
    """The articles of the recent window, searchable for the story of a new article.

    Articles are expected in roughly chronological order (a batch of an ingestion run, or
    the stored window loaded oldest first): entries older than the newest article seen minus
    twice the window are dropped, which bounds memory on a long stream.
    """

    def __init__(self, window: timedelta = DEFAULT_WINDOW) -> None:
        self._window = window
        self._entries: dict[int, _Entry] = {}
        self._order: deque[int] = deque()
        self._by_title: dict[str, list[int]] = {}
        self._bands: dict[tuple[int, int, int], list[int]] = {}
        self._next = 0
        self._newest: datetime | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, story_id: int, text: StoryText) -> None:
        """Record an article that belongs to story `story_id` (new or matched)."""
        features = _features(text)
        entry_id = self._next
        self._next += 1
        keys = _band_keys(features.specific)
        self._entries[entry_id] = _Entry(story_id, features, keys)
        self._order.append(entry_id)
        self._by_title.setdefault(features.title_key, []).append(entry_id)
        for key in keys:
            self._bands.setdefault(key, []).append(entry_id)
        if self._newest is None or features.published_at > self._newest:
            self._newest = features.published_at
            self._evict()

    def match(self, text: StoryText) -> int | None:
        """The story in the window that reports the same event as `text`, or None."""
        features = _features(text)
        shared: dict[int, int] = {}
        for entry_id in self._by_title.get(features.title_key, ()):
            shared[entry_id] = _BANDS + 1  # exact copies first
        for key in _band_keys(features.specific):
            for entry_id in self._bands.get(key, ()):
                shared[entry_id] = shared.get(entry_id, 0) + 1
        ranked = sorted(shared, key=lambda e: (-shared[e], -e))[:_MAX_CANDIDATES]
        best_story, best_score = None, SAME_EVENT_THRESHOLD
        for entry_id in ranked:
            entry = self._entries[entry_id]
            score = _score(features, entry.features, self._window)
            if score >= best_score and (best_story is None or score > best_score):
                best_story, best_score = entry.story_id, score
        return best_story

    def _evict(self) -> None:
        assert self._newest is not None
        horizon = self._newest - 2 * self._window
        while self._order and self._entries[self._order[0]].features.published_at < horizon:
            entry_id = self._order.popleft()
            entry = self._entries.pop(entry_id)
            _discard(self._by_title, entry.features.title_key, entry_id)
            for key in entry.keys:
                _discard(self._bands, key, entry_id)


def _discard(index: dict[object, list[int]], key: object, entry_id: int) -> None:
    ids = index.get(key)
    if ids is None:
        return
    ids.remove(entry_id)
    if not ids:
        del index[key]
