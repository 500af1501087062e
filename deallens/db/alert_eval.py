"""Where an alert fires: one set-based statement per alert kind.

Each evaluation is ONE statement: it joins the kind's active alerts with the data stored
since the last evaluation, decides what fires, records it in alert_history, updates the
alerts and returns the firings. A Python loop over alerts would cost a round trip per alert
(the benchmark in bench/alert_eval.py measures how much that is); here the work stays in the
database.

Semantics (the same as deallens/db/alert_backtest.py replays on daily bars):

- condition alerts (price_above, price_below, percent_change, volume_spike, volume_above,
  news_sentiment) are edge-triggered: they fire while armed, which disarms them, and re-arm
  when fresh data finds the condition false. No usable data (a quote older than
  `max_quote_age`, no reference for a move, fewer than 5 bars for a volume average, no
  scored article in the sentiment window) neither fires nor re-arms.
- price and volume alerts see every quote stored since the last evaluation, in quoted_at
  order, as the backtest replays bars: a dip re-arms, the crossing after it fires, so a dip
  and recovery between two evaluations (a paused monitor, two syncs within one evaluation, a
  worker down for a minute) is not lost. "Since" is a cursor per kind and company
  (alert_cursors: the newest quote read), not per alert, so an evaluation writes a row per
  company with new quotes, never one per alert. A new or changed alert (evaluated_at NULL,
  see models.Alert) reads its company's newest quote only: quotes older than the definition
  must not fire it, but the latest one, stored before `alerts add`, should. An armed alert
  also reads the newest quote when nothing is new: it is armed with the condition true only
  because a suppression held it, and fires once the suppression ends.
  Firings share the evaluation's time (triggered_at), so a second crossing within one
  evaluation falls within the cooldown of the first and does not fire; the alert ends armed
  if a dip followed its firing. With a cooldown of 0, every crossing fires.
- event alerts (news_mention, deal_new, deal_status_change) fire once per event (the
  article, deal or deal event) and are never disarmed: each new event is its own edge.
- a firing is suppressed, and the alert stays armed so that it fires later if the condition
  still holds, while snoozed, within the effective cooldown of its last firing, or beyond its
  user's daily cap (firings since 00:00 UTC). Suppressed events are not lost: they fire once
  the suppression ends (a news_mention then fires for the newest article stored since its last firing).
- expired alerts never fire and are deactivated; one-shot alerts are deactivated by firing.

Concurrency: evaluations of one kind take a transaction-scoped advisory lock first, so they
run one after another, each on a snapshot taken after the previous one committed (two
overlapping evaluations would otherwise both read the quotes after the same cursor on stale
alert states). Within that, an evaluation never undoes another writer's change: the alerts
about to fire are locked in id order and re-checked on their latest version (READ COMMITTED
re-evaluates a locked row that changed), so an alert fired or edited since the snapshot
drops out; alert_history's unique (alert_id, dedup_key) with ON CONFLICT DO NOTHING makes
recording an already recorded data point a no-op; and only the rows the INSERT returned update their alerts. Each dedup key
names the data point: `price:<price_quotes.id>`, `volume:<price_quotes.id>`, `news:<article id>`,
`sentiment:<newest scored article id>`, `deal:<deal id>`, `deal_event:<deal_events.id>`.

The daily cap counts what this statement's snapshot sees: evaluations of two kinds for the
same user running at the same instant may each use the remaining allowance.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, get_args

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncEngine

AlertKind = Literal["price", "volume", "news", "deal"]

# Alert types that fire once per event; every other type is an edge-triggered condition.
EVENT_TYPES = ("news_mention", "deal_new", "deal_status_change")
# A volume average needs this many final bars before the quote's trading day, of at most 20.
VOLUME_BASELINE_BARS = 20
VOLUME_BASELINE_MIN_BARS = 5
# Untrusted text (titles, names) is clipped to this many characters in a message.
MESSAGE_TEXT_MAX = 200


@dataclass(frozen=True, slots=True)
class EvalPolicy:
    """What one evaluation assumes; the clock is passed in so that evaluation is replayable."""

    now: dt.datetime  # aware; the evaluation's clock, recorded as alert_history.triggered_at
    max_quote_age: dt.timedelta  # no firing (and no re-arming) on a quote older than this
    min_cooldown_seconds: int = 0  # the monitor's floor: cooldown = max(alert's, this)
    news_sentiment_window: dt.timedelta = dt.timedelta(hours=24)

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("EvalPolicy.now must be timezone-aware")


@dataclass(frozen=True, slots=True)
class Firing:
    """One recorded firing: the alert_history row and what a notification needs to say."""

    alert_history_id: int
    alert_id: int
    user_id: int
    kind: str
    alert_type: str
    symbol: str | None
    value: Decimal | None
    threshold: Decimal | None
    data_at: dt.datetime | None
    message: str


# ------------------------------------------------------------------ SQL fragments
# Every fragment is a constant of this module, never user input; values are bound parameters.

_NOW = "CAST(:now AS timestamptz)"
_MAX_QUOTE_AGE = "CAST(:max_quote_age AS interval)"
_EVENT_TYPES = "(" + ", ".join(f"'{t}'" for t in EVENT_TYPES) + ")"


def _may_fire(a: str) -> str:
    """May alert row `a` fire now, whatever its data? Checked on the statement's snapshot,
    then again on the locked latest version, so that both use one rule. Whether a condition
    alert is armed at a data point is decided along its sequence of points (`stepped`)."""
    return f"""{a}.active
        AND ({a}.expires_at IS NULL OR {a}.expires_at > {_NOW})
        AND ({a}.snoozed_until IS NULL OR {a}.snoozed_until <= {_NOW})
        AND ({a}.last_triggered_at IS NULL OR {a}.last_triggered_at <= {_NOW}
             - make_interval(secs => greatest({a}.cooldown_seconds, CAST(:min_cooldown_seconds AS integer))))"""


def _one_line(expr: str) -> str:
    """Control characters (CR, LF, tab, C1) and Unicode line/paragraph separators as spaces."""
    return rf"regexp_replace({expr}, '[\u0001-\u001f\u007f-\u009f\u2028\u2029]+', ' ', 'g')"


def _clip(expr: str) -> str:
    return (
        f"(CASE WHEN length({expr}) > {MESSAGE_TEXT_MAX} THEN left({expr}, {MESSAGE_TEXT_MAX - 1}) || '…'"
        f" ELSE {expr} END)"
    )


def _price(expr: str) -> str:
    """231.5 -> '231.50'; sub-cent prices keep their digits: 0.1234 -> '0.1234'."""
    return f"CAST(round({expr}, greatest(2, scale(trim_scale({expr})))) AS text)"


def _plain(expr: str) -> str:
    """2.50 -> '2.5', the way a user wrote a parameter."""
    return f"CAST(trim_scale({expr}) AS text)"


def _compact(expr: str) -> str:
    """41234567 -> '41.2M': volumes and deal values at a glance."""
    return f"""(CASE
        WHEN {expr} >= 1e12 THEN round({expr} / 1e12, 1) || 'T'
        WHEN {expr} >= 1e9 THEN round({expr} / 1e9, 1) || 'B'
        WHEN {expr} >= 1e6 THEN round({expr} / 1e6, 1) || 'M'
        WHEN {expr} >= 1e3 THEN round({expr} / 1e3, 1) || 'K'
        ELSE CAST(round({expr}) AS text) END)"""


def _utc_time(expr: str) -> str:
    return f"to_char({expr} AT TIME ZONE 'UTC', 'HH24:MI') || ' UTC'"


def _history_number(expr: str) -> str:
    """alert_history's numeric(18,6) holds less than 1e12: a larger observation (a bogus
    provider volume) is recorded as NULL rather than failing every alert's evaluation."""
    return f"(CASE WHEN abs({expr}) < 1e12 THEN round({expr}, 6) END)"


