"""Benchmark: the offline sentiment model's throughput, against plain VADER in the same run.

    python bench/sentiment.py [--articles 100000]

Articles are the labelled headlines of tests/labelled/sentiment_headlines.csv, repeated, each
with a description of about two headlines' length (the shape NewsAPI returns). Prints
articles per CPU second for `deallens.domain.news.sentiment.score_lexicon` (finance lexicon, phrase
rules and the no-lexicon-word / ASCII shortcuts) and for the library's own
`SentimentIntensityAnalyzer.polarity_scores` on the same texts, and their ratio. The ingestion
benchmark (bench/news.py) spends this per article.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer  # noqa: E402

from deallens.domain.news.sentiment import score_lexicon  # noqa: E402

LABELLED = ROOT / "tests" / "labelled" / "sentiment_headlines.csv"


def articles(count: int) -> list[tuple[str, str]]:
    with LABELLED.open(newline="", encoding="utf-8") as handle:
        headlines = [row["headline"] for row in csv.DictReader(handle)]
    n = len(headlines)
    return [
        (headlines[i % n], f"{headlines[(i * 7 + 3) % n]}, the company said. {headlines[(i * 13 + 5) % n]}.")
        for i in range(count)
    ]


def timed(work: list[str], score: Callable[[str], object]) -> float:
    # CPU time of this process: on a shared machine, wall time measures the neighbours too.
    started = time.process_time()
    for text in work:
        score(text)
    return len(work) / (time.process_time() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    texts = [f"{title}. {description}" for title, description in articles(args.articles)]
    score_lexicon("warm up")
    plain = SentimentIntensityAnalyzer()
    # The machine is shared: rounds alternate the two, and each one's best round counts.
    ours: list[float] = []
    baseline: list[float] = []
    for _ in range(args.rounds):
        ours.append(timed(texts, score_lexicon))
        baseline.append(timed(texts, plain.polarity_scores))
    best, base = max(ours), max(baseline)
    print(f"{'score_lexicon (vader-finance-1)':<44} {best:>10,.0f} articles/s (rounds: {', '.join(f'{r:,.0f}' for r in ours)})")
    print(f"{'plain VADER polarity_scores (same texts)':<44} {base:>10,.0f} articles/s (rounds: {', '.join(f'{r:,.0f}' for r in baseline)})")
    print(f"ratio {best / base:.2f}x; {args.articles:,} articles in {args.articles / best:.1f} s of scoring")


if __name__ == "__main__":
    main()
