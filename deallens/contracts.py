"""Inputs and results of workflows and activities: one pydantic model each.

These travel through Temporal (the pydantic data converter), so they hold small values and
IDs, never secrets, clients or blobs. Workflow inputs are the public contract of
docs/DESIGN.md: `temporal workflow start --input '{...}'` is validated here, and a bad
value fails with a message naming the field.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9.\-]{0,15}$")


# A date a workflow input may name: checked without a clock (workflow code must not read one),
# so the bounds are fixed: far enough for any backfill or schedule, close enough to catch
# "0001-01-01" and "9999-12-31" typos before they reach a query.
InputDate = Annotated[dt.date, Field(ge=dt.date(2000, 1, 1), le=dt.date(2100, 12, 31))]


class Model(BaseModel):
    # Unknown fields are an error: a typo in `--input` must not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


def normalize_symbols(values: list[str]) -> list[str]:
    """Upper-case, strip and de-duplicate (keeping order); reject anything not ticker-shaped."""
    seen: dict[str, None] = {}
    for value in values:
        symbol = value.strip().upper()
        if not _SYMBOL.match(symbol):
            raise ValueError(f"{value[:40]!r} is not a ticker symbol (letters, digits, '.' or '-', at most 16)")
        seen.setdefault(symbol, None)
    return list(seen)


# ---------------------------------------------------------------- SyncCompanyPrices


class SyncCompanyPricesInput(Model):
    """`{"symbols": [..], "force": false}`: no symbols means tracked companies by priority."""

    symbols: Annotated[list[str], Field(max_length=1000)] = []
    force: bool = False

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, value: list[str]) -> list[str]:
        return normalize_symbols(value)


class SymbolOutcome(StrEnum):
    UPDATED = "updated"  # a new quote was stored
    UNCHANGED = "unchanged"  # the provider's quote equals the latest stored one
    UNKNOWN = "unknown"  # the provider does not know the symbol (non-retryable)
    QUARANTINED = "quarantined"  # skipped: the provider has repeatedly not known it
    DEFERRED = "deferred"  # not fetched this run: over the rate budget
    FAILED = "failed"  # the provider kept failing; retried by the next run
    UNTRACKED = "untracked"  # not in companies: SyncCompanyPrices tracks a symbol the provider knows


class SymbolResult(Model):
    symbol: str
    outcome: SymbolOutcome
    detail: str | None = None
    price: Decimal | None = None


class SyncCompanyPricesResult(Model):
    market_open: bool
    skipped_reason: str | None = None
    symbols: list[SymbolResult] = []
    stored: int = 0
    simulated: bool = False

    def count(self, outcome: SymbolOutcome) -> int:
        return sum(1 for result in self.symbols if result.outcome is outcome)


# ---------------------------------------------------------------- market activities


class MarketSessionInput(Model):
    at: dt.datetime


class MarketSessionResult(Model):
    is_open: bool
    session_date: dt.date
    opens_at: dt.datetime
    closes_at: dt.datetime
    last_closed: dt.date


class PlanPriceSyncInput(Model):
    symbols: list[str] = []
    # With no symbols, the run's share of the daily budget is paced over this session.
    at: dt.datetime
    opens_at: dt.datetime
    closes_at: dt.datetime


class PlanPriceSyncResult(Model):
    fetch: list[str]
    quarantined: list[SymbolResult] = []
    deferred: list[SymbolResult] = []
    # Symbols per provider call: 1 (GLOBAL_QUOTE), or up to 100 with a premium key (bulk quotes).
    per_call: int = 1


class FetchBulkQuotesInput(Model):
    symbols: list[str]


class FetchedBulkQuotes(Model):
    quotes: list[FetchedQuote]
    unknown: list[str]


class FetchQuoteInput(Model):
    symbol: str


class FetchedQuote(Model):
    symbol: str
    price: Decimal
    open: Decimal
    high: Decimal
    low: Decimal
    previous_close: Decimal
    change: Decimal
    change_percent: Decimal
    volume: int
    # Unknown for bulk quotes taken outside a session's day.
    latest_trading_day: dt.date | None
    quoted_at: dt.datetime
    source: str


class StoreQuotesInput(Model):
    quotes: list[FetchedQuote]


class StoreQuotesResult(Model):
    updated: list[str]
    unchanged: list[str]


class RecordUnknownSymbolsInput(Model):
    symbols: list[str]
    reason: str


class RecordUnknownSymbolsResult(Model):
    quarantined: list[str]


# ---------------------------------------------------------------- SyncDailyOHLC


class SyncDailyOHLCInput(Model):
    """`{"symbols": [..], "full": false}`: no symbols means every tracked company that is behind."""

    symbols: Annotated[list[str], Field(max_length=1000)] = []
    full: bool = False

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, value: list[str]) -> list[str]:
        return normalize_symbols(value)


class OHLCProgress(Model):
    """SyncDailyOHLC's `progress` query: companies planned, done so far (failed included)."""

    planned: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0  # asked for but not synced (unknown, quarantined, up to date)