def _in_scope(company_id: str) -> str:
    """Is the company one that `symbols` names? Always when :symbols is NULL: the custom plan
    evaluate() asks for folds that away, so the planner sees the real row counts. Otherwise
    `= ANY(ARRAY(...))`, which an index scan can use (`IN (SELECT ...)` under an OR stays a
    filter: the whole alerts table was scanned for two symbols)."""
    return (
        f"(CAST(:symbols AS text[]) IS NULL OR {company_id} = ANY(ARRAY("
        "SELECT id FROM companies WHERE symbol = ANY(CAST(:symbols AS text[])))))"
    )


def _alert_columns(c: str) -> str:
    """The columns of `observations` that come from the candidate alert `c`, the same for
    every kind: what `due` and `rearmed` need without reading the alerts again."""
    return f"""{c}.id AS alert_id, {c}.user_id, {c}.company_id, {c}.type, {c}.params, {c}.armed,
               {c}.last_triggered_at, {_may_fire(c)} AS may_fire,
               greatest({c}.cooldown_seconds, CAST(:min_cooldown_seconds AS integer)) AS cooldown"""


# The quotes of each company in scope that an evaluation reads: those after the kind's cursor
# (`unseen`) and the newest (`newest`, all a new alert reads), found together by one range
# scan of the unique (company_id, quoted_at) index from the cursor on (the cursor's own quote
# is the newest when nothing is new). A quote older than max_quote_age is no data at all.
# `several`: more than one unseen quote, so the order of the points matters. Inlined where
# used and keyed by companies.id, so the planner knows how many rows it joins: over a CTE it
# has no statistics, guessed 200 companies for 2,000 and chose a plan 5x slower.
_POINTS = f"""
    points AS NOT MATERIALIZED (
        SELECT s.id AS company_id, k.through_at AS cursor_at, q.*
        FROM companies s
        LEFT JOIN alert_cursors k ON k.kind = CAST(:kind AS text) AND k.company_id = s.id
        CROSS JOIN LATERAL (
            SELECT p.id, p.price, p.previous_close, p.volume, p.latest_trading_day, p.quoted_at,
                   k.through_at IS NULL OR p.quoted_at > k.through_at AS unseen,
                   row_number() OVER (ORDER BY p.quoted_at DESC) = 1 AS newest,
                   count(*) FILTER (WHERE k.through_at IS NULL OR p.quoted_at > k.through_at) OVER () > 1 AS several
            FROM price_quotes p
            WHERE p.company_id = s.id AND p.quoted_at >= {_NOW} - {_MAX_QUOTE_AGE}
              AND (k.through_at IS NULL OR p.quoted_at >= k.through_at)
        ) q
        WHERE {_in_scope('s.id')}
    ),"""

