"""Offline news sentiment: VADER with a finance lexicon, for when no LLM answers.

Plain VADER is tuned on social media: it knows "gain" and "profit" but not "beats", "surges",
"plunges", "downgrade" or "writedown", and reads "fine" as praise. The terms below (valence on
VADER's -4..4 scale) add the verbs and nouns that carry the direction of market news, and a
few phrases whose words mislead alone ("losses widen", "swings to profit", "cuts guidance").
The lexicon ships inside the vaderSentiment wheel: nothing is downloaded, ever.

Measured on tests/labelled/sentiment_headlines.csv (its rules in SENTIMENT.md beside it);
the figures are in the README and printed by tests/test_sentiment_lexicon.py.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from vaderSentiment import vaderSentiment as vader
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

SentimentLabel = Literal["positive", "negative", "neutral"]


@dataclass(frozen=True, slots=True)
class ArticleText:
    """What sentiment is judged on: an article's title and description."""

    id: int
    title: str
    description: str | None

    @property
    def text(self) -> str:
        return self.title if not self.description else f"{self.title}. {self.description}"

# news_articles.sentiment_source of scores made here; bump the version when the terms change.
LEXICON_SOURCE = "vader-finance-1"
# |compound| below this is neutral (VADER's own default is 0.05; headlines need a wider band).
NEUTRAL_BAND = 0.1

FINANCE_TERMS: dict[str, float] = {
    # results and guidance
    "beat": 2.0, "beats": 2.0, "tops": 2.0, "topped": 2.0, "exceeds": 1.8, "outpaces": 1.5,
    "raises": 1.2, "raised": 1.2, "lifts": 1.5, "boosts": 1.8, "reaffirms": 0.8, "upbeat": 2.0,
    "blowout": 2.5, "record": 1.2, "surprise": 0.8, "rebound": 1.8, "rebounds": 1.8, "recovers": 1.5,
    "miss": -2.0, "misses": -2.0, "missed": -2.0, "disappoints": -2.2, "disappointing": -2.2,
    "lowers": -1.8, "trims": -1.2, "slashes": -2.5, "warns": -2.0, "warning": -1.8,
    "shortfall": -2.0, "writedown": -2.5, "write-down": -2.5, "impairment": -2.0, "charge": -0.8,
    "glut": -2.0, "slowdown": -1.8, "slowing": -1.5, "slower": -1.2, "weaker": -1.8, "weakens": -1.8,
    "erode": -1.8, "erodes": -1.8, "stalls": -1.8, "stalled": -1.8, "shrinks": -1.5, "squeeze": -1.5,
    "weigh": -1.0, "weighs": -1.2, "decline": -1.5, "declines": -1.5, "contracts": -1.2,
    "headwinds": -1.5, "balloon": -1.5,
    # price moves
    "surge": 2.5, "surges": 2.5, "soar": 2.8, "soars": 2.8, "skyrocket": 3.0, "skyrockets": 3.0,
    "jump": 2.0, "jumps": 2.0, "rally": 2.0, "rallies": 2.0, "climb": 1.5, "climbs": 1.5,
    "rise": 1.2, "rises": 1.2, "gains": 1.8, "higher": 1.0, "pop": 1.8, "pops": 1.8, "double": 1.2,
    "tumble": -2.5, "tumbles": -2.5, "plunge": -3.0, "plunges": -3.0, "slide": -2.0, "slides": -2.0,
    "slump": -2.5, "slumps": -2.5, "sink": -2.2, "sinks": -2.2, "sank": -2.2, "drop": -1.8,
    "drops": -1.8, "fall": -1.8, "falls": -1.8, "fell": -1.8, "crater": -3.0, "craters": -3.0,
    "sheds": -1.8, "selloff": -2.2, "sell-off": -2.2, "lower": -1.0, "down": -1.0, "worst": -2.5,
    # analysts and investors
    "upgrade": 2.0, "upgrades": 2.0, "upgraded": 2.0, "outperform": 1.8, "overweight": 1.5,
    "downgrade": -2.0, "downgrades": -2.0, "downgraded": -2.0, "underweight": -1.8, "underperform": -1.8,
    "bullish": 2.0, "bearish": -2.0, "optimism": 1.8, "activist": 0.8,
    # capital returns and deals
    "buyback": 1.8, "buybacks": 1.8, "premium": 1.5, "dividend": 0.3, "wins": 2.0, "awarded": 1.5,
    "takeover": 0.8, "buyout": 1.0, "dilution": -1.8, "abandons": -2.0,
    # legal, regulatory and operations
    "fine": -1.5, "fined": -2.2, "fines": -2.0, "penalty": -2.0, "sued": -2.0, "sues": -1.8,
    "lawsuit": -1.8, "lawsuits": -1.8, "probe": -2.0, "investigation": -1.8, "subpoena": -1.8,
    "antitrust": -1.0, "recall": -2.0, "recalls": -2.0, "halts": -2.0, "halted": -2.0,
    "suspends": -2.0, "delays": -1.5, "delayed": -1.5, "outage": -2.0, "breach": -2.2,
    "bankruptcy": -3.0, "insolvency": -3.0, "default": -2.5, "layoffs": -2.0, "lay": -0.5,
    "restructuring": -0.8, "short": -0.3, "approves": 1.8, "approve": 1.8, "clears": 1.2,
    "dismissal": 1.0, "settles": 0.5, "carcinogen": -2.5, "stranding": -2.0, "cancels": -1.5,
    # macro
    "recession": -2.2, "inflation": -0.8, "cools": 0.8, "eases": 1.0, "contraction": -1.8,
    "expansion": 1.2, "escalates": -1.8, "fears": -1.5,
}

