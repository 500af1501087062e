"""Delivery channels over real sockets on loopback: SMTP (aiosmtpd), webhooks and a Twilio-like
SMS endpoint (starlette under uvicorn). Nothing is mocked below the channel's own client."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email
import email.policy
import json
import pickle
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from deallens.config import load_settings
from deallens.notify import push
from deallens.notify.content import PushEvent
from deallens.notify.email import SmtpConfig, SmtpMailer, send_one
from deallens.notify.errors import (
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
    safe_url,
)
from deallens.notify.sms import HttpSmsProvider, SmsProvider, is_e164
from deallens.sim.serve import serve_asgi

pytestmark = pytest.mark.timeout(60)

PASSWORD = "s3cret-Pa55word"
WEBHOOK_SECRET = "whsec_9f8e7d6c5b4a"
URL_TOKEN = "tok_a1b2c3d4e5f6"
SMS_SID = "AC0123456789abcdef"
SMS_TOKEN = "twilio-auth-token-xyz"


# ================================================================== SMTP server


@dataclass
class Delivered:
    mail_from: str
    rcpt_tos: list[str]
    message: email.message.EmailMessage
    session: Session
    tls: bool
    authenticated: bool


@dataclass
class Handler:
    """An aiosmtpd handler recording deliveries, with scripted refusals."""

    refuse_rcpt: dict[str, str] = field(default_factory=dict)  # address -> reply
    data_replies: list[str] = field(default_factory=list)  # replies for the next DATAs
    drop_on_mail: Callable[[int], bool] = lambda n: False  # n = MAIL count on the connection
    require_auth: bool = False
    data_delays: list[float] = field(default_factory=list)  # seconds to stall the next DATAs
    delivered: list[Delivered] = field(default_factory=list)
    mails_per_session: dict[int, int] = field(default_factory=dict)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        count = self.mails_per_session.get(id(session), 0) + 1
        self.mails_per_session[id(session)] = count
        if self.drop_on_mail(count):
            assert server.transport is not None
            server.transport.abort()  # an RST, no reply: what a crashed or restarted relay does
            return "250 OK"
        if self.require_auth and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse_rcpt:
            return self.refuse_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_delays:
            await asyncio.sleep(self.data_delays.pop(0))
        if self.data_replies:
            return self.data_replies.pop(0)
        assert isinstance(envelope.content, bytes)
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        self.delivered.append(
            Delivered(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                message=parsed,
                session=session,
                # Set by STARTTLS and by an implicit-TLS listener alike (session.ssl is STARTTLS only).
                tls=server.transport is not None and server.transport.get_extra_info("ssl_object") is not None,
                authenticated=bool(session.authenticated),
            )
        )
        return "250 2.0.0 queued"

    @property
    def message_ids(self) -> list[str]:
        return [str(d.message["Message-ID"]) for d in self.delivered]


@dataclass
class SmtpServer:
    port: int
    handler: Handler
    sessions: int = 0  # TCP connections accepted


def authenticator(server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == (b"mailer", PASSWORD.encode())
    # handled=False: aiosmtpd itself answers a failure with "535 5.7.8 ...".
    return AuthResult(success=ok, handled=False)


@contextlib.asynccontextmanager
async def smtp_server(
    handler: Handler, *, implicit_tls: ssl.SSLContext | None = None, **smtp_kwargs: Any
) -> AsyncIterator[SmtpServer]:
    """aiosmtpd on 127.0.0.1:<free port> in the test's own event loop."""
    loop = asyncio.get_running_loop()
    state = SmtpServer(port=0, handler=handler)

    def factory() -> SMTP:
        state.sessions += 1
        return SMTP(handler, hostname="smtp.test", loop=loop, **smtp_kwargs)

    server = await loop.create_server(factory, "127.0.0.1", 0, ssl=implicit_tls)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


def config(port: int, **overrides: Any) -> SmtpConfig:
    return SmtpConfig(host="127.0.0.1", port=port, **{"tls": "none", "timeout": 5.0, **overrides})


def message(to: str = "ann@example.com", subject: str = "Alert") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "DealLens <alerts@deallens.test>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="deallens.test")
    msg.set_content(f"{subject}: AAPL crossed 200.00")
    return msg


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1, made now (EC keys: milliseconds, not seconds)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=smtp.test",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return Certificate(cert, key)


