"""Story grouping: the copies of one real-world event across outlets become one story.

Two articles are the same event when their headlines (and descriptions) say the same thing
within a time window: a syndicated wire copy, or a rewrite by another outlet. Wording alone
is not enough, because the hard cases are near-identical headlines about different events of
one company ("Apple beats estimates" / "Apple misses estimates", "X in talks to buy Y" /
"X agrees to buy Y" / "X calls off bid for Y"). So the decision has two parts:

1. Vetoes that wording similarity cannot override: opposite polarity (beat/miss, up/down,
   upgrade/downgrade, raise/cut, approve/reject), different deal stages, different amounts,
   per-share prices, percentages or counts in the headlines, different quarters or years,
   different companies leading the headlines, different actors starting them ("Alaska
   Airlines grounds ..." / "FAA orders grounding ...": each actor absent from the other
   headline under its words, joined words, initials or metonym), different topics, a legal
   action reported as coming against the action itself, too far apart in time. And the
   session rule for share moves: a move is the story of the news it reacts to in the first
   New York session that can trade on that news (the morning after evening news, Monday after
   a weekend), not of news from before an earlier session, nor when the headline says the move
   is "despite" the news; two moves of different sessions are two events.
2. A similarity over canonical tokens (synonyms folded: "tops"/"beats", "buy"/"acquire",
   "forecasts"/"estimates"; outlet suffixes like " - Reuters" dropped), weighted so that names
   count most, then numbers and topics, with rapidfuzz's character ratio on the headline for
   copies with small edits (C++: cheap enough to call on every candidate), and a small decay
   per hour apart (rewrites follow an event within hours; the company's next event comes
   later), except for a move in its news's first session, however long the night or weekend.

The rules and the weights were written against tests/labelled/: the figures of each set,
and which sets were blind when first run, are in tests/labelled/README.md.

StoryIndex avoids comparing all pairs: exact headline copies are found by a dict, and the
rest through MinHash LSH over each article's names (else its amounts, else its specific
words). The MinHash and the band index are a few lines of integers and dicts rather than
datasketch's MinHashLSH: measured here, datasketch took ~350 µs per article (a MinHash object
plus its storage layer), about 3,000 articles/s before any scoring, too slow for the
100,000-article benchmark. Candidates are ranked by how many bands they share and only the
best dozen are scored, and a hot band (a big company's name) is read from its newest end, so
a company with thousands of articles in the window does not make a lookup quadratic.
"""

from __future__ import annotations

import random
import re
import unicodedata
import zlib
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from operator import itemgetter
from typing import Any
from zoneinfo import ZoneInfo

import ahocorasick
from rapidfuzz import fuzz

DEFAULT_WINDOW = timedelta(hours=48)
# Chosen on tests/labelled/story_pairs.jsonl (see its README and tests/test_news_stories.py).
SAME_EVENT_THRESHOLD = 0.4
# Characters of a title or description read (NewsAPI descriptions are a few hundred).
_MAX_FIELD = 1_000
# Values within this relative difference are the same value rounded ("$68.7 billion" / "$69
# billion"); a deal's total is rounded more loosely ("nearly $2 billion" / "$1.9 billion") than
# a price per share, where a few percent is a raised bid.
_AMOUNT_TOLERANCE = 0.03
_TOTAL_TOLERANCE = 0.06


@dataclass(frozen=True, slots=True)
class StoryText:
    title: str
    description: str | None
    published_at: datetime  # timezone-aware


# --- text normalisation -------------------------------------------------------------------

# " - Reuters", " | CNBC", " — Bloomberg": NewsAPI titles often end with the outlet's name.
_OUTLET_SUFFIX = re.compile(r"\s+[-|\u2013\u2014]\s+[A-Z][\w.&' ]{1,40}$")
_SPACE = re.compile(r"\s+")

# Multi-word phrases folded to one concept token before tokenising.
# (pattern, replacement, literal substrings one of which the pattern cannot match without):
# the substring test is what keeps this cheap, since most texts contain none of them.
_PHRASE_LIST: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (r"\bchief executive(?: officer)?\b", " ceo ", ("chief exec",)),
    (r"\bchief financial officer\b|\bfinance chief\b", " cfo ", ("chief fin", "finance chief")),
    (r"\bwall street\b|\bthe street\b", " street ", ("street",)),
    # "Elliott pushes for change at the top": the leadership, not a beat.
    (r"\b(?:at|from) the top\b", " ceo ", ("the top",)),
    (r"\b(?:call|calls|called|calling) off\b", " terminate ", (" off",)),
    (r"\b(?:walk|walks|walked|walking) away\b", " terminate ", (" away",)),
    (r"\b(?:drop|drops|dropped|end|ends|ended|scrap|scraps|scrapped) (?:its |the )?(?:\w+ ){0,2}"
     r"(?:bid|pursuit|offer|talks|merger(?: deal| agreement)?|deal|takeover)\b", " terminate deal ",
     ("bid", "pursuit", "offer", "talks", "merger", "deal", "takeover")),
    (r"\btalks (?:fail|failed|collapse|collapsed)\b", " terminate ", ("talks ",)),
    (r"\b(?:take|takes|took|taken|taking) over\b", " acquire ", (" over",)),
    (r"\b(?:snap|snaps|snapped) up\b", " acquire ", ("snap",)),
    (r"\b(?:sold|sells|sell|sale) to\b", " acquire ", ("sold to", "sells to", "sell to", "sale to")),
    (r"\b(?:lay|lays|laid|laying) off\b", " layoff ", (" off",)),
    (r"\bjob cuts?\b", " layoff ", ("job cut",)),
    (r"\bshare (?:repurchase|buyback)s?\b", " buyback ", ("share re", "share buy")),
    # "upgrades X to buy (from hold)" is a rating, not an acquisition.
    (r"\bto (?:strong )?(?:buy|sell)\b(?= from|,| citing| on| rating|$)", " rating ", ("to buy", "to sell", "to strong")),
    (r"\bwins? (?:eu |us |u\.s\. |uk |regulatory |antitrust )?(?:approval|nod|clearance)\b", " approve ", ("win",)),
    (r"\bwins? (?:the )?bid\b", " agree ", ("win",)),
    (r"\b(?:better|stronger)[- ]than[- ]expected\b", " beat ", ("than",)),
    (r"\b(?:worse|weaker)[- ]than[- ]expected\b", " miss ", ("than",)),
    (r"\b(?:falls?|fell|come|comes|came) (?:in )?(?:short|below)\b", " miss ", ("short", "below")),
    (r"\b(?:per cent|percent|pct)\b", "%", ("per cent", "percent", "pct")),
    (r"\b(?:first|1st)[- ]quarter\b|\bq1\b|\b1q\b", " q1 ", ("quarter", "q1", "1q")),
    (r"\b(?:second|2nd)[- ]quarter\b|\bq2\b|\b2q\b", " q2 ", ("quarter", "q2", "2q")),
    (r"\b(?:third|3rd)[- ]quarter\b|\bq3\b|\b3q\b", " q3 ", ("quarter", "q3", "3q")),
    (r"\b(?:fourth|4th)[- ]quarter\b|\bq4\b|\b4q\b", " q4 ", ("quarter", "q4", "4q")),
)
_PHRASES = tuple((re.compile(pattern), replacement) for pattern, replacement, _ in _PHRASE_LIST)
# One Aho-Corasick pass finds which triggers occur, hence which phrase patterns to run.
_TRIGGERS = ahocorasick.Automaton()
for _index, (_, _, _triggers) in enumerate(_PHRASE_LIST):
    for _trigger in _triggers:
        _TRIGGERS.add_word(_trigger, _TRIGGERS.get(_trigger, ()) + (_index,))