# A quote's trading day: the provider's, else its New York date.
_TRADING_DAY = "coalesce(q.latest_trading_day, CAST(q.quoted_at AT TIME ZONE 'America/New_York' AS date))"

# Which points an alert `c` reads (see the module docstring): a new one the newest only; the
# others every unseen point, or the newest while armed.
_READS = "CASE WHEN c.evaluated_at IS NULL THEN q.newest ELSE q.unseen OR (q.newest AND c.armed) END"

# The cursor moves to the newest quote read, forward only: one UPDATE joining the cursors
# the points were read after (a HOT update each: through_at is in no index), and an INSERT of
# the companies read for the first time, rather than an upsert of every row (a speculative
# insertion, a conflict, then the update, per row). Measured about even at 2,000 companies
# (EXPLAIN ANALYZE under load: 32 ms against 31 ms), so this is for clarity of what is written,
# not for speed: see bench/README.md. Evaluations of a kind run one at a
# time (the advisory lock), so the cursors seen by the snapshot are the ones there are; the
# insert's ON CONFLICT is the belt to those braces.
_ADVANCE_CURSORS = """
    advanced AS (
        UPDATE alert_cursors k
        SET through_at = q.quoted_at
        FROM points q
        WHERE k.kind = CAST(:kind AS text) AND k.company_id = q.company_id
          AND q.newest AND q.unseen AND q.cursor_at IS NOT NULL AND k.through_at < q.quoted_at
    ),
    started AS (
        INSERT INTO alert_cursors AS k (kind, company_id, through_at)
        SELECT CAST(:kind AS text), q.company_id, q.quoted_at FROM points q
        WHERE q.newest AND q.unseen AND q.cursor_at IS NULL
        ON CONFLICT (kind, company_id) DO UPDATE SET through_at = EXCLUDED.through_at
        WHERE k.through_at < EXCLUDED.through_at
    ),"""

# Observations that may change something. A condition's false point matters when the alert
# is disarmed (it re-arms) or when more points follow it (it re-arms before a crossing).
# `holds` is an expression over the alert's params, evaluated where it is named: testing
# `armed` before `NOT holds` tests it once for the armed majority (twice made a 100,000-alert
# evaluation 1.4x slower).
_CHANGES_SOMETHING = "o.holds OR (o.edge AND NOT o.armed AND NOT o.holds)"
_CHANGES_SOMETHING_IN_SEQUENCE = "o.holds OR (o.edge AND (NOT o.armed OR o.several) AND NOT o.holds)"


@dataclass(frozen=True, slots=True)
class _KindSQL:
    """What differs between kinds: the CTEs ending in `observations`, the message (over `o`,
    an observed row, and `co`, the alert's company), and the alerts `symbols` selects.

    `observations` has one row per candidate alert and data point: the alert's columns
    (`_alert_columns`), then edge (a condition, not an event), holds (NULL: no usable
    data), value, threshold, data_at, dedup_key, and what the kind's message needs.
    """

    observations: str
    message: str
    # Which of the kind's alerts `symbols` selects.
    alert_scope: str = _in_scope("a.company_id")
    # The kind's own `candidates` CTE and the CTEs it reads, when it can tell from its data
    # which alerts cannot change (None: every active alert in scope, `_candidates`).
    candidates: str | None = None
    # Which observations are kept (`observed`).
    keeps: str = _CHANGES_SOMETHING
    # CTEs recording what this evaluation read (the quote cursors).
    advance: str = ""


def _candidates(scope: str, extra: str = "true") -> str:
    """The kind's active, unexpired alerts in `scope` (the partial index ix_alerts_kind_active
    when the kind is a minority), `extra` holding. Inlined where used: a materialized copy of
    100,000 alerts would cost more than everything else. (alert_type is params->>'type',
    generated: parsing it for every alert cost more than reading it.)"""
    return f"""
        SELECT a.*, a.alert_type AS type
        FROM alerts a
        WHERE a.kind = CAST(:kind AS text) AND a.active
          AND (a.expires_at IS NULL OR a.expires_at > {_NOW})
          AND {scope} AND {extra}"""


# Price alerts an evaluation can pass over by their level alone: armed, so that a point where
# the condition is false changes nothing (only a disarmed alert re-arms), and compared with the
# point's price or with its move against the previous close. Such an alert changes something
# only if its condition holds at one of the points it reads, and those are among its company's
# `points`: a price_above only if its threshold lies below their highest price, a price_below
# only above the lowest, a percent_change only if its percent is at most their largest move.
# The partial index ix_alerts_armed_levels finds exactly those per company (a range scan on
# level), so that the ~98% of armed alerts whose thresholds no new quote reached are never read
# (bench/README.md: the evaluation was 6x the bare join of alerts and latest quotes because it
# read every alert row from the heap). Every other price alert (disarmed, windowed: few) is
# read as before, through ix_alerts_price_unpruned. The same predicates as the indexes
# (deallens/db/models.py, migration 0020), so that the planner proves them.
PRICE_PRUNED_TYPES = ("price_above", "price_below", "percent_change")
_PRUNABLE = "a.armed AND a.window_minutes IS NULL"
_UNPRUNABLE = (
    "(NOT a.armed OR a.window_minutes IS NOT NULL OR a.alert_type NOT IN "
    + "(" + ", ".join(f"'{t}'" for t in PRICE_PRUNED_TYPES) + "))"
)