# ================================================================== SMTP tests


async def test_batch_reuses_one_connection() -> None:
    handler = Handler()
    async with smtp_server(handler) as server:
        messages = [message(f"user{i}@example.com", f"Alert {i}") for i in range(5)]
        async with SmtpMailer(config(server.port)) as mailer:
            assert mailer.connections_opened == 0  # lazy: an empty batch costs nothing
            results = [await mailer.send(m) for m in messages]
            assert mailer.connections_opened == 1
            assert mailer.messages_sent == 5
        assert server.sessions == 1
    assert results == [str(m["Message-ID"]) for m in messages]
    assert handler.message_ids == results
    assert [d.rcpt_tos for d in handler.delivered] == [[f"user{i}@example.com"] for i in range(5)]
    assert {d.mail_from for d in handler.delivered} == {"alerts@deallens.test"}
    assert len({id(d.session) for d in handler.delivered}) == 1


async def test_send_one_and_no_opportunistic_starttls(certificate: Certificate) -> None:
    # The server offers STARTTLS, but tls="none" means none: aiosmtplib must not upgrade.
    handler = Handler()
    async with smtp_server(handler, tls_context=certificate.server_context()) as server:
        msg = message()
        assert await send_one(config(server.port), msg) == str(msg["Message-ID"])
    assert [d.tls for d in handler.delivered] == [False]


async def test_message_without_message_id_is_refused_before_connecting() -> None:
    msg = message()
    del msg["Message-ID"]
    mailer = SmtpMailer(config(closed_port()))
    with pytest.raises(ValueError, match="Message-ID"):
        await mailer.send(msg)
    assert mailer.connections_opened == 0


async def test_auth_with_correct_credentials() -> None:
    handler = Handler(require_auth=True)
    async with smtp_server(handler, authenticator=authenticator, auth_require_tls=False) as server:
        cfg = config(server.port, username="mailer", password=SecretStr(PASSWORD))
        async with SmtpMailer(cfg) as mailer:
            await mailer.send(message())
            await mailer.send(message())
            assert mailer.connections_opened == 1
    assert [d.authenticated for d in handler.delivered] == [True, True]


async def test_wrong_password_is_permanent_and_not_echoed() -> None:
    handler = Handler(require_auth=True)
    wrong = "wrong-" + PASSWORD
    async with smtp_server(handler, authenticator=authenticator, auth_require_tls=False) as server:
        cfg = config(server.port, username="mailer", password=SecretStr(wrong))
        async with SmtpMailer(cfg) as mailer:
            with pytest.raises(PermanentDeliveryError) as caught:
                await mailer.send(message())
    text = str(caught.value)
    assert text.startswith("smtp: authentication failed as mailer (535")
    assert wrong not in text and PASSWORD not in text and "\n" not in text
    assert caught.value.permanent and caught.value.channel == "smtp"
    assert wrong not in repr(cfg)
    assert handler.delivered == []


async def test_missing_credentials_refused_by_server_is_permanent() -> None:
    handler = Handler(require_auth=True)
    async with smtp_server(handler, authenticator=authenticator, auth_require_tls=False) as server:
        with pytest.raises(PermanentDeliveryError, match=r"sender refused <alerts@deallens.test> \(530 "):
            await send_one(config(server.port), message())


async def test_starttls_then_auth(certificate: Certificate) -> None:
    # auth_require_tls stays on: AUTH can only succeed after the STARTTLS upgrade.
    handler = Handler(require_auth=True)
    async with smtp_server(
        handler, tls_context=certificate.server_context(), require_starttls=True, authenticator=authenticator
    ) as server:
        cfg = config(
            server.port, tls="starttls", validate_certs=False, username="mailer", password=SecretStr(PASSWORD)
        )
        async with SmtpMailer(cfg) as mailer:
            await mailer.send(message())
            await mailer.send(message())
            assert mailer.connections_opened == 1
    assert [(d.tls, d.authenticated) for d in handler.delivered] == [(True, True), (True, True)]


