"""The queries behind insight contexts: one statement per batch of companies, never one per company.

`bar_aggregates` computes every company's indicator inputs in one pass of window functions
over ohlc_data (row_number and lead over the company's bars, latest first, then aggregates
filtered by row number); `company_contexts` adds fundamentals, recent stories with sentiment
and open deals with their terms in three more set-based statements. The pure side is
deallens/domain/insights (indicators.figures turns aggregates into the rounded figures).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from deallens.domain.insights import indicators
from deallens.domain.insights.context import (
    DealItem,
    InsightContext,
    StoryItem,
    clean_title,
    fundamental_figures,
)
from deallens.domain.insights.indicators import Bar, BarAggregates

OPEN_DEAL = "d.status NOT IN ('completed', 'terminated')"
STORIES_PER_COMPANY = 5
STORY_DAYS = 14
DEALS_PER_COMPANY = 3

# Per company, three index scans on ohlc_data's (company_id, date) key instead of a sort of
# every bar: the latest RECENT_BARS bars (returns, averages, volatility, RSI, volume), the
# 52-week range, and the last close of the previous year.
RECENT_BARS = 52
_AGGREGATES = text(
    f"""
    SELECT c.id AS company_id, r.as_of, w.bars, r.close, r.close_1d, r.close_5d, r.close_1m,
           y.close AS close_prev_year, r.sma_20, r.sma_50, r.log_return_stddev_20, r.avg_gain_14, r.avg_loss_14,
           r.volume, r.avg_volume_20, w.high_52w, w.low_52w
      FROM unnest(CAST(:ids AS bigint[])) AS c(id)
     CROSS JOIN LATERAL (
           SELECT max(date) FILTER (WHERE rn = 1) AS as_of,
                  count(*) AS recent,
                  max(c) FILTER (WHERE rn = 1) AS close,
                  max(c) FILTER (WHERE rn = 2) AS close_1d,
                  max(c) FILTER (WHERE rn = 6) AS close_5d,
                  max(c) FILTER (WHERE rn = {indicators.MONTH_BARS + 1}) AS close_1m,
                  CASE WHEN count(*) >= 20 THEN avg(c) FILTER (WHERE rn <= 20) END AS sma_20,
                  CASE WHEN count(*) >= 50 THEN avg(c) FILTER (WHERE rn <= 50) END AS sma_50,
                  CASE WHEN count(prev_c) FILTER (WHERE rn <= {indicators.VOLATILITY_BARS}) >= {indicators.VOLATILITY_BARS}
                       THEN stddev_samp(ln(c / prev_c)) FILTER (WHERE rn <= {indicators.VOLATILITY_BARS}) END
                      AS log_return_stddev_20,
                  CASE WHEN count(prev_c) FILTER (WHERE rn <= {indicators.RSI_PERIOD}) >= {indicators.RSI_PERIOD}
                       THEN avg(greatest(c - prev_c, 0)) FILTER (WHERE rn <= {indicators.RSI_PERIOD}) END AS avg_gain_14,
                  CASE WHEN count(prev_c) FILTER (WHERE rn <= {indicators.RSI_PERIOD}) >= {indicators.RSI_PERIOD}
                       THEN avg(greatest(prev_c - c, 0)) FILTER (WHERE rn <= {indicators.RSI_PERIOD}) END AS avg_loss_14,
                  max(v) FILTER (WHERE rn = 1) AS volume,
                  CASE WHEN count(*) > {indicators.VOLUME_AVERAGE_BARS}
                       THEN avg(v) FILTER (WHERE rn BETWEEN 2 AND {indicators.VOLUME_AVERAGE_BARS + 1}) END AS avg_volume_20
             FROM (
                  SELECT date, close::float8 AS c, volume::float8 AS v,
                         row_number() OVER w AS rn, lead(close::float8) OVER w AS prev_c
                    FROM (SELECT date, close, volume FROM ohlc_data
                           WHERE company_id = c.id AND date <= :as_of
                             AND date > CAST(:as_of AS date) - {indicators.LOOKBACK_DAYS}
                           ORDER BY date DESC LIMIT {RECENT_BARS + 1}) last_bars
                  WINDOW w AS (ORDER BY date DESC)
             ) b
     ) r
     CROSS JOIN LATERAL (
           SELECT (max(high) FILTER (WHERE date > r.as_of - 365))::float8 AS high_52w,
                  (min(low) FILTER (WHERE date > r.as_of - 365))::float8 AS low_52w, count(*) AS bars
             FROM ohlc_data WHERE company_id = c.id AND date <= r.as_of
              AND date > CAST(:as_of AS date) - {indicators.LOOKBACK_DAYS}
     ) w
     LEFT JOIN LATERAL (
           SELECT close::float8 AS close FROM ohlc_data
            WHERE company_id = c.id AND date < date_trunc('year', r.as_of)
              AND date > CAST(:as_of AS date) - {indicators.LOOKBACK_DAYS}
            ORDER BY date DESC LIMIT 1
     ) y ON true
     WHERE r.as_of IS NOT NULL
    """
)

_COMPANIES = text(
    "SELECT id, symbol, name, sector, fundamentals FROM companies WHERE id = ANY(CAST(:ids AS bigint[]))"
)

_STORIES = text(
    f"""
    SELECT company_id, id, published, title, sentiment, score FROM (
        SELECT nc.company_id, a.id, a.published_at::date AS published, a.title, a.sentiment_label AS sentiment,
               a.sentiment_score::float8 AS score,
               row_number() OVER (PARTITION BY nc.company_id ORDER BY a.published_at DESC, a.id DESC) AS rn
          FROM news_company nc
          JOIN news_articles a ON a.id = nc.news_id
         WHERE nc.company_id = ANY(CAST(:ids AS bigint[]))
           AND a.published_at > CAST(:as_of AS date) - {STORY_DAYS}
           AND a.published_at < CAST(:as_of AS date) + 1
           -- one article per story: its lead (or every article of a story without one)
           AND (a.story_id IS NULL OR EXISTS (
                SELECT 1 FROM news_stories s
                 WHERE s.id = a.story_id AND (s.lead_article_id = a.id OR s.lead_article_id IS NULL)))
    ) ranked
     WHERE rn <= {STORIES_PER_COMPANY}
     ORDER BY company_id, published DESC, id DESC
    """
)

_DEALS = text(
    f"""
    SELECT side.company_id, d.id, side.role, d.status, d.price_per_share::float8 AS price_per_share,
           d.value_usd::float8 AS value_usd, d.expected_close_on,
           CASE WHEN side.role = 'acquirer' THEN coalesce(t.name, d.target_name)
                ELSE coalesce(a.name, d.acquirer_name) END AS counterparty
      FROM deals d
      CROSS JOIN LATERAL (VALUES (d.acquirer_company_id, 'acquirer'), (d.target_company_id, 'target'))
           AS side(company_id, role)
      LEFT JOIN companies a ON a.id = d.acquirer_company_id
      LEFT JOIN companies t ON t.id = d.target_company_id
     WHERE side.company_id = ANY(CAST(:ids AS bigint[])) AND {OPEN_DEAL}
     ORDER BY side.company_id, d.updated_at DESC, d.id DESC
    """
)

_COMPANY_BARS = text(
    f"""
    SELECT date, high::float8 AS high, low::float8 AS low, close::float8 AS close, volume::float8 AS volume
      FROM ohlc_data
     WHERE company_id = :id AND date <= :as_of AND date > CAST(:as_of AS date) - {indicators.LOOKBACK_DAYS}
     ORDER BY date DESC
    """
)


def _aggregates(row: Any) -> BarAggregates:
    return BarAggregates(**{name: getattr(row, name) for name in BarAggregates.__dataclass_fields__})


async def bar_aggregates(conn: AsyncConnection, company_ids: Sequence[int], as_of: dt.date) -> dict[int, BarAggregates]:
    """Indicator inputs of every company with bars up to `as_of`, in one statement."""
    rows = await conn.execute(_AGGREGATES, {"ids": list(company_ids), "as_of": as_of})
    return {row.company_id: _aggregates(row) for row in rows}


async def company_bars(conn: AsyncConnection, company_id: int, as_of: dt.date) -> list[Bar]:
    """One company's bars in the indicators' look-back: the per-company path (tests, bench baseline)."""
    rows = await conn.execute(_COMPANY_BARS, {"id": company_id, "as_of": as_of})
    return [Bar(date=r.date, high=r.high, low=r.low, close=r.close, volume=r.volume) for r in rows]


def _value_millions(value: float | None) -> float | None:
    return None if value is None else round(value / 1e6, 1)


async def company_contexts(
    conn: AsyncConnection, company_ids: Sequence[int], as_of: dt.date
) -> dict[int, InsightContext]:
    """The context of each company that exists and has bars (four statements for the batch)."""
    ids = sorted(set(company_ids))
    aggregates = await bar_aggregates(conn, ids, as_of)
    companies = {r.id: r for r in await conn.execute(_COMPANIES, {"ids": ids})}
    stories: dict[int, list[StoryItem]] = defaultdict(list)
    for r in await conn.execute(_STORIES, {"ids": ids, "as_of": as_of}):
        score = None if r.score is None else round(r.score, 2)
        stories[r.company_id].append(StoryItem(id=r.id, published=r.published, title=clean_title(r.title),
                                               sentiment=r.sentiment, score=score))
    deals: dict[int, list[DealItem]] = defaultdict(list)
    for r in await conn.execute(_DEALS, {"ids": ids}):
        if len(deals[r.company_id]) < DEALS_PER_COMPANY:
            deals[r.company_id].append(DealItem(
                id=r.id, role=r.role, counterparty=r.counterparty, status=r.status,
                price_per_share=None if r.price_per_share is None else round(r.price_per_share, 2),
                value_usd_millions=_value_millions(r.value_usd), expected_close_on=r.expected_close_on,
            ))
    contexts: dict[int, InsightContext] = {}
    for company_id in ids:
        company, agg = companies.get(company_id), aggregates.get(company_id)
        if company is None or agg is None:
            continue
        figures = {**indicators.figures(agg), **fundamental_figures(company.fundamentals)}
        scores = [s.score for s in stories[company_id] if s.score is not None]
        figures["news_sentiment_avg"] = round(sum(scores) / len(scores), 2) if scores else None
        contexts[company_id] = InsightContext(
            kind="company",
            subject_id=company_id,
            subject={"symbol": company.symbol, "name": company.name, "sector": company.sector,
                     "data_as_of": agg.as_of.isoformat()},
            figures=figures,
            stories=tuple(stories[company_id]),
            deals=tuple(deals[company_id]),
        )
    return contexts


# ------------------------------------------------------------------------------ deals

_OPEN_DEALS = text(
    f"""
    SELECT d.id, d.title, d.status, d.acquirer_company_id, d.target_company_id,
           coalesce(a.name, d.acquirer_name) AS acquirer, coalesce(t.name, d.target_name) AS target,
           t.symbol AS target_symbol, d.price_per_share::float8 AS price_per_share, d.value_usd::float8 AS value_usd,
           d.consideration, d.announced_on, d.expected_close_on
      FROM deals d
      LEFT JOIN companies a ON a.id = d.acquirer_company_id
      LEFT JOIN companies t ON t.id = d.target_company_id
     WHERE {OPEN_DEAL} AND (CAST(:ids AS bigint[]) IS NULL OR d.id = ANY(CAST(:ids AS bigint[])))
     ORDER BY d.id
    """
)
_DEAL_STORIES = text(
    """
    SELECT e.deal_id, a.id, a.published_at::date AS published, a.title, a.sentiment_label AS sentiment,
           a.sentiment_score::float8 AS score
      FROM deal_events e JOIN news_articles a ON a.id = e.news_id
     WHERE e.deal_id = ANY(CAST(:ids AS bigint[]))
     ORDER BY e.deal_id, a.published_at DESC, a.id DESC
    """
)


def merger_arbitrage(
    offer: float | None, price: float | None, as_of: dt.date, expected_close: dt.date | None
) -> tuple[float | None, float | None]:
    """(spread %, annualised %) of a cash offer per share against the target's price."""
    if offer is None or price is None or price <= 0:
        return None, None
    spread = offer / price - 1
    annualised = None
    if expected_close is not None and expected_close > as_of:
        years = (expected_close - as_of).days / 365
        annualised = ((1 + spread) ** (1 / years) - 1) * 100 if spread > -1 else None
    return round(spread * 100, 2), (None if annualised is None else round(annualised, 2))