_TRIGGERS.make_automaton()

_CURRENCY = {"$": "usd", "us$": "usd", "usd": "usd", "€": "eur", "eur": "eur", "£": "gbp", "gbp": "gbp", "¥": "jpy"}
_MONEY = re.compile(
    r"(us\$|\$|€|£|¥|\busd ?|\beur ?|\bgbp ?)(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)"
    r"(?:\s*(trillion|tn|billion|bn|b|million|mln|mn|m|thousand|k)\b)?"
    r"([\s-]*(?:a|per|/)[ -]?share)?"
)
# "500 million euros": the amount written before its currency.
_MONEY_WORDS = re.compile(r"\b(\d+(?:\.\d+)?)\s*(trillion|billion|million)? ?(euros?|pounds?|dollars?)\b")
_WORD_CURRENCY = {"euro": "€", "euros": "€", "pound": "£", "pounds": "£", "dollar": "$", "dollars": "$"}
_SCALE = {
    "trillion": 1e12, "tn": 1e12, "billion": 1e9, "bn": 1e9, "b": 1e9,
    "million": 1e6, "mln": 1e6, "mn": 1e6, "m": 1e6, "thousand": 1e3, "k": 1e3,
}
_DIGIT = re.compile(r"\d")
# What _MONEY cannot match without.
_CURRENCY_MARK = re.compile(r"[$€£¥]|usd|eur|gbp")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")
_ORDINAL = re.compile(r"\b(\d+)(?:st|nd|rd|th)\b")
_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?![\w.])")
_YEAR = re.compile(r"\b(?:fy ?)?((?:19|20)\d\d)\b")
# Concept and stem tokens that give a share move its direction.
_MOVE_WORDS = frozenset({"up", "down", "higher", "lower"})
# A legal or regulatory action reported as coming ("Visa set to be sued by DOJ", "FTC preparing
# lawsuit to block ..."): the report and the action itself are two events.
_PROSPECTIVE_ACTION = re.compile(
    r"\b(?:set|poised|expected|preparing|prepares|readies|readying|gearing up|getting ready|nears?|close to)\b"
    r"(?: to)?(?: \S+){0,3} (?:sue|be sued|lawsuit|suit|charge|be charged|fine|be fined|block|probe|settle|settling|settlement)\b"
)
_CONTRARY = re.compile(r"\b(?:despite|even as|shrugs? off|in spite of|regardless of|revers\w*|overshadow\w*|outweigh\w*)\b")
# A word in capitals, three letters or more ("UBS", "FTC", "CRM"; "AI" and "EV" are not names).
_ALL_CAPS = re.compile(r"\b[A-Z][A-Z&]{2,}\b")
# A number followed by a unit of time (what _numbers' counts leave out).
_DURATION = re.compile(r"[ -](?:years?|months?|weeks?|days?|hours?|decades?)\b")
_QUARTER = re.compile(r"\bq([1-4])\b")
_WORD = re.compile(r"[a-z0-9][a-z0-9&'.-]*[a-z0-9]|[a-z0-9]")
# A word with a capital anywhere: "Apple", "eBay", "HPE".
_CAPITALISED = re.compile(r"\b[a-z0-9]*[A-Z][A-Za-z0-9&'.-]*[A-Za-z0-9]|\b[A-Z]\b")
# Matches (searched up to a word's start) when the word begins the text or a sentence; the
# reference for _starts_sentence, which answers the same from the characters before the word.
_SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+|\"\s*)$")
_RAW_WORD = re.compile(r"[A-Za-z][A-Za-z0-9&'.-]*[A-Za-z0-9]|[A-Za-z]")