class BarsSyncResult(Model):
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    latest_date: dt.date | None = None


class SyncDailyOHLCResult(Model):
    session_date: dt.date | None = None
    symbols: list[SymbolResult] = []
    bars_inserted: int = 0
    bars_updated: int = 0


class PlanDailyBarsInput(Model):
    symbols: list[str] = []
    full: bool = False
    # The last session whose bar should be stored.
    through: dt.date


class BarsJob(Model):
    company_id: int
    symbol: str
    full: bool


class PlanDailyBarsResult(Model):
    jobs: list[BarsJob]
    skipped: list[SymbolResult] = []


class SyncBarsInput(Model):
    company_id: int
    symbol: str
    full: bool
    # Bars of this session are provisional when fetched before its close.
    session_date: dt.date
    session_closes_at: dt.datetime


# ---------------------------------------------------------------- SyncFundamentals


class SyncFundamentalsInput(Model):
    """`{"symbols": [..]}`: no symbols means the stalest tracked companies within the budget."""

    symbols: Annotated[list[str], Field(max_length=1000)] = []

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, value: list[str]) -> list[str]:
        return normalize_symbols(value)


class PlanFundamentalsInput(Model):
    symbols: list[str] = []


class FundamentalsJob(Model):
    company_id: int
    symbol: str


class PlanFundamentalsResult(Model):
    jobs: list[FundamentalsJob]
    skipped: list[SymbolResult] = []


class FundamentalsSyncResult(Model):
    changed: bool
    name: str


class SyncFundamentalsResult(Model):
    symbols: list[SymbolResult] = []


# ---------------------------------------------------------------- CleanupMarketData


class CleanupMarketDataInput(Model):
    dry_run: bool = False


class CleanupInput(Model):
    dry_run: bool
    at: dt.datetime


class CleanupMarketDataResult(Model):
    dry_run: bool
    # Rows removed (or, in a dry run, that would be) per table, and the cut-off applied.
    removed: dict[str, int]
    cutoffs: dict[str, dt.datetime]


# ---------------------------------------------------------------- alerts

AlertKindName = Literal["price", "volume", "news", "deal"]

# How often each monitor polls when no `new_data` arrives (the old beat intervals).
DEFAULT_MONITOR_INTERVALS: dict[str, int] = {"price": 120, "volume": 300, "news": 300, "deal": 300}


class MonitorSettings(Model):
    interval_seconds: Annotated[int, Field(ge=10, le=86_400)]
    # A floor under every alert's own cooldown (0: each alert's cooldown alone applies).
    cooldown_seconds: Annotated[int, Field(ge=0, le=7 * 86_400)] = 0