def _pruned(alert_type: str, reachable: str) -> str:
    """The armed alerts of `alert_type` whose level the company's points reach: one range scan
    of ix_alerts_armed_levels per company (the points are already in scope). `OFFSET 0` keeps
    the LATERAL a nested loop: flattened into a join, the planner guesses a third of the alerts
    within reach (the default for a range it cannot see) and hashes a scan of all of them."""
    return f"""
        SELECT a.*
        FROM ranges r
        CROSS JOIN LATERAL (
            SELECT a.*, a.alert_type AS type
            FROM alerts a
            WHERE a.kind = CAST(:kind AS text) AND a.company_id = r.company_id AND a.alert_type = '{alert_type}'
              AND a.active AND {_PRUNABLE} AND {reachable}
              AND (a.expires_at IS NULL OR a.expires_at > {_NOW})
            OFFSET 0
        ) a"""


# For price alerts the points are computed once (MATERIALIZED) and read four times: by
# `ranges`, the two cursor CTEs and the observations. Inlined, the observations' join
# recomputed them per candidate alert. The planner's missing statistics on a CTE no longer
# matter here: the candidates come from `ranges`, not from a join of every alert with the
# points. (bench/README.md: line 1 at 1% firing 0.103-0.107 s -> 0.093-0.095 s.)
_PRICE_POINTS = _POINTS.replace("points AS NOT MATERIALIZED", "points AS MATERIALIZED")
assert _PRICE_POINTS != _POINTS

# Largest move in percent, rounded up a little: the filter may keep an alert it need not
# (the condition is tested exactly later), never drop one whose move equals its percent.
_PRICE_CANDIDATES = f"""
    ranges AS MATERIALIZED (
        -- Per company with points: their lowest and highest price, their largest move.
        SELECT q.company_id, min(q.price) AS low, max(q.price) AS high,
               max(abs(q.price - q.previous_close) * 100 / nullif(q.previous_close, 0)) * 1.000001 AS move
        FROM points q
        GROUP BY q.company_id
    ),
    candidates AS NOT MATERIALIZED (
        {_pruned("price_above", "a.level < r.high")}
        UNION ALL
        {_pruned("price_below", "a.level > r.low")}
        UNION ALL
        {_pruned("percent_change", "a.level <= r.move")}
        UNION ALL
        {_candidates(_in_scope("a.company_id"), _UNPRUNABLE)}
    ),"""


_PRICE = _KindSQL(
    keeps=_CHANGES_SOMETHING_IN_SEQUENCE,
    advance=_ADVANCE_CURSORS,
    candidates=_PRICE_POINTS + _PRICE_CANDIDATES,
    observations=f"""
    observations AS (
        -- price_above / price_below: the price against the threshold (strictly, as "above" says);
        -- percent_change: the move against its reference, at least `percent` percent. The move
        -- is compared multiplied out (a numeric division costs more than the rest of the test):
        -- it is divided only for the rows kept.
        SELECT {_alert_columns('c')}, true AS edge,
               CASE c.type
                   WHEN 'price_above' THEN q.price > t.threshold
                   WHEN 'price_below' THEN q.price < t.threshold
                   ELSE CASE c.params->>'direction'
                       WHEN 'up' THEN (q.price - r.price) * 100 >= t.threshold * r.price
                       WHEN 'down' THEN (r.price - q.price) * 100 >= t.threshold * r.price
                       ELSE abs(q.price - r.price) * 100 >= t.threshold * r.price
                   END
               END AS holds,
               CASE WHEN c.type = 'percent_change' THEN (q.price - r.price) / r.price * 100 ELSE q.price END AS value,
               t.threshold, q.quoted_at AS data_at, 'price:' || q.id AS dedup_key,
               q.several AND c.evaluated_at IS NOT NULL AS several, q.price, t.minutes AS window_minutes
        FROM candidates c
        JOIN points q ON q.company_id = c.company_id AND {_READS}
        CROSS JOIN LATERAL (
            -- Parsed from params once, when the alert was stored (generated columns).
            SELECT c.level AS threshold, c.window_minutes AS minutes
        ) t
        CROSS JOIN LATERAL (
            -- The reference of a move: the previous close or, over window_minutes, the latest
            -- quote at or before the point's time - window, itself no older than max_quote_age
            -- beyond that (looked up for windowed alerts only). None, or 0, is no data (NULL).
            SELECT nullif(CASE WHEN t.minutes IS NULL THEN q.previous_close ELSE (
                SELECT w.price
                FROM price_quotes w
                WHERE w.company_id = c.company_id
                  AND w.quoted_at <= q.quoted_at - make_interval(mins => t.minutes)
                  AND w.quoted_at >= q.quoted_at - make_interval(mins => t.minutes) - {_MAX_QUOTE_AGE}
                ORDER BY w.quoted_at DESC
                LIMIT 1
            ) END, 0) AS price
        ) r
    ),""",
    message=f"""CASE o.type
        WHEN 'price_above' THEN co.symbol || ' rose above ' || {_price('o.threshold')} || ': ' || {_price('o.price')}
            || ' (' || {_utc_time('o.data_at')} || ')'
        WHEN 'price_below' THEN co.symbol || ' fell below ' || {_price('o.threshold')} || ': ' || {_price('o.price')}
            || ' (' || {_utc_time('o.data_at')} || ')'
        ELSE co.symbol || ' moved '
            || CASE WHEN o.value > 0 THEN '+' ELSE '' END || CAST(round(o.value, 2) AS text) || '%'
            || coalesce(' in ' || o.window_minutes || ' min', ' since the previous close')
            || ' (' || {_plain('o.threshold')} || '% alert)'
    END""",
)

