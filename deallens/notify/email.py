"""Email over SMTP: one connection per batch, failures split into permanent and transient.

Digests go out in batches of hundreds; opening a TCP + TLS + AUTH session per message is slow
and trips the per-connection rate limits of most relays, so `SmtpMailer` keeps one
aiosmtplib connection open for a whole batch and reconnects (once per message) when the
server dropped it in between, e.g. after its idle timeout.

Error mapping (see deallens/notify/errors.py):

* 5xx replies (unknown mailbox, message rejected, wrong password) are permanent;
* 4xx replies (greylisting, mailbox full, "try later") are transient;
* refused connections, timeouts, dropped connections and TLS failures are transient.

A refused recipient or a rejected message leaves the connection usable: aiosmtplib sends RSET
after a failed transaction, and the next message goes out on the same session.
"""

from __future__ import annotations

import asyncio
import email.message
import email.utils
import ssl
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Literal

import aiosmtplib
from aiosmtplib import (
    SMTPAuthenticationError,
    SMTPConnectError,
    SMTPConnectResponseError,
    SMTPDataError,
    SMTPException,
    SMTPNotSupported,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)
from opentelemetry.trace import Span, SpanKind, StatusCode
from pydantic import SecretStr

from deallens.notify.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError, redact
from deallens.observability import tracing

if TYPE_CHECKING:
    from deallens.config import Settings

TlsMode = Literal["none", "starttls", "tls"]

