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

import exchange_calendars.errors
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from deallens.db.claims import Ledger
from deallens.domain.freshness import DataKind, is_stale
from deallens.domain.market_calendar import session_at
from deallens.notify.content import DealMoveRow, DigestContent, FiredAlertRow, InsightRow, NewsRow, WatchlistRow

DigestKind = Literal["daily", "weekly"]

# Runs that predate local hours (workflow.patched) sent at 12:00 UTC and Sundays 14:00 UTC;
# `window` keeps their meaning for the benchmark and old callers.
_SEND_TIME = {"daily": dt.time(12, 0), "weekly": dt.time(14, 0)}
_WINDOW = {"daily": dt.timedelta(days=1), "weekly": dt.timedelta(days=7)}
_WINDOW_DAYS = {"daily": 1, "weekly": 7}
# How long after a user's local digest time the hourly run still sends it: a run or two that
# the schedule skipped (a worker outage, a long run before) is caught up; later is stale news.
DUE_GRACE = dt.timedelta(hours=6)
SPARKLINE_SESSIONS = 30
MAX_ALERTS = 20
# Rows of the watchlist table: beyond this the digest says how many more there are.
MAX_WATCHLIST = 30
MAX_NEWS = 5
# News is read once per batch over the union of its users' windows (they differ by zone),
# then cut to each user's own window: a few more per company than one user shows.
NEWS_CANDIDATES = 4 * MAX_NEWS
MAX_INSIGHTS = 5
MAX_DEALS = 10


def window(kind: DigestKind, period: dt.date) -> tuple[dt.datetime, dt.datetime]:
    end = dt.datetime.combine(period, _SEND_TIME[kind], tzinfo=dt.UTC)
    return end - _WINDOW[kind], end


def new_session_between(start: dt.datetime, end: dt.datetime) -> bool:
    """Whether an NYSE session closed in [start, end): a new close for the digest to show.
    Beyond the calendar's horizon (years ahead) the answer is yes: better a digest too many."""
    try:
        return session_at(start).last_closed != session_at(end).last_closed
    except (exchange_calendars.errors.MinuteOutOfBounds, exchange_calendars.errors.DateOutOfBounds):
        return True


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




def _hour(kind: DigestKind) -> str:
    return "COALESCE(u.digest_hour, CAST(:default_hour AS int))" if kind == "daily" else "CAST(:weekly_hour AS int)"


def _plan_due_sql(kind: DigestKind, *, scheduled: bool) -> Any:
    """One statement: pick, insert, count. `scheduled`: the users whose local send time of
    their local date (or of the day before, past midnight) lies in (at - DUE_GRACE, at];
    the send time is computed by PostgreSQL from the zone, so DST and the zone's history hold.
    Otherwise every eligible user for :period."""
    if scheduled:
        sunday_only = "AND extract(isodow FROM d.local_date) = 7" if kind == "weekly" else ""
        due = f"""
        due AS (
            SELECT c.id, c.zone, c.hour, d.local_date AS period
            FROM candidates c
            CROSS JOIN LATERAL (
                SELECT CAST(CAST(:at AS timestamptz) AT TIME ZONE c.zone AS date) - k AS local_date
                FROM (VALUES (0), (1)) AS back(k)
            ) d
            CROSS JOIN LATERAL (
                SELECT (d.local_date + make_interval(hours => c.hour)) AT TIME ZONE c.zone AS send_at
            ) s
            WHERE s.send_at <= CAST(:at AS timestamptz) AND s.send_at > CAST(:at AS timestamptz) - CAST(:grace AS interval)
              {sunday_only}
        )"""
    else:
        due = "due AS (SELECT c.id, c.zone, c.hour, CAST(:period AS date) AS period FROM candidates c)"
    return text(
        f"""
        WITH zones AS MATERIALIZED (SELECT name FROM pg_timezone_names),
        -- A zone PostgreSQL does not know must not fail everyone's digest: that user gets UTC.
        candidates AS (
            SELECT u.id, COALESCE(z.name, 'UTC') AS zone, {_hour(kind)} AS hour
            FROM users u LEFT JOIN zones z ON z.name = u.timezone
            WHERE {_OPT_IN[kind]} AND u.unsubscribed_at IS NULL
              AND (CAST(:user_ids AS bigint[]) IS NULL OR u.id = ANY(CAST(:user_ids AS bigint[])))
        ),
        {due},
        inserted AS (
            INSERT INTO digest_deliveries (user_id, kind, period, status, window_start, window_end)
            SELECT id, :kind, period, 'pending',
                   ((period - {_WINDOW_DAYS[kind]}) + make_interval(hours => hour)) AT TIME ZONE zone,
                   (period + make_interval(hours => hour)) AT TIME ZONE zone
            FROM due
            ON CONFLICT (user_id, kind, period) DO NOTHING
            RETURNING user_id
        ),
        -- The CTE's INSERT is not visible below: a new row shows as NULL, i.e. pending.
        counted AS (
            SELECT due.period, COALESCE(dd.status, 'pending') AS status
            FROM due LEFT JOIN digest_deliveries dd ON dd.user_id = due.id AND dd.kind = :kind AND dd.period = due.period
        )
        SELECT period,
               count(*) FILTER (WHERE status = 'pending') AS pending,
               count(*) FILTER (WHERE status = 'sent') AS sent,
               (SELECT count(*) FROM candidates) AS candidates,
               (SELECT count(*) FROM inserted) AS inserted
        FROM counted GROUP BY period ORDER BY period
        """
    )


