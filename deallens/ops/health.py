"""The verdicts of `starter.py health`: one Check per thing an operator would look at.

The gathering (database queries in deallens/db/health.py, Temporal calls in cli/health.py) is
kept apart from the judging here, so every threshold below is a plain function of facts.

Exit codes: 0 healthy, 1 degraded (something needs a look: a paused schedule, a missing
monitor, a parked delivery, stale data), 2 down (Temporal or the database unreachable, the
database behind the code, or no worker polling the main queue: nothing would run).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import IntEnum
from typing import Any

from deallens.domain.freshness import QUOTE_MAX_AGE
from deallens.domain.market_calendar import market_minutes_between, sessions_closed_after


class Status(IntEnum):
    OK = 0
    DEGRADED = 1
    DOWN = 2


@dataclass(frozen=True)
class Check:
    """`name` is the line's label ("schedule sync-daily-ohlc"); `detail` says what is so."""

    name: str
    status: Status
    detail: str
    data: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        return f"{self.name}: {self.detail}"

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["status"] = self.status.name.lower()
        return out


def exit_code(checks: Iterable[Check]) -> int:
    return max((int(c.status) for c in checks), default=0)


def report(checks: Sequence[Check]) -> dict[str, Any]:
    """The `--json` document: the overall status and every check."""
    code = exit_code(checks)
    return {"status": Status(code).name.lower(), "exit_code": code, "checks": [c.as_json() for c in checks]}


# ------------------------------------------------------------------ Temporal


@dataclass(frozen=True)
class Pollers:
    queue: str
    workflow_pollers: int
    activity_pollers: int
    build_ids: tuple[str, ...] = ()


def queue_check(pollers: Pollers, *, main: bool) -> Check:
    """A queue with no poller: nothing on it runs. On the main queue that is every workflow
    (down); on a provider queue only that provider's calls wait (degraded)."""
    builds = f", build {', '.join(pollers.build_ids)}" if pollers.build_ids else ""
    data = asdict(pollers)
    if main and pollers.workflow_pollers == 0:
        return Check(f"queue {pollers.queue}", Status.DOWN, "NO WORKER polls workflow tasks: nothing runs", data)
    if pollers.activity_pollers == 0:
        return Check(
            f"queue {pollers.queue}", Status.DOWN if main else Status.DEGRADED,
            "NO WORKER polls activity tasks: its activities wait", data,
        )
    polled = (
        f"{pollers.workflow_pollers} workflow and {pollers.activity_pollers} activity poller(s)"
        if main else f"{pollers.activity_pollers} activity poller(s)"
    )
    return Check(f"queue {pollers.queue}", Status.OK, f"ok, {polled}{builds}", data)


@dataclass(frozen=True)
class ScheduleState:
    id: str
    present: bool
    paused: bool = False
    note: str | None = None  # the operator's note when paused
    next_run: dt.datetime | None = None


def schedule_check(state: ScheduleState) -> Check:
    data = {"present": state.present, "paused": state.paused, "note": state.note,
            "next_run": state.next_run.isoformat() if state.next_run else None}
    name = f"schedule {state.id}"
    if not state.present:
        return Check(name, Status.DEGRADED, "MISSING: create it with `python schedules.py apply`", data)
    if state.paused:
        why = f" ({state.note})" if state.note else ""
        return Check(name, Status.DEGRADED, f"PAUSED{why}: unpause with `python starter.py schedules unpause {state.id}`", data)
    when = state.next_run.isoformat(timespec="seconds") if state.next_run else "none"
    return Check(name, Status.OK, f"ok, next run {when}", data)


@dataclass(frozen=True)
class MonitorState:
    kind: str
    running: bool
    paused: bool = False
    reason: str | None = None
    evaluations: int = 0
    last_evaluation_at: dt.datetime | None = None
    failed_evaluations: int = 0
    failing_since: dt.datetime | None = None
    last_error: str | None = None


def monitor_check(state: MonitorState) -> Check:
    data = {"running": state.running, "paused": state.paused, "reason": state.reason, "evaluations": state.evaluations,
            "last_evaluation_at": state.last_evaluation_at.isoformat() if state.last_evaluation_at else None}
    name = f"monitor {state.kind}"
    if not state.running:
        return Check(name, Status.DEGRADED, "MISSING (not running): start it with `python schedules.py apply`", data)
    if state.paused:
        why = f" ({state.reason})" if state.reason else ""
        return Check(name, Status.DEGRADED, f"PAUSED{why}: resume with `python starter.py monitors resume {state.kind}`", data)
    if state.failed_evaluations:
        data.update(failed_evaluations=state.failed_evaluations, last_error=state.last_error,
                    failing_since=state.failing_since.isoformat() if state.failing_since else None)
        since = state.failing_since.isoformat(timespec="seconds") if state.failing_since else "?"
        return Check(name, Status.DEGRADED,
                     f"FAILING: {state.failed_evaluations} evaluation(s) in a row since {since}: {state.last_error}", data)
    last = state.last_evaluation_at.isoformat(timespec="seconds") if state.last_evaluation_at else "none yet"
    return Check(name, Status.OK, f"running, {state.evaluations} evaluation(s) this run, last {last}", data)


# ------------------------------------------------------------------ providers, email


def quota_check(name: str, *, simulated: bool, url: str, calls_per_day: int | None, used_today: int) -> Check:
    """A provider's mode and what its daily quota still allows (None: budgeted in money)."""
    where = f"{'simulated' if simulated else 'real'} at {url}"
    data = {"simulated": simulated, "url": url, "calls_per_day": calls_per_day, "used_today": used_today}
    if calls_per_day is None:
        return Check(f"provider {name}", Status.OK, where, data)
    left = max(calls_per_day - used_today, 0)
    data["left_today"] = left
    if left == 0:
        return Check(f"provider {name}", Status.DEGRADED, f"{where}; QUOTA USED UP today ({used_today} of {calls_per_day} calls)", data)
    return Check(f"provider {name}", Status.OK, f"{where}; {left} of {calls_per_day} calls left today", data)


