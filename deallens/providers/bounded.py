"""Reading a provider's answer with a size cap and an overall deadline, shared by every client.

httpx's timeouts are per read: a server that trickles one byte a second never trips a
15-second read timeout, and `response.content` would hold a body of any size in memory. So
every provider body is read as a stream: the Content-Length (when sent) is checked before a
byte is read, a running total refuses the first chunk past the cap, and `asyncio.timeout`
bounds the whole exchange (headers and body). A body over the cap is `ResponseTooLarge`
(permanent: the same request brings the same body); a deadline or a body cut short (the
connection closed before Content-Length bytes came, a reset) is `ProviderUnavailable`
(retried). Messages never hold URLs (AlphaVantage's query string carries the key).

The OpenAI SDK reads its own bodies: deallens/llm/transport.py wraps its transport with the
same `refuse_declared` and `capped_chunks`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import httpx

from deallens.providers.errors import ProviderUnavailable, ResponseTooLarge

# A Retry-After further away than this is not taken literally (a misconfigured proxy).
MAX_RETRY_AFTER_SECONDS = 24 * 3600.0
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """How much one answer may weigh and how long the whole exchange may take."""

    max_bytes: int
    deadline_seconds: float

    def __post_init__(self) -> None:
        if self.max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        if self.deadline_seconds <= 0:
            raise ValueError("deadline_seconds must be positive")


@dataclass(frozen=True, slots=True)
class RawResponse:
    status_code: int
    headers: httpx.Headers
    content: bytes


def declared_length(headers: Mapping[str, str]) -> int | None:
    """The Content-Length a response announces, or None when it sends none (chunked) or nonsense."""
    value = headers.get("content-length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


def refuse_declared(provider: str, what: str, headers: Mapping[str, str], max_bytes: int) -> None:
    length = declared_length(headers)
    if length is not None and length > max_bytes:
        raise ResponseTooLarge(provider, what, size=length, limit=max_bytes, declared=True)


async def capped_chunks(
    chunks: AsyncIterator[bytes], *, provider: str, what: str, max_bytes: int
) -> AsyncIterator[bytes]:
    """`chunks` passed through, raising ResponseTooLarge at the first one that takes the total past `max_bytes`."""
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise ResponseTooLarge(provider, what, size=total, limit=max_bytes, declared=False)
        yield chunk


async def get_bounded(
    http: httpx.AsyncClient,
    path: str,
    *,
    params: Mapping[str, str],
    provider: str,
    what: str,
    limits: BodyLimits,
) -> RawResponse:
    """GET `path` and read its whole body within `limits`, or raise the typed error.

    Transport failures (refused, reset, cut short, per-read timeout) and the overall deadline
    are ProviderUnavailable; a body over the cap is ResponseTooLarge. Either way nothing of
    the body is kept.
    """
    try:
        async with asyncio.timeout(limits.deadline_seconds):
            async with http.stream("GET", path, params=params) as response:
                refuse_declared(provider, what, response.headers, limits.max_bytes)
                parts = [
                    chunk
                    async for chunk in capped_chunks(
                        response.aiter_bytes(), provider=provider, what=what, max_bytes=limits.max_bytes
                    )
                ]
                return RawResponse(response.status_code, response.headers, b"".join(parts))
    except TimeoutError:
        raise ProviderUnavailable(
            provider, f"{what} did not answer in full within {limits.deadline_seconds:g}s (a stalled or trickling body)"
        ) from None
    except httpx.TimeoutException:
        raise ProviderUnavailable(provider, f"{what} timed out") from None
    except httpx.RemoteProtocolError:
        # The server closed the connection before the response was complete: a body shorter
        # than its Content-Length, or a disconnect before any answer.
        raise ProviderUnavailable(provider, f"{what} failed: the connection closed before the answer was complete") from None
    except httpx.HTTPError as error:
        # The message of a transport error names the host, never the query string.
        raise ProviderUnavailable(provider, f"{what} failed: {type(error).__name__}") from None


def retry_after_seconds(headers: Mapping[str, str], *, now: dt.datetime | None = None) -> float | None:
    """The delay a Retry-After header asks for (seconds or an HTTP date), or None if absent or unusable."""
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
        seconds = max(seconds, 0.0)
    if not 0 <= seconds <= MAX_RETRY_AFTER_SECONDS or seconds != seconds:
        return None
    return seconds