# Words VADER scores that carry no direction in business text: names ("Amazon", "Super Micro",
# "Natural gas", "United", "Capital One"), and terms of the trade ("interest" rates, "share"
# prices, a merger "agreement", "effective" dates, "credit", "security"), as Loughran and
# McDonald found for general-purpose lexicons on financial text.
NEUTRAL_IN_FINANCE: frozenset[str] = frozenset({
    "interest", "interests", "effective", "agreement", "share", "shares", "natural", "super", "join",
    "joins", "amazon", "extend", "extends", "united", "credit", "capital", "trust", "fund", "funds",
    "gross", "security", "securities", "liability", "care", "health", "free", "like",
})

# Phrases whose words mislead alone, rewritten into a token that carries their direction
# (one alternation, so a text is scanned once).
_PHRASE_PATTERNS: dict[str, str] = {
    "deepening_loss": r"\bloss(?:es)? widens?\b|\bwidens? (?:its |the )?loss(?:es)?\b",
    "profitable_turn": r"\bswings? to (?:a )?profit\b|\bsurprise profit\b|\bfirst (?:annual |quarterly )?(?:operating )?profit\b",
    "guidance_cut": r"\b(?:cuts?|lowers?|slashes|trims?) (?:its |annual |full-year |profit |sales |revenue )*(?:guidance|forecast|outlook|target)s?\b",
    "guidance_raise": r"\b(?:raises?|lifts?|boosts?|ups) (?:its |annual |full-year |profit |sales |revenue )*(?:guidance|forecast|outlook|dividend)s?\b",
    "ipo_break": r"\bbelow ipo price\b",
    "failure": r"\b(?:fails?|failed) to (?:approve|show|win|meet)\b",
    "relief": r"\bremov(?:es|ing) (?:a )?(?:major )?overhang\b",
    "called_off": r"\bcalls? off\b",
    "blocked": r"\bto block\b|\bblocks\b",
}
_PHRASES = re.compile("|".join(f"(?P<{name}>{pattern})" for name, pattern in _PHRASE_PATTERNS.items()), re.IGNORECASE)
_PHRASE_TERMS: dict[str, float] = {
    "deepening_loss": -2.5, "profitable_turn": 2.5, "guidance_cut": -2.5, "guidance_raise": 2.2,
    "ipo_break": -2.2, "failure": -2.2, "relief": 2.0, "called_off": -1.5, "blocked": -2.0,
}


_NO_SENTIMENT = {"neg": 0.0, "neu": 0.0, "pos": 0.0, "compound": 0.0}
# Longer text is cut: a title and a description fit many times over, and a pathological body
# must not make scoring slow.
MAX_TEXT_CHARS = 4000


_NEGATIONS = frozenset(vader.NEGATE)


