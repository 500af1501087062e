"""Company linking: evidence kinds, common-word tickers and names, relevance and place."""

from __future__ import annotations

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
