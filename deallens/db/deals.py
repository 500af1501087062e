"""Deals from articles: match to the open deal of the same parties or create it, move its
status by the rules of deallens/domain/deals/status.py, record every change in deal_events.

Exactly once per article: the articles of a batch are claimed in deal_article_checks (the
marker) in the same transaction that applies them, so a re-run, an overlapping run or a
retried activity finds them claimed and changes nothing; a concurrent run that claims the
same article waits for the first transaction and then skips it. Deals of the same parties
are serialised by a transaction-level advisory lock on their party key (taken in key order,
so two batches cannot deadlock), and the partial unique index on open deals' party_key
makes a second open deal for one pair impossible even without the lock.

Within a batch the articles are applied oldest first, one deal at a time: a status machine
over a few dozen deal articles per ingestion, not a set operation (the selects and the
claim are set-based). Nothing is written for a repeat of a known fact.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from deallens.db import stranded
from deallens.domain.deals import patterns, status as deal_status
from deallens.domain.deals.extractor import ArticleText, DealExtractor, Extraction
from deallens.domain.deals.facts import DealFacts
from deallens.domain.deals.parties import Company, Party, PartyResolver

log = logging.getLogger(__name__)

# An article that reports an open status for a pair whose deal closed less than this long
# before it was published is read as commentary on that deal, not as a new deal.
REOPEN_AFTER = dt.timedelta(days=30)
# A value differing by less than this (rounding: "$43 billion" vs "$43.1 billion") is the same.
VALUE_TOLERANCE = Decimal("0.01")
DESCRIPTION_MAX = 2_000
TITLE_MAX = 300


@dataclass(frozen=True, slots=True)
class DealArticle:
    article: ArticleText
    source: str  # news_articles.source: deals from simulated news say so


@dataclass(slots=True)
class ApplyCounts:
    checked: int = 0
    created: int = 0
    status_changes: int = 0
    value_changes: int = 0
    unchanged: int = 0
    stale: int = 0
    no_deal: int = 0
    already_checked: int = 0


_UNCHECKED_DEAL_ARTICLE = (
    "NOT EXISTS (SELECT 1 FROM deal_article_checks c WHERE c.news_id = a.id) "
    "AND (a.category = 'deal' OR a.title ~* :relevant OR a.description ~* :relevant)"
)
# The range's unchecked deal articles, and those a stopped run left unread (deallens/db/stranded.py).
_UNCHECKED = text(
    f"""
    SELECT a.id, left(a.title, :description_max) AS title, left(a.description, :description_max) AS description,
           a.published_at, a.source
    FROM news_articles a
    WHERE {stranded.in_range_or_stranded("a")} AND a.id > :after_id
      AND {_UNCHECKED_DEAL_ARTICLE}
    ORDER BY a.id
    LIMIT :limit
    """
)
_OLDEST_STRANDED = text(stranded.oldest_candidate("a", _UNCHECKED_DEAL_ARTICLE))


async def oldest_stranded(engine: AsyncEngine, first_id: int) -> int | None:
    """The first deal-relevant article below the range that a stopped run left unread, if any."""
    async with engine.connect() as conn:
        params = {**stranded.params(first_id), "relevant": patterns.RELEVANT_SQL}
        return (await conn.execute(_OLDEST_STRANDED, params)).scalar_one_or_none()


async def unchecked_articles(
    engine: AsyncEngine, first_id: int, last_id: int, *, after_id: int = 0, limit: int = 100,
    stranded_from: int | None = None,
) -> list[DealArticle]:
    """The range's deal-relevant articles not examined yet (and stranded ones from
    `stranded_from`), in id order, after `after_id`."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                _UNCHECKED,
                {
                    **stranded.params(first_id), "last_id": last_id, "after_id": after_id, "limit": limit,
                    "stranded_from": first_id if stranded_from is None else stranded_from,
                    "relevant": patterns.RELEVANT_SQL, "description_max": DESCRIPTION_MAX,
                },
            )
        ).all()
    return [
        DealArticle(ArticleText(r.id, r.title, r.description, r.published_at), r.source)
        for r in rows
    ]