async def deal_contexts(
    conn: AsyncConnection, deal_ids: Sequence[int] | None, as_of: dt.date
) -> dict[int, InsightContext]:
    """The context of each open deal (all open deals when `deal_ids` is None)."""
    deals = list(await conn.execute(_OPEN_DEALS, {"ids": None if deal_ids is None else list(deal_ids)}))
    company_ids = sorted({r.target_company_id for r in deals if r.target_company_id} |
                         {r.acquirer_company_id for r in deals if r.acquirer_company_id})
    aggregates = await bar_aggregates(conn, company_ids, as_of) if company_ids else {}
    stories: dict[int, list[StoryItem]] = defaultdict(list)
    if deals:
        for r in await conn.execute(_DEAL_STORIES, {"ids": [d.id for d in deals]}):
            if len(stories[r.deal_id]) < STORIES_PER_COMPANY:
                score = None if r.score is None else round(r.score, 2)
                stories[r.deal_id].append(StoryItem(id=r.id, published=r.published, title=clean_title(r.title),
                                                    sentiment=r.sentiment, score=score))
    contexts: dict[int, InsightContext] = {}
    for d in deals:
        target = aggregates.get(d.target_company_id) if d.target_company_id else None
        acquirer = aggregates.get(d.acquirer_company_id) if d.acquirer_company_id else None
        target_price = round(target.close, 2) if target else None
        offer = None if d.price_per_share is None else round(d.price_per_share, 2)
        spread, annualised = merger_arbitrage(offer, target_price, as_of, d.expected_close_on)
        figures: dict[str, float | None] = {
            "offer_per_share": offer,
            "target_price": target_price,
            "spread_pct": spread,
            "annualised_spread_pct": annualised,
            "value_usd_millions": _value_millions(d.value_usd),
            "target_return_1m_pct": indicators.figures(target)["return_1m_pct"] if target else None,
            "acquirer_return_1m_pct": indicators.figures(acquirer)["return_1m_pct"] if acquirer else None,
            "days_to_expected_close": float((d.expected_close_on - as_of).days)
            if d.expected_close_on and d.expected_close_on > as_of else None,
        }
        contexts[d.id] = InsightContext(
            kind="deal",
            subject_id=d.id,
            subject={"title": clean_title(d.title), "acquirer": d.acquirer, "target": d.target,
                     "target_symbol": d.target_symbol, "status": d.status, "consideration": d.consideration,
                     "announced_on": d.announced_on.isoformat() if d.announced_on else None,
                     "expected_close_on": d.expected_close_on.isoformat() if d.expected_close_on else None},
            figures=figures,
            stories=tuple(stories[d.id]),
        )
    return contexts