async def test_starttls_verifies_against_a_ca(certificate: Certificate) -> None:
    handler = Handler()
    async with smtp_server(handler, tls_context=certificate.server_context()) as server:
        cfg = config(server.port, tls="starttls")  # validate_certs=True
        trusting = ssl.create_default_context(cafile=str(certificate.cert))
        async with SmtpMailer(cfg, tls_context=trusting) as mailer:
            await mailer.send(message())
        # Without the CA the self-signed certificate must be rejected, as a retryable failure
        # (an operator can fix the certificate).
        with pytest.raises(TransientDeliveryError, match="certificate verify failed"):
            await send_one(cfg, message())
    assert [d.tls for d in handler.delivered] == [True]


async def test_implicit_tls(certificate: Certificate) -> None:
    handler = Handler()
    async with smtp_server(handler, implicit_tls=certificate.server_context()) as server:
        await send_one(config(server.port, tls="tls", validate_certs=False), message())
        # Plain SMTP against a TLS port fails, and transiently.
        with pytest.raises(TransientDeliveryError, match=r"^smtp: "):
            await send_one(config(server.port, tls="none", timeout=0.5), message())
    assert [d.tls for d in handler.delivered] == [True]


async def test_refused_recipient_is_permanent_and_the_connection_stays_usable() -> None:
    handler = Handler(refuse_rcpt={"nobody@example.com": "550 5.1.1 user unknown"})
    async with smtp_server(handler) as server:
        async with SmtpMailer(config(server.port)) as mailer:
            with pytest.raises(PermanentDeliveryError) as caught:
                await mailer.send(message("nobody@example.com"))
            ok = message("ann@example.com")
            assert await mailer.send(ok) == str(ok["Message-ID"])
            assert mailer.connections_opened == 1
            assert mailer.messages_sent == 1
    assert str(caught.value) == "smtp: recipient refused <nobody@example.com> (550 5.1.1 user unknown)"
    assert handler.message_ids == [str(ok["Message-ID"])]


async def test_busy_mailbox_is_transient() -> None:
    handler = Handler(refuse_rcpt={"full@example.com": "452 4.2.2 mailbox full"})
    async with smtp_server(handler) as server:
        with pytest.raises(TransientDeliveryError, match=r"refused <full@example.com> \(452 4.2.2 mailbox full\)"):
            await send_one(config(server.port), message("full@example.com"))


@pytest.mark.parametrize(
    ("reply", "error"),
    [("451 4.3.0 try later", TransientDeliveryError), ("554 5.6.0 message content rejected", PermanentDeliveryError)],
)
async def test_data_refusal(reply: str, error: type[DeliveryError]) -> None:
    handler = Handler(data_replies=[reply])
    async with smtp_server(handler) as server:
        async with SmtpMailer(config(server.port)) as mailer:
            with pytest.raises(error) as caught:
                await mailer.send(message())
            await mailer.send(message())  # same session, after RSET
            assert mailer.connections_opened == 1
    assert str(caught.value) == f"smtp: message refused ({reply})"
    assert type(caught.value) is error
    assert len(handler.delivered) == 1


async def test_reconnects_after_the_server_dropped_an_idle_connection() -> None:
    handler = Handler()
    async with smtp_server(handler, timeout=0.2) as server:
        async with SmtpMailer(config(server.port)) as mailer:
            await mailer.send(message())
            await asyncio.sleep(0.5)  # the server's idle timeout closes the session
            await mailer.send(message())
            assert mailer.connections_opened == 2
            assert mailer.messages_sent == 2
    assert len(handler.delivered) == 2


async def test_reconnects_once_when_the_connection_breaks_mid_send() -> None:
    # The second MAIL on a connection gets an RST: the client only notices while sending.
    handler = Handler(drop_on_mail=lambda n: n == 2)
    async with smtp_server(handler) as server:
        async with SmtpMailer(config(server.port)) as mailer:
            first, second = message(), message()
            await mailer.send(first)
            assert await mailer.send(second) == str(second["Message-ID"])
            assert mailer.connections_opened == 2
        assert server.sessions == 2
    assert handler.message_ids == [str(first["Message-ID"]), str(second["Message-ID"])]


async def test_a_server_that_keeps_dropping_is_transient() -> None:
    handler = Handler(drop_on_mail=lambda n: True)
    async with smtp_server(handler) as server:
        async with SmtpMailer(config(server.port)) as mailer:
            with pytest.raises(TransientDeliveryError, match="closed the connection"):
                await mailer.send(message())
            assert mailer.connections_opened == 2  # the first one, and exactly one retry
        assert server.sessions == 2
    assert handler.delivered == []