class AlertMonitorInput(Model):
    """`{"kind": "price"}`; the other fields carry state across continue-as-new."""

    kind: AlertKindName
    settings: MonitorSettings | None = None
    # Evaluations before continue-as-new (each adds about ten history events).
    evaluations_per_run: Annotated[int, Field(ge=1, le=1000)] = 200
    paused: bool = False
    pause_reason: Annotated[str, Field(max_length=500)] | None = None
    pending_symbols: Annotated[list[str], Field(max_length=10_000)] = []
    pending_all: bool = False
    evaluations: Annotated[int, Field(ge=0)] = 0
    fired_total: Annotated[int, Field(ge=0)] = 0
    last_evaluation_at: dt.datetime | None = None
    last_evaluation_fired: int | None = None
    # Evaluations that failed in a row (their retries ran out), since when, and the last reason:
    # the monitor keeps running and says so (status query, `starter.py health`).
    failed_evaluations: int = 0
    failing_since: dt.datetime | None = None
    last_error: Annotated[str, Field(max_length=500)] | None = None

    @field_validator("pending_symbols")
    @classmethod
    def _pending(cls, value: list[str]) -> list[str]:
        return normalize_symbols(value)


class PauseInput(Model):
    reason: Annotated[str, Field(max_length=500)] = ""


class NewDataInput(Model):
    """`{"symbols": [..]}`: the companies whose data changed; none means "evaluate everything"."""

    symbols: Annotated[list[str], Field(max_length=10_000)] = []

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, value: list[str]) -> list[str]:
        return normalize_symbols(value)


class AdjustInput(Model):
    """`{"interval_seconds": N, "cooldown_seconds": N}`: either or both."""

    interval_seconds: Annotated[int, Field(ge=10, le=86_400)] | None = None
    cooldown_seconds: Annotated[int, Field(ge=0, le=7 * 86_400)] | None = None


class MonitorStatus(Model):
    kind: AlertKindName
    paused: bool
    pause_reason: str | None
    settings: MonitorSettings
    pending_symbols: list[str]
    pending_all: bool
    evaluations: int
    fired_total: int
    last_evaluation_at: dt.datetime | None
    last_evaluation_fired: int | None
    failed_evaluations: int = 0
    failing_since: dt.datetime | None = None
    last_error: str | None = None


class EvaluateAlertsInput(Model):
    kind: AlertKindName
    at: dt.datetime
    # None: every alert of the kind.
    symbols: list[str] | None = None
    min_cooldown_seconds: int = 0


class FiringRef(Model):
    """What the Web UI shows of one firing: opaque ids and public market data, no personal data."""

    history_id: int
    alert_id: int
    user_id: int
    kind: str
    alert_type: str | None = None
    symbol: str | None = None
    # The channels the user has for it (the plan may still hold or skip one).
    channels: list[str] = []


class EvaluateAlertsResult(Model):
    fired: int
    # The firings' alert_history ids when few fired (each gets its own notify-<id> workflow);
    # empty for a burst, which is notified by evaluation (kind, triggered_at) in batches.
    history_ids: list[int] = []
    triggered_at: dt.datetime
    # For the search attributes and summaries (bounded: at most 100 of each; absent from
    # results recorded before they existed).
    firings: list[FiringRef] = []
    symbols: list[str] = []
    alert_ids: list[int] = []


class SignalMonitorsInput(Model):
    kinds: list[AlertKindName]
    symbols: list[str]
    task_queue: str


class SendAlertNotificationInput(Model):
    """`{"alert_history_id": N}`."""

    alert_history_id: Annotated[int, Field(gt=0)]
    # How soon a lost sender is noticed (default workflows/policies.SEND_HEARTBEAT): the
    # crash tests shorten it, an operator may for a fleet that must fail over faster.
    send_heartbeat_seconds: Annotated[int, Field(ge=1, le=600)] | None = None