async def plan_due(
    engine: AsyncEngine,
    kind: DigestKind,
    *,
    at: dt.datetime,
    period: dt.date | None,
    user_ids: list[int] | None,
    default_hour: int,
    weekly_hour: int,
) -> tuple[list[dt.date], int, int, int]:
    """(periods with pending rows, pending, already sent, not eligible): the pending ledger
    rows of one run, made set-based in one statement; nothing returned grows with the users.

    The ledger is unique per (user, kind, local date), so a user who moves west (and meets
    the same local date again) or a second run in the same hour never gets a second digest.
    """
    params = {
        "user_ids": user_ids, "kind": kind, "period": period, "at": at, "grace": DUE_GRACE,
        "default_hour": default_hour, "weekly_hour": weekly_hour,
    }
    async with engine.begin() as conn:
        # All the due users in one statement: with a million due at once (one zone) it can
        # outlast the 60 s other statements get (the activity's timeout is 10 minutes).
        await conn.execute(text("SET LOCAL statement_timeout = '600s'"))
        rows = list(await conn.execute(_plan_due_sql(kind, scheduled=period is None), params))
        candidates = rows[0].candidates if rows else None
        if candidates is None and user_ids is not None:
            # No due rows at all: count the eligible among those named all the same.
            candidates = (
                await conn.execute(
                    text(
                        f"SELECT count(*) FROM users u WHERE {_OPT_IN[kind]} AND u.unsubscribed_at IS NULL "
                        "AND u.id = ANY(CAST(:user_ids AS bigint[]))"
                    ),
                    {"user_ids": user_ids},
                )
            ).scalar_one()
    not_eligible = len(set(user_ids)) - (candidates or 0) if user_ids is not None else 0
    periods = [r.period for r in rows if r.pending]
    return periods, sum(r.pending for r in rows), sum(r.sent for r in rows), not_eligible


_PAGE = text(
    """
    SELECT user_id FROM digest_deliveries
    WHERE kind = :kind AND period = :period AND status = 'pending' AND user_id > :after
      AND (CAST(:user_ids AS bigint[]) IS NULL OR user_id = ANY(CAST(:user_ids AS bigint[])))
    ORDER BY user_id
    LIMIT :limit
    """
)


