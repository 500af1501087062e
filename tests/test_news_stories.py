"""Story grouping: the pairwise decision and the window index."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from deallens.domain.news.stories import DEFAULT_WINDOW, StoryIndex, StoryText, same_event

T0 = datetime(2026, 11, 3, 13, 0, tzinfo=UTC)


def _story(title: str, description: str | None = None, hours: float = 0) -> StoryText:
    return StoryText(title, description, T0 + timedelta(hours=hours))


def test_wire_copy_with_outlet_suffix_is_the_same_event() -> None:
    a = _story("Microsoft to acquire Activision Blizzard for $68.7 billion - Reuters")
    b = _story("Microsoft to acquire Activision Blizzard for $68.7 billion | CNBC", hours=2)
    assert same_event(a, b)


def test_rewrite_with_synonyms_is_the_same_event() -> None:
    a = _story("Apple beats estimates as iPhone sales jump")
    b = _story("Apple tops Wall Street forecasts on strong iPhone sales", hours=1)
    assert same_event(a, b)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("Apple beats estimates as iPhone sales jump", "Apple misses estimates as iPhone sales slump"),
        ("Microsoft in talks to acquire Activision", "Microsoft agrees to acquire Activision for $68.7 billion"),
        ("Pfizer to cut 1,200 jobs in restructuring", "Pfizer to cut 3,000 jobs in restructuring"),
        ("Apple third-quarter profit rises 8%", "Apple fourth-quarter profit rises 8%"),
    ],
)
def test_same_company_different_events_stay_apart(first: str, second: str) -> None:
    assert not same_event(_story(first), _story(second, hours=3))


def test_copies_further_apart_than_the_window_are_different_stories() -> None:
    title = "Nvidia shares jump after quarterly earnings beat estimates"
    assert not same_event(_story(title), _story(title, hours=DEFAULT_WINDOW.total_seconds() / 3600 + 1))


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        same_event(StoryText("a", None, datetime(2026, 1, 1)), _story("a"))


def test_index_returns_the_story_of_the_same_event_only() -> None:
    index = StoryIndex()
    index.add(1, _story("Apple beats estimates as iPhone sales jump", "Apple Inc reported record revenue."))
    index.add(2, _story("Exxon to buy Pioneer Natural Resources for $59.5 billion"))
    assert index.match(_story("Apple tops Wall Street forecasts on strong iPhone sales", hours=2)) == 1
    assert index.match(_story("Exxon Mobil agrees to acquire Pioneer in $59.5 billion deal", hours=1)) == 2
    assert index.match(_story("Apple misses estimates as iPhone sales slump", hours=2)) is None
    assert index.match(_story("Chevron names new chief financial officer", hours=2)) is None


def test_index_forgets_articles_older_than_the_window() -> None:
    index = StoryIndex(window=timedelta(hours=12))
    index.add(1, _story("Tesla recalls 2 million vehicles over Autopilot"))
    index.add(2, _story("Netflix raises prices in the US", hours=30))
    assert len(index) == 1
    assert index.match(_story("Tesla recalls 2 million vehicles over Autopilot", hours=30)) is None


# --- the labelled set ---------------------------------------------------------------------

LABELLED = Path(__file__).parent / "labelled"
PRECISION_TARGET = 0.95
RECALL_TARGET = 0.85


def _labelled_articles() -> dict[str, dict[str, str]]:
    with (LABELLED / "story_articles.jsonl").open() as handle:
        return {row["id"]: row for row in map(json.loads, handle)}


def _labelled_pairs() -> list[dict[str, object]]:
    with (LABELLED / "story_pairs.jsonl").open() as handle:
        return [json.loads(line) for line in handle]


def _text(row: dict[str, str]) -> StoryText:
    return StoryText(row["title"], row["description"], datetime.fromisoformat(row["published_at"]))


def _precision_recall(decisions: list[tuple[bool, bool]]) -> tuple[float, float, int, int, int]:
    tp = sum(1 for predicted, actual in decisions if predicted and actual)
    fp = sum(1 for predicted, actual in decisions if predicted and not actual)
    fn = sum(1 for predicted, actual in decisions if actual and not predicted)
    return tp / (tp + fp), tp / (tp + fn), tp, fp, fn


def test_labelled_set_is_consistent_and_large_enough() -> None:
    articles = _labelled_articles()
    pairs = _labelled_pairs()
    assert len(pairs) >= 300
    for pair in pairs:
        a, b = articles[str(pair["a"])], articles[str(pair["b"])]
        assert pair["same"] == (a["event"] == b["event"]), pair
    kinds = {str(pair["kind"]) for pair in pairs}
    assert kinds == {"wire_copy", "rewrite", "hard_negative", "other_company"}
    assert sum(1 for pair in pairs if not pair["same"]) >= 300


def test_same_event_precision_and_recall_on_the_labelled_pairs() -> None:
    articles = _labelled_articles()
    decisions = [
        (same_event(_text(articles[str(p["a"])]), _text(articles[str(p["b"])])), bool(p["same"]))
        for p in _labelled_pairs()
    ]
    precision, recall, tp, fp, fn = _precision_recall(decisions)
    print(f"\nstory pairs: {len(decisions)}  precision {precision:.3f}  recall {recall:.3f}  (tp {tp}, fp {fp}, fn {fn})")
    assert precision >= PRECISION_TARGET
    assert recall >= RECALL_TARGET


def test_index_grouping_of_the_labelled_articles() -> None:
    """The same articles streamed through StoryIndex in publication order, as ingestion does."""
    articles = sorted(_labelled_articles().values(), key=lambda row: row["published_at"])
    index, story_of, next_story = StoryIndex(), {}, 0
    for row in articles:
        story = index.match(_text(row))
        if story is None:
            next_story += 1
            story = next_story
        story_of[row["id"]] = story
        index.add(story, _text(row))
    decisions = [
        (story_of[str(p["a"])] == story_of[str(p["b"])], bool(p["same"])) for p in _labelled_pairs()
    ]
    precision, recall, tp, fp, fn = _precision_recall(decisions)
    print(f"\nindex grouping: precision {precision:.3f}  recall {recall:.3f}  (tp {tp}, fp {fp}, fn {fn})")
    # Greedy grouping gives up some recall against the pairwise decision (an article joins one
    # story, and only when it matches the story's articles on average) to keep its precision.
    assert precision >= PRECISION_TARGET
    assert recall >= RECALL_TARGET


def test_empty_headlines_are_not_copies_of_each_other() -> None:
    index = StoryIndex()
    index.add(1, _story("", "Shares of the company rose."))
    assert index.match(_story("", "Revenue fell in the quarter.", hours=1)) is None


def test_a_huge_description_costs_no_more_than_its_first_kilobyte() -> None:
    huge = "Apple reported record revenue. " + "x" * 10_000_000
    a = _story("Apple beats estimates as iPhone sales jump", huge)
    b = _story("Apple tops Wall Street forecasts on strong iPhone sales", "Apple reported record revenue.", hours=1)
    assert same_event(a, b)


def _held_out(name: str) -> tuple[float, float, int, int, int, int]:
    """Every pair within a family of a held-out file: (precision, recall, tp, fp, fn, pairs)."""
    with (LABELLED / name).open() as handle:
        rows = [json.loads(line) for line in handle]
    decisions = [
        (same_event(_text(a), _text(b)), a["event"] == b["event"])
        for i, a in enumerate(rows)
        for b in rows[i + 1 :]
        if a["family"] == b["family"]
    ]
    precision, recall, tp, fp, fn = _precision_recall(decisions)
    print(f"\n{name}: {len(decisions)} pairs  precision {precision:.3f}  recall {recall:.3f}  (tp {tp}, fp {fp}, fn {fn})")
    return precision, recall, tp, fp, fn, len(decisions)


def test_same_event_on_the_held_out_articles() -> None:
    """The first held-out set: 0.886 precision when first run; its four false positives (Alaska
    grounding its 737 MAX 9 jets, the FAA grounding them the next day) led to the actor veto,
    so this set is no longer out of sample for that rule (see tests/labelled/README.md).

    Its two false positives now: Monday's "Boeing shares slide 8% after 737 MAX 9 grounding",
    the first session after both of that weekend's events (Alaska grounding its jets after the
    blowout, the FAA's order), matches both; the label gives it to the FAA's order.
    """
    precision, recall, _, fp, _, _ = _held_out("story_articles_holdout.jsonl")
    assert precision >= 0.94 and fp <= 2
    assert recall >= RECALL_TARGET


def test_same_event_on_the_second_held_out_articles() -> None:
    """Written before the actor veto. After it, 0.871 precision: all four false positives were
    Tesla's Friday slide after its Thursday-night robotaxi event, which the set had labelled
    apart. Rule 1 now reads "the first session that can trade on it", and the Tesla slide and
    Intel's Friday crash after Thursday evening's results were relabelled to it
    (tests/labelled/README.md); the set is in-sample now.
    """
    precision, recall, _, _, _, pairs = _held_out("story_articles_holdout2.jsonl")
    assert pairs >= 140
    assert precision >= PRECISION_TARGET
    assert recall >= RECALL_TARGET


def _at(utc: str) -> datetime:
    return datetime.fromisoformat(utc)


@pytest.mark.parametrize(
    ("news", "news_at", "move", "move_at", "same"),
    [
        # The first session after Saturday-night news is Monday's: its slide is the news's story,
        # however many hours the weekend put between them.
        ("FAA orders grounding of Boeing 737 MAX 9 planes", "2024-01-07T01:00:00+00:00",
         "Boeing shares slide 8% after FAA grounding of 737 MAX 9 planes", "2024-01-08T15:00:00+00:00", True),
        # Sunday-evening deal, Monday's move: the first session, 15 hours later.
        ("Paramount agrees to merge with Skydance", "2024-07-07T23:25:00+00:00",
         "Paramount stock slides as investors digest Skydance merger terms", "2024-07-08T14:40:00+00:00", True),
        # A move two sessions after the deal is its own event.
        ("AMD signs AI chip supply deal with OpenAI", "2025-10-06T12:05:00+00:00",
         "AMD shares jump on AI chip supply deal with OpenAI", "2025-10-07T19:40:00+00:00", False),
        # A move the headline says is not the news's reaction.
        ("Nvidia forecasts revenue above estimates as AI chip demand stays strong", "2026-11-18T21:25:00+00:00",
         "Nvidia shares fall despite upbeat revenue forecast", "2026-11-19T18:30:00+00:00", False),
    ],
)
def test_a_share_move_is_the_story_of_the_news_of_its_session(
    news: str, news_at: str, move: str, move_at: str, same: bool
) -> None:
    assert same_event(StoryText(news, None, _at(news_at)), StoryText(move, None, _at(move_at))) is same


def test_share_moves_of_two_sessions_are_two_events() -> None:
    monday = StoryText("AMD shares soar after OpenAI chip deal", None, _at("2025-10-06T14:10:00+00:00"))
    tuesday = StoryText("AMD shares soar again on OpenAI chip deal", None, _at("2025-10-07T19:40:00+00:00"))
    after_hours = StoryText("AMD shares soar after hours on OpenAI chip deal", None, _at("2025-10-05T21:30:00+00:00"))
    assert not same_event(monday, tuesday)
    # Sunday evening's extended-hours move and Monday's are the same reaction... on a weekday;
    # a Sunday has no session of its own, so it meets Monday's.
    assert same_event(after_hours, monday)


def test_one_agreed_deal_under_two_reported_values_is_one_event() -> None:
    """Equity value and enterprise value (with debt) are both reported for one deal."""
    assert same_event(
        _story("Boeing to buy Spirit AeroSystems for $4.7 billion"),
        _story("Boeing Agrees to Reacquire Spirit AeroSystems in $8.3 Billion Deal", hours=1),
    )
    # A bid raised to another price is another event, and so is a deal of another size.
    assert not same_event(
        _story("Paramount bids $30 a share for Warner Bros. Discovery"),
        _story("Paramount raises bid for Warner Bros. Discovery to $32 a share", hours=20),
    )
    assert not same_event(
        _story("Pfizer to buy Metsera for $4.9 billion"), _story("Pfizer agrees to buy Metsera for $20 billion", hours=3)
    )


def test_a_duration_is_not_a_count_of_the_event() -> None:
    """"Worst day in 50 years" does not disagree with "15,000 job cuts" the way 1,200 and 3,000 jobs do."""
    assert same_event(
        _story("Intel announces 15,000 layoffs and suspends dividend after weak quarter"),
        _story("Intel shares suffer worst day in 50 years after layoffs and weak quarter", hours=4),
    )
    assert not same_event(_story("Pfizer to cut 1,200 jobs in restructuring"), _story("Pfizer to cut 3,000 jobs in restructuring", hours=3))


@pytest.mark.parametrize(
    ("first", "first_at", "second", "second_at", "same"),
    [
        # The report and its denial.
        ("Shell in early talks to buy BP", "2025-06-25T18:00:00+00:00",
         "Shell rules out bid for BP in blow to takeover hopes", "2025-06-26T07:30:00+00:00", False),
        ("Shell says it has no intention of making an offer for BP", "2025-06-26T07:00:00+00:00",
         "Shell rules out bid for BP in blow to takeover hopes", "2025-06-26T07:30:00+00:00", True),
        # A lawsuit reported as coming, and the lawsuit.
        ("Visa set to be sued by DOJ over alleged debit card monopoly", "2025-09-23T20:00:00+00:00",
         "US sues Visa, alleging debit card monopoly", "2025-09-24T15:00:00+00:00", False),
        # "Blockbuster" is no block.
        ("Mondelez is said to explore blockbuster deal for Hershey", "2024-12-09T19:00:00+00:00",
         "Mondelez explores deal for Hershey, people familiar say", "2024-12-09T20:00:00+00:00", True),
        # A profit warning after Friday's close and Monday's slide, 65 hours apart (sessions
        # are New York's: a warning during Friday's session meets Friday's).
        ("Volkswagen issues second profit warning in three months", "2024-09-27T21:00:00+00:00",
         "Volkswagen shares slide after second profit warning in three months", "2024-09-30T14:00:00+00:00", True),
        ("Volkswagen issues second profit warning in three months", "2024-09-27T17:00:00+00:00",
         "Volkswagen shares slide after second profit warning in three months", "2024-09-30T14:00:00+00:00", False),
    ],
)
def test_denials_coming_actions_and_weekends(first: str, first_at: str, second: str, second_at: str, same: bool) -> None:
    assert same_event(StoryText(first, None, _at(first_at)), StoryText(second, None, _at(second_at))) is same


# The blind held-out sets (tests/labelled/README.md): each written by a session that saw only
# the labelling rules, committed, and run once before its errors were read; the rules added
# from those errors are in the commits "Story grouping, from held-out N's errors". Every set
# is in-sample now, so these floors guard against regressions; the out-of-sample figure is
# the pooled first runs, 0.931 precision and 0.706 recall.
@pytest.mark.parametrize(
    ("name", "pairs", "precision_floor", "recall_floor"),
    [
        # First run 0.884 / 0.644. Misses left: rewrites that name neither company.
        ("story_articles_holdout3.jsonl", 224, PRECISION_TARGET, 0.70),
        # First run 0.976 / 0.635.
        ("story_articles_holdout4.jsonl", 224, PRECISION_TARGET, 0.75),
        # First run 0.898 / 0.746.
        ("story_articles_holdout5.jsonl", 224, PRECISION_TARGET, 0.75),
        # First run 0.982 / 0.767 (the code before held-out 3: 0.980 / 0.658).
        ("story_articles_holdout6.jsonl", 280, PRECISION_TARGET, 0.80),
        # First run 0.914 / 0.726 (before held-out 3: 0.898 / 0.603). Its false positives left:
        # a company's rebuttal of a short seller's report joins the report.
        ("story_articles_holdout7.jsonl", 280, 0.94, 0.75),
    ],
)
def test_same_event_on_the_blind_held_out_sets(name: str, pairs: int, precision_floor: float, recall_floor: float) -> None:
    precision, recall, _, _, _, counted = _held_out(name)
    assert counted >= pairs
    assert precision >= precision_floor
    assert recall >= recall_floor


@pytest.mark.parametrize(
    ("first", "second", "hours", "same"),
    [
        # Deal stages: talks reported (discussed) and the agreed deal are two; ending one merger
        # and agreeing another are two events of one target; a proposal (or an offer) is a bid,
        # not the agreed deal; "clinches" is agreed; a court halting a deal is regulatory action.
        ("Kroger, Albertsons Discuss Merger of Supermarket Giants", "Kroger to buy Albertsons for $24.6 billion", 15, False),
        ("Spirit Airlines ends Frontier merger deal, opening door for JetBlue",
         "JetBlue to buy Spirit Airlines for $3.8 billion after bidding war with Frontier", 15, False),
        ("UBS offers to buy Credit Suisse for up to $1bn", "Credit Suisse Agrees to Be Taken Over by UBS", 2, False),
        ("Emerson proposes to buy rest of AspenTech for $240 a share", "AspenTech agrees to $265-a-share buyout by Emerson", 2, False),
        ("Emerson clinches AspenTech deal after raising offer to $265 per share", "AspenTech agrees to $265-a-share buyout by Emerson", 2, True),
        ("US judge blocks Tapestry's $8.5 billion Capri deal", "Court halts Tapestry's $8.5 billion Capri merger", 2, True),
        ("Cigna drops pursuit of Humana, announces $10 billion share buyback",
         "Cigna stock rallies after insurer walks away from Humana deal", 14, True),
        # Values: a deal's total rounded ("nearly $2 billion"), a price per share beside a deal value.
        ("Elliott builds nearly $2 billion stake in Southwest Airlines", "Elliott takes $1.9 billion Southwest Airlines stake", 2, True),
        ("Nordstrom to go private in $6.25 billion deal with founding family", "Nordstrom agrees to go private at $24.25 a share", 2, True),
        # Names: "the Fed" regulates banks too; "AI" is no name; a hyphenated name's parts.
        ("Fed lifts Wells Fargo's $1.95 trillion asset cap", "Federal Reserve lifts limits on Wells Fargo's growth", 1, True),
        ("Super Micro Computer says auditor Ernst & Young has resigned",
         "AI server maker Super Micro's auditor quits, sending the stock into freefall", 16, True),
        ("Bristol Myers to buy Karuna Therapeutics for $14 billion", "Bristol-Myers to Buy Karuna for $14 Billion", 1, True),
        # A move that worries "overshadow" is not the news's reaction.
        ("Palantir raises annual revenue forecast again on AI demand",
         "Palantir shares slide 8% as AI valuation worries overshadow raised revenue forecast", 16, False),
        # A settlement reported as near and the settlement are two events; two reports of it, one.
        ("3M stock rises on report it is close to settling earplug lawsuits",
         "3M Agrees to Pay $6 Billion to Settle Military Earplug Claims", 20, False),
        ("3M reaches $6 billion settlement over military earplug claims",
         "3M Agrees to Pay $6 Billion to Settle Military Earplug Claims", 1, True),
    ],
)
def test_rules_from_the_blind_sets(first: str, second: str, hours: float, same: bool) -> None:
    assert same_event(_story(first), _story(second, hours=hours)) is same


def test_a_headline_actor_is_known_under_its_other_names() -> None:
    """The actor veto splits different deciders, not one decider written two ways."""
    assert not same_event(
        _story("Alaska Airlines grounds Boeing 737 MAX 9 jets after cabin panel blows out"),
        _story("FAA orders grounding of some Boeing 737 MAX 9 planes", hours=20),
    )
    assert same_event(_story("Brussels fines Apple €500mn over App Store rules"), _story("EU fines Apple €500M over App Store rules", hours=1))
    assert same_event(
        _story("Fed cuts interest rates by half a point, its first cut since 2020"),
        _story("Federal Reserve cuts interest rates by half a point", hours=1),
    )
    assert same_event(
        _story("HPE to buy Juniper Networks for $14 billion"),
        _story("Hewlett Packard Enterprise to buy Juniper Networks for $14 billion", hours=1),
    )


def test_the_stand_ins_feed_groups_copies_and_never_mixes_companies() -> None:
    """Five days of deallens/sim/newsapi.py's articles (with its planted syndicated copies)."""
    from deallens.sim.newsapi import articles_for_day
    from deallens.sim.newsapi import short_name
    from deallens.domain.universe import DEMO_COMPANIES

    articles = sorted(
        (a for day in range(5) for a in articles_for_day(1, datetime(2026, 11, 20, tzinfo=UTC).date() + timedelta(days=day))),
        key=lambda a: a.published_at,
    )
    index, stories, next_story = StoryIndex(), {}, 0
    for article in articles:
        text = StoryText(article.as_json(headline=True)["title"], article.description, article.published_at)
        story = index.match(text)
        if story is None:
            next_story += 1
            story = next_story
        index.add(story, text)
        stories.setdefault(story, []).append(article)
    copies = [a for a in articles if not a.original]
    assert copies, "the stand-in plants copies"
    names = {short_name(c) for c in DEMO_COMPANIES}
    for members in stories.values():
        lead = {n for n in names if n in members[0].title}
        # Every article of a story names the companies its first article names.
        assert all(lead <= {n for n in names if n in m.title} for m in members), [m.title for m in members]
    # A planted copy with its original's title lands in the same story (the stand-in also
    # plants rewritten headlines, which this count leaves out).
    story_of = {id(a): s for s, members in stories.items() for a in members}
    by_title: dict[str, int] = {}
    grouped = same_title = 0
    for article in articles:
        if article.original:
            by_title.setdefault(article.title, story_of[id(article)])
        elif article.title in by_title:
            same_title += 1
            grouped += story_of[id(article)] == by_title[article.title]
    assert same_title and grouped >= 0.9 * same_title
