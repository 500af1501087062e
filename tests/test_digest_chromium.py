"""The digest as a mail client shows it: MIME bytes -> HTML with its inline images -> Chromium.

Debian's Chromium (/usr/bin/chromium, installed by .ci/run) is driven by playwright; the wheel
never downloads a browser. Chromium runs as root in CI, hence --no-sandbox. A missing Chromium
is a failure, not a skip.

The phone screenshot is also copied to /tmp/digest-phone.png for a human to look at.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import email
import email.policy
import re
import shutil
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from deallens.notify.content import DigestContent, FiredAlertRow, InsightRow, NewsRow, WatchlistRow
from deallens.notify.message import build_message
from deallens.notify.render import Renderer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
PHONE_COPY = Path("/tmp/digest-phone.png")

_CID_SRC = re.compile(r"""src=(["'])cid:([^"']+)\1""")

pytestmark = pytest.mark.timeout(60)


def _closes(start: float, steps: list[float]) -> list[float]:
    out = [start]
    for step in steps:
        out.append(round(out[-1] * (1 + step / 100), 2))
    return out


def realistic_digest() -> DigestContent:
    now = dt.datetime(2026, 11, 30, 21, 5, tzinfo=dt.UTC)
    wiggle = [0.4, -0.2, 0.9, -1.1, 0.3, 0.7, -0.5, 1.2, 0.1, -0.3, 0.8, -0.9, 0.6, 0.2, -0.4, 1.0, -0.6, 0.5, 0.3]
    return DigestContent(
        kind="daily",
        period=dt.date(2026, 11, 30),
        user_id=7,
        user_name="Ana Souza",
        user_email="ana@example.com",
        timezone="America/Sao_Paulo",
        watchlist=[
            WatchlistRow(
                company_id=1, symbol="AAPL", name="Apple Inc.", last_close=Decimal("231.50"),
                day_change_pct=1.23, week_change_pct=3.4, closes=_closes(200, wiggle), as_of=dt.date(2026, 11, 30),
            ),
            WatchlistRow(
                company_id=2, symbol="MSFT", name="Microsoft Corporation", last_close=Decimal("412.07"),
                day_change_pct=-0.41, week_change_pct=-2.25, closes=_closes(430, [-x for x in wiggle]),
                as_of=dt.date(2026, 11, 30),
            ),
            WatchlistRow(
                company_id=3, symbol="BRK.B", name="Berkshire Hathaway Inc. Class B (a long name that wraps)",
                last_close=Decimal("1534.20"), day_change_pct=-12.34, week_change_pct=112.5,
                closes=_closes(1500, wiggle[::-1]), as_of=dt.date(2026, 11, 30),
            ),
            WatchlistRow(
                company_id=4, symbol="GS", name="The Goldman Sachs Group, Inc.", last_close=Decimal("512.00"),
                day_change_pct=0.0, week_change_pct=0.0, closes=[512.0] * 20, as_of=dt.date(2026, 11, 30),
            ),
            WatchlistRow(
                company_id=5, symbol="NEWCO", name="Newly Listed Co", last_close=None,
                day_change_pct=None, week_change_pct=None, closes=[], as_of=None,
            ),
        ],
        alerts=[
            FiredAlertRow(
                alert_history_id=11, alert_name="AAPL breaks 230", symbol="AAPL",
                message="AAPL rose above 230.00: 231.50 (20:55 UTC)", triggered_at=now - dt.timedelta(minutes=10),
            ),
            FiredAlertRow(
                alert_history_id=12, alert_name=None, symbol="BRK.B",
                message="BRK.B moved -12.34% since the previous close (5% alert)",
                triggered_at=now - dt.timedelta(hours=3),
            ),
        ],
        news=[
            NewsRow(
                title="Apple beats estimates as services revenue hits a record",
                url="https://news.example.com/apple?id=1&src=dl",
                publisher="Reuters", published_at=now - dt.timedelta(hours=2), sentiment_score=0.62, symbols=["AAPL"],
            ),
            NewsRow(
                title="Regulators open a probe into a Microsoft cloud deal", url="javascript:alert(1)",
                publisher="Bloomberg", published_at=now - dt.timedelta(hours=5), sentiment_score=-0.48,
                symbols=["MSFT"],
            ),
            NewsRow(
                title="Berkshire trims a stake, keeps a record cash pile", url="http://example.org/brk",
                publisher=None, published_at=now - dt.timedelta(hours=9), sentiment_score=0.03, symbols=["BRK.B"],
            ),
        ],
        insights=[
            InsightRow(
                subject="AAPL", recommendation="buy",
                summary="Services growth and buybacks support the valuation; "
                "the risks are China demand and the EU case.",
                created_at=now - dt.timedelta(hours=1),
            )
        ],
        unsubscribe_url="https://deallens.example/unsubscribe?u=7&kind=daily&t=abc",
    )


def html_as_mail_client_shows(raw: bytes) -> str:
    """Parse the message and resolve `cid:` images to data: URLs from the related parts.

    A reference without a matching image/png part stays `cid:`, which a browser cannot load.
    """
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    body = msg.get_body(preferencelist=("html",))
    assert body is not None, "no text/html part"
    html = body.get_content()
    images: dict[str, bytes] = {}
    for part in msg.walk():
        cid = part.get("Content-ID")
        if cid and part.get_content_type() == "image/png":
            images[cid.strip().strip("<>")] = part.get_content()

    def resolve(match: re.Match[str]) -> str:
        data = images.get(match.group(2))
        if data is None:
            return match.group(0)
        return f'src="data:image/png;base64,{base64.b64encode(data).decode()}"'

    return _CID_SRC.sub(resolve, html)


async def page_report(
    browser: Any, html_path: Path, viewport: dict[str, int], screenshot: Path | None = None
) -> dict[str, Any]:
    """Open `html_path` at `viewport`: images (loaded or broken), overflow, optional screenshot."""
    page = await browser.new_page(viewport=viewport)
    try:
        await page.goto(html_path.as_uri(), wait_until="load")
        report = await page.evaluate(
            """() => {
                const images = Array.from(document.images);
                const ok = img => img.complete && img.naturalWidth > 0;
                return {
                    count: images.length,
                    all_loaded: images.every(img => img.complete && img.naturalWidth > 0),
                    broken: images.filter(img => !ok(img)).map(img => img.getAttribute('src')),
                    missing_size_or_alt: images.filter(
                        img => !img.getAttribute('width') || !img.getAttribute('height') || !img.alt
                    ).length,
                    scroll_width: document.documentElement.scrollWidth,
                    inner_width: window.innerWidth,
                    text: document.body.innerText,
                };
            }"""
        )
        if screenshot is not None:
            await page.screenshot(path=str(screenshot), full_page=True)
        return report
    finally:
        await page.close()


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """Debian's Chromium under playwright; a missing binary fails the test (CI installs it)."""
    if not CHROMIUM.exists():
        pytest.fail("chromium not found at /usr/bin/chromium: apt-get install chromium (see .ci/run)", pytrace=False)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


def _built_digest() -> tuple[bytes, int]:
    content = realistic_digest()
    rendered = Renderer().render_digest(content)
    message = build_message(
        rendered,
        sender="DealLens <digest@deallens.example>",
        to=content.user_email,
        to_name=content.user_name,
        message_id="<digest-7-20261130@deallens.example>",
        unsubscribe_url=content.unsubscribe_url,
    )
    sparklines = sum(1 for row in content.watchlist if len(row.closes) >= 2)
    return message.as_bytes(), sparklines


async def test_digest_renders_in_chromium_on_phone_and_desktop(tmp_path: Path) -> None:
    async with chromium() as browser:
        await _check_digest(browser, tmp_path)


async def _check_digest(browser: Any, tmp_path: Path) -> None:
    raw, sparklines = _built_digest()
    assert sparklines == 4  # NEWCO has no closes: "No data", not an image
    page = tmp_path / "digest.html"
    page.write_text(html_as_mail_client_shows(raw), encoding="utf-8")

    shot = tmp_path / "digest-phone.png"
    phone = await page_report(browser, page, PHONE, screenshot=shot)
    assert phone["count"] == sparklines
    assert phone["all_loaded"], f"broken images: {phone['broken']}"
    assert phone["missing_size_or_alt"] == 0
    assert phone["scroll_width"] <= phone["inner_width"], (
        f"horizontal overflow on a phone: {phone['scroll_width']}px > {phone['inner_width']}px"
    )
    text = phone["text"]
    for expected in ("Your DealLens digest", "AAPL", "NEWCO", "No data", "Alerts in the last 24 hours", "Top news",
                     "New insights", "Positive", "Negative", "Neutral", "America/Sao_Paulo", "Unsubscribe"):
        assert expected in text, expected

    with Image.open(shot) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert width == PHONE["width"]
    assert 900 <= height <= 6000, f"implausible full-page height {height}px"
    assert shot.stat().st_size > 20_000
    shutil.copyfile(shot, PHONE_COPY)

    desktop = await page_report(browser, page, DESKTOP, screenshot=tmp_path / "digest-desktop.png")
    assert desktop["count"] == sparklines
    assert desktop["all_loaded"], f"broken images: {desktop['broken']}"
    assert desktop["scroll_width"] <= desktop["inner_width"]


async def test_broken_cid_is_detected(tmp_path: Path) -> None:
    """The check above can fail: a cid without its image part shows as a broken image."""
    async with chromium() as browser:
        await _check_broken(browser, tmp_path)


async def _check_broken(browser: Any, tmp_path: Path) -> None:
    raw, sparklines = _built_digest()
    html = html_as_mail_client_shows(raw)
    # A mail client that did not resolve the first image (or a cid with no related part).
    broken, hits = re.subn(r'src="data:image/png;base64,[^"]+"', 'src="cid:missing-part@deallens"', html, count=1)
    assert hits == 1
    page = tmp_path / "broken.html"
    page.write_text(broken, encoding="utf-8")

    report = await page_report(browser, page, PHONE)
    assert report["count"] == sparklines
    assert not report["all_loaded"]
    assert report["broken"] == ["cid:missing-part@deallens"]

    # And unresolved references straight from the MIME html (no inlining at all) are broken too.
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    raw_html = msg.get_body(preferencelist=("html",)).get_content()
    page.write_text(raw_html, encoding="utf-8")
    report = await page_report(browser, page, PHONE)
    assert not report["all_loaded"]
    assert len(report["broken"]) == sparklines