_VOLUME = _KindSQL(
    keeps=_CHANGES_SOMETHING_IN_SEQUENCE,
    advance=_ADVANCE_CURSORS,
    observations=_POINTS
    + f"""
    averages AS (
        -- volume_spike: the mean volume of the company's last {VOLUME_BASELINE_BARS} final daily bars
        -- before a point's trading day (backward on the unique (company_id, date) index), per
        -- trading day the points fall on (one, unless a sequence spans a session change).
        SELECT d.company_id, d.day, avg(b.volume) AS average
        FROM (
            SELECT DISTINCT q.company_id, {_TRADING_DAY} AS day
            FROM points q
            WHERE q.company_id IN (SELECT company_id FROM candidates WHERE type = 'volume_spike')
        ) d
        CROSS JOIN LATERAL (
            SELECT o.volume
            FROM ohlc_data o
            WHERE o.company_id = d.company_id AND NOT o.provisional AND o.date < d.day
            ORDER BY o.date DESC
            LIMIT {VOLUME_BASELINE_BARS}
        ) b
        GROUP BY d.company_id, d.day
        HAVING count(*) >= {VOLUME_BASELINE_MIN_BARS} AND avg(b.volume) > 0
    ),
    observations AS (
        -- The quote's volume (the session's so far) against a level: the threshold, or
        -- `multiple` times the average.
        SELECT {_alert_columns('c')}, true AS edge, q.volume >= t.threshold AS holds,
               CAST(q.volume AS numeric) AS value, t.threshold, q.quoted_at AS data_at,
               'volume:' || q.id AS dedup_key, q.several AND c.evaluated_at IS NOT NULL AS several, av.average
        FROM candidates c
        JOIN points q ON q.company_id = c.company_id AND q.volume IS NOT NULL AND {_READS}
        LEFT JOIN averages av ON av.company_id = c.company_id AND av.day = {_TRADING_DAY}
        CROSS JOIN LATERAL (
            SELECT CASE c.type
                WHEN 'volume_above' THEN c.level
                ELSE round(c.level * av.average)
            END AS threshold
        ) t
    ),""",
    message=f"""CASE o.type
        WHEN 'volume_above' THEN co.symbol || ' volume ' || {_compact('o.value')} || ' is above '
            || {_compact('o.threshold')} || ' (' || {_utc_time('o.data_at')} || ')'
        ELSE co.symbol || ' volume ' || {_compact('o.value')} || ' is ' || CAST(round(o.value / o.average, 1) AS text)
            || 'x its {VOLUME_BASELINE_BARS}-day average ('
            || {_plain("CAST(o.params->>'multiple' AS numeric)")} || 'x alert)'
    END""",
)

