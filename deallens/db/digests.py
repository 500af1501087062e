"""The daily digest and weekly summary: who gets one, what it says, and the ledger.

`digest_deliveries` holds one row per (user, kind, period). Planning inserts the pending rows
(ON CONFLICT DO NOTHING), each send is followed by its own committed update, and a retried or
resumed batch only reads rows still pending: a user never gets the same digest twice.

Content is loaded per batch of users in a handful of set-based statements (companies once
per batch, not once per user), so 10,000 digests are a few dozen queries.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import urlencode

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from deallens.db.claims import Ledger
from deallens.notify.content import DealMoveRow, DigestContent, FiredAlertRow, InsightRow, NewsRow, WatchlistRow

DigestKind = Literal["daily", "weekly"]

# The schedules send the daily digest at 12:00 UTC and the weekly summary on Sundays at
# 14:00 UTC; the windows end there, whatever time a manual run starts, so a re-run for the
# same date says the same thing.
_SEND_TIME = {"daily": dt.time(12, 0), "weekly": dt.time(14, 0)}
_WINDOW = {"daily": dt.timedelta(days=1), "weekly": dt.timedelta(days=7)}
SPARKLINE_SESSIONS = 30
MAX_ALERTS = 20
# Rows of the watchlist table: beyond this the digest says how many more there are.
MAX_WATCHLIST = 30
MAX_NEWS = 5
MAX_INSIGHTS = 5
MAX_DEALS = 10


def window(kind: DigestKind, period: dt.date) -> tuple[dt.datetime, dt.datetime]:
    end = dt.datetime.combine(period, _SEND_TIME[kind], tzinfo=dt.UTC)
    return end - _WINDOW[kind], end


def message_id(kind: DigestKind, period: dt.date, user_id: int, domain: str) -> str:
    """Stable per (kind, period, user): a re-send after a crash carries the same Message-ID."""
    return f"<digest-{kind}-{period.isoformat()}-{user_id}@{domain}>"


def unsubscribe_url(base_url: str, token: str, scope: str) -> str:
    return f"{base_url}/unsubscribe?{urlencode({'token': token, 'list': scope})}"


# Digests are their own lists: turning alert emails off (`email_enabled`) does not stop them;
# an unsubscribe from everything does.
_OPT_IN = {"daily": "u.digest_opt_in", "weekly": "u.weekly_opt_in"}


def _plan_sql(kind: DigestKind) -> Any:
    return text(
        f"""
        WITH wanted AS (
            SELECT u.id FROM users u
            WHERE {_OPT_IN[kind]} AND u.unsubscribed_at IS NULL
              AND (CAST(:user_ids AS bigint[]) IS NULL OR u.id = ANY(CAST(:user_ids AS bigint[])))
        ),
        inserted AS (
            INSERT INTO digest_deliveries (user_id, kind, period, status)
            SELECT id, :kind, :period, 'pending' FROM wanted
            ON CONFLICT (user_id, kind, period) DO NOTHING
            RETURNING user_id
        ),
        -- A row left pending (a re-queued failure) for a user who opted out since.
        dropped AS (
            UPDATE digest_deliveries d SET status = 'skipped', error = 'the user opted out', updated_at = now()
            WHERE d.kind = :kind AND d.period = :period AND d.status = 'pending'
              AND (CAST(:user_ids AS bigint[]) IS NULL OR d.user_id = ANY(CAST(:user_ids AS bigint[])))
              AND d.user_id NOT IN (SELECT id FROM wanted)
            RETURNING d.user_id
        )
        SELECT w.id AS user_id, COALESCE(d.status, 'pending') AS status, (SELECT count(*) FROM dropped) AS dropped
        FROM wanted w
        LEFT JOIN digest_deliveries d ON d.user_id = w.id AND d.kind = :kind AND d.period = :period
        ORDER BY w.id
        """
    )


async def plan(
    engine: AsyncEngine, kind: DigestKind, period: dt.date, user_ids: list[int] | None
) -> tuple[list[int], int, int]:
    """(user ids still to send, already sent, not eligible): pending ledger rows made in one statement.

    A user who opted out or unsubscribed gets no digest even when named in `user_ids`.
    """
    async with engine.begin() as conn:
        rows = list(
            await conn.execute(_plan_sql(kind), {"user_ids": user_ids, "kind": kind, "period": period})
        )
    # The CTE's INSERT is not visible to the outer SELECT: a new row shows as NULL -> pending.
    pending = [r.user_id for r in rows if r.status == "pending"]
    done = sum(1 for r in rows if r.status == "sent")
    not_eligible = len(set(user_ids) - {r.user_id for r in rows}) if user_ids is not None else 0
    return pending, done, not_eligible


_USERS = text(
    """
    SELECT d.user_id, u.email, u.name, u.timezone, u.unsubscribe_token, d.attempts,
           ({opt_in} AND u.unsubscribed_at IS NULL) AS wanted
    FROM digest_deliveries d JOIN users u ON u.id = d.user_id
    WHERE d.user_id = ANY(CAST(:user_ids AS bigint[])) AND d.kind = :kind AND d.period = :period
      AND d.status = 'pending'
    ORDER BY d.attempts, d.user_id
    """
)

_WATCHLIST = text(
    """
    SELECT w.user_id, w.company_id FROM watchlist w
    WHERE w.user_id = ANY(CAST(:user_ids AS bigint[]))
    ORDER BY w.user_id, w.added_at, w.company_id
    """
)

_CLOSES = text(
    f"""
    SELECT c.id AS company_id, c.symbol, c.name, o.date, o.close
    FROM companies c
    LEFT JOIN LATERAL (
        SELECT date, close FROM ohlc_data
        WHERE company_id = c.id AND date <= :period
        ORDER BY date DESC LIMIT {SPARKLINE_SESSIONS}
    ) o ON true
    WHERE c.id = ANY(CAST(:company_ids AS bigint[]))
    ORDER BY c.id, o.date
    """
)

_ALERTS = text(
    f"""
    SELECT * FROM (
        SELECT a.user_id, h.id, a.name, c.symbol, h.message, h.triggered_at,
               row_number() OVER (PARTITION BY a.user_id ORDER BY h.triggered_at DESC, h.id DESC) AS rank_
        FROM alerts a
        JOIN alert_history h ON h.alert_id = a.id
        LEFT JOIN companies c ON c.id = a.company_id
        WHERE a.user_id = ANY(CAST(:user_ids AS bigint[])) AND h.triggered_at >= :start AND h.triggered_at < :end
    ) ranked
    WHERE rank_ <= {MAX_ALERTS}
    ORDER BY user_id, rank_
    """
)

# Top news by story, not by article: each story linked to a company in the window once, shown
# by its lead article, with the number of outlets that carried it (articles without a story,
# stored before stories existed, are their own story).
_NEWS = text(
    f"""
    WITH linked AS (
        SELECT DISTINCT nc.company_id, coalesce(n.story_id, -n.id) AS story_key, n.story_id, n.id AS article_id
        FROM news_company nc
        JOIN news_articles n ON n.id = nc.news_id
        WHERE nc.company_id = ANY(CAST(:company_ids AS bigint[]))
          AND n.published_at >= :start AND n.published_at < :end
    ), stories AS (
        SELECT l.company_id, coalesce(min(s.lead_article_id), min(l.article_id)) AS lead_id
        FROM linked l LEFT JOIN news_stories s ON s.id = l.story_id
        GROUP BY l.company_id, l.story_key
    )
    SELECT * FROM (
        SELECT st.company_id, c.symbol, n.id, n.title, n.url, n.publisher, n.published_at, n.sentiment_score,
               CASE WHEN n.story_id IS NULL THEN 1 ELSE (
                   SELECT count(DISTINCT coalesce(x.publisher, x.canonical_url))
                   FROM news_articles x WHERE x.story_id = n.story_id) END AS outlets,
               row_number() OVER (
                   PARTITION BY st.company_id
                   ORDER BY abs(COALESCE(n.sentiment_score, 0)) DESC, n.published_at DESC, n.id
               ) AS rank_
        FROM stories st
        JOIN news_articles n ON n.id = st.lead_id
        JOIN companies c ON c.id = st.company_id
    ) ranked
    WHERE rank_ <= {MAX_NEWS}
    """
)

_INSIGHTS = text(
    """
    SELECT DISTINCT ON (i.subject_id) i.subject_id AS company_id, c.symbol, i.recommendation, i.content, i.created_at
    FROM ai_insights i JOIN companies c ON c.id = i.subject_id
    WHERE i.kind = 'company' AND i.subject_id = ANY(CAST(:company_ids AS bigint[]))
      AND i.created_at >= :start AND i.created_at < :end
    ORDER BY i.subject_id, i.created_at DESC
    """
)

_DEALS = text(
    """
    SELECT e.deal_id, d.title, e.event_type, e.old_status, e.new_status, e.occurred_at,
           d.acquirer_company_id, d.target_company_id
    FROM deal_events e JOIN deals d ON d.id = e.deal_id
    WHERE (d.acquirer_company_id = ANY(CAST(:company_ids AS bigint[]))
           OR d.target_company_id = ANY(CAST(:company_ids AS bigint[])))
      AND e.event_type IN ('created', 'status_change', 'value_change')
      AND e.occurred_at >= :start AND e.occurred_at < :end
    ORDER BY e.occurred_at DESC
    """
)


# The weekly summary's deal analyses (issue 11): the newest analysis of each deal that moved.
_DEAL_INSIGHTS = text(
    """
    SELECT DISTINCT ON (i.subject_id) i.subject_id AS deal_id, d.title, i.content, i.created_at
    FROM ai_insights i JOIN deals d ON d.id = i.subject_id
    WHERE i.kind = 'deal' AND i.subject_id = ANY(CAST(:deal_ids AS bigint[])) AND i.created_at < :end
    ORDER BY i.subject_id, i.created_at DESC
    """
)


def _change(closes: list[Decimal], back: int) -> float | None:
    if len(closes) <= back or closes[-1 - back] == 0:
        return None
    return float((closes[-1] / closes[-1 - back] - 1) * 100)


def _summary(content: Any) -> str:
    if isinstance(content, dict):
        # A simulated model's text is said to be one (rule-based texts say so themselves).
        label = "(simulated LLM) " if content.get("generated_by") == "llm-simulated" else ""
        for key in ("summary", "analysis", "text"):
            value = content.get(key)
            if isinstance(value, str) and value.strip():
                return (label + value.strip())[:400]
    return ""


async def load_batch(
    engine: AsyncEngine,
    kind: DigestKind,
    period: dt.date,
    user_ids: list[int],
    *,
    public_base_url: str,
) -> tuple[list[DigestContent], list[int], list[int]]:
    """(digests to send, users who opted out since planning, users with nothing to report:
    no watchlist and no alerts) among this batch's pending users."""
    start, end = window(kind, period)
    window_args = {"start": start, "end": end}
    async with engine.connect() as conn:
        users = list(
            await conn.execute(
                text(_USERS.text.format(opt_in=_OPT_IN[kind])),
                {"user_ids": user_ids, "kind": kind, "period": period},
            )
        )
        wanted = [u for u in users if u.wanted]
        ids = [u.user_id for u in wanted]
        if not ids:
            return [], [u.user_id for u in users if not u.wanted], []
        watch: dict[int, list[int]] = defaultdict(list)
        for row in await conn.execute(_WATCHLIST, {"user_ids": ids}):
            watch[row.user_id].append(row.company_id)
        company_ids = sorted({c for cs in watch.values() for c in cs})
        companies: dict[int, Any] = {}
        closes: dict[int, list[tuple[dt.date, Decimal]]] = defaultdict(list)
        news: dict[int, list[Any]] = defaultdict(list)
        insights: dict[int, Any] = {}
        deals: list[Any] = []
        deal_insights: dict[int, Any] = {}
        if company_ids:
            by_company = {"company_ids": company_ids}
            for row in await conn.execute(_CLOSES, {**by_company, "period": period}):
                companies[row.company_id] = row
                if row.date is not None:
                    closes[row.company_id].append((row.date, row.close))
            for row in await conn.execute(_NEWS, {**by_company, **window_args}):
                if len(news[row.company_id]) < MAX_NEWS:
                    news[row.company_id].append(row)
            for row in await conn.execute(_INSIGHTS, {**by_company, **window_args}):
                insights[row.company_id] = row
            if kind == "weekly":
                deals = list(await conn.execute(_DEALS, {**by_company, **window_args}))
                moved = sorted({d.deal_id for d in deals})
                deal_insights = {
                    row.deal_id: row
                    for row in await conn.execute(_DEAL_INSIGHTS, {"deal_ids": moved, "end": end})
                } if moved else {}
        alerts: dict[int, list[Any]] = defaultdict(list)
        for row in await conn.execute(_ALERTS, {"user_ids": ids, **window_args}):
            if len(alerts[row.user_id]) < MAX_ALERTS:
                alerts[row.user_id].append(row)

    news_symbols: dict[int, set[str]] = defaultdict(set)
    for rows in news.values():
        for row in rows:
            news_symbols[row.id].add(row.symbol)

    def symbols_of(company_ids: list[int]) -> set[str]:
        return {companies[c].symbol for c in company_ids if c in companies}

    watch_rows: dict[int, WatchlistRow] = {}
    for company_id, company in companies.items():
        series = [close for _, close in closes[company_id]]
        watch_rows[company_id] = WatchlistRow(
            company_id=company_id,
            symbol=company.symbol,
            name=company.name,
            last_close=series[-1] if series else None,
            day_change_pct=_change(series, 1),
            week_change_pct=_change(series, 5),
            closes=[float(c) for c in series],
            as_of=closes[company_id][-1][0] if series else None,
        )
    digests = []
    empty = []
    for user in wanted:
        mine = watch.get(user.user_id, [])
        mine_set = set(mine)
        if not mine and not alerts.get(user.user_id):
            empty.append(user.user_id)
            continue
        user_news: dict[int, Any] = {}
        for company_id in mine:
            for row in news.get(company_id, []):
                user_news.setdefault(row.id, row)
        top_news = sorted(
            user_news.values(), key=lambda r: (-abs(float(r.sentiment_score or 0)), -r.published_at.timestamp())
        )[:MAX_NEWS]
        digests.append(
            DigestContent(
                kind=kind,
                period=period,
                user_id=user.user_id,
                user_name=user.name,
                user_email=user.email,
                timezone=user.timezone,
                watchlist=[watch_rows[c] for c in mine[:MAX_WATCHLIST] if c in watch_rows],
                watchlist_more=max(0, len(mine) - MAX_WATCHLIST),
                alerts=[
                    FiredAlertRow(
                        alert_history_id=a.id,
                        alert_name=a.name,
                        symbol=a.symbol,
                        message=a.message,
                        triggered_at=a.triggered_at,
                    )
                    for a in alerts.get(user.user_id, [])
                ],
                news=[
                    NewsRow(
                        title=n.title,
                        url=n.url,
                        publisher=n.publisher,
                        published_at=n.published_at,
                        sentiment_score=float(n.sentiment_score) if n.sentiment_score is not None else None,
                        symbols=sorted(news_symbols[n.id] & symbols_of(mine)),
                        outlets=n.outlets,
                    )
                    for n in top_news
                ],
                insights=[
                    InsightRow(
                        subject=insights[c].symbol,
                        recommendation=insights[c].recommendation,
                        summary=_summary(insights[c].content),
                        created_at=insights[c].created_at,
                    )
                    for c in mine
                    if c in insights
                ][:MAX_INSIGHTS]
                + [
                    InsightRow(subject=row.title, recommendation=None, summary=_summary(row.content),
                               created_at=row.created_at)
                    for deal_id, row in deal_insights.items()
                    if any(d.deal_id == deal_id and (d.acquirer_company_id in mine_set or d.target_company_id in mine_set)
                           for d in deals)
                ][:MAX_INSIGHTS],
                deals=[
                    DealMoveRow(
                        title=d.title,
                        old_status=d.old_status,
                        new_status=d.new_status,
                        event_type=d.event_type,
                        occurred_at=d.occurred_at,
                    )
                    for d in deals
                    if d.acquirer_company_id in mine_set or d.target_company_id in mine_set
                ][:MAX_DEALS],
                unsubscribe_url=unsubscribe_url(public_base_url, user.unsubscribe_token, kind),
            )
        )
    return digests, [u.user_id for u in users if not u.wanted], empty


LEDGER = Ledger("digest_deliveries", ("kind", "period", "user_id"))


def key(kind: DigestKind, period: dt.date, user_id: int) -> dict[str, object]:
    return {"kind": kind, "period": period, "user_id": user_id}


_SKIP = text(
    "UPDATE digest_deliveries SET status = 'skipped', error = :error, updated_at = now() "
    "WHERE user_id = ANY(CAST(:user_ids AS bigint[])) AND kind = :kind AND period = :period AND status = 'pending'"
)


async def skip(engine: AsyncEngine, kind: DigestKind, period: dt.date, user_ids: list[int], reason: str) -> int:
    if not user_ids:
        return 0
    async with engine.begin() as conn:
        result = await conn.execute(_SKIP, {"user_ids": user_ids, "kind": kind, "period": period, "error": reason})
    return result.rowcount


async def park(engine: AsyncEngine, kind: DigestKind, period: dt.date, user_ids: list[int], error: str) -> int:
    return await LEDGER.park(
        engine,
        "user_id = ANY(CAST(:user_ids AS bigint[])) AND kind = :kind AND period = :period",
        {"user_ids": user_ids, "kind": kind, "period": period},
        error,
    )