# companies.aliases (per-company extra names) comes with the news schema (migration 0007);
# until that is in, the resolver works from names, symbols and its well-known aliases.
_HAS_ALIASES = text(
    """
    SELECT EXISTS (SELECT 1 FROM information_schema.columns
                   WHERE table_schema = current_schema() AND table_name = 'companies' AND column_name = 'aliases')
    """
)


async def load_companies(engine: AsyncEngine) -> list[Company]:
    async with engine.connect() as conn:
        aliases = "aliases" if (await conn.execute(_HAS_ALIASES)).scalar_one() else "CAST('{}' AS text[])"
        rows = (await conn.execute(text(f"SELECT id, symbol, name, {aliases} AS aliases FROM companies"))).all()
    return [Company(company_id=r.id, symbol=r.symbol, name=r.name, aliases=tuple(r.aliases or ())) for r in rows]


_CLAIM = text(
    """
    INSERT INTO deal_article_checks (news_id, outcome, extractor, checked_by)
    SELECT id, 'no_deal', extractor, :checked_by
    FROM unnest(CAST(:ids AS bigint[]), CAST(:extractors AS text[])) AS x(id, extractor)
    ORDER BY id
    ON CONFLICT (news_id) DO NOTHING
    RETURNING news_id
    """
)
_SETTLE = text(
    """
    UPDATE deal_article_checks c SET outcome = x.outcome, deal_id = x.deal_id
    FROM unnest(CAST(:ids AS bigint[]), CAST(:outcomes AS text[]), CAST(:deal_ids AS bigint[])) AS x(id, outcome, deal_id)
    WHERE c.news_id = x.id
    """
)
_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest(CAST(:keys AS text[])) AS k ORDER BY k")
_OPEN_DEAL = text(
    """
    SELECT id, status, acquirer_company_id, target_company_id, acquirer_name, target_name, value, currency,
           price_per_share, consideration, expected_close_on, announced_on, status_changed_at
    FROM deals
    WHERE party_key = :key AND status NOT IN ('completed', 'terminated')
    FOR UPDATE
    """
)
_OPEN_SHARING_A_SIDE = text(
    """
    SELECT party_key FROM deals
    WHERE party_key IS NOT NULL AND status NOT IN ('completed', 'terminated')
      AND (split_part(party_key, '|', 1) LIKE ANY(CAST(:patterns AS text[]))
           OR split_part(party_key, '|', 2) LIKE ANY(CAST(:patterns AS text[])))
    ORDER BY id
    LIMIT 50
    """
)
_LOCK_ONE = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")
_LAST_CLOSED = text(
    """
    SELECT id, status, status_changed_at FROM deals
    WHERE party_key = :key AND status IN ('completed', 'terminated')
    ORDER BY status_changed_at DESC NULLS LAST, id DESC
    LIMIT 1
    """
)
_CREATE = text(
    """
    INSERT INTO deals (title, acquirer_company_id, target_company_id, acquirer_name, target_name, status, value_usd,
                       value, currency, price_per_share, consideration, announced_on, expected_close_on, closed_on,
                       status_changed_at, party_key, source)
    VALUES (:title, :acquirer_company_id, :target_company_id, :acquirer_name, :target_name, :status, :value_usd,
            :value, :currency, :price_per_share, :consideration, :announced_on, :expected_close_on, :closed_on,
            :status_changed_at, :party_key, :source)
    ON CONFLICT (party_key) WHERE party_key IS NOT NULL AND status NOT IN ('completed', 'terminated') DO NOTHING
    RETURNING id
    """
)
_EVENT = text(
    """
    INSERT INTO deal_events (deal_id, event_type, old_status, new_status, news_id, details, occurred_at)
    VALUES (:deal_id, :event_type, :old_status, :new_status, :news_id, CAST(:details AS jsonb), :occurred_at)
    """
)


def party_key(acquirer: Party, target: Party) -> str:
    """The unordered pair: "X and Y in merger talks" and "Y to buy X" are one deal."""
    return "|".join(sorted((acquirer.key, target.key)))