_NEWS = _KindSQL(
    observations=f"""
    sentiments AS (
        -- news_sentiment: per company, the mean score of its scored articles in the window.
        SELECT nc.company_id, avg(n.sentiment_score) AS average, count(*) AS articles,
               max(n.published_at) AS newest_at,
               (array_agg(n.id ORDER BY n.published_at DESC, n.id DESC))[1] AS newest_id
        FROM news_company nc
        JOIN news_articles n ON n.id = nc.news_id
        WHERE nc.company_id IN (SELECT company_id FROM candidates WHERE type = 'news_sentiment')
          AND n.published_at > {_NOW} - CAST(:news_sentiment_window AS interval)
          AND n.sentiment_score IS NOT NULL
        GROUP BY nc.company_id
    ),
    observations AS (
        -- news_mention: the newest article linked to the company, published after the alert was
        -- created and stored after its last firing (the feeds do not deliver in publication
        -- order: a company's fetch every few hours brings stories published before a firing
        -- that a faster feed caused), whose title or description contains a keyword
        -- (case-insensitively; the first matching one is named), or any such article without keywords.
        -- A story fires once, however many outlets carry it: the key names the story (the
        -- article for rows stored before stories existed), and an article of a story this
        -- alert already fired for is passed over, so that it cannot hide a newer story.
        SELECT {_alert_columns('c')}, false AS edge, true AS holds,
               CAST(NULL AS numeric) AS value, CAST(NULL AS numeric) AS threshold, n.published_at AS data_at,
               n.dedup_key, n.title, n.keyword, CAST(NULL AS bigint) AS articles
        FROM candidates c
        CROSS JOIN LATERAL (
            SELECT n.id, n.title, n.published_at, k.keyword,
                   coalesce('story:' || n.story_id, 'news:' || n.id) AS dedup_key
            FROM news_company nc
            JOIN news_articles n ON n.id = nc.news_id
            LEFT JOIN LATERAL (
                SELECT k.keyword
                FROM jsonb_array_elements_text(c.params->'keywords') WITH ORDINALITY AS k(keyword, position)
                WHERE strpos(lower(n.title), lower(k.keyword)) > 0
                   OR strpos(lower(coalesce(n.description, '')), lower(k.keyword)) > 0
                ORDER BY k.position
                LIMIT 1
            ) k ON true
            WHERE nc.company_id = c.company_id
              AND n.published_at > c.created_at
              AND (c.last_triggered_at IS NULL OR n.created_at > c.last_triggered_at)
              AND (k.keyword IS NOT NULL OR jsonb_array_length(coalesce(c.params->'keywords', '[]')) = 0)
              AND (n.story_id IS NULL OR NOT EXISTS (
                  SELECT 1 FROM alert_history h WHERE h.alert_id = c.id AND h.dedup_key = 'story:' || n.story_id))
            ORDER BY n.published_at DESC, n.id DESC
            LIMIT 1
        ) n
        WHERE c.type = 'news_mention'
        UNION ALL
        -- news_sentiment: the window's mean score crossing the threshold in `direction`.
        SELECT {_alert_columns('c')}, true,
               CASE c.params->>'direction' WHEN 'above' THEN s.average > t.threshold ELSE s.average < t.threshold END,
               round(s.average, 4), t.threshold, s.newest_at,
               'sentiment:' || s.newest_id, NULL, NULL, s.articles
        FROM candidates c
        JOIN sentiments s ON s.company_id = c.company_id
        CROSS JOIN LATERAL (SELECT CAST(c.params->>'threshold' AS numeric) AS threshold) t
        WHERE c.type = 'news_sentiment'
    ),""",
    message=f"""CASE o.type
        WHEN 'news_mention' THEN 'New ' || {_clip('co.name')} || ' article'
            || coalesce(' mentioning ''' || o.keyword || '''', '') || ': ' || {_clip('o.title')}
        ELSE co.symbol || ' news sentiment ' || CAST(round(o.value, 2) AS text)
            || ' is ' || (o.params->>'direction') || ' ' || CAST(round(o.threshold, 2) AS text)
            || ' (' || o.articles || CASE WHEN o.articles = 1 THEN ' scored article)' ELSE ' scored articles)' END
    END""",
)

_DEAL = _KindSQL(
    # Deal alerts are scoped by the deals they follow (in_scope).
    alert_scope="true",
    observations=f"""
    named AS (
        -- Each deal once per company it names (acquirer, target).
        SELECT d.id AS deal_id, x.company_id
        FROM deals d
        CROSS JOIN LATERAL (VALUES (d.acquirer_company_id), (d.target_company_id)) AS x(company_id)
        WHERE x.company_id IS NOT NULL
    ),
    in_scope AS (
        -- The deals naming a company that `symbols` names (every deal without symbols).
        SELECT d.id AS deal_id
        FROM deals d
        WHERE {_in_scope('d.acquirer_company_id')} OR {_in_scope('d.target_company_id')}
    ),
    followed AS (
        -- The deals each alert follows: its deal; else those naming its company; else those
        -- naming a company on its user's watchlist.
        SELECT c.id AS alert_id, c.deal_id FROM candidates c WHERE c.deal_id IS NOT NULL
        UNION
        SELECT c.id, n.deal_id
        FROM candidates c JOIN named n ON n.company_id = c.company_id
        WHERE c.deal_id IS NULL
        UNION
        SELECT c.id, n.deal_id
        FROM candidates c
        JOIN watchlist w ON w.user_id = c.user_id
        JOIN named n ON n.company_id = w.company_id
        WHERE c.company_id IS NULL AND c.deal_id IS NULL
    ),
    labelled AS (
        -- What a message calls a followed deal in scope: "Acquirer to acquire Target".
        SELECT d.id, d.created_at,
               coalesce(
                   coalesce(acquirer.name, d.acquirer_name) || ' to acquire ' || coalesce(target.name, d.target_name),
                   d.title
               ) AS label,
               d.value_usd,
               -- The status the deal was first recorded with (its 'created' event).
               (SELECT e.new_status FROM deal_events e
                 WHERE e.deal_id = d.id AND e.event_type = 'created' ORDER BY e.id LIMIT 1) AS created_status
        FROM deals d
        LEFT JOIN companies acquirer ON acquirer.id = d.acquirer_company_id
        LEFT JOIN companies target ON target.id = d.target_company_id
        WHERE d.id IN (SELECT deal_id FROM followed) AND d.id IN (SELECT deal_id FROM in_scope)
    ),
    observations AS (
        -- deal_new: each followed deal recorded after the alert was created.
        SELECT {_alert_columns('c')}, false AS edge, true AS holds,
               CAST(NULL AS numeric) AS value, CAST(NULL AS numeric) AS threshold, d.created_at AS data_at,
               'deal:' || d.id AS dedup_key, d.label, d.value_usd,
               CAST(NULL AS text) AS old_status, CAST(d.created_status AS text) AS new_status
        FROM candidates c
        JOIN followed f ON f.alert_id = c.id
        JOIN labelled d ON d.id = f.deal_id
        WHERE c.type = 'deal_new' AND d.created_at > c.created_at
        UNION ALL
        -- deal_status_change: each status change of a followed deal recorded after the alert was created.
        SELECT {_alert_columns('c')}, false, true, NULL, NULL, e.occurred_at, 'deal_event:' || e.id,
               d.label, d.value_usd, e.old_status, e.new_status
        FROM candidates c
        JOIN followed f ON f.alert_id = c.id
        JOIN labelled d ON d.id = f.deal_id
        JOIN deal_events e ON e.deal_id = d.id AND e.event_type = 'status_change'
        WHERE c.type = 'deal_status_change' AND e.created_at > c.created_at
    ),""",
    message=f"""CASE o.type
        WHEN 'deal_new' THEN 'New deal: ' || {_clip('o.label')}
            || coalesce(' ($' || {_compact('o.value_usd')} || ')', '')
            -- A first fetch reaches days back, so a pair's first article may report its end:
            -- "to acquire" alone would say the opposite (new_status: the status it was created with).
            || CASE WHEN o.new_status IN ('completed', 'terminated') THEN ', already ' || o.new_status ELSE '' END
        ELSE 'Deal status changed: ' || coalesce(o.old_status, 'unknown') || ' → ' || coalesce(o.new_status, 'unknown')
            || ' (' || {_clip('o.label')} || ')'
    END""",
)