class SendAlertNotificationBatchInput(Model):
    kind: AlertKindName
    triggered_at: dt.datetime
    send_heartbeat_seconds: Annotated[int, Field(ge=1, le=600)] | None = None  # as above
    # Carried over continue-as-new by a long burst: firings up to after_id are planned, and
    # what the earlier runs delivered.
    after_id: Annotated[int, Field(ge=0)] = 0
    firings: Annotated[int, Field(ge=0)] = 0
    counts: DeliveryCounts | None = None
    # Firings per plan (3 channels x 500 ids: about 10 KB) and plans before continue-as-new.
    page_size: Annotated[int, Field(ge=1, le=2_000)] = 500
    pages_per_run: Annotated[int, Field(ge=1, le=1_000)] = 40


# ---------------------------------------------------------------- notifications

NotificationChannel = Literal["email", "push", "sms"]


class PlanAlertsInput(Model):
    """Either the firings named, or every firing of one evaluation (a burst)."""

    alert_history_ids: list[Annotated[int, Field(gt=0)]] | None = None
    kind: AlertKindName | None = None
    triggered_at: dt.datetime | None = None
    # A burst is planned a page at a time (firings with ids after after_id, at most limit),
    # so no result grows with the size of the burst. None: all at once (runs that predate paging).
    after_id: Annotated[int, Field(ge=0)] = 0
    limit: Annotated[int, Field(ge=1, le=10_000)] | None = None


class DeliveryGroup(Model):
    """Deliveries of one channel due at one time (None: now; else the end of quiet hours)."""

    channel: NotificationChannel
    deliver_at: dt.datetime | None = None
    alert_history_ids: list[int]


class PlanAlertsResult(Model):
    firings: int
    already_done: int = 0  # deliveries the ledger says were sent before
    groups: list[DeliveryGroup]
    # Paged plans: the last firing of this page when more follow, else None.
    next_after_id: int | None = None


class DeliverAlertsInput(Model):
    channel: NotificationChannel
    alert_history_ids: list[int]


class DeliveryCounts(Model):
    """What one send activity (or a whole workflow) did; sums across activities."""

    sent: int = 0
    failed: int = 0  # permanently (recorded) or parked after retries ran out
    skipped: int = 0  # the user opted out or unsubscribed meanwhile
    already_done: int = 0  # the ledger said sent: nothing sent again

    def plus(self, other: DeliveryCounts) -> DeliveryCounts:
        return DeliveryCounts(
            sent=self.sent + other.sent,
            failed=self.failed + other.failed,
            skipped=self.skipped + other.skipped,
            already_done=self.already_done + other.already_done,
        )


class ParkAlertsInput(Model):
    channel: NotificationChannel
    alert_history_ids: list[int]
    error: str


class NotificationResult(Model):
    firings: int
    counts: DeliveryCounts
    # Set when quiet hours held some deliveries back until then.
    waited_until: dt.datetime | None = None


class DigestCursor(Model):
    """Where a digest fan-out stands, carried over continue-as-new (never a list of users)."""

    periods: list[dt.date]  # the local dates the plan made rows for (at most three)
    index: int = 0  # periods[index] is being sent
    after_user_id: int = 0  # ... and its users up to this id are done
    users: int = 0
    batches: int = 0
    not_eligible: int = 0
    counts: DeliveryCounts


class DigestInput(Model):
    """`{"date": "YYYY-MM-DD", "user_ids": [..]}`: without a date, every opted-in user whose
    local digest time has come at the workflow's start (the hourly schedule's run)."""

    date: InputDate | None = None
    user_ids: Annotated[list[Annotated[int, Field(gt=0)]], Field(max_length=10_000)] | None = None
    # Users per batch activity (one SMTP connection each) and batches in flight.
    batch_size: Annotated[int, Field(ge=1, le=5_000)] = 250
    parallel_batches: Annotated[int, Field(ge=1, le=32)] = 4
    # Pages (batch_size * parallel_batches users each) before the run continues as new.
    pages_per_run: Annotated[int, Field(ge=1, le=1_000)] = 50
    # Set by the workflow itself when it continues as new.
    resume: DigestCursor | None = None