async def test_a_cancelled_send_does_not_poison_the_next_one() -> None:
    # A Temporal activity cancelled mid-DATA: the next message must not inherit that session.
    handler = Handler(data_delays=[2.0])
    async with smtp_server(handler) as server:
        async with SmtpMailer(config(server.port)) as mailer:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(mailer.send(message()), timeout=0.2)
            ok = message()
            await mailer.send(ok)
            assert mailer.connections_opened == 2
    assert handler.message_ids == [str(ok["Message-ID"])]


async def test_connection_refused_is_transient() -> None:
    port = closed_port()
    with pytest.raises(TransientDeliveryError, match=rf"^smtp: cannot connect to 127.0.0.1:{port} "):
        await send_one(config(port), message())


def test_smtp_config_from_settings() -> None:
    settings = load_settings(
        _env_file=None, smtp_host="mail.example.com", smtp_port=465, smtp_username="bot",
        smtp_password=PASSWORD, smtp_tls="TLS",
    )  # fmt: skip
    cfg = SmtpConfig.from_settings(settings)
    assert (cfg.host, cfg.port, cfg.username, cfg.tls) == ("mail.example.com", 465, "bot", "tls")
    assert cfg.password is not None and cfg.password.get_secret_value() == PASSWORD
    assert PASSWORD not in repr(cfg)
    assert (cfg.timeout, cfg.validate_certs) == (15.0, True)  # SMTP_TIMEOUT_SECONDS


# ================================================================== errors


def test_delivery_errors_survive_pickling_and_stay_one_line() -> None:
    for error in (
        PermanentDeliveryError("push: x answered\n 410 Gone"),
        TransientDeliveryError("sms: y timed out"),
        DeliveryError("smtp: z", permanent=True),
    ):
        copy = pickle.loads(pickle.dumps(error))
        assert (type(copy), str(copy), copy.permanent) == (type(error), str(error), error.permanent)
    assert str(PermanentDeliveryError("push: x answered\n 410 Gone")) == "push: x answered 410 Gone"
    assert DeliveryError("smtp: z").permanent is False


def test_safe_url_drops_credentials() -> None:
    shown = safe_url(f"https://user:pw@hooks.example.com:8443/a/b?token={URL_TOKEN}#frag")
    assert shown.startswith("https://hooks.example.com:8443/…#") and len(shown) == len("https://hooks.example.com:8443/…#") + 6
    # Slack and Discord keep the token in the path: never shown, but two endpoints stay apart.
    discord = safe_url("https://discord.com/api/webhooks/123/SECRET-TOKEN?wait=true")
    assert "SECRET-TOKEN" not in discord and "123" not in discord
    assert discord != safe_url("https://discord.com/api/webhooks/123/OTHER-TOKEN")
    assert safe_url("https://Hooks.Slack.com/services/T1/B2/XYZ") .startswith("https://hooks.slack.com/…#")
    assert safe_url("https://example.com") == "https://example.com"
    assert safe_url("not a url") == "<invalid url>"


# ================================================================== webhooks


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool

    def json(self) -> Any:
        return json.loads(self.body)


def webhook_app(secret: str, received: list[Received]) -> Starlette:
    """A receiver as a customer would write one: verify first, then act on the path."""

    async def receive(request: Request) -> Response:
        body = await request.body()
        verified = push.verify(secret, request.headers, body, now=int(time.time()))
        received.append(Received(request.url.path, dict(request.headers), body, verified))
        if not verified:
            return JSONResponse({"error": "bad signature"}, status_code=401)
        path = request.url.path
        if path == "/gone":
            return Response(status_code=410)
        if path == "/busy":
            return Response(status_code=503)
        if path == "/moved":
            return RedirectResponse("/hook", status_code=307)
        if path == "/slow":
            await asyncio.sleep(0.6)
        if path == "/slack":
            return Response("ok", media_type="text/plain")
        return JSONResponse({"id": f"evt-{len(received)}"})

    return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])


@dataclass
class Webhook:
    base: str
    received: list[Received]
    sender: push.WebhookSender