def _statement(kind: _KindSQL) -> TextClause:
    return text(
        f"""
    WITH {kind.candidates or f"candidates AS NOT MATERIALIZED ({_candidates(kind.alert_scope)}),"}
    {kind.observations}
    {kind.advance}
    observed AS (
        -- Only what may change something: conditions that hold, and false ones that re-arm.
        SELECT * FROM observations o WHERE {kind.keeps}
    ),
    stepped AS (
        -- Each alert's points in order, as the backtest replays bars: a condition crosses
        -- where it holds after a point where it did not, or at its first point if armed;
        -- each event is its own crossing.
        SELECT o.*,
               CASE WHEN o.edge
                   THEN o.holds AND coalesce(NOT lag(o.holds) OVER (PARTITION BY o.alert_id ORDER BY o.data_at), o.armed)
                   ELSE o.holds
               END AS crossing
        FROM observed o
    ),
    crossings AS (
        SELECT s.*, row_number() OVER (PARTITION BY s.alert_id ORDER BY s.data_at) AS nth_crossing
        FROM stepped s
        WHERE s.crossing
    ),
    due AS (
        -- What fires on this snapshot: a crossing, the alert may fire, and this data point has
        -- not fired it before (the unique key decides; this keeps an old data point from
        -- taking a place under the daily cap). A condition's later crossings in this
        -- evaluation fall within the cooldown of its first (they share triggered_at), unless
        -- the cooldown is 0.
        SELECT o.alert_id, o.user_id, o.type, o.armed, o.last_triggered_at, co.symbol, o.data_at, o.dedup_key,
               o.value, o.threshold, {_one_line(kind.message)} AS message
        FROM crossings o
        LEFT JOIN companies co ON co.id = o.company_id
        WHERE o.may_fire AND (NOT o.edge OR o.nth_crossing = 1 OR o.cooldown = 0)
          AND NOT EXISTS (SELECT 1 FROM alert_history h WHERE h.alert_id = o.alert_id AND h.dedup_key = o.dedup_key)
    ),
    claimed AS (
        -- Lock the due alerts in id order (overlapping evaluations cannot deadlock), in the
        -- mode the UPDATE below takes anyway. A row changed meanwhile is re-checked on its
        -- latest version: it drops out if it may no longer fire, or, for a condition, if it
        -- was fired, disarmed or re-armed since the snapshot its sequence started from.
        SELECT a.id
        FROM alerts a
        JOIN (SELECT DISTINCT alert_id, armed, last_triggered_at FROM due) d ON d.alert_id = a.id
        WHERE {_may_fire('a')}
          AND (a.params->>'type' IN {_EVENT_TYPES}
               OR (a.armed = d.armed AND a.last_triggered_at IS NOT DISTINCT FROM d.last_triggered_at))
        ORDER BY a.id
        FOR NO KEY UPDATE OF a
    ),
    ranked AS (
        -- Each user's firings in order, for the daily cap: oldest data first.
        SELECT d.*, row_number() OVER (PARTITION BY d.user_id ORDER BY d.data_at, d.alert_id, d.dedup_key) AS nth
        FROM due d
        WHERE d.alert_id IN (SELECT id FROM claimed)
    ),
    fired_today AS (
        -- What those users' alerts have fired since the start of the UTC day.
        SELECT a.user_id, count(*) AS n
        FROM alert_history h
        JOIN alerts a ON a.id = h.alert_id
        WHERE h.triggered_at >= CAST(:day_start AS timestamptz)
          AND h.triggered_at < CAST(:day_start AS timestamptz) + interval '1 day'
          AND a.user_id IN (SELECT user_id FROM ranked)
        GROUP BY a.user_id
    ),
    fired AS (
        -- Record the firings within the cap; one recorded meanwhile makes its insert a no-op.
        INSERT INTO alert_history (alert_id, triggered_at, value, threshold, data_at, message, dedup_key)
        SELECT r.alert_id, {_NOW}, {_history_number('r.value')}, {_history_number('r.threshold')},
               r.data_at, r.message, r.dedup_key
        FROM ranked r
        JOIN users u ON u.id = r.user_id
        LEFT JOIN fired_today t ON t.user_id = r.user_id
        WHERE r.nth <= u.daily_alert_cap - coalesce(t.n, 0)
        ORDER BY r.data_at, r.alert_id, r.dedup_key
        ON CONFLICT (alert_id, dedup_key) DO NOTHING
        RETURNING id, alert_id, value, threshold, data_at, message, dedup_key
    ),
    fired_alerts AS (
        SELECT alert_id, max(data_at) AS last_fired_at FROM fired GROUP BY alert_id
    ),
    falls AS (
        -- Each condition's last point where it did not hold (the snapshot's last firing rides along).
        SELECT o.alert_id, max(o.data_at) AS last_false_at, max(o.last_triggered_at) AS last_triggered_at
        FROM observed o
        WHERE o.edge AND NOT o.holds
        GROUP BY o.alert_id
    ),
    triggered AS (
        -- Only the alerts recorded as fired: a condition ends disarmed unless a point after its
        -- (last) firing found it false; one-shot alerts retire.
        UPDATE alerts a
        SET armed = a.params->>'type' IN {_EVENT_TYPES} OR coalesce(fl.last_false_at > fa.last_fired_at, false),
            last_triggered_at = {_NOW}, active = NOT a.one_shot, evaluated_at = coalesce(a.evaluated_at, {_NOW})
        FROM fired_alerts fa
        LEFT JOIN falls fl ON fl.alert_id = fa.alert_id
        WHERE a.id = fa.alert_id
    ),
    rearmed AS (
        -- A point found the condition false: the next crossing fires. Not if another
        -- evaluation fired the alert after this snapshot (its last_triggered_at moved).
        UPDATE alerts a
        SET armed = true, evaluated_at = coalesce(a.evaluated_at, {_NOW})
        FROM falls fl
        WHERE a.id = fl.alert_id AND NOT a.armed
          AND a.id NOT IN (SELECT alert_id FROM fired_alerts)
          AND a.last_triggered_at IS NOT DISTINCT FROM fl.last_triggered_at
        RETURNING a.id
    ),
    seen AS (
        -- New and changed alerts have now been evaluated: from the next evaluation on they read
        -- the points after the cursor. (Each UPDATE of this statement touches its own alerts:
        -- PostgreSQL applies only one of two updates of a row within one statement.)
        UPDATE alerts a
        SET evaluated_at = {_NOW}
        WHERE a.kind = CAST(:kind AS text) AND a.evaluated_at IS NULL AND a.active
          AND (a.expires_at IS NULL OR a.expires_at > {_NOW}) AND {kind.alert_scope}
          AND a.id NOT IN (SELECT alert_id FROM fired_alerts) AND a.id NOT IN (SELECT id FROM rearmed)
    ),
    retired AS (
        -- Expired alerts (in scope) never fire: deactivate them.
        UPDATE alerts a
        SET active = false
        WHERE a.kind = CAST(:kind AS text) AND a.active AND a.expires_at <= {_NOW} AND {kind.alert_scope}
    )
    SELECT f.id AS alert_history_id, f.alert_id, r.user_id, r.type AS alert_type, r.symbol,
           f.value, f.threshold, f.data_at, f.message
    FROM fired f
    JOIN ranked r ON r.alert_id = f.alert_id AND r.dedup_key = f.dedup_key
    ORDER BY f.id
    """
    )