DigestKindName = Literal["daily", "weekly"]


class DigestPlanInput(Model):
    kind: DigestKindName
    period: dt.date
    user_ids: list[int] | None = None


class DigestPlanResult(Model):
    pending_user_ids: list[int]
    already_done: int
    not_eligible: int


class DigestBatchInput(Model):
    kind: DigestKindName
    period: dt.date
    user_ids: list[int]


class ParkDigestsInput(Model):
    kind: DigestKindName
    period: dt.date
    user_ids: list[int]
    error: str


class PlanDueDigestsInput(Model):
    """Make the pending ledger rows of one run: for `period` (every eligible user, or those
    named), or without it for the users whose local digest time has come at `at`."""

    kind: DigestKindName
    at: dt.datetime
    period: dt.date | None = None
    user_ids: list[int] | None = None


class PlanDueDigestsResult(Model):
    periods: list[dt.date]  # local dates with rows still pending, oldest first
    pending: int
    already_done: int
    not_eligible: int


class DigestPageInput(Model):
    kind: DigestKindName
    period: dt.date
    after_user_id: Annotated[int, Field(ge=0)] = 0
    # 20,000 ids of up to 8 digits: under 200 KB, well inside Temporal's 2 MB payload limit.
    limit: Annotated[int, Field(ge=1, le=20_000)]
    user_ids: list[int] | None = None


class DigestPage(Model):
    user_ids: list[int]  # pending, ascending, at most the page's limit


class DigestResult(Model):
    kind: DigestKindName
    period: dt.date  # the first of `periods` (or the date asked for)
    # The users' local dates sent for (a run picks users by local time: up to three dates).
    periods: list[dt.date] = []
    users: int  # eligible users (pending at the start plus already sent)
    batches: int
    counts: DeliveryCounts
    not_eligible: int = 0


# ---------------------------------------------------------------- news pipeline (shared steps)
#
# IngestMarketNews / IngestCompanyNews / IngestDealNews store articles in one activity on the
# deallens-newsapi queue, then hand the id range of what they stored to the LLM-queue steps
# (sentiment, deal tracking). The range is a pair of ids, never an article list: nothing bulk
# enters workflow history. Steps are idempotent over a range (scored articles are not scored
# again, articles already checked for deals are not checked again), so a retry, an overlapping
# run's articles inside the range, or a second run over the same range change nothing.


class ArticleRange(Model):
    """news_articles ids first_id..last_id (inclusive) stored by one ingestion."""

    first_id: Annotated[int, Field(ge=1)]
    last_id: Annotated[int, Field(ge=1)]


class ScoreSentimentResult(Model):
    scored: int = 0  # articles given a score by this run
    llm: int = 0  # ... by the LLM
    lexicon: int = 0  # ... by the offline lexicon model (no key, over budget, LLM failed)
    llm_calls: int = 0
    already_scored: int = 0


class TrackDealsResult(Model):
    checked: int = 0  # deal-relevant articles examined
    created: int = 0  # new deals
    status_changes: int = 0  # deal_events rows with a new status
    # Tickers of tracked companies named by a new or changed deal: the deal monitor's new_data.
    symbols: list[str] = []


# ---------------------------------------------------------------- News ingestion (issue 10)

NewsKind = Literal["market", "company", "deal"]


class IngestMarketNewsInput(Model):
    """`{}`: business top headlines and market queries, within the run's request allowance."""


class IngestDealNewsInput(Model):
    """`{}`: M&A news (merger, acquisition, takeover, buyout, tender offer, ...)."""


class IngestCompanyNewsInput(Model):
    """`{"company_ids": [..]}`; none: tracked companies by priority (most watched, least recently fetched)."""

    company_ids: Annotated[list[Annotated[int, Field(ge=1)]], Field(max_length=1000)] = []


