"""What a notification says, as plain data: the renderer's input, built by the data layer.

Every text field that comes from users, providers or news (alert names, company names,
news titles, messages) is untrusted: templates autoescape it and headers strip CR/LF.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict


class _Content(BaseModel):
    model_config = ConfigDict(frozen=True)


class AlertContent(_Content):
    """One fired alert, for the email, push and SMS bodies."""

    alert_history_id: int
    kind: Literal["price", "volume", "news", "deal"]
    alert_type: str  # price_above, volume_spike, deal_status_change, ...
    alert_name: str | None  # the user's own name for the alert (untrusted)
    symbol: str | None
    company_name: str | None  # untrusted
    message: str  # alert_history.message (untrusted: may quote a news title)
    value: Decimal | None
    threshold: Decimal | None
    triggered_at: dt.datetime  # aware, UTC
    urgent: bool = False
    user_name: str | None = None
    timezone: str = "UTC"  # the user's IANA zone, for showing times
    unsubscribe_url: str  # one click: stops alert emails for this user


class WatchlistRow(_Content):
    company_id: int
    symbol: str
    name: str | None  # untrusted
    last_close: Decimal | None
    day_change_pct: float | None
    week_change_pct: float | None
    closes: list[float]  # oldest first, up to ~30 sessions: the sparkline
    as_of: dt.date | None  # the session of last_close
    # The last close is older than the digest's time expects (deallens/domain/freshness.py):
    # a sync that could not run; shown as "stale", never as the current price.
    stale: bool = False


class FiredAlertRow(_Content):
    alert_history_id: int
    alert_name: str | None  # untrusted
    symbol: str | None
    message: str  # untrusted
    triggered_at: dt.datetime


class NewsRow(_Content):
    title: str  # untrusted
    url: str  # untrusted: only http(s) URLs are linked
    publisher: str | None
    published_at: dt.datetime
    sentiment_score: float | None  # -1..1
    symbols: list[str]
    outlets: int = 1  # outlets that carried the story this article leads


class InsightRow(_Content):
    subject: str  # symbol or deal title (untrusted)
    recommendation: str | None  # strong_buy .. strong_sell
    summary: str  # untrusted (LLM output)
    created_at: dt.datetime


class DealMoveRow(_Content):
    title: str  # untrusted
    old_status: str | None
    new_status: str | None
    event_type: str
    occurred_at: dt.datetime


class DigestContent(_Content):
    """A daily digest (`kind="daily"`) or weekly summary (`kind="weekly"`) for one user."""

    kind: Literal["daily", "weekly"]
    period: dt.date  # the digest's date (weekly: the Sunday it is sent)
    user_id: int
    user_name: str | None
    user_email: str
    timezone: str = "UTC"
    watchlist: list[WatchlistRow]
    # Companies beyond those shown (a long watchlist is cut: Gmail clips messages over ~100 KB).
    watchlist_more: int = 0
    alerts: list[FiredAlertRow]
    news: list[NewsRow] = []
    insights: list[InsightRow] = []
    deals: list[DealMoveRow] = []
    unsubscribe_url: str  # one click: stops this kind of digest


class PushEvent(_Content):
    """A push notification, formatted per endpoint style by deallens/notify/push.py."""

    title: str
    message: str
    priority: Literal["high", "default"] = "default"
    url: str | None = None
    tags: list[str] = []
    data: dict[str, str | int | float | bool | None] = {}


@dataclass(frozen=True)
class RenderedEmail:
    """The renderer's output and the MIME builder's input (here, beside the other plain data,
    so that neither render.py nor message.py imports the other's module for it)."""

    subject: str
    text: str
    html: str
    # Content-ID (without <>) -> PNG bytes; every `cid:` in `html` has its entry.
    images: dict[str, bytes] = field(default_factory=dict)