def _side_compatible(ours: str, theirs: str) -> bool:
    """One party, named more or less fully: "n:pioneer" and "n:pioneer natural resources"."""
    if ours == theirs:
        return True
    if not (ours.startswith("n:") and theirs.startswith("n:")):
        return False
    a, b = ours[2:].split(), theirs[2:].split()
    shorter, longer = (a, b) if len(a) <= len(b) else (b, a)
    return len(" ".join(shorter)) >= 4 and longer[: len(shorter)] == shorter


def compatible_keys(ours: str, theirs: str) -> bool:
    """Are two party keys the same pair, allowing a fuller or shorter name of an untracked party?"""
    a1, _, a2 = ours.partition("|")
    b1, _, b2 = theirs.partition("|")
    return (_side_compatible(a1, b1) and _side_compatible(a2, b2)) or (
        _side_compatible(a1, b2) and _side_compatible(a2, b1)
    )


def _side_patterns(key: str) -> list[str]:
    """LIKE patterns for the open deals that may share a side with `key`."""
    found = []
    for side in key.split("|"):
        escaped = side.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        found.append(escaped)
        if side.startswith("n:"):
            found.append(f"n:{escaped[2:].split()[0]}%" if escaped[2:] else escaped)
    return found


def _title(acquirer: Party, target: Party) -> str:
    return f"{acquirer.name} / {target.name}"[:TITLE_MAX]


def _usd(value: Decimal | None, currency: str | None) -> Decimal | None:
    return value if value is not None and currency == "USD" else None