class PlanCompanyNewsInput(Model):
    company_ids: list[int] = []  # none: NEWS_COMPANY_MAX_COMPANIES companies by priority


class PlanCompanyNewsResult(Model):
    company_ids: list[int] = []
    unknown_ids: list[int] = []  # asked for, not in companies


class IngestNewsInput(Model):
    """One feed's fetch-and-store: `company_id` for company news, none for market and deal news."""

    kind: NewsKind
    company_id: int | None = None
    # None: the worker's allowance for the kind (NEWS_MARKET_MAX_REQUESTS, ...).
    max_requests: Annotated[int, Field(ge=1)] | None = None


class IngestNewsResult(Model):
    """What one fetch-and-store did: counts by outcome and skip reason, never the articles."""

    kind: NewsKind
    company_id: int | None = None
    requests: int = 0
    fetched: int = 0  # articles the provider sent
    stored: int = 0  # new rows in news_articles
    duplicates: int = 0  # already stored (same canonical URL), in this batch or before
    skipped: dict[str, int] = {}  # bad input by reason (deallens/domain/news/articles.py)
    html_stripped: int = 0  # stored, with markup removed from description or content
    new_stories: int = 0
    joined_stories: int = 0  # stored articles that are another outlet's copy of a known story
    links: int = 0  # news_company rows written
    articles: ArticleRange | None = None  # the rows this run inserted
    symbols: list[str] = []  # tickers linked to the inserted articles: the news monitor's new_data
    deferred: str | None = None  # why nothing (more) was fetched: the daily quota is used up
    stopped: str | None = None  # why paging stopped early: the plan's result cap, the run's allowance


class IngestNewsRunResult(Model):
    """The result of IngestMarketNews / IngestCompanyNews / IngestDealNews."""

    kind: NewsKind
    feeds: list[IngestNewsResult] = []
    failed: dict[str, str] = {}  # company id (or the feed) -> why its fetch failed
    unknown_company_ids: list[int] = []
    stored: int = 0
    articles: ArticleRange | None = None
    sentiment: ScoreSentimentResult | None = None
    deals: TrackDealsResult | None = None
    signalled: list[str] = []  # monitor kinds signalled new_data


# ---------------------------------------------------------------- AI insights (issue 11)


class GenerateCompanyInsightsInput(Model):
    """`{"company_ids": [..], "force": false, "batch": false}`; no ids: the watchlisted companies
    (those whose context did not change are cache hits and cost nothing)."""

    company_ids: Annotated[list[Annotated[int, Field(ge=1)]], Field(max_length=5000)] = []
    force: bool = False  # analyse again even when the context is unchanged
    batch: bool = False  # through the OpenAI Batch API (half price, within 24 h)


class GenerateDealInsightsInput(Model):
    """`{"deal_ids": [..], "force": false}`; no ids: every open deal (unchanged ones are cache hits)."""

    deal_ids: Annotated[list[Annotated[int, Field(ge=1)]], Field(max_length=1000)] = []
    force: bool = False


class GenerateMarketSummaryInput(Model):
    """`{"date": "YYYY-MM-DD"}`; no date: the trading day of the run's start (America/New_York)."""

    date: InputDate | None = None
    force: bool = False


class PlanCompanyInsightsInput(Model):
    company_ids: list[int] = []


class PlanCompanyInsightsResult(Model):
    company_ids: list[int] = []
    unknown_ids: list[int] = []


class AnalyseCompaniesInput(Model):
    company_ids: Annotated[list[int], Field(max_length=200)]
    as_of: dt.date
    force: bool = False


class AnalyseDealsInput(Model):
    deal_ids: list[int] | None = None  # None: every open deal
    as_of: dt.date
    force: bool = False


class MarketSummaryInput(Model):
    date: dt.date | None = None  # None: the New York trading day at `at`
    at: dt.datetime
    force: bool = False