@pytest.fixture(scope="module")
async def webhook_server() -> AsyncIterator[tuple[str, list[Received]]]:
    received: list[Received] = []
    async with serve_asgi(webhook_app(WEBHOOK_SECRET, received)) as base:
        yield base, received


@pytest.fixture
async def webhook(webhook_server: tuple[str, list[Received]]) -> AsyncIterator[Webhook]:
    base, received = webhook_server
    received.clear()
    # The receiver is on loopback: allowed here, refused by default (test below).
    async with push.WebhookSender(allow_private_hosts=True) as sender:
        yield Webhook(base, received, sender)


EVENT = PushEvent(
    title="AAPL above 200",
    message="Apple crossed your threshold: 201.37",
    priority="high",
    url="https://deallens.test/alerts/123",
    tags=["chart_with_upwards_trend", "AAPL"],
    data={"alert_id": 123, "symbol": "AAPL", "value": 201.37, "urgent": True, "note": None},
)


async def test_json_webhook_is_signed_and_verified(webhook: Webhook) -> None:
    receipt = await webhook.sender.send(
        url=f"{webhook.base}/hook", secret=WEBHOOK_SECRET, event=EVENT, style="json", idempotency_key="alert-123-push"
    )
    assert receipt == "200 id=evt-1"
    [got] = webhook.received
    assert got.verified and got.path == "/hook"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"] == "DealLens-Webhook/1"
    assert got.headers["idempotency-key"] == "alert-123-push"
    assert got.headers["x-deallens-signature"].startswith("v1=")
    assert abs(int(got.headers["x-deallens-timestamp"]) - time.time()) < 60
    assert got.json() == {
        "type": "alert",
        "title": "AAPL above 200",
        "message": "Apple crossed your threshold: 201.37",
        "priority": "high",
        "url": "https://deallens.test/alerts/123",
        "tags": ["chart_with_upwards_trend", "AAPL"],
        "data": {"alert_id": 123, "symbol": "AAPL", "value": 201.37, "urgent": True, "note": None},
    }


async def test_ntfy_posts_to_the_root_with_the_topic(webhook: Webhook) -> None:
    plain = PushEvent(title="Daily digest", message="3 alerts fired")
    await webhook.sender.send(
        url=f"{webhook.base}/deallens-alerts", secret=WEBHOOK_SECRET, event=EVENT, style="ntfy", idempotency_key="a-1"
    )
    await webhook.sender.send(
        url=f"{webhook.base}/deallens-alerts/", secret=WEBHOOK_SECRET, event=plain, style="ntfy", idempotency_key="a-2"
    )
    assert [(r.path, r.verified) for r in webhook.received] == [("/", True), ("/", True)]
    assert webhook.received[0].json() == {
        "topic": "deallens-alerts",
        "title": "AAPL above 200",
        "message": "Apple crossed your threshold: 201.37",
        "priority": 4,
        "tags": ["chart_with_upwards_trend", "AAPL"],
        "click": "https://deallens.test/alerts/123",
    }
    # No "click": null for an event without a URL.
    assert webhook.received[1].json() == {
        "topic": "deallens-alerts", "title": "Daily digest", "message": "3 alerts fired", "priority": 3, "tags": [],
    }  # fmt: skip


async def test_ntfy_url_without_topic_is_permanent(webhook: Webhook) -> None:
    with pytest.raises(PermanentDeliveryError, match="names no ntfy topic"):
        await webhook.sender.send(url=f"{webhook.base}/", secret="s", event=EVENT, style="ntfy", idempotency_key="k")
    assert webhook.received == []


async def test_chat_payload_for_slack_and_discord(webhook: Webhook) -> None:
    receipt = await webhook.sender.send(
        url=f"{webhook.base}/slack", secret=WEBHOOK_SECRET, event=EVENT, style="chat", idempotency_key="a-123-chat"
    )
    assert receipt == "200"
    assert webhook.received[0].verified
    assert webhook.received[0].json() == {
        "text": "*AAPL above 200*\nApple crossed your threshold: 201.37\nhttps://deallens.test/alerts/123",
        "content": "**AAPL above 200**\nApple crossed your threshold: 201.37\nhttps://deallens.test/alerts/123",
    }