def _same_value(a: Decimal | None, b: Decimal | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= VALUE_TOLERANCE * max(a, b)


@dataclass(frozen=True, slots=True)
class _Outcome:
    outcome: str
    deal_id: int | None = None
    created: bool = False
    status_changed: bool = False
    value_changed: bool = False


class _Applier:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def apply(self, item: DealArticle, facts: DealFacts, acquirer: Party, target: Party) -> _Outcome:
        key = party_key(acquirer, target)
        article = item.article
        published = article.published_at
        row = (await self._conn.execute(_OPEN_DEAL, {"key": key})).first()
        if row is None:
            # The same pair under a fuller or shorter name of an untracked party.
            candidates = (await self._conn.execute(_OPEN_SHARING_A_SIDE, {"patterns": _side_patterns(key)})).scalars()
            similar = [k for k in candidates if compatible_keys(key, k)]
            if len(similar) == 1:
                await self._conn.execute(_LOCK_ONE, {"key": similar[0]})
                row = (await self._conn.execute(_OPEN_DEAL, {"key": similar[0]})).first()
        if row is None:
            closed = (await self._conn.execute(_LAST_CLOSED, {"key": key})).first()
            if closed is not None and (
                closed.status_changed_at is None
                or published < closed.status_changed_at + REOPEN_AFTER
                or facts.status == closed.status
            ):
                return _Outcome("closed", closed.id)
            return await self._create(item, facts, acquirer, target, key)
        return await self._update(row, item, facts, acquirer, target)

    async def _create(self, item: DealArticle, facts: DealFacts, acquirer: Party, target: Party, key: str) -> _Outcome:
        article = item.article
        day = article.published_at.astimezone(dt.UTC).date()
        values = {
            "title": _title(acquirer, target),
            "acquirer_company_id": acquirer.company_id, "target_company_id": target.company_id,
            "acquirer_name": acquirer.name, "target_name": target.name,
            "status": facts.status, "value_usd": _usd(facts.value, facts.currency), "value": facts.value,
            "currency": facts.currency, "price_per_share": facts.price_per_share,
            "consideration": facts.consideration,
            "announced_on": day if facts.status != "rumored" else None,
            "expected_close_on": facts.expected_close_on,
            "closed_on": day if not deal_status.is_open(facts.status) else None,
            "status_changed_at": article.published_at, "party_key": key, "source": item.source[:32],
        }
        deal_id = (await self._conn.execute(_CREATE, values)).scalar()
        if deal_id is None:  # another writer without the lock: never a second open deal
            return _Outcome("unchanged")
        await self._event(deal_id, "created", None, facts.status, article, facts, {})
        return _Outcome("created", deal_id, created=True)

    async def _update(self, row: Any, item: DealArticle, facts: DealFacts, acquirer: Party, target: Party) -> _Outcome:
        article = item.article
        published = article.published_at
        since = row.status_changed_at or published
        # Only news at least as recent as the deal's status, and not reporting an earlier stage
        # (old news retold), may replace a known value; any article may fill in a missing one.
        newer = published >= since and (facts.status == row.status or deal_status.allowed(row.status, facts.status))
        changes: dict[str, Any] = {}
        status_changed = deal_status.may_change(row.status, facts.status, article_at=published, status_since=since)
        day = published.astimezone(dt.UTC).date()
        if status_changed:
            changes.update(status=facts.status, status_changed_at=published)
            if not deal_status.is_open(facts.status):
                changes["closed_on"] = day
            if facts.status != "rumored" and row.announced_on is None:
                changes["announced_on"] = day
            # A definitive article says who buys whom better than the rumour that created it.
            old_acquirer = Party(row.acquirer_company_id, None, row.acquirer_name or "").key
            old_target = Party(row.target_company_id, None, row.target_name or "").key
            if _side_compatible(acquirer.key, old_target) and not _side_compatible(acquirer.key, old_acquirer):
                changes.update(
                    acquirer_company_id=acquirer.company_id, acquirer_name=acquirer.name,
                    target_company_id=target.company_id, target_name=target.name, title=_title(acquirer, target),
                )
        value_changed = False
        if facts.value is not None and facts.currency is not None:
            # The same value quoted in another currency ("£30 billion ($38 billion)") is no change.
            if row.value is None or (
                newer and row.currency == facts.currency and not _same_value(row.value, facts.value)
            ):
                value_changed = row.value is not None
                changes.update(value=facts.value, currency=facts.currency, value_usd=_usd(facts.value, facts.currency))
        for name in ("price_per_share", "consideration", "expected_close_on"):
            new = getattr(facts, name)
            old = getattr(row, name)
            if new is not None and (old is None or (newer and new != old)):
                changes[name] = new
        if facts.currency is not None and row.currency is None and "currency" not in changes:
            changes["currency"] = facts.currency
        if not changes:
            stale = facts.status != row.status
            return _Outcome("stale" if stale else "unchanged", row.id)
        assignments = ", ".join(f"{name} = :{name}" for name in changes)
        await self._conn.execute(
            text(f"UPDATE deals SET {assignments}, updated_at = now() WHERE id = :id"), {**changes, "id": row.id}
        )
        if status_changed:
            await self._event(row.id, "status_change", row.status, facts.status, article, facts, {})
        if value_changed:
            await self._event(
                row.id, "value_change", None, None, article, facts,
                {"old_value": str(row.value), "old_currency": row.currency,
                 "new_value": str(facts.value), "new_currency": facts.currency},
            )
        return _Outcome("changed", row.id, status_changed=status_changed, value_changed=value_changed)

    async def _event(
        self, deal_id: int, event_type: str, old: str | None, new: str | None, article: ArticleText,
        facts: DealFacts, details: dict[str, Any],
    ) -> None:
        await self._conn.execute(
            _EVENT,
            {
                "deal_id": deal_id, "event_type": event_type, "old_status": old, "new_status": new,
                "news_id": article.id, "occurred_at": article.published_at,
                "details": json.dumps({"extractor": facts.source, **details}),
            },
        )


async def apply_batch(
    engine: AsyncEngine,
    items: Sequence[DealArticle],
    extractions: Sequence[Extraction],
    resolver: PartyResolver,
    *,
    checked_by: str,
) -> ApplyCounts:
    """Claim the articles and apply what they say, in one transaction."""
    if len(items) != len(extractions):
        raise ValueError("one extraction result per article")
    counts = ApplyCounts()
    if not items:
        return counts
    async with engine.begin() as conn:
        ids = [i.article.id for i in items]
        extractors = [e.source[:64] for e in extractions]
        claimed = set(
            (await conn.execute(_CLAIM, {"ids": ids, "extractors": extractors, "checked_by": checked_by})).scalars()
        )
        counts.already_checked = len(items) - len(claimed)
        work: list[tuple[DealArticle, DealFacts, Party, Party]] = []
        outcomes: dict[int, _Outcome] = {}
        for item, extraction in zip(items, extractions, strict=True):
            found = extraction.facts
            if item.article.id not in claimed:
                continue
            counts.checked += 1
            parties = None
            if found is not None:
                acquirer, target = resolver.resolve(found.acquirer), resolver.resolve(found.target)
                if acquirer.key != target.key:
                    parties = (acquirer, target)
            if parties is None:
                outcomes[item.article.id] = _Outcome("no_deal")
                continue
            assert found is not None
            work.append((item, found, *parties))
        keys = sorted({party_key(a, t) for _, _, a, t in work})
        if keys:
            await conn.execute(_LOCK, {"keys": keys})
        applier = _Applier(conn)
        for item, found, acquirer, target in sorted(work, key=lambda w: (w[0].article.published_at, w[0].article.id)):
            outcome = await applier.apply(item, found, acquirer, target)
            outcomes[item.article.id] = outcome
        if outcomes:
            order = sorted(outcomes)
            await conn.execute(
                _SETTLE,
                {
                    "ids": order,
                    "outcomes": [outcomes[i].outcome for i in order],
                    "deal_ids": [outcomes[i].deal_id for i in order],
                },
            )
        for outcome in outcomes.values():
            counts.created += outcome.created
            counts.status_changes += outcome.status_changed
            counts.value_changes += outcome.value_changed
            counts.no_deal += outcome.outcome == "no_deal"
            counts.unchanged += outcome.outcome in ("unchanged", "closed")
            counts.stale += outcome.outcome == "stale"
    return counts


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What one run (all its attempts) did, read back from the markers it wrote."""

    checked: int
    created: int
    status_changes: int
    symbols: list[str]


_SUMMARY = text(
    """
    WITH mine AS (
        SELECT news_id, outcome, deal_id FROM deal_article_checks WHERE checked_by = :checked_by
    ),
    moved AS (
        SELECT e.deal_id FROM deal_events e
        WHERE e.news_id IN (SELECT news_id FROM mine) AND e.event_type = 'status_change'
    ),
    touched AS (
        SELECT deal_id FROM mine WHERE outcome = 'created' UNION SELECT deal_id FROM moved
    )
    SELECT (SELECT count(*) FROM mine) AS checked,
           (SELECT count(*) FROM mine WHERE outcome = 'created') AS created,
           (SELECT count(*) FROM moved) AS status_changes,
           ARRAY(
               SELECT DISTINCT c.symbol FROM deals d
               JOIN companies c ON c.id IN (d.acquirer_company_id, d.target_company_id)
               WHERE d.id IN (SELECT deal_id FROM touched)
               ORDER BY c.symbol
           ) AS symbols
    """
)


async def run_summary(engine: AsyncEngine, checked_by: str) -> RunSummary:
    async with engine.connect() as conn:
        row = (await conn.execute(_SUMMARY, {"checked_by": checked_by})).one()
    return RunSummary(row.checked, row.created, row.status_changes, list(row.symbols))


async def track(
    engine: AsyncEngine,
    first_id: int,
    last_id: int,
    extractor: DealExtractor,
    *,
    checked_by: str,
    batch_size: int = 50,
    progress: Callable[[int], None] = lambda after_id: None,
) -> RunSummary:
    """Examine the range's unchecked deal articles batch by batch; what this run did."""
    resolver = PartyResolver(await load_companies(engine))
    stranded_from = await oldest_stranded(engine, first_id)
    after_id = 0
    while True:
        batch = await unchecked_articles(
            engine, first_id, last_id, after_id=after_id, limit=batch_size, stranded_from=stranded_from
        )
        if not batch:
            break
        found = await extractor.extract([item.article for item in batch])
        counts = await apply_batch(engine, batch, found, resolver, checked_by=checked_by)
        log.info(
            "deals: %d articles checked (%d already were): %d created, %d status and %d value changes, "
            "%d repeats, %d stale, %d no deal",
            counts.checked, counts.already_checked, counts.created, counts.status_changes, counts.value_changes,
            counts.unchanged, counts.stale, counts.no_deal,
        )
        after_id = batch[-1].article.id
        progress(after_id)
    return await run_summary(engine, checked_by)
