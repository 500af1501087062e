"""Email bodies for notifications: a fired alert, the daily digest and the weekly summary.

`Renderer` holds one jinja2 Environment (templates in deallens/notify/templates, HTML
autoescaped, text not) and a cache of sparkline PNGs, so that a batch of digests draws each
company's chart once. Use one Renderer per batch of users: its cache grows with the companies
it has seen (bounded by `max_sparklines`).

Content is untrusted (alert names, company names, news titles, LLM summaries): the HTML
templates escape everything, only http(s) URLs become links, and subjects are one line
(deallens/notify/message.py strips control characters from every header again).

The view models below do the formatting (numbers, signs, times in the user's zone) once in
Python, so both the HTML and the plain-text template show the same thing.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import math
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from deallens.notify.content import (
    AlertContent,
    DealMoveRow,
    DigestContent,
    FiredAlertRow,
    NewsRow,
    RenderedEmail,
    WatchlistRow,
)
from deallens.notify.message import header_safe
from deallens.notify.sparkline import sparkline_png

TEMPLATES = Path(__file__).with_name("templates")

SPARK_WIDTH = 120
SPARK_HEIGHT = 32
SPARK_SCALE = 2

# Palette (on white): text, secondary text, positive, negative, neutral, accents.
INK = "#111827"
MUTED = "#6b7280"
UP = "#15803d"
DOWN = "#b91c1c"
FLAT = "#4b5563"
LINK = "#1d4ed8"
FONT = "-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,Helvetica,Arial,sans-serif"

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_UTC = dt.UTC


# ------------------------------------------------------------------ the result


# ------------------------------------------------------------------ formatting


@functools.lru_cache(maxsize=256)
def user_zone(name: str | None) -> tuple[dt.tzinfo, str]:
    """The user's zone and its name to show; UTC when `name` is not a valid IANA zone."""
    if name:
        try:
            return ZoneInfo(name), name
        except (ValueError, TypeError, OSError, LookupError):  # ZoneInfoNotFoundError is a KeyError
            pass
    return _UTC, "UTC"


def _local(when: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    if when.tzinfo is None:  # the data layer stores UTC
        when = when.replace(tzinfo=_UTC)
    return when.astimezone(zone)


def format_date(day: dt.date, *, year: bool = True) -> str:
    """`Mon 30 Nov 2026` (locale-independent)."""
    text = f"{_DAYS[day.weekday()]} {day.day} {_MONTHS[day.month - 1]}"
    return f"{text} {day.year}" if year else text


def format_time(when: dt.datetime, zone: dt.tzinfo, *, date: bool = True, year: bool = False) -> str:
    """`Mon 30 Nov, 14:05 EST` in `zone`."""
    local = _local(when, zone)
    clock = f"{local.hour:02d}:{local.minute:02d} {local.tzname() or ''}".rstrip()
    return f"{format_date(local.date(), year=year)}, {clock}" if date else clock


def format_price(value: Decimal | float | None) -> str:
    if value is None:
        return "—"
    number = float(value)
    if not math.isfinite(number):
        return "—"
    return f"{number:,.4f}" if abs(number) < 1 else f"{number:,.2f}"


def safe_url(url: str | None) -> str | None:
    """`url` when it is an absolute http(s) URL without spaces or control characters, else None."""
    if not url:
        return None
    url = url.strip()
    if len(url) > 2048 or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url


def clip(text: str | None, limit: int) -> str:
    """One line of at most `limit` characters (untrusted text may hold newlines and controls)."""
    return header_safe(text, limit) if text else ""


def clip_block(text: str | None, limit: int) -> str:
    """Like `clip` but for a paragraph: whitespace collapsed, cut at a word near `limit`."""
    if not text:
        return ""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit * 0.6 else cut).rstrip(" ,;:.") + "…"


