"""SMS, ready but off by default: a provider interface and one Twilio-compatible implementation.

`SmsProvider` is what the notification activities depend on, so another provider (or a test
double) only has to implement `send`. `HttpSmsProvider` speaks the Twilio Messages API,
which several other providers and local stand-ins copy.

Numbers are checked for E.164 before any request: a malformed number is a data problem that
no retry fixes, and sending it would cost an API call (and on Twilio, an error on the
account). Bodies are capped at 640 characters (at most 5 GSM segments) so an overlong alert
text cannot turn into a costly multi-part message.
"""

from __future__ import annotations

import json
import re
from types import TracebackType
from typing import Protocol, runtime_checkable
from urllib.parse import quote, urlsplit

import httpx
from pydantic import SecretStr

from deallens.notify.errors import PermanentDeliveryError, http_status_error, one_line, safe_url
from deallens.notify.push import read_capped, transport_error

MAX_BODY_CHARS = 640
DEFAULT_TIMEOUT_S = 10.0
USER_AGENT = "DealLens-SMS/1"

_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
_MAX_RESPONSE_BYTES = 64 * 1024


@runtime_checkable
class SmsProvider(Protocol):
    """Sends one text message; returns the provider's message id.

    Raises PermanentDeliveryError or TransientDeliveryError (deallens/notify/errors.py).
    `idempotency_key` is stable per delivery, for providers that can deduplicate retries.
    """

    async def send(self, *, to: str, body: str, idempotency_key: str) -> str: ...


def is_e164(number: str) -> bool:
    """`+`, a non-zero country code digit, 8 to 15 digits in all; no spaces or dashes."""
    return _E164.fullmatch(number) is not None


def truncate_body(body: str, limit: int = MAX_BODY_CHARS) -> str:
    return body if len(body) <= limit else body[: limit - 1] + "…"


class HttpSmsProvider:
    """The Twilio-compatible Messages API: POST {base_url}/2010-04-01/Accounts/{sid}/Messages.json.

    Form fields To, From, Body; HTTP basic auth (account SID, auth token); the answer's JSON
    `sid` is the message id. Errors come back as JSON {"code", "message", "status"}, and the
    code and message go into the DeliveryError (Twilio's codes are what its docs index).
    """

    def __init__(
        self,
        base_url: str,
        account_sid: str,
        auth_token: SecretStr,
        from_number: str,
        *,
        client: httpx.AsyncClient | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError("base_url must be an http(s) URL")
        if not account_sid:
            raise ValueError("account_sid is empty")
        self._base_url = base_url.rstrip("/")
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._from = from_number
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    def __repr__(self) -> str:
        return f"HttpSmsProvider({safe_url(self._base_url)!r}, from={self._from!r})"

    async def __aenter__(self) -> HttpSmsProvider:
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

    @property
    def messages_url(self) -> str:
        return f"{self._base_url}/2010-04-01/Accounts/{quote(self._account_sid, safe='')}/Messages.json"

    async def send(self, *, to: str, body: str, idempotency_key: str) -> str:
        if not is_e164(to):
            raise PermanentDeliveryError(f"sms: {to[:32]!r} is not an E.164 number (+ and 8-15 digits)")
        token = self._auth_token.get_secret_value()
        secrets = [token]
        where = safe_url(self._base_url)
        try:
            async with self._client.stream(
                "POST",
                self.messages_url,
                data={"To": to, "From": self._from, "Body": truncate_body(body)},
                auth=httpx.BasicAuth(self._account_sid, token),
                headers={"User-Agent": USER_AGENT, "Idempotency-Key": idempotency_key, "Accept": "application/json"},
                follow_redirects=False,
            ) as response:
                raw = await read_capped(response, _MAX_RESPONSE_BYTES)
        except httpx.HTTPError as error:
            raise transport_error("sms", where, error, secrets=secrets) from None
        answer = _json(raw)
        if not response.is_success:
            raise http_status_error(
                "sms", where, response.status_code, response.reason_phrase, _provider_error(answer), secrets=secrets
            )
        sid = answer.get("sid") if isinstance(answer, dict) else None
        if not isinstance(sid, str) or not sid:
            # Accepted but unidentifiable: it counts as sent (a retry, or `notifications retry`
            # after a "failed", could text the user twice).
            return f"{response.status_code} (no sid)"
        return sid


def _json(raw: bytes) -> object:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _provider_error(answer: object) -> str:
    """"21211 The 'To' number ... is not valid" from Twilio's error JSON, or ""."""
    if not isinstance(answer, dict):
        return ""
    code, message = answer.get("code"), answer.get("message")
    parts = [str(part) for part in (code, message) if part not in (None, "")]
    return one_line(" ".join(parts), limit=300)