# Words folded into one concept each: rewrites of one headline use different verbs.
_SYNONYMS: dict[str, str] = {}
for _concept, _words in {
    "acquire": "buy buys bought buying acquire acquires acquired acquiring acquisition acquisitions "
               "purchase purchases purchased purchasing takeover takeovers buyout",
    "merge": "merger mergers merge merges merged merging combine combines combined combination tie-up megamerger",
    "deal": "deal deals agreement agreements pact transaction",
    "beat": "beat beats topped tops top surpass surpasses surpassed exceed exceeds exceeded crush crushes crushed",
    "miss": "miss misses missed missing disappoint disappoints disappointed disappointing",
    "estimate": "estimate estimates expectations expectation consensus projections views forecasts",
    "up": "rise rises rose rising jump jumps jumped surge surges surged soar soars soared climb climbs "
          "climbed gain gains gained rally rallies rallied leap leaps leaped spike spikes spiked "
          "pop pops popped rebound rebounds rocket rockets rocketing skyrocket skyrockets skyrocketed",
    "down": "fall falls fell falling drop drops dropped slide slides slid slump slumps slumped plunge "
            "plunges plunged tumble tumbles tumbled sink sinks sank decline declines declined slip slips "
            "slipped dive dives dived skid skids crater craters sag sags crash crashes crashed",
    "shares": "share shares stock stocks",
    "profit": "profit profits earnings income eps",
    "revenue": "revenue revenues sales",
    "guidance": "guidance outlook forecast",
    "layoff": "layoffs layoff jobs job positions workers staff employees workforce",
    "lawsuit": "lawsuit lawsuits sue sues sued suing suit",
    "approve": "approve approves approved approval clears cleared greenlight greenlights",
    "complete": "complete completes completed closes closed finalize finalizes finalized finalise",
    "terminate": "terminate terminates terminated scrap scraps scrapped abandon abandons abandoned",
    "reject": "reject rejects rejected rejecting rebuff rebuffs rebuffed spurn spurns spurned",
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

# What a headline is about, from its concept tokens: two headlines about one company on
# different topics (results and a recall, a lawsuit and a dividend) are different events.
_TOPICS: dict[str, str] = {}
for _topic, _concepts in {
    "results": "beat miss estimate profit revenue guidance result deliveries q1 q2 q3 q4",
    "jobs": "layoff",
    "deal": "acquire merge deal bid",
    "legal": "lawsuit fine fines fined judge court ruling rule rules settle settlement verdict "
             "accus alleg illegal illegally monopoly antitrust",
    "rating": "upgrade downgrade rating",
    "partnership": "partnership partnerships partner partners alliance collaboration collaborate",
    "dividend": "dividend",
    "buyback": "buyback",
    "leadership": "ceo cfo appoint resign resigns successor succeed",
    "product": "launch",
    "recall": "recall recalls recalling",
    # Rate decisions; "the Fed" alone is also a bank regulator ("Fed lifts Wells Fargo's asset cap").
    "rates": "rate rates interest",
}.items():
    for _concept in _concepts.split():
        _TOPICS[_concept] = _topic

_STOPWORDS = frozenset(
    "a an the and or but of to in on for at by with from as is are was were be been its it this that "
    "after before over amid into than about says said say new report reports reported sources source "
    "could would will may might can has have had not no more most their his her they them us "
    "what why how who when where which while inc corp co ltd plc company companies group "
    "corporation incorporated limited llc lp sa ag nv se holding holdings "
    "year quarter quarterly week month day today analyst analysts investors market markets "
    "per despite just again now here there also amid up down out off all".split()
)
# Concept tokens and common business words: shared by unrelated stories, so they weigh little
# and take no part in the LSH signature.
_GENERIC = frozenset(_SYNONYMS.values()) | frozenset(
    "street ceo cfo billion million percent strong weak record sharply big biggest top key "
    "plans plan move moves set sets first second third fourth new chief executive officer board "
    "price rating hold buy sell neutral demand growth results result annual full-year ai "
    "major global big amid higher lower nasdaq nyse".split()
)
# Weights of the similarity: names identify the event, numbers pin it, concepts barely count.
_NAME_WEIGHT = 3.0
_NUMBER_WEIGHT = 2.0
_WORD_WEIGHT = 1.0
_GENERIC_WEIGHT = 0.3
_TOPIC_WEIGHT = 3.0
_DECAY_AFTER_HOURS = 6.0
_DECAY_PER_HOUR = 0.008


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "'s")):
        word = word[:-1]
    word = word.removesuffix("'s")
    for suffix in ("ing", "ed"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            word = word[: -len(suffix)]
            break
    return word.rstrip("e") if len(word) > 4 else word


@lru_cache(maxsize=65_536)
def _fold_word(word: str) -> str | None:
    """The canonical token of a lower-case word, or None for a stopword."""
    word = word.strip("'.-")
    if not word or word in _STOPWORDS:
        return None
    concept = _SYNONYMS.get(word)
    if concept:
        return concept
    stem = _stem(word)
    return None if stem in _STOPWORDS else stem


# The text is read as folded tokens ("settling", "settles" -> "settl"): a topic word is found
# under its folded form too.
for _concept, _topic in list(_TOPICS.items()):
    _TOPICS.setdefault(_fold_word(_concept) or _concept, _topic)


def _amount(number: str, scale: str | None) -> float:
    return float(number.replace(",", "")) * _SCALE.get(scale or "", 1.0)


def _clean(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).replace("\u2019", "'").replace("\u2018", "'")
    return _SPACE.sub(" ", text).strip()


def strip_outlet(title: str) -> str:
    """The headline without a trailing " - Outlet" (wire copies differ only by it)."""
    return _OUTLET_SUFFIX.sub("", _clean(title))


# --- polarity and deal stage --------------------------------------------------------------

# Pairs of opposite classes, read in the headline after folding (with the tokens without which
# neither can match, to skip the search): a headline saying one and a headline saying the
# other are different events, however similar the rest of their wording.
_POLARITY: tuple[tuple[re.Pattern[str], re.Pattern[str], frozenset[str]], ...] = tuple(
    (re.compile(positive), re.compile(negative), frozenset(triggers.split()))
    for positive, negative, triggers in (
        (r"\bbeat\b|\babove (?:estimate|street)", r"\bmiss\b|\bbelow (?:estimate|street)", "beat above miss below"),
        (r"\bup\b", r"\bdown\b", "up down"),
        (r"\bupgrade\b", r"\bdowngrade\b", "upgrade downgrade"),
        (r"\braise (?:\S+ )?(?:guidance|dividend|estimate)", r"\bcut (?:\S+ )?(?:guidance|dividend|estimate)", "raise cut"),
        (r"\bapprove\b", r"\breject\b|\bblock(?:s|ed|ing)?\b", "approve reject block"),
    )
)

# Deal stages, strongest first: a headline gets the first that matches ("completes acquisition
# after regulators approve" is completed). Only headlines about a deal have a stage, and two
# headlines about one deal at different stages are different events. "X to acquire Y" alone is
# an agreed deal, but not when the headline also says talks or a bid.
_DEAL_WORDS = re.compile(r"\b(?:acquire|merge|terminate|deal|bid)\b")
# Labour contracts and legal settlements have offers and deals too, but no deal stage.
_NOT_A_DEAL = re.compile(r"\b(?:union|contract|settle\w*|machinists|workers|on strike|to strike)\b")
_STAGES: tuple[tuple[str, re.Pattern[str]], ...] = (
    # A denial ends what the report said: "Shell rules out bid for BP", "... denies interest".
    ("terminated", re.compile(r"\b(?:terminate|rules? out|ruled out|no intention|denies|denied|not interested)\b")),
    ("completed", re.compile(r"\bcomplete\b")),
    ("approved", re.compile(r"\bapprove\b")),
    ("rejected", re.compile(r"\breject\b")),
    ("agreed", re.compile(r"\b(?:agree\w*|sign\w*|strike\w* (?:\S+ ){0,3}deal|struck|announce\w*|clinch\w*|seal\w*)\b")),
    ("regulatory", re.compile(r"\b(?:block(?:s|ed|ing)?|probe\w*|investigat\w*|review\w*|challeng\w*|scrutiny|lawsuit|stop|halt\w*|injunction)\b")),
    ("bid", re.compile(r"\b(?:bid|unsolicited|hostile|sweeten\w*|approach\w*|propos\w*)\b")),
    ("rumor", re.compile(r"\b(?:talks|discuss\w*|explor\w*|consider\w*|weigh\w*|mull\w*|eyes?|eyeing|near\w*|said to|people familiar|interest in|potential)\b")),
    ("agreed", re.compile(r"\b(?:(?:to|will|is|are) (?:acquire|buy|purchase|merge|combine)|acquiring|buying|in (?:a )?(?:\S+ ){0,3}deal)\b")),
)


def _stage(folded_title: str, raw_title: str) -> str | None:
    if not _DEAL_WORDS.search(folded_title) or _NOT_A_DEAL.search(raw_title):
        return None
    text = f"{folded_title} | {raw_title}"
    return next((name for name, pattern in _STAGES if pattern.search(text)), None)


@dataclass(frozen=True, slots=True)
class _Features:
    published_at: datetime
    title_key: str
    title_tokens: frozenset[str]
    tokens: frozenset[str]  # title and description
    names: frozenset[str]  # tokens written as proper names anywhere
    title_names: frozenset[str]
    title_entities: tuple[frozenset[str], ...]  # runs of adjacent name tokens: "International Business Machines"
    weights: dict[str, float]  # each token's weight in the similarity, with this article's names
    title_weight: float  # the weights of title_tokens, summed
    weight: float  # the weights of tokens, summed
    specific: frozenset[str]  # tokens that identify the event: names, numbers, rare words
    anchors: frozenset[str]  # what the LSH signature is made of: the names, else amounts, else `specific`
    polarity: tuple[int, ...]  # per _POLARITY pair: +1, -1 or 0 (neither or both)
    positive: int  # bit i set: +1 on _POLARITY pair i (the veto's test in two ANDs)
    negative: int
    stage: str | None
    topics: frozenset[str]
    title_values: tuple[tuple[str, tuple[float, ...]], ...]  # (kind, values): amounts by currency, per-share, %, counts
    quarters: frozenset[str]
    years: frozenset[str]
    actor: frozenset[str]  # the keys of the entity the headline starts with ("Alaska Airlines grounds ..."), or empty
    move: bool  # the headline reports a share move ("Ford stock rises premarket ...")
    contrary: bool  # a move in spite of the news it names ("... shares fall despite upbeat forecast")
    prospective: bool  # a legal action reported as coming ("... set to be sued by DOJ")
    title_keys: frozenset[str]  # every title entity's keys (tokens, joined form, initials, metonym)
    entity_keys: tuple[frozenset[str], ...]  # per title entity, its keys
    all_keys: frozenset[str]  # names and title_keys


def _numbers(text: str) -> tuple[dict[str, list[float]], str]:
    """The values in `text` by kind, and the text with each replaced by one token."""
    values: dict[str, list[float]] = {}
    if not _DIGIT.search(text):
        return values, text

    def money(match: re.Match[str]) -> str:
        currency = _CURRENCY[match.group(1).strip()]
        value = _amount(match.group(2), match.group(3))
        # A sum without a scale under 1,000 is a price ("the $24.25 buyout price"), not a deal's value.
        per_share = match.group(4) or (not match.group(3) and value < 1_000)
        kind = f"{'ps' if per_share else 'amt'}-{currency}"
        values.setdefault(kind, []).append(value)
        return f" {kind}{float(f'{value:.2g}'):.0f} "

    # Each pattern only where its literal can be (most texts hold no currency or percent).
    if "euro" in text or "pound" in text or "dollar" in text:
        text = _MONEY_WORDS.sub(lambda m: f"{_WORD_CURRENCY[m.group(3)]}{m.group(1)} {m.group(2) or ''} ", text)
    if _CURRENCY_MARK.search(text):
        text = _MONEY.sub(money, text)

    def token(kind: str, prefix: str) -> Callable[[re.Match[str]], str]:
        def replace(match: re.Match[str]) -> str:
            value = float(match.group(1).replace(",", ""))
            values.setdefault(kind, []).append(value)
            return f" {prefix}{value:g} "

        return replace

    if "%" in text:
        text = _PERCENT.sub(token("pct", "pct"), text)
    text = _ORDINAL.sub(token("count", "n"), text)
    years = {m.group(1) for m in _YEAR.finditer(text)}

    def number(match: re.Match[str]) -> str:
        if match.group(1) in years:
            return match.group(0)
        if _DURATION.match(text, match.end()):
            # "worst day in 50 years", "a 6-week strike": how long, not how many the event is.
            return f" dur{match.group(1)} "
        return token("count", "n")(match)

    text = _NUMBER.sub(number, text)
    return values, text


def _starts_sentence(raw: str, start: int) -> bool:
    """_SENTENCE_START.search(raw, 0, start) is not None, without scanning the whole prefix
    for each word (that search tries every position before the word: quadratic in a text).
    The same answer on text without newlines, which _clean has turned into spaces."""
    if start == 0:
        return True
    prefix = raw[:start]
    stripped = prefix.rstrip()
    if not stripped:
        return False
    return stripped[-1] == '"' or (stripped[-1] in ".!?:;" and len(stripped) < len(prefix))


def _names(raw: str, title_case: bool, sentences: bool = False) -> set[str]:
    """Tokens written as names: capitalised words that are not concepts or stopwords.

    In running text (`sentences`), a capital at the start of a sentence says nothing
    ("Customers sued ..."); a headline's first word is usually its company and counts.
    """
    names = set()
    for match in _CAPITALISED.finditer(raw):
        word = match.group(0)
        if title_case and not word.isupper() and word[1:].islower():
            continue  # "Beats", "Deal": every word is capitalised in a Title Case headline
        if sentences and word[1:].islower() and _starts_sentence(raw, match.start()):
            continue
        token = _fold_word(word.lower())
        if token and token not in _GENERIC and not token[0].isdigit():
            names.add(token)
    return names


def _entities(raw: str, names: set[str] | frozenset[str]) -> tuple[tuple[str, ...], ...]:
    """The names of `raw` grouped into runs of adjacent words, one run per company or place, in order."""
    runs: list[list[str]] = []
    previous_end = -1
    for match in _CAPITALISED.finditer(raw):
        token = _fold_word(match.group(0).lower())
        if not token or token not in names:
            previous_end = -1
            continue
        if previous_end >= 0 and raw[previous_end : match.start()].strip() in ("", "&"):
            if token not in runs[-1]:
                runs[-1].append(token)
        else:
            runs.append([token])
        previous_end = match.end()
    return tuple(tuple(run) for run in runs)


def _is_title_case(raw: str) -> bool:
    long_words = [w for w in _RAW_WORD.findall(raw) if len(w) >= 4]
    return len(long_words) >= 3 and sum(w[0].isupper() for w in long_words) >= 0.7 * len(long_words)


def _fold_text(text: str) -> str:
    text = text.lower()
    for index in sorted({i for _, indexes in _TRIGGERS.iter(text) for i in indexes}):
        pattern, replacement = _PHRASES[index]
        text = pattern.sub(replacement, text)
    return text


def _features(story: StoryText) -> _Features:
    if story.published_at.tzinfo is None:
        raise ValueError("StoryText.published_at must be timezone-aware")
    features = _text_features(story.title, story.description)
    return replace(features, published_at=story.published_at)


# The epoch stands in for the publication time in the cached, time-free features.
_NO_TIME = datetime(1970, 1, 1, tzinfo=UTC)


@lru_cache(maxsize=4_096)
def _text_features(title: str, description: str | None) -> _Features:
    """The features of a text, whenever published: syndicated copies repeat the text (within
    hours, so a small cache catches them), and the window is re-read when an index is rebuilt."""
    raw_title = strip_outlet(title[:_MAX_FIELD])
    # A description is a summary; past its first sentences it adds cost, not evidence.
    raw_description = _clean((description or "")[:_MAX_FIELD])
    title = _fold_text(raw_title)
    description = _fold_text(raw_description)
    title_values, title_text = _numbers(title)
    _, description_text = _numbers(description)
    title_words = [t for t in map(_fold_word, _WORD.findall(title_text)) if t]
    description_words = [t for t in map(_fold_word, _WORD.findall(description_text)) if t]
    folded_title = " ".join(title_words)
    # Each topic is a token too ("#results" for beat / estimates / profit): rewrites of one
    # event pick different words of the same topic.
    title_topics = frozenset(_TOPICS[t] for t in title_words if t in _TOPICS)
    description_topics = frozenset(_TOPICS[t] for t in description_words if t in _TOPICS)
    title_words += [f"#{t}" for t in sorted(title_topics)]
    description_words += [f"#{t}" for t in sorted(description_topics)]
    tokens = frozenset(title_words) | frozenset(description_words)
    description_names = _names(raw_description, _is_title_case(raw_description), sentences=True)
    title_case = _is_title_case(raw_title)
    title_names = _names(raw_title, False) if not title_case else set()
    if title_case:
        # A Title Case headline capitalises everything: its names are the ones the description
        # also writes as names; when the description names nothing, the name the headline
        # starts with ("Nordstrom Stock Dips Because the $24.25 Buyout Price Is Below Friday's
        # Close": Nordstrom), and without a description its words that are not concepts.
        capitalised = _names(raw_title, False)
        if description_names:
            title_names = capitalised & description_names
        elif raw_description:
            runs = _entities(raw_title, capitalised)
            title_names = set(runs[0]) if runs else set()
        else:
            title_names = capitalised
        # Capitals are no Title Case: "UBS", "CRM" are names whatever the description writes.
        title_names |= {_fold_word(w.lower()) for w in _ALL_CAPS.findall(raw_title)} & capitalised
    title_names &= frozenset(title_words)
    names = frozenset(title_names | (description_names & tokens))
    title_runs = _entities(raw_title, title_names)
    title_entities = tuple(frozenset(run) for run in title_runs)
    entity_keys = tuple(_entity_keys(run) for run in title_runs)
    title_keys = frozenset(k for keys in entity_keys for k in keys) | title_names
    specific = frozenset(t for t in tokens if t not in _GENERIC and t[0] != "#")
    weights = {t: _NAME_WEIGHT if t in names and t[0] != "#" else _base_weight(t) for t in tokens}
    title_token_set = frozenset(title_words)
    # A share move: the stock and a direction ("shares slide", "stock is rocketing higher").
    move = "shares" in title_token_set and not _MOVE_WORDS.isdisjoint(title_token_set)
    # "Nvidia shares fall despite upbeat forecast": a move the headline says is not the news's reaction.
    contrary = move and _CONTRARY.search(title) is not None
    prospective = "#legal" in title_token_set and _PROSPECTIVE_ACTION.search(raw_title.lower()) is not None
    polarity = tuple(
        (1 if positive.search(folded_title) else 0) - (1 if negative.search(folded_title) else 0)
        if not triggers.isdisjoint(title_words)
        else 0
        for positive, negative, triggers in _POLARITY
    )
    return _Features(
        published_at=_NO_TIME,
        title_key=" ".join(_WORD.findall(raw_title.lower())),
        title_tokens=title_token_set,
        tokens=tokens,
        names=names,
        title_names=frozenset(title_names),
        title_entities=title_entities,
        weights=weights,
        title_weight=sum(weights[t] for t in title_token_set),
        weight=sum(weights.values()),
        specific=specific,
        anchors=(names & specific) or frozenset(t for t in specific if _is_number_token(t)) or specific,
        polarity=polarity,
        positive=sum(1 << i for i, p in enumerate(polarity) if p > 0),
        negative=sum(1 << i for i, p in enumerate(polarity) if p < 0),
        stage=_stage(folded_title, title),
        topics=title_topics,
        title_values=tuple((kind, tuple(v)) for kind, v in sorted(title_values.items())),
        quarters=frozenset(_QUARTER.findall(title_text)),
        years=frozenset(m.group(1) for m in _YEAR.finditer(title_text)),
        actor=_actor(raw_title, title_runs, raw_description),
        move=move,
        contrary=contrary,
        prospective=prospective,
        title_keys=title_keys,
        entity_keys=entity_keys,
        all_keys=names | title_keys,
    )


# One actor under its other names: a capital for its government or regulator ("Brussels" / "EU",
# "Beijing" / "China"), an institution's short name ("Fed" / "Federal Reserve").
_METONYMS: dict[str, tuple[str, ...]] = {
    "eu": ("eu", "brussels", "european commission", "european union", "commission"),
    "china": ("china", "beijing", "chinese", "samr"),
    "us": ("us", "u.s.", "washington", "united states", "america"),
    "uk": ("uk", "britain", "london", "british"),
    "fed": ("fed", "federal reserve"),
    "japan": ("japan", "tokyo", "japanese"),
}
_METONYM_OF: dict[frozenset[str], str] = {
    frozenset(t for t in map(_fold_word, phrase.split()) if t): canonical
    for canonical, phrases in _METONYMS.items()
    for phrase in phrases
    if any(map(_fold_word, phrase.split()))  # "us" is a stopword: never an actor
}
# Words a headline may start with before its actor.
_LEADING = re.compile(r"(?:the\s+)?([A-Za-z][A-Za-z0-9&'.-]*)", re.IGNORECASE)


@lru_cache(maxsize=65_536)
def _entity_keys(run: tuple[str, ...]) -> frozenset[str]:
    """What an entity may be written as elsewhere: its tokens, its words joined ("Exxon
    Mobil" / "ExxonMobil"), its initials ("Hewlett Packard Enterprise" / "HPE"), its metonym,
    and a hyphenated name's parts ("Bristol-Myers" / "Bristol Myers")."""
    keys = set(run)
    for token in run:
        if "-" in token:
            keys.update(part for part in map(_fold_word, token.split("-")) if part)
    if len(run) > 1:
        keys.add("".join(run))
        keys.add("".join(t[0] for t in run))
    metonym = _METONYM_OF.get(frozenset(run))
    if metonym:
        keys.add(f"={metonym}")
    return frozenset(keys)


def _actor(raw_title: str, runs: tuple[tuple[str, ...], ...], raw_description: str) -> frozenset[str]:
    """The keys of the entity the headline starts with, its actor; empty when it starts otherwise.

    A headline capitalises its first word whatever it is ("Supermarket mega-merger takes aim
    at Walmart", "Cheap flights could get pricier ..."), so a lone first word written
    Capitalised is an actor only when the article also writes it as a name elsewhere
    (Capitalised in the description, sentence starts included, or further on in the headline);
    a run of names ("Alaska Airlines"), or a word in capitals ("FAA", "JetBlue"), is one anyway.
    """
    match = _LEADING.match(raw_title)
    if not runs or match is None or _fold_word(match.group(1).lower()) not in runs[0]:
        return frozenset()
    first = match.group(1)
    if len(runs[0]) == 1 and first[1:].islower():
        confirmed = _names(raw_description, False) | _names(raw_title[match.end() :], False)
        if runs[0][0] not in confirmed:
            return frozenset()
    return _entity_keys(runs[0])


def _different_actors(a: _Features, b: _Features) -> bool:
    """Both headlines start with an actor, and neither actor is in the other headline.

    "Alaska Airlines grounds its 737 MAX 9 jets" and "FAA orders grounding of 737 MAX 9
    planes" share the action and the object, but a different party acts in each: two
    decisions. A rewrite from the other party's angle names both ("Chipotle shares slump as
    Niccol departs for Starbucks" / "Starbucks names Chipotle's Niccol CEO").
    """
    if not a.actor or not b.actor:
        return False
    return not (a.actor & b.title_keys) and not (b.actor & a.title_keys)


def _values_disagree(a: tuple[float, ...], b: tuple[float, ...], tolerance: float = _AMOUNT_TOLERANCE) -> bool:
    """Both name values and none of them match (within rounding)."""
    if not a or not b:
        return False
    return not any(abs(x - y) <= tolerance * max(abs(x), abs(y), 1e-9) for x in a for y in b)


# Sessions in US Eastern time: pre-market trading opens at 04:00 and the regular session closes
# at 16:00; weekends are skipped (holidays are not: a day off moves no share, so it splits nothing).
_EASTERN = ZoneInfo("America/New_York")
_CLOSE = time(16)
_EXTENDED_OPEN = time(4)
_DAY = timedelta(days=1)


def _weekday_on_or_after(day: date) -> date:
    while day.weekday() >= 5:
        day += _DAY
    return day


@lru_cache(maxsize=65_536)
def _news_session(at: datetime) -> date:
    """The first session that can trade on news published at `at`."""
    local = at.astimezone(_EASTERN)
    return _weekday_on_or_after(local.date() + (_DAY if local.time() >= _CLOSE else timedelta(0)))


@lru_cache(maxsize=65_536)
def _move_sessions(at: datetime) -> tuple[date, date]:
    """The first and last session a share move reported at `at` can be about: that day's
    during it; after the close, that day's (a recap) or the next (after-hours trading on the
    evening's news), until the next morning; over a weekend, Friday's or Monday's."""
    local = at.astimezone(_EASTERN)
    day = local.date()
    if day.weekday() < 5 and _EXTENDED_OPEN <= local.time() < _CLOSE:
        return day, day
    if day.weekday() < 5 and local.time() >= _CLOSE:
        return day, _weekday_on_or_after(day + _DAY)
    previous = day - _DAY
    while previous.weekday() >= 5:
        previous -= _DAY
    return previous, _weekday_on_or_after(day)


def _different_sessions(a: _Features, b: _Features) -> bool:
    """A share move is the story of the news it reacts to in the first session that can
    trade on that news (McDonald's falling the morning after the outbreak was reported, Tesla
    sliding the day after its Thursday-night event); a move in a later session is its own
    event (AMD extending its rally two days after the OpenAI deal), and so are two moves of
    different sessions."""
    if a.move and b.move:
        (a_first, a_last), (b_first, b_last) = _move_sessions(a.published_at), _move_sessions(b.published_at)
        return a_last < b_first or b_last < a_first
    move, news = (a, b) if a.move else (b, a)
    # A move the headline says is not this news's reaction ("... despite upbeat forecast",
    # "... stock reverses lower a day after blowout results") is not its story either.
    return move.contrary or _move_sessions(move.published_at)[0] > _news_session(news.published_at)


# Two reports of one agreed deal may value it differently (equity value / enterprise value
# with debt, "up to" with contingent payments: "$4.7 billion" / "$8.3 billion"); a deal worth
# more than this many times the other's value is another deal.
_DEAL_VALUE_SPREAD = 3.0


def _title_values_disagree(a: _Features, b: _Features) -> bool:
    """Values of one kind in both headlines that cannot be the same (see _values_disagree)."""
    b_values = dict(b.title_values)
    for kind, values in a.title_values:
        other = b_values.get(kind, ())
        if kind == "pct" and a.move != b.move:
            continue  # a share move's percentage is the price's, not the news's ("cut 15% of staff" / "plunges 26%")
        if kind.startswith("amt-") and a.stage == b.stage == "agreed" and other:
            if max(max(values), max(other)) <= _DEAL_VALUE_SPREAD * min(min(values), min(other)):
                continue
        if _values_disagree(values, other, _TOTAL_TOLERANCE if kind.startswith("amt-") else _AMOUNT_TOLERANCE):
            return True
    return False


# How far a share move may follow its news when a weekend lies between them (a profit warning
# on Friday evening, Monday's slide): the first session after the news, beyond the window.
_WEEKEND_REACH = timedelta(hours=84)


def _too_far_apart(a: _Features, b: _Features, window: timedelta) -> bool:
    apart = abs(a.published_at - b.published_at)
    if apart <= window:
        return False
    if apart > _WEEKEND_REACH or a.move == b.move:
        return True
    move, news = (a, b) if a.move else (b, a)
    return not (news.published_at < move.published_at and _move_sessions(move.published_at)[1] == _news_session(news.published_at))


def _vetoed(a: _Features, b: _Features, window: timedelta) -> bool:
    if _too_far_apart(a, b, window):
        return True
    if (a.move or b.move) and _different_sessions(a, b):
        return True
    if a.prospective != b.prospective and "legal" in a.topics and "legal" in b.topics:
        return True
    if (a.positive & b.negative) or (a.negative & b.positive):
        return True
    if a.stage and b.stage and a.stage != b.stage:
        return True
    if a.topics and b.topics and not (a.topics & b.topics):
        return True
    if _title_values_disagree(a, b):
        return True
    if a.quarters and b.quarters and not (a.quarters & b.quarters):
        return True
    if a.years and b.years and not (a.years & b.years):
        return True
    if _different_actors(a, b):
        return True
    # Different companies in the same template ("Netflix raises prices" / "Spotify raises
    # prices", "Microsoft and Broadcom announce partnership" / "Microsoft and IBM announce
    # partnership"): each headline's names are mostly ones the other article never mentions.
    # Counted by entity, not by word: "International Business Machines" is one name.
    # An entity is found under any of its keys ("Fed" / "Federal Reserve", "HPE" / "Hewlett
    # Packard Enterprise").
    only_a = [e for e in a.entity_keys if not (e & b.all_keys)]
    only_b = [e for e in b.entity_keys if not (e & a.all_keys)]
    return (
        bool(only_a and only_b)
        and 2 * len(only_a) >= len(a.title_entities)
        and 2 * len(only_b) >= len(b.title_entities)
    )


def _is_number_token(token: str) -> bool:
    return token[0].isdigit() or (token[0] in "anp" and _DIGIT.search(token) is not None)


def _weight(token: str, names: frozenset[str]) -> float:
    if token in names and token[0] != "#":
        return _NAME_WEIGHT
    return _base_weight(token)


@lru_cache(maxsize=131_072)
def _base_weight(token: str) -> float:
    """A token's weight when no article writes it as a name."""
    if token[0] == "#":
        return _TOPIC_WEIGHT
    if token in _GENERIC:
        return _GENERIC_WEIGHT
    if _is_number_token(token):
        return _NUMBER_WEIGHT
    return _WORD_WEIGHT


def _weighted_jaccard(
    a: frozenset[str], b: frozenset[str], wa: dict[str, float], wb: dict[str, float], total_a: float, total_b: float
) -> float:
    """Weighted Jaccard; a token is a name when either article writes it as one (the larger weight).

    `total_a` and `total_b` are the weights of all of a's and b's tokens, so only the shared
    tokens (a handful) are visited: the union's weight is both totals less the smaller weight
    of each shared token.
    """
    common = a & b
    if not common:
        return 0.0
    shared = 0.0
    smaller = 0.0
    for t in common:
        x, y = wa[t], wb[t]
        if x >= y:
            shared += x
            smaller += y
        else:
            shared += y
            smaller += x
    total = total_a + total_b - smaller
    return shared / total if total > 0 else 0.0


def _similarity(a: _Features, b: _Features) -> float:
    """In [0, 1]: how much of the two articles' wording is the same, synonyms folded."""
    if not (a.specific & b.specific):
        return 0.0  # nothing names the same thing: a company, a product, an amount
    if a.title_key and a.title_key == b.title_key:
        return 1.0
    ratio = fuzz.ratio(a.title_key, b.title_key) / 100.0
    title = _weighted_jaccard(a.title_tokens, b.title_tokens, a.weights, b.weights, a.title_weight, b.title_weight)
    overall = _weighted_jaccard(a.tokens, b.tokens, a.weights, b.weights, a.weight, b.weight)
    return max(ratio, title, 0.5 * title + 0.5 * overall)


def _decay(a: _Features, b: _Features) -> float:
    """How much similarity the time apart costs. A share move in the first session after the
    news reacts to it however many hours the night or the weekend put between them."""
    if a.move != b.move:
        move, news = (a, b) if a.move else (b, a)
        if _move_sessions(move.published_at)[1] == _news_session(news.published_at) and move.published_at > news.published_at:
            return 0.0
    hours = abs(a.published_at - b.published_at).total_seconds() / 3600
    return _DECAY_PER_HOUR * max(0.0, hours - _DECAY_AFTER_HOURS)


def _score(a: _Features, b: _Features, window: timedelta) -> float:
    # The cheap tests first: nothing specific in common scores 0 whatever the vetoes say.
    if a.specific.isdisjoint(b.specific) or _too_far_apart(a, b, window):
        return 0.0
    if _vetoed(a, b, window):
        return 0.0
    # Copies and rewrites follow an event within hours; the same company's next event comes
    # later, so similarity counts a little less for each hour beyond the first few.
    return _similarity(a, b) - _decay(a, b)


def _score_if_same(a: _Features, b: _Features, window: timedelta) -> float | None:
    """_score when it reaches the threshold, else None: the similarity (cheap) first, the
    vetoes (dearer) only for a pair similar enough to need them. A veto only lowers a score
    to 0, so the answer is _score's whenever that is at or above the threshold."""
    if a.specific.isdisjoint(b.specific) or _too_far_apart(a, b, window):
        return None
    score = _similarity(a, b) - _decay(a, b)
    if score < SAME_EVENT_THRESHOLD or _vetoed(a, b, window):
        return None
    return score


def same_event(a: StoryText, b: StoryText) -> bool:
    """Whether two articles report the same real-world event (the pairwise decision)."""
    return _score(_features(a), _features(b), DEFAULT_WINDOW) >= SAME_EVENT_THRESHOLD


# --- the index ----------------------------------------------------------------------------

# One row per band: a candidate shares at least one of the article's min-hashed specific
# tokens. Rewrites share only a third or so of those tokens, and with one row per band
# 1 - (1 - J)^16 still finds 97% of pairs at J = 0.2; the ranking below keeps that cheap.
_BANDS = 16
_ROWS = 1
_PRIME = 4_294_967_311  # the first prime above 2**32
_rng = random.Random(20261201)
_PERMUTATIONS = tuple((_rng.randrange(1, 2**32), _rng.randrange(0, 2**32)) for _ in range(_BANDS * _ROWS))
# How many of the candidates sharing the most bands are scored.
_MAX_CANDIDATES = 12
# A newcomer joins a story when it matches one article well and the story's articles on
# average (average linkage): matching one member alone lets a story chain from one event
# into the next through an article that sits between them.
_MIN_MEAN_SCORE = SAME_EVENT_THRESHOLD
# Candidates by bands shared, then newest first.
_BY_SHARED = itemgetter(1, 0)
# How many of a band bucket's newest articles a lookup reads.
_MAX_BUCKET = 32
# How many of a story's articles a newcomer is checked against for vetoes.
_MAX_MEMBERS_CHECKED = 8


@lru_cache(maxsize=32_768)
def _token_hashes(token: str) -> tuple[int, ...]:
    """The token's value under each permutation: names and amounts recur across articles, so
    each is computed once and a signature is a column-wise min in C."""
    h = zlib.crc32(token.encode())
    return tuple((a * h + b) % _PRIME for a, b in _PERMUTATIONS)


def _band_keys(tokens: frozenset[str]) -> list[int]:
    if not tokens:
        return []
    signature = list(map(min, zip(*map(_token_hashes, tokens), strict=True)))
    # A 64-bit hash of (band, rows) as the key: a collision only adds a candidate to score.
    return [hash((band, *signature[band * _ROWS : (band + 1) * _ROWS])) for band in range(_BANDS)]


@dataclass(slots=True)
class _Entry:
    story_id: int
    features: _Features
    keys: list[int]


class StoryIndex:
    """The articles of the recent window, searchable for the story of a new article.

    An article joins the story of its best-scoring candidate, provided nothing vetoes it
    against the story's other articles: without that check, a rewrite that sits between two
    events ("Nvidia results" between "Nvidia beats" and "Nvidia shares fall") would chain
    them into one story.

    Articles are expected in roughly chronological order (a batch of an ingestion run, or
    the stored window loaded oldest first): entries older than the newest article seen minus
    twice the window are dropped, which bounds memory on a long stream.
    """

    def __init__(self, window: timedelta = DEFAULT_WINDOW) -> None:
        self._window = window
        self._entries: dict[int, _Entry] = {}
        self._order: deque[int] = deque()
        self._by_title: dict[str, list[int]] = {}
        self._bands: dict[int, list[int]] = {}
        self._members: dict[int, list[int]] = {}
        self._next = 0
        self._newest: datetime | None = None
        # match() then add() of the same article is the usual sequence: compute its features once.
        self._last: tuple[StoryText, _Features, list[int]] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, story_id: int, text: StoryText) -> None:
        """Record an article that belongs to story `story_id` (new or matched)."""
        features, keys = self._features(text)
        entry_id = self._next
        self._next += 1
        self._entries[entry_id] = _Entry(story_id, features, keys)
        self._order.append(entry_id)
        self._by_title.setdefault(features.title_key, []).append(entry_id)
        self._members.setdefault(story_id, []).append(entry_id)
        for key in keys:
            self._bands.setdefault(key, []).append(entry_id)
        if self._newest is None or features.published_at > self._newest:
            self._newest = features.published_at
            self._evict()

    def match(self, text: StoryText) -> int | None:
        """The story in the window that reports the same event as `text`, or None."""
        features, keys = self._features(text)
        # Counter.update and the sort run in C: a lookup touches up to 16 x 32 entries.
        shared: Counter[int] = Counter()
        bands = self._bands
        for key in keys:
            # A hot bucket (a big company's name, a round amount) is read from its newest end
            # only: copies and rewrites come within hours, and the cost stays bounded.
            bucket = bands.get(key)
            if bucket:
                shared.update(bucket[-_MAX_BUCKET:])
        copies = self._by_title.get(features.title_key, ()) if features.title_key else ()
        # A verbatim copy of a headline (the wire's syndication) joins its story at once, as
        # the ranking below would decide (a score of 1 wins; the lowest story on a tie).
        verbatim = [
            self._entries[e].story_id
            for e in copies[-_MAX_CANDIDATES:]
            if _score(features, self._entries[e].features, self._window) >= 1.0
        ]
        if verbatim:
            return min(verbatim)
        for entry_id in copies:
            shared[entry_id] = _BANDS + 1  # exact copies first
        ranked = sorted(shared.items(), key=_BY_SHARED, reverse=True)[:_MAX_CANDIDATES]
        best: dict[int, float] = {}
        for entry_id, _ in ranked:
            entry = self._entries[entry_id]
            score = _score_if_same(features, entry.features, self._window)
            if score is not None and score > best.get(entry.story_id, 0.0):
                best[entry.story_id] = score
        for story_id in sorted(best, key=lambda s: (-best[s], s)):
            members = self._members.get(story_id, ())[-_MAX_MEMBERS_CHECKED:]
            if len(members) == 1 or best[story_id] >= 1.0:
                return story_id  # one article to match, or a verbatim copy of one of them
            scores = [_score(features, self._entries[m].features, self._window) for m in members]
            if min(scores) > 0.0 and sum(scores) / len(scores) >= _MIN_MEAN_SCORE:
                return story_id
        return None

    def _features(self, text: StoryText) -> tuple[_Features, list[int]]:
        if self._last is not None and self._last[0] == text:
            return self._last[1], self._last[2]
        features = _features(text)
        keys = _band_keys(features.anchors)
        self._last = (text, features, keys)
        return features, keys

    def _evict(self) -> None:
        assert self._newest is not None
        horizon = self._newest - 2 * self._window
        while self._order and self._entries[self._order[0]].features.published_at < horizon:
            entry_id = self._order.popleft()
            entry = self._entries.pop(entry_id)
            _discard(self._by_title, entry.features.title_key, entry_id)
            _discard(self._members, entry.story_id, entry_id)
            for key in entry.keys:
                _discard(self._bands, key, entry_id)


def _discard(index: dict[Any, list[int]], key: object, entry_id: int) -> None:
    ids = index.get(key)
    if ids is None:
        return
    ids.remove(entry_id)
    if not ids:
        del index[key]