def humanize(token: str | None) -> str:
    """`strong_buy` -> `Strong buy`."""
    if not token:
        return ""
    words = token.replace("_", " ").replace("-", " ").split()
    return " ".join(words).capitalize()


class Change(NamedTuple):
    """A percentage change as shown: `▲ +1.23%` in green (HTML), `+1.23%` (text)."""

    text: str  # plain: "+1.23%", "-0.80%", "0.00%", "—"
    html: str  # with an arrow and a typographic minus: "▲ +1.23%", "▼ −0.80%"
    colour: str
    word: str  # "up" / "down" / "flat" / "" (for alt text and screen readers)

    @classmethod
    def of(cls, pct: float | None, digits: int = 2) -> Change:
        if pct is None or not math.isfinite(pct):
            return cls("—", "—", MUTED, "")
        rounded = round(pct, digits)
        if rounded > 0:
            return cls(f"+{rounded:.{digits}f}%", f"▲ +{rounded:.{digits}f}%", UP, "up")
        if rounded < 0:
            return cls(f"-{-rounded:.{digits}f}%", f"▼ −{-rounded:.{digits}f}%", DOWN, "down")
        return cls(f"{0:.{digits}f}%", f"{0:.{digits}f}%", FLAT, "flat")


class Badge(NamedTuple):
    label: str
    fg: str
    bg: str


def sentiment_badge(score: float | None) -> Badge | None:
    if score is None or not math.isfinite(score):
        return None
    if score >= 0.15:
        return Badge("Positive", "#166534", "#dcfce7")
    if score <= -0.15:
        return Badge("Negative", "#991b1b", "#fee2e2")
    return Badge("Neutral", "#374151", "#e5e7eb")


def recommendation_badge(value: str | None) -> Badge | None:
    if not value:
        return None
    key = value.lower()
    if "buy" in key:
        return Badge(humanize(value), "#166534", "#dcfce7")
    if "sell" in key:
        return Badge(humanize(value), "#991b1b", "#fee2e2")
    return Badge(humanize(value), "#374151", "#e5e7eb")


# ------------------------------------------------------------------ view models


class Spark(NamedTuple):
    cid: str
    alt: str
    width: int
    height: int


class WatchView(NamedTuple):
    symbol: str
    name: str
    last: str
    day: Change
    week: Change
    spark: Spark | None
    as_of: str
    stale: bool = False


class AlertView(NamedTuple):
    time: str
    symbol: str
    name: str
    message: str


class NewsView(NamedTuple):
    title: str
    url: str | None
    meta: str  # publisher · time · symbols
    badge: Badge | None


class InsightView(NamedTuple):
    subject: str
    badge: Badge | None
    summary: str
    time: str


class DealView(NamedTuple):
    title: str
    move: str  # "Announced → Regulatory review", or the event when the status did not change
    event: str
    time: str


def _deal_move(row: DealMoveRow) -> str:
    old, new = humanize(clip(row.old_status, 40)), humanize(clip(row.new_status, 40))
    if (old or new) and old != new:
        return f"{old or 'New'} → {new or 'Unknown'}"
    return humanize(clip(row.event_type, 60))