def test_chat_payload_defuses_mentions_from_untrusted_text() -> None:
    event = PushEvent(title="<!channel> Deal", message="@everyone buy & hold <@123>", url="javascript:alert(1)")
    request = push.payload(event, "chat", "https://hooks.example.com/x")
    assert request.url == "https://hooks.example.com/x"
    assert request.body["text"] == "*&lt;!channel&gt; Deal*\n@everyone buy &amp; hold &lt;@123&gt;"
    assert request.body["content"] == "**<!channel> Deal**\n@\u200beveryone buy & hold <@\u200b123>"
    long = PushEvent(title="t", message="x" * 5000, url="https://deallens.test/a")
    body = push.payload(long, "chat", "https://hooks.example.com/x").body
    assert len(body["content"]) == 2000 and body["content"].endswith("…\nhttps://deallens.test/a")


@pytest.mark.parametrize(
    ("path", "error", "status"),
    [("/gone", PermanentDeliveryError, "410 Gone"), ("/busy", TransientDeliveryError, "503 Service Unavailable")],
)
async def test_webhook_http_errors(webhook: Webhook, path: str, error: type[DeliveryError], status: str) -> None:
    with pytest.raises(error) as caught:
        await webhook.sender.send(
            url=f"{webhook.base}{path}?token={URL_TOKEN}",
            secret=WEBHOOK_SECRET,
            event=EVENT,
            style="json",
            idempotency_key="alert-1-push",
        )
    assert type(caught.value) is error
    assert str(caught.value) == f"push: {safe_url(webhook.base + path)} answered {status}"
    assert [r.verified for r in webhook.received] == [True]


async def test_wrong_secret_fails_verification_and_is_permanent(webhook: Webhook) -> None:
    other = "whsec_not-the-receivers"
    with pytest.raises(PermanentDeliveryError) as caught:
        await webhook.sender.send(
            url=f"{webhook.base}/hook?token={URL_TOKEN}", secret=other, event=EVENT, style="json", idempotency_key="k"
        )
    assert str(caught.value) == f"push: {safe_url(webhook.base + '/hook')} answered 401 Unauthorized"
    assert other not in str(caught.value) and URL_TOKEN not in str(caught.value)
    assert [r.verified for r in webhook.received] == [False]


async def test_stale_timestamp_fails_verification(webhook: Webhook) -> None:
    with pytest.raises(PermanentDeliveryError, match="401"):
        await webhook.sender.send(
            url=f"{webhook.base}/hook",
            secret=WEBHOOK_SECRET,
            event=EVENT,
            style="json",
            idempotency_key="k",
            now=int(time.time()) - 3600,
        )
    assert [r.verified for r in webhook.received] == [False]


async def test_the_sender_itself_refuses_internal_hosts_by_default(webhook: Webhook) -> None:
    """Whoever calls the sender gets the check (not only the alert activity)."""
    async with push.WebhookSender() as guarded:
        for url in (f"{webhook.base}/ok", "http://localhost:9/hook", "http://[::1]:9/hook"):
            with pytest.raises(PermanentDeliveryError, match="resolves to a non-public address"):
                await guarded.send(url=url, secret=WEBHOOK_SECRET, event=EVENT, style="json", idempotency_key="k")
        # ntfy posts to the server root: the host checked is the one actually requested.
        with pytest.raises(PermanentDeliveryError, match=r"non-public address \(127\.0\.0\.1\)"):
            await guarded.send(url=f"{webhook.base}/topic", secret=WEBHOOK_SECRET, event=EVENT, style="ntfy", idempotency_key="k")
    assert webhook.received == []


async def test_redirects_are_not_followed(webhook: Webhook) -> None:
    with pytest.raises(PermanentDeliveryError, match="307 Temporary Redirect"):
        await webhook.sender.send(
            url=f"{webhook.base}/moved", secret=WEBHOOK_SECRET, event=EVENT, style="json", idempotency_key="k"
        )
    assert [r.path for r in webhook.received] == ["/moved"]


async def test_webhook_timeout_is_transient(webhook: Webhook) -> None:
    async with push.WebhookSender(timeout=0.1, allow_private_hosts=True) as impatient:
        with pytest.raises(TransientDeliveryError, match="timed out"):
            await impatient.send(
                url=f"{webhook.base}/slow", secret=WEBHOOK_SECRET, event=EVENT, style="json", idempotency_key="k"
            )


