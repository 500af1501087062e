"""Benchmark: story grouping and company linking at the size of issue 10's benchmark.

    python bench/news_nlp.py [--articles 100000] [--companies 5000] [--copies 0.3] [--seed 7]

No database and no network: the pure modules of deallens/domain/news on generated data.
Articles are generated first (not timed): --companies synthetic companies (the 22 demo
companies among them, with their real names), and --articles articles over 30 days, of
which a share --copies are copies of an earlier article from another outlet within hours
(half verbatim with " - Outlet", half rewritten headlines). Then, each timed on its own:

- grouping: every article in publication order through StoryIndex.match, then add to the
  story found or a new one (what the store activity does), against the floor of computing
  the same articles' features alone, and against scoring every earlier article of the window
  (all pairs) on a prefix of the stream, extrapolated;
- linking: CompanyLinker built once over all companies, then link() on every article, against
  the naive alternative of one regex per company, on a prefix, extrapolated.

Prints articles per second, the generator's truth checks (copies grouped with their original,
originals merged into another story, the linked company found) and the peak RSS.
What the figures mean and the ones measured: bench/README.md.
"""

from __future__ import annotations

import argparse
import bisect
import random
import re
import resource
import string
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deallens.domain.news.linking import CompanyLinker, LinkTarget  # noqa: E402
from deallens.domain.news.stories import StoryIndex, StoryText, _features, _score  # noqa: E402
from deallens.domain.universe import DEMO_COMPANIES  # noqa: E402

OUTLETS = ("Reuters", "Bloomberg", "CNBC", "MarketWatch", "Yahoo Finance", "Business Insider", "The Motley Fool", "Barron's")
SUFFIXES = ("Inc", "Corp", "Corporation", "Holdings Inc", "Group", "plc", "Co", "Ltd", "SA", "Technologies Inc")
SYLLABLES = ("ar", "bel", "cor", "dan", "el", "fin", "gal", "hel", "ion", "jar", "kel", "lum", "mar", "nov", "or",
             "pra", "quen", "ros", "sol", "tar", "ul", "ver", "wen", "xan", "yor", "zen", "tri", "vex", "lox", "pex")
SECTOR_WORDS = ("Therapeutics", "Energy", "Systems", "Bancorp", "Semiconductor", "Foods", "Logistics", "Software",
                "Pharmaceuticals", "Networks", "Materials", "Motors", "Brands", "Realty", "Capital")

# (headline, description, rewritten headline) with {C} the short name, {N} the full name, {V} an amount.
TEMPLATES = (
    ("{C} beats quarterly profit estimates as {P} sales jump", "{N} reported third-quarter profit above analysts' estimates on strong demand for {P}.",
     "{C} tops Wall Street forecasts on strong {P} demand"),
    ("{C} misses revenue estimates, shares slide", "{N} reported quarterly revenue below expectations and cut its outlook.",
     "{C} stock falls after revenue comes in short of estimates"),
    ("{C} to acquire {D} for ${V} billion", "{N} agreed to buy {D_full} in a cash-and-stock deal valued at ${V} billion.",
     "{C} agrees to buy {D} in ${V} billion deal"),
    ("{C} in talks to buy {D}, sources say", "{N} is in advanced talks to acquire {D_full}, people familiar with the matter said.",
     "{C} said to be nearing deal for {D}"),
    ("{C} completes ${V} billion purchase of {D}", "{N} closed its acquisition of {D_full} after regulatory approvals.",
     "{C} closes ${V} billion {D} acquisition"),
    ("{C} to cut {J} jobs in restructuring", "{N} plans to eliminate about {J} positions as part of a cost-cutting plan.",
     "{C} to lay off {J} workers as it trims costs"),
    ("{C} raises dividend by {R}%", "{N} increased its quarterly dividend by {R}% and reaffirmed its forecast.",
     "{C} hikes quarterly payout {R}%"),
    ("{C} names new chief executive", "{N} appointed a new CEO as it works through a leadership transition.",
     "{C} taps new CEO to lead turnaround"),
    ("{C} recalls {J} vehicles over software flaw", "{N} is recalling vehicles because of a software glitch, regulators said.",
     "{C} issues recall for {J} vehicles"),
    ("{C} shares surge after FDA approves {P} drug", "{N} won approval for its treatment, sending its stock sharply higher.",
     "FDA clears {C}'s {P} treatment; stock jumps"),
    ("Analyst upgrades {C} to buy, citing {P} demand", "A Wall Street analyst raised {N} to buy from hold.",
     "{C} upgraded to buy on {P} momentum"),
    ("{C} faces lawsuit over {P} data practices", "Customers sued {N}, alleging the company mishandled personal data.",
     "{C} sued over handling of {P} user data"),
)
PRODUCTS = ("cloud", "chip", "smartphone", "streaming", "software", "truck", "cancer", "obesity", "battery", "payments",
            "advertising", "gaming", "robotics", "satellite", "insurance", "beverage", "airline", "retail")