# ------------------------------------------------------------------ deliveries


def deliveries_check(
    parked: int, stuck: int, *, lease_seconds: int, margin: dt.timedelta, retrying: int = 0
) -> Check:
    data = {"parked": parked, "stuck": stuck, "retrying": retrying, "lease_seconds": lease_seconds,
            "margin_seconds": int(margin.total_seconds())}
    waiting = f"; {retrying} parked, to be retried automatically (retry-parked-deliveries)" if retrying else ""
    if not parked and not stuck:
        return Check("deliveries", Status.OK, f"ok, none needs a person{waiting}" if retrying else "ok, none parked or stuck", data)
    parts = []
    if parked:
        parts.append(f"{parked} PARKED (retries and automatic retries ran out): see `python starter.py notifications failed`")
    if stuck:
        # Sooner than `notifications failed` (26 h): a lapsed claim means the sender died and
        # no retry took the row back, which is worth a look at the worker and notify-<id> now.
        parts.append(
            f"{stuck} STUCK (pending, claim lapsed over {lease_seconds}s + {int(margin.total_seconds())}s ago: "
            "is the worker up? look at its notify-<alert_history id> workflow)"
        )
    return Check("deliveries", Status.DEGRADED, "; ".join(parts) + waiting, data)


def stuck_margin(lease_seconds: int) -> dt.timedelta:
    """How long past its lease a claim may lapse before its row counts as stuck: a sender's
    retry (backoff up to a minute or two) re-claims the row within this."""
    return dt.timedelta(seconds=max(120, lease_seconds))


# ------------------------------------------------------------------ freshness

# Expected ages. Quotes are synced every market minute: in market time they should never be
# more than a few minutes old (a weekend does not age them). Daily bars land after each close:
# one session behind is the gap between the close and the evening sync. Articles arrive every
# 15-30 minutes around the clock. Insights are re-made only when their context changes, but the
# market summary is written after every session's close.
# The same quote age the digest marks stale (deallens/domain/freshness.py), in market minutes.
QUOTE_MAX_MARKET_MINUTES = int(QUOTE_MAX_AGE.total_seconds() // 60)
BAR_MAX_SESSIONS_BEHIND = 1
ARTICLE_MAX_AGE = dt.timedelta(hours=3)
INSIGHT_MAX_SESSIONS_BEHIND = 1


def _none_yet(kind: str) -> Check:
    # A new installation has none; the schedules fill them. Not a fault by itself.
    return Check(f"freshness {kind}", Status.OK, "none stored yet", {"newest": None})


def freshness_checks(
    now: dt.datetime,
    *,
    quote_at: dt.datetime | None,
    bar_date: dt.date | None,
    article_at: dt.datetime | None,
    insight_at: dt.datetime | None,
) -> list[Check]:
    checks = []
    if quote_at is None:
        checks.append(_none_yet("quote"))
    else:
        minutes = market_minutes_between(quote_at, now)
        ok = minutes <= QUOTE_MAX_MARKET_MINUTES
        checks.append(Check(
            "freshness quote",
            Status.OK if ok else Status.DEGRADED,
            f"{'ok' if ok else 'STALE'}, newest {quote_at.isoformat(timespec='seconds')}: {minutes} market minute(s) old "
            f"(expected at most {QUOTE_MAX_MARKET_MINUTES})",
            {"newest": quote_at.isoformat(), "market_minutes": minutes, "max": QUOTE_MAX_MARKET_MINUTES},
        ))
    for kind, newest_day, limit, newest in (
        ("bar", bar_date, BAR_MAX_SESSIONS_BEHIND, bar_date),
        ("insight", _ny_date(insight_at), INSIGHT_MAX_SESSIONS_BEHIND, insight_at),
    ):
        if newest_day is None or newest is None:
            checks.append(_none_yet(kind))
            continue
        behind = sessions_closed_after(newest_day, now)
        ok = behind <= limit
        checks.append(Check(
            f"freshness {kind}",
            Status.OK if ok else Status.DEGRADED,
            f"{'ok' if ok else 'STALE'}, newest {newest.isoformat()}: {behind} session(s) behind (expected at most {limit})",
            {"newest": newest.isoformat(), "sessions_behind": behind, "max": limit},
        ))
    if article_at is None:
        checks.append(_none_yet("article"))
    else:
        age = now - article_at
        ok = age <= ARTICLE_MAX_AGE
        hours = age.total_seconds() / 3600
        checks.append(Check(
            "freshness article",
            Status.OK if ok else Status.DEGRADED,
            f"{'ok' if ok else 'STALE'}, newest stored {article_at.isoformat(timespec='seconds')}: {hours:.1f} h old "
            f"(expected at most {ARTICLE_MAX_AGE.total_seconds() / 3600:.0f} h)",
            {"newest": article_at.isoformat(), "age_seconds": int(age.total_seconds()), "max_seconds": int(ARTICLE_MAX_AGE.total_seconds())},
        ))
    order = {"quote": 0, "bar": 1, "article": 2, "insight": 3}
    return sorted(checks, key=lambda c: order[c.name.split()[-1]])


def _ny_date(at: dt.datetime | None) -> dt.date | None:
    from zoneinfo import ZoneInfo

    return at.astimezone(ZoneInfo("America/New_York")).date() if at else None