_QUIT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class SmtpConfig:
    """Where and how to connect. `password` stays a SecretStr so the config's repr is safe to log."""

    host: str
    port: int
    username: str | None = None
    password: SecretStr | None = None
    tls: TlsMode = "none"
    timeout: float = 30.0
    validate_certs: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpConfig:
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username or None,
            password=settings.smtp_password,
            tls=settings.smtp_tls,
            timeout=settings.smtp_timeout_seconds,
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class SmtpMailer:
    """An async context manager sending many messages over one SMTP connection.

    The connection opens lazily with the first `send` (an empty batch costs nothing) and is
    closed with QUIT on exit. Sends on one mailer are serialised: SMTP is one transaction at a
    time per connection; use several mailers for parallelism.

    `tls_context` overrides `validate_certs` (e.g. a context trusting a private CA).
    """

    def __init__(self, config: SmtpConfig, *, tls_context: ssl.SSLContext | None = None) -> None:
        self.config = config
        self._tls_context = tls_context
        self._smtp: aiosmtplib.SMTP | None = None
        self._lock = asyncio.Lock()
        self.connections_opened = 0
        self.messages_sent = 0

    async def __aenter__(self) -> SmtpMailer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._smtp is not None and self._smtp.is_connected

    async def close(self) -> None:
        """Say QUIT (best effort: the server may already be gone) and drop the connection."""
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        if smtp.is_connected:
            try:
                await smtp.quit(timeout=min(self.config.timeout, _QUIT_TIMEOUT_S))
            except (SMTPException, OSError):
                pass
        smtp.close()

    async def send(
        self, message: email.message.EmailMessage, *, envelope: tuple[str, list[str]] | None = None
    ) -> str:
        """Deliver one message (sender and recipients from its headers); returns its Message-ID.

        Raises PermanentDeliveryError or TransientDeliveryError; ValueError when the message
        has no Message-ID (the ID is what makes retries recognisable downstream).

        The one automatic retry after a dropped connection is at-least-once: if the server
        took the message and then vanished before answering, it is sent twice, with the same
        Message-ID (which mail clients use to drop the duplicate).
        """
        message_id = _message_id(message)
        # One CLIENT span per message (the activity's span is its parent): where the relay
        # was slow or refused. No addresses, subject or body on it: those are personal data.
        with tracing.tracer().start_as_current_span(
            "smtp send", kind=SpanKind.CLIENT, record_exception=False, set_status_on_exception=False,
            attributes={
                "network.protocol.name": "smtp", "server.address": self.config.host, "server.port": self.config.port,
                "deallens.smtp.tls": self.config.tls,
            },
        ) as span:
            try:
                await self._send(message, envelope, span)
            except BaseException as error:  # the type only: a reply may quote an address
                span.set_status(StatusCode.ERROR, type(error).__name__)
                span.set_attribute("error.type", type(error).__name__)
                raise
        return message_id

    async def _send(
        self, message: email.message.EmailMessage, envelope: tuple[str, list[str]] | None, span: Span
    ) -> None:
        async with self._lock:
            for attempt in (1, 2):
                span.set_attribute("deallens.smtp.attempt", attempt)
                try:
                    if not self.connected:
                        await self._connect()
                    assert self._smtp is not None
                    # Our bytes, not aiosmtplib's re-serialisation: its send_message flattens
                    # with email.policy.SMTP, which would RFC 2047-encode a long
                    # List-Unsubscribe URL that message.py deliberately writes raw.
                    # `envelope` (MAIL FROM, RCPT TO) when the caller knows it: no re-parse.
                    sender, recipients = envelope or _envelope(message)
                    span.set_attribute("deallens.smtp.recipients", len(recipients))
                    await self._smtp.sendmail(sender, recipients, message.as_bytes())
                except asyncio.CancelledError:
                    # Cancelled mid-transaction: the session is in an unknown state.
                    self._drop()
                    raise
                except SMTPServerDisconnected as error:
                    # Typically the server closed an idle connection between two messages.
                    # A fresh session gets one more try; a second drop is the server's problem.
                    self._drop()
                    if attempt == 1:
                        continue
                    mapped = self._error(error)
                    mapped.session = True
                    raise mapped from None
                except (SMTPException, OSError, ValueError) as error:
                    mapped = self._error(error)
                    if not isinstance(error, SMTPResponseException | SMTPRecipientsRefused):
                        # Not a clean reply: the session's state is unknown, start afresh.
                        self._drop()
                    # No session (connect, greeting, TLS, AUTH) or our sender refused: every
                    # other message of the batch would fail the same way.
                    mapped.session = not self.connected or isinstance(error, SMTPSenderRefused)
                    raise mapped from None
                self.messages_sent += 1
                return
        raise AssertionError("unreachable")  # pragma: no cover

    async def _connect(self) -> None:
        cfg = self.config
        self._drop()
        smtp = aiosmtplib.SMTP(
            hostname=cfg.host,
            port=cfg.port,
            username=cfg.username,
            password=cfg.password.get_secret_value() if cfg.password is not None else None,
            timeout=cfg.timeout,
            use_tls=cfg.tls == "tls",
            # False, not None: None would upgrade opportunistically, and "none" means none.
            start_tls=cfg.tls == "starttls",
            validate_certs=cfg.validate_certs,
            tls_context=self._tls_context,
        )
        await smtp.connect()  # also STARTTLS and AUTH; closes itself on failure
        self._smtp = smtp
        self.connections_opened += 1

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    def _error(self, error: BaseException) -> DeliveryError:
        """Map an aiosmtplib/OS error to a one-line DeliveryError with no secret in it."""
        cfg = self.config
        secret = cfg.password.get_secret_value() if cfg.password is not None else None
        permanent: bool
        if isinstance(error, SMTPAuthenticationError):
            # 454 "temporary authentication failure" is the server's problem; 535 is ours.
            cause = f"authentication failed as {cfg.username} ({_reply(error.code, error.message)})"
            permanent = not _is_4xx(error.code)
        elif isinstance(error, SMTPRecipientsRefused):
            refused = ", ".join(f"<{r.recipient}> ({_reply(r.code, r.message)})" for r in error.recipients)
            plural = "s" if len(error.recipients) > 1 else ""
            cause = f"recipient{plural} refused {refused}"
            # One "mailbox busy" among the refusals is worth a retry.
            permanent = not any(_is_4xx(r.code) for r in error.recipients)
        elif isinstance(error, SMTPSenderRefused):
            cause = f"sender refused <{error.sender}> ({_reply(error.code, error.message)})"
            permanent = not _is_4xx(error.code)
        elif isinstance(error, SMTPDataError):
            cause = f"message refused ({_reply(error.code, error.message)})"
            permanent = not _is_4xx(error.code)
        elif isinstance(error, SMTPConnectResponseError):
            # A refused greeting (overload, IP blocklist) is about the session, not the message.
            cause = f"{cfg.address} refused the session ({_reply(error.code, error.message)})"
            permanent = False
        elif isinstance(error, SMTPResponseException):
            cause = f"{cfg.address} answered {_reply(error.code, error.message)}"
            permanent = not _is_4xx(error.code)
        elif isinstance(error, SMTPTimeoutError):
            cause = f"{cfg.address} timed out ({error.message})"
            permanent = False
        elif isinstance(error, SMTPConnectError):
            cause = f"cannot connect to {cfg.address} ({error.message})"
            permanent = False
        elif isinstance(error, SMTPServerDisconnected):
            cause = f"{cfg.address} closed the connection ({error.message})"
            permanent = False
        elif isinstance(error, SMTPNotSupported):
            # E.g. STARTTLS configured but not offered, or an SMTPUTF8 address: a config issue.
            cause = f"{cfg.address}: {error.message}"
            permanent = True
        elif isinstance(error, SMTPException):
            # "No suitable authentication method", "already using TLS": mismatched configuration.
            cause = f"{cfg.address}: {error.message}"
            permanent = True
        elif isinstance(error, ssl.SSLError):
            # Includes certificate verification failures; an operator can fix those, so retry.
            cause = f"TLS with {cfg.address} failed ({error})"
            permanent = False
        elif isinstance(error, OSError):
            cause = f"cannot talk to {cfg.address} ({error})"
            permanent = False
        else:
            # ValueError from aiosmtplib: no From or To header, unparsable address.
            cause = f"message not sendable ({error})"
            permanent = True
        text = "smtp: " + redact(cause, [secret])
        return PermanentDeliveryError(text) if permanent else TransientDeliveryError(text)