@dataclass(frozen=True, slots=True)
class Company:
    symbol: str
    name: str
    short: str


@dataclass(frozen=True, slots=True)
class Article:
    text: StoryText
    truth: int  # the generator's event id
    company: int  # index of the company the article is about


def _companies(count: int, rng: random.Random) -> list[Company]:
    companies = [Company(c.symbol, c.name, c.name.split()[0].rstrip(",")) for c in DEMO_COMPANIES]
    symbols = {c.symbol for c in companies}
    shorts = {c.short for c in companies}
    while len(companies) < count:
        short = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()
        if short in shorts:
            continue
        name = f"{short} {rng.choice(SECTOR_WORDS)} {rng.choice(SUFFIXES)}" if rng.random() < 0.6 else f"{short} {rng.choice(SUFFIXES)}"
        symbol = "".join(rng.choice(string.ascii_uppercase) for _ in range(rng.randint(3, 4)))
        if symbol in symbols:
            continue
        symbols.add(symbol)
        shorts.add(short)
        companies.append(Company(symbol, name, short))
    return companies


def _articles(total: int, copies: float, companies: list[Company], rng: random.Random) -> list[Article]:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    originals_count = int(total * (1 - copies))
    originals: list[tuple[Article, str]] = []
    for event in range(originals_count):
        index = rng.randrange(len(companies))
        company, other = companies[index], companies[rng.randrange(len(companies))]
        title, description, rewrite = rng.choice(TEMPLATES)
        values = {
            "C": company.short, "N": f"{company.name} (NASDAQ: {company.symbol})" if rng.random() < 0.3 else company.name,
            "D": other.short, "D_full": other.name, "V": f"{rng.choice((1.2, 2.5, 4, 7.8, 12, 26, 40, 68.7))}",
            "J": f"{rng.choice((300, 1200, 2500, 6000, 14000)):,}", "R": str(rng.choice((3, 4, 5, 7, 10))),
            "P": rng.choice(PRODUCTS),
        }
        published = start + timedelta(seconds=rng.randrange(30 * 86_400))
        text = StoryText(title.format(**values), description.format(**values), published)
        originals.append((Article(text, event, index), rewrite.format(**values)))
    articles = [article for article, _ in originals]
    for _ in range(total - originals_count):
        original, rewrite = rng.choice(originals)
        delay = timedelta(minutes=rng.randint(5, 600))
        if rng.random() < 0.5:
            title = f"{original.text.title} - {rng.choice(OUTLETS)}"
            description = original.text.description
        else:
            title, description = rewrite, None if rng.random() < 0.3 else original.text.description
        articles.append(Article(StoryText(title, description, original.text.published_at + delay), original.truth, original.company))
    articles.sort(key=lambda a: a.text.published_at)
    return articles


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rate(count: int, seconds: float, cpu: float) -> str:
    return f"{count:>9,} articles {seconds:8.2f} s {count / seconds:>8,.0f} articles/s  (CPU {cpu:.2f} s: {count / cpu:,.0f}/s)"


