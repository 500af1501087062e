"""Delivery failures of the notification channels, split by whether a retry can help.

The activity layer turns `PermanentDeliveryError` into a non-retryable failure (a refused
mailbox, a webhook that answered 410, a wrong SMTP password: trying again only repeats the
same answer) and lets `TransientDeliveryError` be retried (timeouts, 4xx SMTP replies, 5xx
and 429 HTTP answers, refused connections).

Messages are one line, start with the channel ("smtp: ...", "push: ...", "sms: ...") and end
up in Temporal histories, logs and the notification ledger, so they must never carry a
secret: channels pass their secrets to `redact`, and URLs go through `safe_url`, which drops
the query string, the fragment and any user:password, where tokens usually live.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

_WHITESPACE = re.compile(r"\s+")
_MAX_MESSAGE = 500
REDACTED = "***"


class DeliveryError(Exception):
    """A notification could not be delivered; `permanent` says whether retrying is pointless."""

    permanent: bool = False
    # True when the failure is the session's (connect, TLS, login, our sender refused), not
    # this message's: the rest of a batch would fail the same way.
    session: bool = False

    def __init__(self, message: str, *, permanent: bool | None = None) -> None:
        message = one_line(message)
        super().__init__(message)
        self.message = message
        if permanent is not None:
            self.permanent = permanent

    @property
    def channel(self) -> str:
        """The channel named at the start of the message ("smtp", "push", "sms"), or ""."""
        head, sep, _ = self.message.partition(":")
        return head if sep and " " not in head else ""

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep `permanent` across pickling (process pools, test tooling): Exception's default
        # reduce would only replay the message.
        return (_rebuild, (type(self), self.message, self.permanent))


class PermanentDeliveryError(DeliveryError):
    """Retrying cannot help: bad address, revoked endpoint, wrong credentials, bad config."""

    permanent = True

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


class TransientDeliveryError(DeliveryError):
    """Retrying later may help: the server was down, slow, busy or asked us to come back."""

    permanent = False

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=False)


def _rebuild(cls: type[DeliveryError], message: str, permanent: bool) -> DeliveryError:
    if cls in (PermanentDeliveryError, TransientDeliveryError):
        return cls(message)  # type: ignore[call-arg]
    return cls(message, permanent=permanent)


def one_line(text: str, limit: int = _MAX_MESSAGE) -> str:
    """Collapse whitespace (server replies are often multi-line) and cap the length."""
    text = _WHITESPACE.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every non-empty secret replaced by `***` (longest first, so overlaps go too)."""
    # Very short "secrets" would garble the text and protect nothing.
    for secret in sorted((s for s in secrets if s and len(s) >= 8), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def safe_url(url: str) -> str:
    """The URL as it may appear in a message: scheme, host and port, and a short hash of the path.

    Webhook tokens live in the path (Slack's /services/T../B../<token>, Discord's
    /api/webhooks/<id>/<token>), the query or `user:password@`: none of them is shown. The
    hash still tells two endpoints of one host apart.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid url>"
    if not parts.scheme or not host:
        return "<invalid url>"
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    path = parts.path.strip("/")
    shown = f"/…#{hashlib.sha256(path.encode()).hexdigest()[:6]}" if path else ""
    return f"{parts.scheme}://{netloc}{shown}"


def http_status_error(
    channel: str,
    where: str,
    status: int,
    reason: str,
    detail: str = "",
    *,
    secrets: Iterable[str | None] = (),
) -> DeliveryError:
    """The error for a non-2xx HTTP answer from `where` (already passed through `safe_url`)."""
    text = f"{channel}: {where} answered {status} {reason}".rstrip()
    if 300 <= status <= 399:
        detail = detail or "redirects are not followed"
    if detail:
        text += f" ({detail})"
    text = redact(text, secrets)
    return TransientDeliveryError(text) if http_status_is_transient(status) else PermanentDeliveryError(text)


def http_status_is_transient(status: int) -> bool:
    """Whether an HTTP error status is worth retrying: 408, 425, 429 and any 5xx.

    Every other non-2xx answer (401/403 wrong secret, 404 unknown endpoint, 410 unsubscribed,
    3xx since redirects are not followed) will be the same next time.
    """
    return status in (408, 425, 429) or 500 <= status <= 599
