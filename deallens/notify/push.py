"""Push notifications as signed webhooks: generic JSON, ntfy, and chat (Slack-like, Discord).

Every request carries `X-DealLens-Timestamp` (unix seconds) and `X-DealLens-Signature`
(`v1=` + hex HMAC-SHA256 of `"{timestamp}." + body` keyed with the endpoint's secret), so a
receiver can tell our requests from forged ones and refuse replays (`verify`). The timestamp
is inside the MAC, which is what makes the freshness window meaningful.

`Idempotency-Key` is stable per delivery (e.g. "alert-123-push"): a retry after a timeout
may reach a receiver that already handled the first attempt, and the key lets it say so.

Redirects are never followed: a redirect to another host would hand it a signed request,
and a webhook URL that moved is a configuration matter for its owner.

The URL is the user's, so the sender itself refuses hosts that resolve to internal
addresses (`check_public_host`) unless built with `allow_private_hosts=True`: every caller
gets the check, not only the one that remembered it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import socket
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal, NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import httpx

from deallens.notify.content import PushEvent
from deallens.notify.errors import (
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
    http_status_error,
    one_line,
    redact,
    safe_url,
)

SIGNATURE_HEADER = "X-DealLens-Signature"
TIMESTAMP_HEADER = "X-DealLens-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
USER_AGENT = "DealLens-Webhook/1"
DEFAULT_TIMEOUT_S = 10.0

PushStyle = Literal["json", "ntfy", "chat"]

_SIGNATURE_VERSION = "v1="
_MAX_RESPONSE_BYTES = 64 * 1024
_DISCORD_MAX = 2000  # Discord rejects longer "content"
_CHAT_TEXT_MAX = 4000  # Google Chat's limit is 4096 bytes; Slack and Mattermost allow more


# ------------------------------------------------------------------ signing


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return _SIGNATURE_VERSION + mac.hexdigest()


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: int,
    tolerance_seconds: int = 300,
) -> bool:
    """Whether `body` and `headers` come from a sender knowing `secret`, within the time window.

    For receivers. `body` must be the raw bytes as received (not re-serialised JSON). The
    signature header may list several comma-separated signatures (a sender rotating
    secrets); one match suffices. Comparison is constant-time.
    """
    signature = _header(headers, SIGNATURE_HEADER)
    stamp = _header(headers, TIMESTAMP_HEADER)
    if not signature or not stamp:
        return False
    stamp = stamp.strip()
    if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12:
        return False
    timestamp = int(stamp)
    if abs(now - timestamp) > tolerance_seconds:
        return False
    expected = sign(secret, timestamp, body).encode()
    matches = [hmac.compare_digest(expected, c.strip().encode("utf-8", "replace")) for c in signature.split(",")]
    return any(matches)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


# ------------------------------------------------------------------ payloads


class PushRequest(NamedTuple):
    """What to POST where: `url` differs from the configured one for ntfy (server root)."""

    url: str
    body: dict[str, Any]


def payload(event: PushEvent, style: PushStyle, url: str) -> PushRequest:
    """The request for `event` to the endpoint configured as `url`, in the endpoint's style.

    * "json": our own schema, for receivers written against DealLens.
    * "ntfy": ntfy's JSON publishing: POST to the server root, the topic in the body (the
      user configures the topic URL they subscribe to, e.g. https://ntfy.sh/my-alerts).
    * "chat": one body understood by Slack, Mattermost and Google Chat ("text") and Discord
      ("content"); each ignores the other's key.

    Raises PermanentDeliveryError for a URL that cannot work (not http(s), no ntfy topic).
    """
    check_url(url)
    if style == "json":
        return PushRequest(
            url,
            {
                "type": "alert",
                "title": event.title,
                "message": event.message,
                "priority": event.priority,
                "url": event.url,
                "tags": list(event.tags),
                "data": dict(event.data),
            },
        )
    if style == "ntfy":
        root, topic = _ntfy_target(url)
        body = {
            "topic": topic,
            "title": event.title,
            "message": event.message,
            "priority": 4 if event.priority == "high" else 3,
            "tags": list(event.tags),
            "click": event.url,
        }
        return PushRequest(root, {key: value for key, value in body.items() if value is not None})
    if style == "chat":
        link = event.url if event.url is not None and _linkable(event.url) else None
        text = f"*{_slack_escape(event.title)}*\n{_slack_escape(event.message)}"
        content = f"**{_discord_escape(event.title)}**\n{_discord_escape(event.message)}"
        return PushRequest(
            url,
            {
                "text": _with_link(text, link, _CHAT_TEXT_MAX),
                "content": _with_link(content, link, _DISCORD_MAX),
            },
        )
    raise ValueError(f"unknown push style {style!r}")


async def check_public_host(url: str) -> None:
    """Refuse a webhook whose host resolves to a loopback, private, link-local or otherwise
    internal address: a user-supplied URL must not make the worker POST to internal services
    (cloud metadata, the Temporal frontend, the database's HTTP neighbours). DNS failure is
    transient. (A host that re-resolves between this check and the POST is not covered.)"""
    check_url(url)
    host = urlsplit(url).hostname or ""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as error:
        raise TransientDeliveryError(f"push: cannot resolve {safe_url(url)} ({error})") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_global:
            raise PermanentDeliveryError(
                f"push: {safe_url(url)} resolves to a non-public address ({address}); "
                "set PUSH_ALLOW_PRIVATE_HOSTS=true to allow internal receivers"
            )


def check_url(url: str) -> None:
    """PermanentDeliveryError unless `url` is an absolute http(s) URL with a host."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError:
        raise PermanentDeliveryError("push: not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        scheme = parts.scheme or "no scheme"
        raise PermanentDeliveryError(f"push: only http(s) URLs are supported (got {scheme[:20]})")
    if not host:
        raise PermanentDeliveryError("push: the URL has no host")


def _ntfy_target(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    if not segments:
        raise PermanentDeliveryError(f"push: {safe_url(url)} names no ntfy topic (expected https://host/topic)")
    # The query string stays: ntfy accepts ?auth=... on any endpoint.
    root = urlunsplit((parts.scheme, parts.netloc, "/", parts.query, ""))
    return root, unquote(segments[-1])


def _linkable(url: str) -> bool:
    return url.lower().startswith(("http://", "https://")) and not any(c.isspace() or c in "<>|" for c in url)


def _slack_escape(text: str) -> str:
    # Slack's (and Google Chat's) control sequences: <!channel>, <@U123>, <url|label>.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _discord_escape(text: str) -> str:
    # A zero-width space after "@" defuses @everyone, @here and <@id> pings from untrusted text.
    return text.replace("@", "@\u200b")


def _with_link(text: str, link: str | None, limit: int) -> str:
    suffix = f"\n{link}" if link else ""
    room = limit - len(suffix)
    if len(text) > room:
        text = text[: max(room - 1, 0)] + "…"
    return text + suffix


# ------------------------------------------------------------------ sending


class WebhookSender:
    """Posts push events; one httpx client (connection pool) shared by every send.

    Pass `client` to share a pool (its redirect setting is overridden per request); otherwise
    the sender owns one and closes it with `aclose()` / `async with`. `allow_private_hosts`
    (PUSH_ALLOW_PRIVATE_HOSTS) lets webhooks reach loopback and private networks: for local
    receivers in development, never for a public deployment.
    """

    def __init__(
        self,
        client: httpx.AsyncClient | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        allow_private_hosts: bool = False,
    ) -> None:
        self._allow_private_hosts = allow_private_hosts
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    async def __aenter__(self) -> WebhookSender:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def send(
        self,
        *,
        url: str,
        secret: str,
        event: PushEvent,
        style: PushStyle,
        idempotency_key: str,
        now: int | None = None,
    ) -> str:
        """POST the signed event; returns a short receipt ("200", "200 id=...").

        2xx is success; 408, 425, 429 and 5xx raise TransientDeliveryError, every other
        answer (401 wrong secret, 404, 410 Gone, 3xx) PermanentDeliveryError; timeouts and
        connection failures are transient. Retry-After and the like are not honoured: the
        caller's retry policy decides when to try again. A host resolving to an internal
        address is a PermanentDeliveryError unless the sender allows private hosts.
        """
        _check_idempotency_key(idempotency_key)
        request = payload(event, style, url)
        if not self._allow_private_hosts:
            await check_public_host(request.url)
        timestamp = int(time.time()) if now is None else now
        body = json.dumps(request.body, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            IDEMPOTENCY_HEADER: idempotency_key,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret, timestamp, body),
        }
        where = safe_url(request.url)
        secrets = [secret, *_url_secrets(url), *_url_secrets(request.url)]
        try:
            async with self._client.stream(
                "POST", request.url, content=body, headers=headers, follow_redirects=False
            ) as response:
                raw = await read_capped(response, _MAX_RESPONSE_BYTES)
        except httpx.HTTPError as error:
            raise transport_error("push", where, error, secrets=secrets) from None
        if not response.is_success:
            raise http_status_error("push", where, response.status_code, response.reason_phrase, secrets=secrets)
        return _receipt(response.status_code, raw)


def transport_error(
    channel: str, where: str, error: httpx.HTTPError, *, secrets: list[str | None]
) -> DeliveryError:
    """Map an httpx failure without an HTTP answer: bad URL → permanent, network → transient."""
    detail = redact(one_line(str(error)) or type(error).__name__, secrets)
    if isinstance(error, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return PermanentDeliveryError(f"{channel}: {where} cannot be requested ({detail})")
    if isinstance(error, httpx.TimeoutException):
        return TransientDeliveryError(f"{channel}: {where} timed out ({type(error).__name__})")
    return TransientDeliveryError(f"{channel}: {where} unreachable ({type(error).__name__}: {detail})")


async def read_capped(response: httpx.Response, limit: int) -> bytes:
    """At most `limit` bytes of the body: a hostile endpoint cannot make us buffer gigabytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


def _receipt(status: int, raw: bytes) -> str:
    try:
        answer = json.loads(raw) if raw else None
    except ValueError:
        answer = None
    if isinstance(answer, dict) and isinstance(answer.get("id"), str | int) and not isinstance(answer["id"], bool):
        return one_line(f"{status} id={answer['id']}", limit=120)
    return str(status)


def _url_secrets(url: str) -> list[str | None]:
    """Parts of a URL that may be credentials, for `redact`: the URL itself, its query string
    and query values (tokens), and a password."""
    try:
        parts = urlsplit(url)
        values = [value for _, value in parse_qsl(parts.query) if len(value) >= 4]
        return [url, parts.query, parts.password, *values]
    except ValueError:
        return [url]


def _check_idempotency_key(key: str) -> None:
    if not 1 <= len(key) <= 255 or not key.isascii() or not key.isprintable() or " " in key:
        raise ValueError("idempotency_key must be 1-255 printable ASCII characters without spaces")