def bench_grouping(articles: list[Article], all_pairs_prefix: int) -> None:
    started, cpu = time.perf_counter(), time.process_time()
    for article in articles:
        _features(article.text)
    floor, floor_cpu = time.perf_counter() - started, time.process_time() - cpu
    print(f"grouping  floor: features only           {_rate(len(articles), floor, floor_cpu)}")

    index, story_of, next_story = StoryIndex(), [], 0
    started, cpu = time.perf_counter(), time.process_time()
    for article in articles:
        story = index.match(article.text)
        if story is None:
            next_story += 1
            story = next_story
        index.add(story, article.text)
        story_of.append(story)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(f"grouping  StoryIndex match + add         {_rate(len(articles), seconds, cpu)}")
    print(f"          {cpu / floor_cpu:.1f}x the floor's CPU; {next_story:,} stories, {len(index):,} articles in the index at the end")
    print(f"          peak RSS after grouping: {_rss_mib():,.0f} MiB")

    # Truth checks against the generator: a copy should join its original's story, and two
    # originals (different events) should not share one.
    first_story: dict[int, int] = {}
    copies = joined = 0
    owner: dict[int, Article] = {}
    merged_same_company = merged_other_company = 0
    for article, story in zip(articles, story_of, strict=True):
        if article.truth in first_story:
            copies += 1
            joined += story == first_story[article.truth]
        else:
            first_story[article.truth] = story
            if story not in owner:
                owner[story] = article
            elif owner[story].company == article.company:
                merged_same_company += 1
            else:
                merged_other_company += 1
    originals = len(first_story)
    print(f"          copies grouped with their original: {joined:,} of {copies:,} ({joined / copies:.1%})")
    print(f"          originals put into another event's story: about the same company {merged_same_company:,} "
          f"({merged_same_company / originals:.2%}), about another company {merged_other_company:,} "
          f"({merged_other_company / originals:.2%}) of {originals:,}")
    prefix = articles[:all_pairs_prefix]
    features = [_features(a.text) for a in prefix]
    window = timedelta(hours=48)
    pairs = 0
    started = time.process_time()
    for i, current in enumerate(features):
        for j in range(i - 1, -1, -1):
            if current.published_at - features[j].published_at > window:
                break
            _score(current, features[j], window)
            pairs += 1
    per_pair = (time.process_time() - started) / pairs
    # All pairs: every article against every earlier one in its window, over the whole stream.
    times = [a.text.published_at for a in articles]
    full_pairs = sum(i - bisect.bisect_left(times, t - window, 0, i) for i, t in enumerate(times))
    print(f"baseline  all pairs in the window: {per_pair * 1e6:.1f} µs CPU a pair ({pairs:,} pairs timed); "
          f"{full_pairs:,} pairs for {len(articles):,} articles: about {per_pair * full_pairs / 60:,.0f} min CPU "
          f"({len(articles) / (per_pair * full_pairs):,.0f} articles/s)")


def bench_linking(articles: list[Article], companies: list[Company], naive_prefix: int) -> None:
    targets = [LinkTarget(i + 1, c.symbol, c.name) for i, c in enumerate(companies)]
    started = time.perf_counter()
    linker = CompanyLinker(targets)
    built = time.perf_counter() - started
    print(f"linking   CompanyLinker over {len(targets):,} companies built in {built:.2f} s")
    found = links = 0
    started, cpu = time.perf_counter(), time.process_time()
    for article in articles:
        result = linker.link(article.text.title, article.text.description)
        links += len(result)
        found += any(link.company_id == article.company + 1 for link in result)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(f"linking   link(title, description)       {_rate(len(articles), seconds, cpu)}   ({links / len(articles):.2f} links an article)")
    print(f"          the article's company linked: {found:,} of {len(articles):,} ({found / len(articles):.1%})")
    print(f"          peak RSS after linking: {_rss_mib():,.0f} MiB")

    patterns = [re.compile(rf"\b{re.escape(c.short)}\b") for c in companies]
    prefix = articles[:naive_prefix]
    started = time.process_time()
    for article in prefix:
        text = f"{article.text.title}\n{article.text.description or ''}"
        [p for p in patterns if p.search(text)]
    cpu = time.process_time() - started
    print(f"baseline  one regex per company (names only), first {len(prefix):,}: CPU {cpu:.2f} s ({len(prefix) / cpu:,.0f} articles/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--companies", type=int, default=5_000)
    parser.add_argument("--copies", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    started = time.perf_counter()
    companies = _companies(args.companies, rng)
    articles = _articles(args.articles, args.copies, companies, rng)
    print(f"generated {len(companies):,} companies and {len(articles):,} articles ({args.copies:.0%} copies) "
          f"in {time.perf_counter() - started:.1f} s (not timed); RSS {_rss_mib():,.0f} MiB")
    bench_grouping(articles, all_pairs_prefix=min(1_500, len(articles)))
    bench_linking(articles, companies, naive_prefix=min(500, len(articles)))
    print(f"peak RSS: {_rss_mib():,.0f} MiB")


if __name__ == "__main__":
    main()
