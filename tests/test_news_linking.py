"""Company linking: evidence kinds, common-word tickers and names, relevance and place."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deallens.domain.news.linking import CompanyLinker, LinkTarget

COMPANIES = (
    LinkTarget(1, "AAPL", "Apple Inc"),
    LinkTarget(2, "MSFT", "Microsoft Corporation"),
    LinkTarget(3, "GOOGL", "Alphabet Inc Class A"),
    LinkTarget(4, "F", "Ford Motor Co"),
    LinkTarget(5, "NOW", "ServiceNow Inc"),
    LinkTarget(6, "IT", "Gartner Inc"),
    LinkTarget(7, "META", "Meta Platforms Inc"),
    LinkTarget(8, "BAC", "Bank of America Corp"),
    LinkTarget(9, "TGT", "Target Corporation", aliases=("Target Stores",)),
)
LINKER = CompanyLinker(COMPANIES)


def _ids(title: str, description: str | None = None) -> list[int]:
    return [link.company_id for link in LINKER.link(title, description)]


def test_names_aliases_and_legal_suffixes() -> None:
    links = LINKER.link("Microsoft Corp. to invest $10 billion in AI", "Google parent Alphabet said it would respond.")
    assert [(l.company_id, l.found_in) for l in links] == [(2, "title"), (3, "description")]
    assert links[0].matched == "Microsoft Corp."
    assert links[0].relevance > links[1].relevance


def test_cashtags_and_exchange_notation_link_common_word_tickers() -> None:
    assert _ids("$NOW jumps after earnings") == [5]
    assert _ids("Recall hits trucks", "Shares of Ford (NYSE: F) fell 2% on the news.") == [4]
    assert _ids("Gartner (NYSE:IT) raises outlook") == [6]
    assert _ids("IT spending will rise NOW, analysts say") == []


def test_apple_pie_is_not_apple_inc() -> None:
    assert _ids("The best apple pie recipe for Thanksgiving") == []
    assert _ids("Apple Pie Recipes To Try This Fall", "Bake an apple pie this weekend.") == []
    assert _ids("Apple shares rise after iPhone launch") == [1]


def test_longer_name_wins_and_each_company_once() -> None:
    assert _ids("Bank of America beats estimates", "Bank of America Corp (NYSE: BAC) said profit rose.") == [8]


def test_per_company_aliases_are_used() -> None:
    assert _ids("Target Stores cut prices on 5,000 items ahead of the holidays") == [9]


# --- the labelled set ---------------------------------------------------------------------

LABELLED = Path(__file__).parent / "labelled"


def _labelled_linker() -> tuple[CompanyLinker, dict[int, str]]:
    with (LABELLED / "link_companies.jsonl").open() as handle:
        companies = [json.loads(line) for line in handle]
    targets = [LinkTarget(c["company_id"], c["symbol"], c["name"], tuple(c.get("aliases", ()))) for c in companies]
    return CompanyLinker(targets), {c["company_id"]: c["symbol"] for c in companies}


def _link_scores(file_name: str) -> tuple[float, float, int, int, int, int]:
    linker, symbol_of = _labelled_linker()
    tp = fp = fn = cases = 0
    with (LABELLED / file_name).open() as handle:
        for case in map(json.loads, handle):
            cases += 1
            found = {symbol_of[link.company_id] for link in linker.link(case["title"], case["description"])}
            expected = set(case["links"])
            tp, fp, fn = tp + len(found & expected), fp + len(found - expected), fn + len(expected - found)
    return tp / (tp + fp), tp / (tp + fn), cases, tp, fp, fn


@pytest.mark.parametrize("file_name", ["link_cases.jsonl", "link_cases_holdout.jsonl"])
def test_linking_precision_and_recall_on_the_labelled_cases(file_name: str) -> None:
    precision, recall, cases, tp, fp, fn = _link_scores(file_name)
    print(f"\n{file_name}: {cases} articles, {tp + fn} links  precision {precision:.3f}  recall {recall:.3f}  (tp {tp}, fp {fp}, fn {fn})")
    assert precision >= 0.95
    assert recall >= 0.90


def test_labelled_linking_set_is_large_enough() -> None:
    _, symbol_of = _labelled_linker()
    with (LABELLED / "link_cases.jsonl").open() as handle:
        cases = [json.loads(line) for line in handle]
    assert sum(len(c["links"]) for c in cases) + sum(1 for c in cases if not c["links"]) >= 200
    assert {s for c in cases for s in c["links"]} <= set(symbol_of.values())


def test_exchange_notation_variants_and_lower_case_cashtags() -> None:
    assert _ids("Shares of Ford (NYSE:F) rose", None) == [4]
    assert _ids("Microsoft (Nasdaq: MSFT) gains", None) == [2]
    assert _ids("Watching $aapl and $msft today", None) == [1, 2]
    assert _ids("Apple raises $5 billion in bond sale", None) == [1]  # "$5" is an amount, not a cashtag


def test_relevance_prefers_the_title_and_counts_repeats() -> None:
    once = LINKER.link("Markets wrap", "Apple shares rose.")[0]
    twice = LINKER.link("Markets wrap", "Apple shares rose. Apple also said it would buy back stock.")[0]
    in_title = LINKER.link("Apple shares rise", None)[0]
    assert (once.found_in, in_title.found_in) == ("description", "title")
    assert once.relevance < twice.relevance < in_title.relevance
    assert in_title.matched == "Apple"