# ------------------------------------------------------------------------------ market summary

_UNIVERSE = text(
    """
    SELECT c.id FROM companies c
     WHERE c.quarantined_at IS NULL AND EXISTS (SELECT 1 FROM ohlc_data o WHERE o.company_id = c.id AND o.date = :day)
    """
)
_SECTORS = text("SELECT id, symbol, sector FROM companies WHERE id = ANY(CAST(:ids AS bigint[]))")
_DAY_DEALS = text(
    """
    SELECT DISTINCT ON (d.id) d.id, d.title, e.new_status
      FROM deal_events e JOIN deals d ON d.id = e.deal_id
     WHERE e.occurred_at >= CAST(:day AS date) AND e.occurred_at < CAST(:day AS date) + 1
     ORDER BY d.id, e.occurred_at DESC
     LIMIT 10
    """
)
_DAY_STORIES = text(
    """
    SELECT a.id, a.published_at::date AS published, a.title, a.sentiment_label AS sentiment,
           a.sentiment_score::float8 AS score
      FROM news_stories s JOIN news_articles a ON a.id = s.lead_article_id
     WHERE s.first_published_at >= CAST(:day AS date) AND s.first_published_at < CAST(:day AS date) + 1
     ORDER BY s.articles DESC, s.id
     LIMIT 5
    """
)
TOP_MOVERS = 5