async def test_webhook_connection_refused_is_transient() -> None:
    port = closed_port()
    async with push.WebhookSender(allow_private_hosts=True) as sender:
        with pytest.raises(TransientDeliveryError, match=rf"^push: http://127.0.0.1:{port}/…#[0-9a-f]{{6}} unreachable"):
            await sender.send(
                url=f"http://127.0.0.1:{port}/hook?token={URL_TOKEN}",
                secret=WEBHOOK_SECRET,
                event=EVENT,
                style="json",
                idempotency_key="k",
            )


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "javascript:alert(1)", "/relative/hook", "http:///nohost"])
async def test_only_http_urls(webhook: Webhook, url: str) -> None:
    with pytest.raises(PermanentDeliveryError, match="^push: "):
        await webhook.sender.send(url=url, secret=WEBHOOK_SECRET, event=EVENT, style="json", idempotency_key="k")
    assert webhook.received == []


def test_verify() -> None:
    body = b'{"type":"alert"}'
    now = 1_760_000_000
    signed = {push.TIMESTAMP_HEADER: str(now), push.SIGNATURE_HEADER: push.sign(WEBHOOK_SECRET, now, body)}
    assert push.verify(WEBHOOK_SECRET, signed, body, now=now)
    assert push.verify(WEBHOOK_SECRET, {k.lower(): v for k, v in signed.items()}, body, now=now + 299)
    assert not push.verify(WEBHOOK_SECRET, signed, body, now=now + 301)  # stale
    assert not push.verify(WEBHOOK_SECRET, signed, body, now=now - 301)  # from the future
    assert not push.verify(WEBHOOK_SECRET, signed, body + b" ", now=now)  # body changed
    assert not push.verify("other", signed, body, now=now)
    assert not push.verify(WEBHOOK_SECRET, {push.TIMESTAMP_HEADER: str(now)}, body, now=now)
    # The timestamp is inside the MAC: moving it forward breaks the signature.
    assert not push.verify(WEBHOOK_SECRET, {**signed, push.TIMESTAMP_HEADER: str(now + 10)}, body, now=now + 10)
    assert not push.verify(WEBHOOK_SECRET, {**signed, push.TIMESTAMP_HEADER: "-5"}, body, now=now)
    # Secret rotation: any listed signature may match.
    rotated = {**signed, push.SIGNATURE_HEADER: push.sign("old", now, body) + "," + signed[push.SIGNATURE_HEADER]}
    assert push.verify(WEBHOOK_SECRET, rotated, body, now=now)
    # The documented scheme, computed independently.
    import hashlib
    import hmac

    expected = hmac.new(WEBHOOK_SECRET.encode(), f"{now}.".encode() + body, hashlib.sha256).hexdigest()
    assert push.sign(WEBHOOK_SECRET, now, body) == f"v1={expected}"


# ================================================================== SMS


@dataclass
class SmsRequest:
    form: dict[str, str]
    headers: dict[str, str]


def twilio_app(requests: list[SmsRequest]) -> Starlette:
    """The Messages endpoint of the Twilio API, as much of it as the provider uses."""
    expected_auth = "Basic " + base64.b64encode(f"{SMS_SID}:{SMS_TOKEN}".encode()).decode()

    async def messages(request: Request) -> Response:
        if request.headers.get("authorization") != expected_auth:
            return JSONResponse({"code": 20003, "message": "Authenticate", "status": 401}, status_code=401)
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode(), keep_blank_values=True).items()}
        requests.append(SmsRequest(form, dict(request.headers)))
        if form["To"] == "+15005550001":
            error = {"code": 21211, "message": "The 'To' number +15005550001 is not a valid phone number.", "status": 400}
            return JSONResponse(error, status_code=400)
        if form["To"] == "+15005550002":
            return JSONResponse({"code": 20500, "message": "Internal Server Error", "status": 500}, status_code=500)
        return JSONResponse({"sid": f"SM{len(requests):032x}", "status": "queued"}, status_code=201)

    return Starlette(routes=[Route(f"/2010-04-01/Accounts/{SMS_SID}/Messages.json", messages, methods=["POST"])])