def _text_table(rows: Sequence[WatchView], *, weekly: bool) -> str:
    """The watchlist as aligned monospace columns for the text part."""
    header = ("Symbol", "Name", "Last", "Week" if weekly else "Day", "Day" if weekly else "Week", "As of")
    body = [
        (
            r.symbol, clip(r.name, 30), r.last, (r.week if weekly else r.day).text, (r.day if weekly else r.week).text,
            f"{r.as_of} (stale)" if r.stale else (r.as_of or "-"),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(6)]
    lines = []
    for line in [header, *body]:
        cells = [line[0].ljust(widths[0]), line[1].ljust(widths[1])]
        cells += [line[i].rjust(widths[i]) for i in (2, 3, 4, 5)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


_ALERT_WORDS = {
    "price_above": "above threshold",
    "price_below": "below threshold",
    "percent_change": "moved",
    "volume_spike": "volume spike",
    "volume_above": "volume above threshold",
    "news_mention": "in the news",
    "news_sentiment": "news sentiment",
}


def alert_headline(content: AlertContent) -> str:
    """`AAPL above 200.00`: what happened, short (the subject's first half)."""
    symbol = clip(content.symbol, 16)
    kind, threshold, value = content.alert_type, content.threshold, content.value
    if kind in ("deal_new", "deal_status_change"):
        what = "New deal" if kind == "deal_new" else "Deal status change"
        return f"{what} for {symbol}" if symbol else what
    if kind in ("price_above", "price_below") and threshold is not None:
        what = f"{kind.removeprefix('price_')} {format_price(threshold)}"
    elif kind == "volume_above" and threshold is not None:
        what = f"volume above {float(threshold):,.0f}"
    elif kind == "percent_change" and value is not None:
        what = Change.of(float(value), 1).text
    else:
        what = _ALERT_WORDS.get(kind) or humanize(clip(kind, 40)).lower()
    return f"{symbol} {what}" if symbol else what.capitalize()


def format_alert_value(alert_type: str, value: Decimal | None) -> str:
    if value is None:
        return ""
    number = float(value)
    if alert_type in ("price_above", "price_below"):
        return format_price(value)
    if alert_type == "percent_change":
        return Change.of(number).text
    if alert_type == "volume_spike":
        return f"{number:,.1f}× average volume"
    if alert_type == "volume_above":
        return f"{number:,.0f}"
    if alert_type == "news_sentiment":
        return f"{number:+.2f}"
    return f"{number:,.2f}"


# ------------------------------------------------------------------ the renderer


class Renderer:
    """Renders notification emails; one per worker process (templates compiled once, each
    company's sparkline drawn once per series)."""

    def __init__(self, *, templates: Path | None = None, max_sparklines: int = 5_000) -> None:
        self.env = Environment(
            loader=FileSystemLoader(str(templates or TEMPLATES)),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=False,
        )
        # Style constants are ours (Markup: not escaped, keeps the HTML small).
        self.env.globals.update(
            INK=Markup(INK), MUTED=Markup(MUTED), LINK=Markup(LINK), FONT=Markup(FONT), SPARK_WIDTH=SPARK_WIDTH
        )
        self._alert_html = self.env.get_template("alert.html")
        self._alert_text = self.env.get_template("alert.txt")
        self._digest_html = self.env.get_template("digest.html")
        self._digest_text = self.env.get_template("digest.txt")
        self._sparks: dict[tuple[int, tuple[float, ...]], tuple[str, bytes]] = {}
        self._max_sparklines = max_sparklines

    # -------------------------------------------------------------- sparklines

    def sparkline(self, company_id: int, closes: Sequence[float]) -> tuple[str, bytes]:
        """(Content-ID, PNG) of the company's chart, drawn once per Renderer and series."""
        key = (company_id, tuple(closes))
        hit = self._sparks.get(key)
        if hit is not None:
            return hit
        png = sparkline_png(closes, width=SPARK_WIDTH, height=SPARK_HEIGHT, scale=SPARK_SCALE)
        cid = f"spark-{company_id}-{hashlib.sha256(png).hexdigest()[:16]}@deallens"
        if len(self._sparks) >= self._max_sparklines:
            self._sparks.pop(next(iter(self._sparks)))
        self._sparks[key] = (cid, png)
        return cid, png

    # -------------------------------------------------------------- alerts

    def render_alert(self, content: AlertContent) -> RenderedEmail:
        zone, zone_name = user_zone(content.timezone)
        headline = alert_headline(content)
        name = clip(content.alert_name, 200)
        message = clip_block(content.message, 1000)
        detail = name or clip(content.message, 160)
        subject = f"[DealLens] {headline}: {detail}" if detail else f"[DealLens] {headline}"
        if content.urgent:
            subject = f"[Urgent] {subject}"
        company = clip(content.company_name, 120)
        symbol = clip(content.symbol, 16)
        rows: list[tuple[str, str]] = []
        if symbol or company:
            rows.append(("Company", f"{company} ({symbol})" if company and symbol else company or symbol))
        if content.value is not None:
            rows.append(("Value", format_alert_value(content.alert_type, content.value)))
        if content.threshold is not None and content.alert_type in ("price_above", "price_below", "volume_above"):
            rows.append(("Threshold", format_alert_value(content.alert_type, content.threshold)))
        rows.append(("Triggered", format_time(content.triggered_at, zone, year=True)))
        context = {
            "title": headline,
            "preheader": clip(message, 140),
            "headline": headline,
            "urgent": content.urgent,
            "alert_name": name,
            "message": message,
            "rows": rows,
            "user_name": clip(content.user_name, 60),
            "zone_name": zone_name,
            "unsubscribe_url": safe_url(content.unsubscribe_url),
            "unsubscribe_text": content.unsubscribe_url,
            "why": "You're receiving this email because you set up this alert on DealLens.",
            "unsubscribe_label": "Turn off alert emails",
        }
        return RenderedEmail(
            subject=header_safe(subject, 200),
            text=self._alert_text.render(context),
            html=self._alert_html.render(context),
            images={},
        )

    # -------------------------------------------------------------- digests

    def render_digest(self, content: DigestContent) -> RenderedEmail:
        zone, zone_name = user_zone(content.timezone)
        weekly = content.kind == "weekly"
        images: dict[str, bytes] = {}
        watch = [self._watch_view(row, images) for row in content.watchlist]
        alerts = [self._alert_view(row, zone) for row in content.alerts]
        news = [self._news_view(row, zone) for row in content.news]
        insights = [
            InsightView(
                subject=clip(row.subject, 120),
                badge=recommendation_badge(row.recommendation),
                summary=clip_block(row.summary, 600),
                time=format_time(row.created_at, zone),
            )
            for row in content.insights
        ]
        deals = [
            DealView(
                title=clip(row.title, 200),
                move=_deal_move(row),
                event=humanize(row.event_type),
                time=format_time(row.occurred_at, zone),
            )
            for row in content.deals
        ]

        period = format_date(content.period)
        short_period = format_date(content.period, year=False)
        movers = self._movers(content.watchlist, weekly=weekly)
        if weekly:
            heading = f"Your week on DealLens — week ending {period}"
            subject = f"Your week on DealLens, week ending {short_period}"
            watch_heading = "Performance of the week"
            alerts_heading = "Alerts this week"
            alerts_empty = "No alerts fired this week."
            why = (
                "You're receiving this email because you subscribed to the DealLens weekly summary "
                f"as {clip(content.user_email, 254)}."
            )
            unsubscribe_label = "Unsubscribe from the weekly summary"
        else:
            heading = f"Your DealLens digest — {period}"
            subject = f"Your DealLens digest for {short_period}"
            watch_heading = "Your watchlist"
            alerts_heading = "Alerts in the last 24 hours"
            alerts_empty = "No alerts fired in the last 24 hours."
            why = (
                "You're receiving this email because you subscribed to the DealLens daily digest "
                f"as {clip(content.user_email, 254)}."
            )
            unsubscribe_label = "Unsubscribe from the daily digest"
        if movers:
            subject = f"{subject}: {movers}"
        elif alerts:
            subject = f"{subject}: {len(alerts)} alert{'s' if len(alerts) != 1 else ''}"

        summary = [movers.replace(",", " ·")] if movers else []
        if alerts:
            summary.append(f"{len(alerts)} alert{'s' if len(alerts) != 1 else ''}")
        if news:
            summary.append(f"{len(news)} news")
        context = {
            "title": heading,
            "preheader": " · ".join(summary) or heading,
            "weekly": weekly,
            "heading": heading,
            # The date does not wrap: "Your DealLens digest —" / "Mon 30 Nov 2026".
            "heading_lead": heading[: -len(period)].rstrip(),
            "heading_date": period,
            "user_name": clip(content.user_name, 60),
            "zone_name": zone_name,
            "watch_heading": watch_heading,
            "watch": watch,
            "watch_more": content.watchlist_more,
            "watch_stale": any(w.stale for w in watch),
            # The period's own change first (day for the daily digest, week for the weekly).
            "first_label": "Week" if weekly else "Day",
            "second_label": "Day" if weekly else "Week",
            "second_short": "day" if weekly else "wk",
            "watch_text": _text_table(watch, weekly=weekly) if watch else "",
            "alerts_heading": alerts_heading,
            "alerts_empty": alerts_empty,
            "alerts": alerts,
            "news": news,
            "insights": insights,
            "deals": deals,
            "why": why,
            "unsubscribe_url": safe_url(content.unsubscribe_url),
            "unsubscribe_text": content.unsubscribe_url,
            "unsubscribe_label": unsubscribe_label,
        }
        return RenderedEmail(
            subject=header_safe(subject, 200),
            text=self._digest_text.render(context),
            html=self._digest_html.render(context),
            images=images,
        )

    @staticmethod
    def _movers(rows: Sequence[WatchlistRow], *, weekly: bool, count: int = 3) -> str:
        """`AAPL +1.2%, MSFT -0.4%, …`: the biggest moves of the day (of the week, weekly)."""
        moves = []
        for row in rows:
            pct = row.week_change_pct if weekly else row.day_change_pct
            if pct is not None and math.isfinite(pct):
                moves.append((abs(pct), clip(row.symbol, 16), pct))
        moves.sort(key=lambda move: -move[0])  # stable: ties keep the watchlist's order
        text = ", ".join(f"{symbol} {Change.of(pct, 1).text}" for _, symbol, pct in moves[:count])
        return f"{text}, …" if len(moves) > count else text

    def _watch_view(self, row: WatchlistRow, images: dict[str, bytes]) -> WatchView:
        symbol = clip(row.symbol, 16)
        closes = [c for c in row.closes if math.isfinite(c)]
        spark = None
        if len(closes) >= 2:
            cid, png = self.sparkline(row.company_id, row.closes)
            images[cid] = png
            trend = (closes[-1] / closes[0] - 1) * 100 if closes[0] else None
            change = Change.of(trend, 1)
            alt = f"{symbol} over {len(closes)} sessions: {change.word} {change.text}".replace("  ", " ")
            spark = Spark(cid, alt, SPARK_WIDTH, SPARK_HEIGHT)
        return WatchView(
            symbol=symbol,
            name=clip(row.name, 60),
            last=format_price(row.last_close),
            day=Change.of(row.day_change_pct),
            week=Change.of(row.week_change_pct),
            spark=spark,
            as_of=format_date(row.as_of, year=False) if row.as_of else "",
            stale=row.stale,
        )

    @staticmethod
    def _alert_view(row: FiredAlertRow, zone: dt.tzinfo) -> AlertView:
        return AlertView(
            time=format_time(row.triggered_at, zone),
            symbol=clip(row.symbol, 16),
            name=clip(row.alert_name, 200),
            message=clip_block(row.message, 500),
        )

    @staticmethod
    def _news_view(row: NewsRow, zone: dt.tzinfo) -> NewsView:
        meta = [clip(row.publisher, 80), format_time(row.published_at, zone)]
        if row.outlets > 1:
            meta.insert(1, f"{row.outlets} outlets")
        if row.symbols:
            meta.append(", ".join(clip(symbol, 16) for symbol in row.symbols[:5]))
        return NewsView(
            title=clip(row.title, 300),
            url=safe_url(row.url),
            meta=" · ".join(part for part in meta if part),
            badge=sentiment_badge(row.sentiment_score),
        )
