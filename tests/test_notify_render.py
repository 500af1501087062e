"""Email rendering: templates, sparklines and MIME messages (no database, no Temporal).

Messages are checked the way a receiver sees them: serialized with `as_bytes()` and parsed
back with the standard library's parser.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import io
import re
from decimal import Decimal
from email.message import EmailMessage

import pytest
from PIL import Image

from deallens.notify import render as render_module
from deallens.notify.content import (
    AlertContent,
    DealMoveRow,
    DigestContent,
    FiredAlertRow,
    InsightRow,
    NewsRow,
    WatchlistRow,
)
from deallens.notify.message import build_message, header_safe
from deallens.notify.render import Renderer, RenderedEmail
from deallens.notify.sparkline import DOWN, UP, sparkline_png

NOW = dt.datetime(2026, 11, 30, 19, 5, tzinfo=dt.UTC)  # 14:05 in New York (EST)
XSS_NAME = "<script>alert(1)</script>"
XSS_TITLE = 'Apple beats <img src=x onerror="alert(1)">'


def row(company_id: int, symbol: str, closes: list[float], *, name: str | None = None, day: float | None = 1.0,
        week: float | None = 2.0) -> WatchlistRow:
    return WatchlistRow(
        company_id=company_id, symbol=symbol, name=name if name is not None else f"{symbol} Inc.",
        last_close=Decimal(str(closes[-1])) if closes else None, day_change_pct=day, week_change_pct=week,
        closes=closes, as_of=dt.date(2026, 11, 30) if closes else None,
    )


def digest(kind: str = "daily", **changes: object) -> DigestContent:
    fields: dict[str, object] = dict(
        kind=kind,
        period=dt.date(2026, 11, 30),
        user_id=1,
        user_name="Ana",
        user_email="ana@example.com",
        timezone="America/New_York",
        watchlist=[
            row(1, "AAPL", [200.0, 205.5, 203.1, 210.2], day=1.234, week=3.1),
            row(2, "MSFT", [430.0, 425.0, 420.5, 412.07], day=-0.41, week=-2.25),
            row(3, "EVIL", [10.0, 10.0, 10.0], name=XSS_NAME, day=0.0, week=None),
            row(4, "NEWCO", [], day=None, week=None),
        ],
        alerts=[
            FiredAlertRow(alert_history_id=1, alert_name="AAPL breaks 205", symbol="AAPL",
                          message="AAPL rose above 205.00: 210.20", triggered_at=NOW),
        ],
        news=[
            NewsRow(title=XSS_TITLE, url="https://news.example.com/a?x=1&y=2", publisher="Reuters",
                    published_at=NOW, sentiment_score=0.6, symbols=["AAPL"]),
            NewsRow(title="Probe into cloud deal", url="javascript:alert(document.cookie)", publisher="Wire",
                    published_at=NOW, sentiment_score=-0.7, symbols=["MSFT"]),
            NewsRow(title="Quiet day for banks", url="http://example.org/banks", publisher=None,
                    published_at=NOW, sentiment_score=0.05, symbols=[]),
        ],
        insights=[
            InsightRow(subject="AAPL", recommendation="strong_buy", summary="Services keep growing.", created_at=NOW),
        ],
        deals=[],
        unsubscribe_url="https://deallens.example/unsubscribe?u=1&kind=daily",
    )
    fields.update(changes)
    return DigestContent.model_validate(fields)


def alert(**changes: object) -> AlertContent:
    fields: dict[str, object] = dict(
        alert_history_id=42, kind="price", alert_type="price_above", alert_name="AAPL breaks 200",
        symbol="AAPL", company_name="Apple Inc.", message="AAPL rose above 200.00: 201.35 (19:05 UTC)",
        value=Decimal("201.35"), threshold=Decimal("200"), triggered_at=NOW, timezone="America/New_York",
        unsubscribe_url="https://deallens.example/unsubscribe?u=1&kind=alerts",
    )
    fields.update(changes)
    return AlertContent.model_validate(fields)


def build(rendered: RenderedEmail, **changes: object) -> EmailMessage:
    kwargs: dict[str, object] = dict(
        sender="DealLens <alerts@deallens.example>", to="ana@example.com", to_name="Ana",
        message_id="<n-42@deallens.example>", unsubscribe_url="https://deallens.example/unsubscribe?u=1",
        date=NOW,
    )
    kwargs.update(changes)
    return build_message(rendered, **kwargs)  # type: ignore[arg-type]


def reparse(message: EmailMessage) -> EmailMessage:
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def opaque_colours(png: bytes) -> set[tuple[int, int, int]]:
    with Image.open(io.BytesIO(png)) as image:
        rgba = image.convert("RGBA")
    data = rgba.tobytes()
    return {tuple(data[i:i + 3]) for i in range(0, len(data), 4) if data[i + 3] == 255}  # type: ignore[misc]


def alpha_rows(png: bytes) -> list[int]:
    """Indexes of the rows holding fully opaque pixels."""
    with Image.open(io.BytesIO(png)) as image:
        rgba = image.convert("RGBA")
    width, height = rgba.size
    alpha = rgba.getchannel("A").tobytes()
    return [y for y in range(height) if 255 in alpha[y * width:(y + 1) * width]]


# ------------------------------------------------------------------ escaping and links


def test_untrusted_text_is_escaped_in_html_and_raw_in_text() -> None:
    rendered = Renderer().render_digest(digest())
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html
    assert "<script" not in rendered.html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in rendered.html
    assert "<img src=x" not in rendered.html and "onerror=\"alert" not in rendered.html
    assert XSS_NAME in rendered.text
    assert XSS_TITLE in rendered.text
    assert "&lt;" not in rendered.text and "&#34;" not in rendered.text


def test_alert_name_is_escaped_in_html() -> None:
    rendered = Renderer().render_alert(alert(alert_name="<b onclick=x>boom</b>", company_name=XSS_NAME))
    assert "&lt;b onclick=x&gt;boom&lt;/b&gt;" in rendered.html
    assert "<b onclick" not in rendered.html and "<script" not in rendered.html
    assert "<b onclick=x>boom</b>" in rendered.text


def test_only_http_urls_become_links() -> None:
    rendered = Renderer().render_digest(digest())
    assert 'href="https://news.example.com/a?x=1&amp;y=2"' in rendered.html
    assert 'href="http://example.org/banks"' in rendered.html
    assert "javascript:" not in rendered.html
    assert "Probe into cloud deal" in rendered.html  # shown, just not as a link
    assert "javascript:" not in rendered.text
    hrefs = re.findall(r'href="([^"]*)"', rendered.html)
    assert hrefs and all(href.startswith(("https://", "http://")) for href in hrefs)


@pytest.mark.parametrize(
    ("url", "linked"),
    [
        ("https://a.example/x", True),
        ("HTTP://a.example/x", True),
        ("javascript:alert(1)", False),
        (" javascript:alert(1)", False),
        ("JaVaScRiPt:alert(1)", False),
        ("data:text/html;base64,PHNjcmlwdD4=", False),
        ("//evil.example/x", False),
        ("https://a.example/x\nfoo", False),
        ("vbscript:msgbox", False),
        ("", False),
    ],
)
def test_safe_url(url: str, linked: bool) -> None:
    assert (render_module.safe_url(url) is not None) is linked


# ------------------------------------------------------------------ headers


def test_header_safe() -> None:
    assert header_safe("a\r\nBcc: evil@x") == "a Bcc: evil@x"
    assert header_safe("  tab\there\x00nul\x7fdel\u2028sep\x85nel  ") == "tab here nul del sep nel"
    assert header_safe("left\u202eright") == "leftright"
    long = header_safe("x" * 500)
    assert len(long) == 200 and long.endswith("…")
    assert len(header_safe("y" * 50, limit=10)) == 10


def test_header_injection_is_stripped() -> None:
    evil = "x\r\nBcc: evil@x\r\nX-Injected: 1"
    rendered = Renderer().render_alert(alert(alert_name=evil, company_name="Evil\nCorp"))
    assert "\n" not in rendered.subject and "\r" not in rendered.subject
    message = build(rendered, to_name="Ana\r\nBcc: evil2@x", headers={"X-DealLens-Kind": "alert\r\nBcc: evil3@x"})
    raw = message.as_bytes()
    assert b"\nBcc:" not in raw and b"\nX-Injected:" not in raw

    parsed = reparse(message)
    assert parsed["Bcc"] is None and parsed["X-Injected"] is None
    assert parsed.defects == []
    subject = str(parsed["Subject"])
    assert "\n" not in subject and "\r" not in subject
    assert subject == "[DealLens] AAPL above 200.00: x Bcc: evil@x X-Injected: 1"
    to = parsed["To"]
    assert len(to.addresses) == 1 and to.addresses[0].addr_spec == "ana@example.com"
    assert to.addresses[0].display_name == "Ana Bcc evil2 x"  # no address punctuation in a display name
    assert str(parsed["X-DealLens-Kind"]) == "alert Bcc: evil3@x"


def test_build_message_validates_what_it_cannot_clean() -> None:
    rendered = Renderer().render_alert(alert())
    with pytest.raises(ValueError, match="message_id"):
        build(rendered, message_id="n-42@deallens.example")
    with pytest.raises(ValueError, match="message_id"):
        build(rendered, message_id="<n-42@deallens.example>\r\nBcc: x")
    with pytest.raises(ValueError, match="to"):
        build(rendered, to="ana@example.com\r\nBcc: evil@x")
    with pytest.raises(ValueError, match="unsubscribe_url"):
        build(rendered, unsubscribe_url="javascript:alert(1)")
    with pytest.raises(ValueError, match="headers"):
        build(rendered, headers={"Bcc": "evil@x"})
    with pytest.raises(ValueError, match="headers"):
        build(rendered, headers={"X-Bad\r\nBcc": "evil@x"})


def test_list_unsubscribe_and_standard_headers() -> None:
    rendered = Renderer().render_digest(digest())
    message = build(
        rendered,
        unsubscribe_url="https://deallens.example/unsubscribe?u=1&kind=daily",
        unsubscribe_mailto="mailto:unsubscribe@deallens.example?subject=u1",
        headers={"X-DealLens-Digest": "daily"},
    )
    parsed = reparse(message)
    assert str(parsed["List-Unsubscribe"]) == (
        "<https://deallens.example/unsubscribe?u=1&kind=daily>, <mailto:unsubscribe@deallens.example?subject=u1>"
    )
    assert str(parsed["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    assert str(parsed["Auto-Submitted"]) == "auto-generated"
    assert str(parsed["Message-ID"]) == "<n-42@deallens.example>"
    assert parsed["Date"].datetime == NOW
    assert str(parsed["From"]) == "DealLens <alerts@deallens.example>"
    assert str(parsed["To"]) == "Ana <ana@example.com>"
    assert str(parsed["X-DealLens-Digest"]) == "daily"
    assert str(parsed["MIME-Version"]) == "1.0"
    # On the wire: CRLF everywhere, 7-bit, no line over 998 octets.
    raw = message.as_bytes()
    assert raw.isascii()
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998

    only_url = reparse(build(rendered))
    assert str(only_url["List-Unsubscribe"]) == "<https://deallens.example/unsubscribe?u=1>"


def test_non_ascii_names_and_subject_survive() -> None:
    rendered = Renderer().render_alert(alert(alert_name="Société Générale — über 200 €", symbol="GLE.PA"))
    parsed = reparse(build(rendered, to_name="José Müller"))
    assert str(parsed["Subject"]) == "[DealLens] GLE.PA above 200.00: Société Générale — über 200 €"
    assert parsed["To"].addresses[0].display_name == "José Müller"
    assert "Société Générale — über 200 €" in parsed.get_body(preferencelist=("plain",)).get_content()


# ------------------------------------------------------------------ MIME structure and images


def test_every_cid_has_a_png_part() -> None:
    content = digest()
    rendered = Renderer().render_digest(content)
    cids = re.findall(r'src="cid:([^"]+)"', rendered.html)
    assert len(cids) == 3  # AAPL, MSFT, EVIL (constant); NEWCO has no closes
    assert set(cids) == set(rendered.images)

    parsed = reparse(build(rendered))
    assert parsed.get_content_type() == "multipart/alternative"
    plain, related = parsed.get_payload()
    assert plain.get_content_type() == "text/plain"
    assert related.get_content_type() == "multipart/related"
    html_part, *image_parts = related.get_payload()
    assert html_part.get_content_type() == "text/html"
    # Bodies travel with CRLF line ends (what SMTP carries); the content is otherwise unchanged.
    assert html_part.get_content().replace("\r\n", "\n") == rendered.html
    assert plain.get_content().replace("\r\n", "\n") == rendered.text

    by_cid = {}
    for part in image_parts:
        assert part.get_content_type() == "image/png"
        assert part.get_content_disposition() == "inline"
        assert part.get_filename() and part.get_filename().endswith(".png")
        by_cid[part["Content-ID"].strip("<>")] = part.get_content()
    assert set(by_cid) == set(cids)
    for cid in cids:
        png = by_cid[cid]
        assert png == rendered.images[cid]
        with Image.open(io.BytesIO(png)) as image:
            image.load()
            assert image.format == "PNG"
            assert image.size == (render_module.SPARK_WIDTH * 2, render_module.SPARK_HEIGHT * 2)


def test_alert_without_images_is_plain_alternative() -> None:
    rendered = Renderer().render_alert(alert())
    assert rendered.images == {} and "cid:" not in rendered.html
    parsed = reparse(build(rendered))
    assert parsed.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in parsed.get_payload()] == ["text/plain", "text/html"]


def test_html_layout_is_phone_friendly() -> None:
    html = Renderer().render_digest(digest()).html
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert "max-width:600px" in html
    assert 'role="presentation"' in html
    assert "font-size:16px" in html
    images = re.findall(r"<img\b[^>]*>", html)
    assert len(images) == 3
    for tag in images:
        assert re.search(r'\swidth="\d+"', tag) and re.search(r'\sheight="\d+"', tag)
        assert re.search(r'\salt="[^"]+"', tag)
    # Changes carry a sign and an arrow, not just a colour.
    assert "▲ +1.23%" in html and "▼ −0.41%" in html
    assert 'href="https://deallens.example/unsubscribe?u=1&amp;kind=daily"' in html
    assert "because you subscribed to the DealLens daily digest" in html


# ------------------------------------------------------------------ content


def test_daily_digest_sections_and_subject() -> None:
    rendered = Renderer().render_digest(digest())
    assert rendered.subject == "Your DealLens digest for Mon 30 Nov: AAPL +1.2%, MSFT -0.4%, EVIL 0.0%"
    for heading in ("Your DealLens digest — ", "Mon 30 Nov 2026", "Your watchlist", "Alerts in the last 24 hours",
                    "Top news", "New insights"):
        assert heading in rendered.html
    assert "Your DealLens digest — Mon 30 Nov 2026" in rendered.text
    assert "Positive" in rendered.html and "Negative" in rendered.html and "Neutral" in rendered.html
    assert "Strong buy" in rendered.html
    assert "[Positive] " + XSS_TITLE in rendered.text
    assert "No data" in rendered.html  # NEWCO: no chart
    assert "Deals that moved" not in rendered.html


def test_text_watchlist_is_aligned() -> None:
    text = Renderer().render_digest(digest()).text
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Symbol"))
    table = lines[start:start + 5]
    assert [line.split()[0] for line in table] == ["Symbol", "AAPL", "MSFT", "EVIL", "NEWCO"]
    assert len({len(line) for line in table}) == 1  # right-aligned last column
    column = table[0].index("Name")
    assert all(line[column - 1] == " " and line[column] != " " for line in table)  # names in one column
    assert "+1.23%" in table[1] and "-0.41%" in table[2]


def test_empty_sections_render_friendly_notes() -> None:
    rendered = Renderer().render_digest(digest(watchlist=[], alerts=[], news=[], insights=[]))
    assert "No alerts fired in the last 24 hours." in rendered.html
    assert "No alerts fired in the last 24 hours." in rendered.text
    assert "Your watchlist is empty" in rendered.html and "Your watchlist is empty" in rendered.text
    assert "Company</th>" not in rendered.html  # no empty table
    assert "Top news" not in rendered.html and "New insights" not in rendered.html
    assert "TOP NEWS" not in rendered.text
    assert rendered.images == {}
    assert rendered.subject == "Your DealLens digest for Mon 30 Nov"

    weekly = Renderer().render_digest(digest("weekly", alerts=[], deals=[]))
    assert "No alerts fired this week." in weekly.html
    assert "No deals you follow moved this week." in weekly.html


def test_weekly_summary_shows_deals_that_moved() -> None:
    deals = [
        DealMoveRow(title="Microsoft to acquire <Example> Games", old_status="announced",
                    new_status="regulatory_review", event_type="status_change", occurred_at=NOW),
        DealMoveRow(title="Bank merger", old_status=None, new_status=None, event_type="new_filing", occurred_at=NOW),
    ]
    rendered = Renderer().render_digest(digest("weekly", deals=deals))
    assert rendered.subject == "Your week on DealLens, week ending Mon 30 Nov: AAPL +3.1%, MSFT -2.2%"
    assert "Your week on DealLens — week ending" in rendered.html
    assert "Performance of the week" in rendered.html and "Alerts this week" in rendered.html
    assert "Deals that moved" in rendered.html and "DEALS THAT MOVED" in rendered.text
    assert "Microsoft to acquire &lt;Example&gt; Games" in rendered.html
    assert "Announced → Regulatory review" in rendered.html
    assert "Announced → Regulatory review" in rendered.text
    assert "New filing" in rendered.html
    assert "because you subscribed to the DealLens weekly summary" in rendered.html


def test_times_in_the_users_zone() -> None:
    rendered = Renderer().render_digest(digest())
    assert "Mon 30 Nov, 14:05 EST" in rendered.html and "Mon 30 Nov, 14:05 EST" in rendered.text
    assert "America/New_York" in rendered.html

    tokyo = Renderer().render_digest(digest(timezone="Asia/Tokyo"))
    assert "Tue 1 Dec, 04:05 JST" in tokyo.html

    bad = Renderer().render_digest(digest(timezone="Mars/Olympus_Mons"))
    assert "Mon 30 Nov, 19:05 UTC" in bad.html and "shown in UTC" in bad.text
    worse = Renderer().render_alert(alert(timezone="../../etc/passwd"))
    assert "Mon 30 Nov 2026, 19:05 UTC" in worse.html


def test_alert_subjects() -> None:
    renderer = Renderer()
    assert renderer.render_alert(alert()).subject == "[DealLens] AAPL above 200.00: AAPL breaks 200"
    urgent = renderer.render_alert(alert(urgent=True, alert_name=None))
    assert urgent.subject == "[Urgent] [DealLens] AAPL above 200.00: AAPL rose above 200.00: 201.35 (19:05 UTC)"
    assert "Urgent alert" in urgent.html
    below = renderer.render_alert(alert(alert_type="price_below", threshold=Decimal("150.5")))
    assert below.subject.startswith("[DealLens] AAPL below 150.50: ")
    move = renderer.render_alert(alert(alert_type="percent_change", value=Decimal("-6.25"), threshold=Decimal("5")))
    assert move.subject.startswith("[DealLens] AAPL -6.2%: ") or move.subject.startswith("[DealLens] AAPL -6.3%: ")
    deal = renderer.render_alert(
        alert(kind="deal", alert_type="deal_status_change", symbol=None, value=None, threshold=None)
    )
    assert deal.subject.startswith("[DealLens] Deal status change: ")
    long = renderer.render_alert(alert(alert_name="n" * 500))
    assert len(long.subject) <= 200 and long.subject.endswith("…")
    assert "Mon 30 Nov 2026, 14:05 EST" in renderer.render_alert(alert()).text


# ------------------------------------------------------------------ sparklines


def test_sparkline_colour_follows_direction() -> None:
    up = sparkline_png([1, 3, 2, 5])
    down = sparkline_png([5, 3, 4, 1])
    assert opaque_colours(up) == {UP}
    assert opaque_colours(down) == {DOWN}
    assert opaque_colours(sparkline_png([2, 1, 2])) == {UP}  # last == first


def test_sparkline_is_deterministic_and_sized() -> None:
    closes = [100 + (i * 7919 % 13) / 3 for i in range(30)]
    assert sparkline_png(closes) == sparkline_png(list(closes))
    assert sparkline_png(closes) != sparkline_png(closes[::-1])
    with Image.open(io.BytesIO(sparkline_png(closes, width=80, height=20, scale=3))) as image:
        assert image.format == "PNG" and image.size == (240, 60)
    with pytest.raises(ValueError):
        sparkline_png(closes, width=0)


@pytest.mark.parametrize("closes", [[], [42.0], [7.0, 7.0, 7.0, 7.0], [float("nan"), 3.0, float("inf")]])
def test_sparkline_edge_cases(closes: list[float]) -> None:
    png = sparkline_png(closes)
    with Image.open(io.BytesIO(png)) as image:
        image.load()
        assert image.format == "PNG" and image.size == (240, 64)
        alpha_max = image.convert("RGBA").getchannel("A").getextrema()[1]
    if not closes:
        assert alpha_max == 0  # empty but valid: fully transparent
        return
    rows = alpha_rows(png)
    assert rows, "a flat line is drawn"
    middle = (64 - 1) / 2
    # A flat line across the middle (a few pixels thick, and the end dot).
    assert abs((min(rows) + max(rows)) / 2 - middle) <= 1.5
    assert max(rows) - min(rows) <= 10


def test_sparklines_are_drawn_once_per_company_per_renderer(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[float, ...]] = []
    real = render_module.sparkline_png

    def counting(closes, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(tuple(closes))
        return real(closes, **kwargs)

    monkeypatch.setattr(render_module, "sparkline_png", counting)
    renderer = Renderer()
    aapl = row(1, "AAPL", [200.0, 205.5, 203.1, 210.2])
    first = renderer.render_digest(digest(watchlist=[aapl, row(2, "MSFT", [1.0, 2.0])]))
    second = renderer.render_digest(
        digest(user_id=2, user_email="bo@example.com", watchlist=[row(5, "GS", [3.0, 1.0]), aapl])
    )
    assert calls.count(tuple(aapl.closes)) == 1
    assert len(calls) == 3
    shared = set(first.images) & set(second.images)
    assert len(shared) == 1 and len(second.images) == 2

    # New closes for the same company: a new chart. Another Renderer (another batch): drawn again.
    renderer.render_digest(digest(watchlist=[row(1, "AAPL", [200.0, 190.0])]))
    Renderer().render_digest(digest(watchlist=[aapl]))
    assert len(calls) == 5