async def market_context(conn: AsyncConnection, day: dt.date) -> InsightContext | None:
    """The day's tracked universe: average move, breadth, sectors, top movers, deals and stories; None without bars."""
    ids = list((await conn.execute(_UNIVERSE, {"day": day})).scalars())
    if not ids:
        return None
    aggregates = await bar_aggregates(conn, ids, day)
    meta = {r.id: r for r in await conn.execute(_SECTORS, {"ids": ids})}
    moves = {cid: f["return_1d_pct"] for cid, agg in aggregates.items()
             if agg.as_of == day and (f := indicators.figures(agg))["return_1d_pct"] is not None}
    if not moves:
        return None
    values = list(moves.values())
    by_sector: dict[str, list[float]] = defaultdict(list)
    for cid, move in moves.items():
        by_sector[meta[cid].sector or "Unclassified"].append(move)
    sectors = [{"sector": s, "companies": len(v), "return_1d_pct": round(sum(v) / len(v), 2)}
               for s, v in sorted(by_sector.items())]
    ranked = sorted(moves.items(), key=lambda item: (-abs(item[1]), meta[item[0]].symbol))[:TOP_MOVERS]
    movers = [{"symbol": meta[cid].symbol, "return_1d_pct": move} for cid, move in ranked]
    deals = [{"id": r.id, "title": clean_title(r.title), "status": r.new_status}
             for r in await conn.execute(_DAY_DEALS, {"day": day})]
    stories = tuple(
        StoryItem(id=r.id, published=r.published, title=clean_title(r.title), sentiment=r.sentiment,
                  score=None if r.score is None else round(r.score, 2))
        for r in await conn.execute(_DAY_STORIES, {"day": day})
    )
    return InsightContext(
        kind="market_summary",
        subject_id=None,
        subject={"date": day.isoformat()},
        figures={
            "universe_return_1d_pct": round(sum(values) / len(values), 2),
            "advancers": float(sum(1 for v in values if v > 0)),
            "decliners": float(sum(1 for v in values if v < 0)),
            "companies": float(len(values)),
        },
        stories=stories,
        extra={"sectors": sectors, "top_movers": movers, "deals": deals},
    )