# For the evaluation's transaction only. A plan for the parameters at hand (:symbols NULL
# or not changes everything), never a generic one cached after five runs; and no JIT: LLVM
# takes seconds to compile a statement this size, several times what running it takes.
# Then the kind's lock (module docstring, Concurrency), in the same round trip.
_PLANNING = text(
    "SELECT set_config('plan_cache_mode', 'force_custom_plan', true), set_config('jit', 'off', true),"
    " pg_advisory_xact_lock(hashtext('deallens.alert_eval'), hashtext(CAST(:kind AS text)))"
)

_STATEMENTS: dict[str, TextClause] = {
    "price": _statement(_PRICE),
    "volume": _statement(_VOLUME),
    "news": _statement(_NEWS),
    "deal": _statement(_DEAL),
}


async def evaluate(
    engine: AsyncEngine, kind: AlertKind, policy: EvalPolicy, *, symbols: Sequence[str] | None = None
) -> list[Firing]:
    """Evaluate the kind's alerts (only those on `symbols`' companies when given; deal alerts:
    deals naming them) in one statement and transaction; returns what fired, in history order."""
    if kind not in get_args(AlertKind):
        raise ValueError(f"unknown alert kind {kind!r}; expected one of {', '.join(get_args(AlertKind))}")
    now = policy.now.astimezone(dt.UTC)
    params = {
        "kind": kind,
        "now": now,
        "day_start": now.replace(hour=0, minute=0, second=0, microsecond=0),
        "max_quote_age": policy.max_quote_age,
        "min_cooldown_seconds": policy.min_cooldown_seconds,
        "news_sentiment_window": policy.news_sentiment_window,
        "symbols": None if symbols is None else [s.strip().upper() for s in symbols],
    }
    async with engine.begin() as conn:
        await conn.execute(_PLANNING, {"kind": kind})
        rows = (await conn.execute(_STATEMENTS[kind], params)).all()
    return [Firing(kind=kind, **row._asdict()) for row in rows]