async def page(
    engine: AsyncEngine, kind: DigestKind, period: dt.date, *, after_user_id: int, limit: int,
    user_ids: list[int] | None = None,
) -> list[int]:
    """The next `limit` pending users of one period (ix_digest_deliveries_pending), by id."""
    async with engine.connect() as conn:
        result = await conn.execute(
            _PAGE,
            {"kind": kind, "period": period, "after": after_user_id, "limit": limit, "user_ids": user_ids},
        )
        return list(result.scalars())


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
           ({opt_in} AND u.unsubscribed_at IS NULL) AS wanted,
           COALESCE(d.window_start, CAST(:legacy_start AS timestamptz)) AS window_start,
           COALESCE(d.window_end, CAST(:legacy_end AS timestamptz)) AS window_end
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
        JOIN unnest(CAST(:user_ids AS bigint[]), CAST(:starts AS timestamptz[]), CAST(:ends AS timestamptz[]))
             AS w(user_id, start_, end_) ON w.user_id = a.user_id
        WHERE h.triggered_at >= w.start_ AND h.triggered_at < w.end_
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
    WHERE rank_ <= {NEWS_CANDIDATES}
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


def _judged(row: WatchlistRow, at: dt.datetime) -> WatchlistRow:
    """`row` marked stale if its last close is older than a digest sent at `at` should show.

    A row without any close is not marked: it says "No data" already.
    """
    stale = row.as_of is not None and is_stale(row.as_of, at, DataKind.DAILY_BAR)
    return row.model_copy(update={"stale": stale}) if stale != row.stale else row


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
    """(digests to send, users who opted out since planning, users with nothing to report)
    among this batch's pending users.

    Each user's window is the one planning fixed (their local digest time, yesterday to
    today). Nothing to report: no alerts and no news in the window, and no new trading
    session either (or no watchlist to show it for), so a Sunday does not repeat Friday.
    """
    legacy_start, legacy_end = window(kind, period)
    async with engine.connect() as conn:
        users = list(
            await conn.execute(
                text(_USERS.text.format(opt_in=_OPT_IN[kind])),
                {"user_ids": user_ids, "kind": kind, "period": period,
                 "legacy_start": legacy_start, "legacy_end": legacy_end},
            )
        )
        wanted = [u for u in users if u.wanted]
        ids = [u.user_id for u in wanted]
        if not ids:
            return [], [u.user_id for u in users if not u.wanted], []
        # News, insights and deals are read over the union of the batch's windows.
        window_args = {"start": min(u.window_start for u in wanted), "end": max(u.window_end for u in wanted)}
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
                news[row.company_id].append(row)
            for row in await conn.execute(_INSIGHTS, {**by_company, **window_args}):
                insights[row.company_id] = row
            if kind == "weekly":
                deals = list(await conn.execute(_DEALS, {**by_company, **window_args}))
                moved = sorted({d.deal_id for d in deals})
                deal_insights = {
                    row.deal_id: row
                    for row in await conn.execute(_DEAL_INSIGHTS, {"deal_ids": moved, "end": window_args["end"]})
                } if moved else {}
        alerts: dict[int, list[Any]] = defaultdict(list)
        alert_args = {
            "user_ids": ids, "starts": [u.window_start for u in wanted], "ends": [u.window_end for u in wanted],
        }
        for row in await conn.execute(_ALERTS, alert_args):
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
    sessions: dict[tuple[dt.datetime, dt.datetime], bool] = {}
    for user in wanted:
        start, end = user.window_start, user.window_end
        mine = watch.get(user.user_id, [])
        mine_set = set(mine)
        user_news: dict[int, Any] = {}
        for company_id in mine:
            for row in news.get(company_id, []):
                if start <= row.published_at < end:
                    user_news.setdefault(row.id, row)
        if (start, end) not in sessions:
            sessions[(start, end)] = new_session_between(start, end)
        if not alerts.get(user.user_id) and not user_news and not (mine and sessions[(start, end)]):
            empty.append(user.user_id)
            continue
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
                watchlist=[_judged(watch_rows[c], end) for c in mine[:MAX_WATCHLIST] if c in watch_rows],
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
                    if c in insights and start <= insights[c].created_at < end
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
                    if (d.acquirer_company_id in mine_set or d.target_company_id in mine_set)
                    and start <= d.occurred_at < end
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