class InsightBatchResult(Model):
    analysed: int = 0  # new insights from the model
    reused: int = 0  # cache hits: unchanged context, no call
    fallback: int = 0  # rule-based (no key, over budget, the LLM failed for good)
    llm_calls: int = 0
    changed: int = 0  # recommendations that changed, with the context fields that moved
    without_context: list[int] = []  # subjects with no data to analyse (no bars, deal not open)
    insight_ids: list[int] = []
    skipped: str | None = None  # why nothing was done (the market summary on a non-trading day)


class GenerateInsightsResult(Model):
    kind: Literal["company", "deal", "market_summary"]
    requested: int = 0
    analysed: int = 0
    reused: int = 0
    fallback: int = 0
    llm_calls: int = 0
    changed: int = 0
    without_context: list[int] = []
    unknown_ids: list[int] = []
    failed: dict[str, str] = {}  # batch (first id) -> why it failed
    skipped: str | None = None
# ---------------------------------------------------------------- LLM Batch API (half-price bulk runs)
#
# A job (deallens/db/llm_batches.py: create_job) goes through llm.batch_submit, then
# llm.batch_poll on durable timers until the batch is finished, then llm.batch_collect. Only
# the job id and counts travel through Temporal: requests and answers stay in PostgreSQL.


class BatchSubmitInput(Model):
    job_id: Annotated[int, Field(ge=1)]


class BatchSubmitResult(Model):
    batch_id: str | None  # None when the job was not sent (status "rejected")
    requests: int
    status: Literal["submitted", "rejected", "collected"] = "submitted"
    reason: str | None = None  # why it was not sent: no key, the day's budget, a refused submission


class BatchPollInput(Model):
    job_id: Annotated[int, Field(ge=1)]


class BatchPollResult(Model):
    status: str  # OpenAI's batch status, or "pending" / "rejected" / "collected" for jobs not (or no longer) at OpenAI
    done: int
    failed: int
    total: int
    finished: bool = False  # nothing more will change: collect now


class BatchCollectInput(Model):
    job_id: Annotated[int, Field(ge=1)]


class BatchCollectResult(Model):
    succeeded: int
    failed: int


# ---------------------------------------------------------------- AI insights through the Batch API


class PrepareCompanyBatchInput(Model):
    company_ids: Annotated[list[int], Field(max_length=5000)]
    as_of: dt.date
    force: bool = False


class PrepareCompanyBatchResult(Model):
    job_id: int | None = None  # None: every company was a cache hit (or had no data): nothing to send
    requests: int = 0
    reused: int = 0
    without_context: list[int] = []


class StoreBatchInsightsInput(Model):
    job_id: Annotated[int, Field(ge=1)]


class StoreBatchInsightsResult(Model):
    analysed: int = 0  # stored from the batch's answers
    fallback: int = 0  # the rules, for requests that failed or were rejected (invented figure)
    rejected: int = 0  # answers the grounding or leak check refused
    changed: int = 0

# Forward references (DeliveryCounts is defined after the models that carry it).
SendAlertNotificationBatchInput.model_rebuild()


# ---------------------------------------------------------------- RetryParkedDeliveries


class RetryParkedInput(Model):
    """One run of the self-healing schedule: at most `limit` firings and `limit` digests."""

    limit: Annotated[int, Field(ge=1, le=500)] = 200


class ParkedDigestGroup(Model):
    kind: DigestKindName
    period: dt.date
    user_ids: list[int]


class RequeuedDeliveries(Model):
    alert_history_ids: list[int] = []
    digests: list[ParkedDigestGroup] = []


class RetryParkedResult(Model):
    alerts_started: int = 0
    # Firings whose notify-<id> was still running (rare: firings with a pending channel are
    # not re-queued); what it had planned before the re-queue it does not send again.
    alerts_running: int = 0
    digests_requeued: int = 0