async def send_one(config: SmtpConfig, message: email.message.EmailMessage) -> str:
    """Send a single message on a connection of its own; returns its Message-ID."""
    async with SmtpMailer(config) as mailer:
        return await mailer.send(message)


def _envelope(message: email.message.EmailMessage) -> tuple[str, list[str]]:
    """MAIL FROM and RCPT TO from the headers (as aiosmtplib's send_message would take them)."""
    sender = email.utils.parseaddr(str(message.get("Sender") or message.get("From") or ""))[1]
    fields = [str(v) for name in ("To", "Cc", "Bcc") for v in message.get_all(name, [])]
    recipients = [address for _, address in email.utils.getaddresses(fields) if address]
    if not sender or not recipients:
        raise ValueError("the message needs a From and at least one To, Cc or Bcc address")
    if message.get("Bcc") is not None:
        raise ValueError("a Bcc header would be sent as written: put Bcc recipients in the envelope only")
    return sender, recipients


def _message_id(message: email.message.EmailMessage) -> str:
    value = message.get("Message-ID")
    if value is None or not str(value).strip():
        raise ValueError("the message has no Message-ID header")
    return str(value).strip()


def _is_4xx(code: int) -> bool:
    return 400 <= code <= 499


def _reply(code: int, message: str) -> str:
    return f"{code} {message}".strip()


async def probe(config: SmtpConfig, *, timeout: float = 5.0) -> str:
    """Connect, EHLO and QUIT (no AUTH, nothing sent): the server's EHLO reply's first line.

    For `starter.py health`: proves the server is there and speaks SMTP. Raises
    aiosmtplib's errors (or OSError) when it is not."""
    smtp = aiosmtplib.SMTP(
        hostname=config.host,
        port=config.port,
        timeout=min(timeout, config.timeout),
        use_tls=config.tls == "tls",
        start_tls=config.tls == "starttls",
        validate_certs=config.validate_certs,
    )
    await smtp.connect()
    try:
        response = await smtp.ehlo()
        return response.message.splitlines()[0] if response.message else str(response.code)
    finally:
        try:
            await smtp.quit()
        except (aiosmtplib.SMTPException, OSError):
            smtp.close()