def _negated(word: str) -> bool:
    """vaderSentiment.negated([word]) for one word, without rebuilding the negation list."""
    lowered = str(word).lower()
    return lowered in _NEGATIONS or "n't" in lowered


class _FinanceAnalyzer(SentimentIntensityAnalyzer):  # type: ignore[misc]
    """VADER with shortcuts that change no score, for ingestion's throughput.

    A text with no lexicon word scores 0 in VADER whatever else it holds (boosters, "but" and
    punctuation only scale the valence of lexicon words), so it is answered without the
    per-word pass. ASCII text holds no emoji, so VADER's character-by-character emoji
    conversion (quadratic string building) is skipped for it. The negation check lower-cases
    the three words it looks at instead of the whole text, once per lexicon word.
    tests/test_sentiment_lexicon.py compares every score with the library's own path.
    """

    @staticmethod
    def _negation_check(valence: float, words: list[str], start_i: int, i: int) -> float:
        def word(offset: int) -> str:
            return str(words[i - offset]).lower()

        if start_i == 0:
            if _negated(word(1)):
                valence = valence * vader.N_SCALAR
        elif start_i == 1:
            if word(2) == "never" and word(1) in ("so", "this"):
                valence = valence * 1.25
            elif word(2) == "without" and word(1) == "doubt":
                pass
            elif _negated(word(2)):
                valence = valence * vader.N_SCALAR
        elif start_i == 2:
            if (word(3) == "never" and word(2) in ("so", "this")) or word(1) in ("so", "this"):
                valence = valence * 1.25
            elif word(3) == "without" and (word(2) == "doubt" or word(1) == "doubt"):
                pass
            elif _negated(word(3)):
                valence = valence * vader.N_SCALAR
        return valence

    def polarity_scores(self, text: str) -> dict[str, float]:
        if not text.isascii():
            return super().polarity_scores(text)  # type: ignore[no-any-return]
        lexicon = self.lexicon
        tokens = text.split()
        if not any(
            token.lower() in lexicon or token.strip(string.punctuation).lower() in lexicon for token in tokens
        ):
            return {**_NO_SENTIMENT, "neu": 1.0 if tokens else 0.0}
        sentitext = vader.SentiText(text.strip())
        sentiments: list[float] = []
        words = sentitext.words_and_emoticons
        for i, item in enumerate(words):
            lowered = item.lower()
            if lowered in vader.BOOSTER_DICT or (lowered == "kind" and i < len(words) - 1 and words[i + 1].lower() == "of"):
                sentiments.append(0)
                continue
            if lowered not in lexicon:
                sentiments.append(0)  # what sentiment_valence appends for a word without valence
                continue
            sentiments = self.sentiment_valence(0, sentitext, item, i, sentiments)
        sentiments = self._but_check(words, sentiments)
        return self.score_valence(sentiments, text.strip())  # type: ignore[no-any-return]


@lru_cache(maxsize=1)
def _analyzer() -> SentimentIntensityAnalyzer:
    analyzer = _FinanceAnalyzer()
    for word in NEUTRAL_IN_FINANCE:
        analyzer.lexicon.pop(word, None)
    analyzer.lexicon.update(FINANCE_TERMS)
    analyzer.lexicon.update(_PHRASE_TERMS)
    return analyzer


def label_for(score: float) -> SentimentLabel:
    """The label a score in [-1, 1] stands for (the same band for every model's scores)."""
    if score >= NEUTRAL_BAND:
        return "positive"
    if score <= -NEUTRAL_BAND:
        return "negative"
    return "neutral"


def score_lexicon(text: str) -> tuple[float, SentimentLabel]:
    """(score in [-1, 1], label) of a headline or short text; empty text is neutral."""
    return _score_lexicon(text[:MAX_TEXT_CHARS])


@lru_cache(maxsize=4_096)
def _score_lexicon(text: str) -> tuple[float, SentimentLabel]:
    """Syndicated copies carry the same title and description: scored once while they arrive."""
    text = _PHRASES.sub(lambda match: f" {match.lastgroup} ", text)
    compound = float(_analyzer().polarity_scores(text)["compound"])
    score = max(-1.0, min(1.0, round(compound, 4)))
    return score, label_for(score)