@dataclass
class Twilio:
    requests: list[SmsRequest]
    provider: HttpSmsProvider
    base: str


@pytest.fixture(scope="module")
async def twilio_server() -> AsyncIterator[tuple[str, list[SmsRequest]]]:
    requests: list[SmsRequest] = []
    async with serve_asgi(twilio_app(requests)) as base:
        yield base, requests


@pytest.fixture
async def twilio(twilio_server: tuple[str, list[SmsRequest]]) -> AsyncIterator[Twilio]:
    base, requests = twilio_server
    requests.clear()
    async with HttpSmsProvider(base, SMS_SID, SecretStr(SMS_TOKEN), "+15005550006") as provider:
        yield Twilio(requests, provider, base)


async def test_sms_is_sent_with_basic_auth_and_form_fields(twilio: Twilio) -> None:
    assert isinstance(twilio.provider, SmsProvider)
    sid = await twilio.provider.send(to="+14155550123", body="AAPL above 200", idempotency_key="alert-9-sms")
    assert sid == f"SM{1:032x}"
    [request] = twilio.requests
    assert request.form == {"To": "+14155550123", "From": "+15005550006", "Body": "AAPL above 200"}
    assert request.headers["idempotency-key"] == "alert-9-sms"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"


async def test_sms_body_is_capped_at_640_characters(twilio: Twilio) -> None:
    await twilio.provider.send(to="+14155550123", body="é" * 1000, idempotency_key="k")
    body = twilio.requests[0].form["Body"]
    assert len(body) == 640 and body.endswith("é…")


async def test_sms_provider_error_is_permanent_with_its_code(twilio: Twilio) -> None:
    with pytest.raises(PermanentDeliveryError) as caught:
        await twilio.provider.send(to="+15005550001", body="hi", idempotency_key="k")
    assert str(caught.value) == (
        f"sms: {twilio.base} answered 400 Bad Request "
        "(21211 The 'To' number +15005550001 is not a valid phone number.)"
    )


async def test_sms_server_error_is_transient(twilio: Twilio) -> None:
    with pytest.raises(TransientDeliveryError, match=r"500 Internal Server Error \(20500 "):
        await twilio.provider.send(to="+15005550002", body="hi", idempotency_key="k")


async def test_sms_wrong_token_is_permanent_and_not_echoed(twilio: Twilio) -> None:
    wrong = "not-the-" + SMS_TOKEN
    async with HttpSmsProvider(twilio.base, SMS_SID, SecretStr(wrong), "+15005550006") as provider:
        with pytest.raises(PermanentDeliveryError) as caught:
            await provider.send(to="+14155550123", body="hi", idempotency_key="k")
    assert "401 Unauthorized (20003 Authenticate)" in str(caught.value)
    assert wrong not in str(caught.value) and wrong not in repr(provider)


@pytest.mark.parametrize("number", ["4155550123", "+1 415 555 0123", "+0123456789", "+1234567", "+1234567890123456", ""])
async def test_sms_rejects_non_e164_before_any_request(twilio: Twilio, number: str) -> None:
    with pytest.raises(PermanentDeliveryError, match="not an E.164 number"):
        await twilio.provider.send(to=number, body="hi", idempotency_key="k")
    assert twilio.requests == []


def test_e164_bounds() -> None:
    assert is_e164("+12345678") and is_e164("+123456789012345")
    assert not is_e164("+1234567") and not is_e164("+1234567890123456") and not is_e164("+14155550123\n")


async def test_sms_connection_refused_is_transient() -> None:
    port = closed_port()
    async with HttpSmsProvider(f"http://127.0.0.1:{port}", SMS_SID, SecretStr(SMS_TOKEN), "+15005550006") as provider:
        with pytest.raises(TransientDeliveryError, match="^sms: .* unreachable"):
            await provider.send(to="+14155550123", body="hi", idempotency_key="k")


async def test_sms_client_is_plain_httpx() -> None:
    # A caller-provided client is used as is and left open for its owner.
    async with httpx.AsyncClient() as client:
        provider = HttpSmsProvider("http://127.0.0.1:1", SMS_SID, SecretStr(SMS_TOKEN), "+15005550006", client=client)
        await provider.aclose()
        assert not client.is_closed
