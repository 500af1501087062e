"""A size cap on every answer the OpenAI SDK reads, at the transport.

The SDK reads bodies itself (over httpx2), so the cap cannot be a loop of ours around
`aiter_bytes`: instead each response's byte stream is wrapped, the Content-Length refused up
front and the running total checked chunk by chunk (deallens/providers/bounded.py). The
ResponseTooLarge raised mid-read is not an httpx2 error, so the SDK lets it through as is
(it wraps only transport errors as APIConnectionError); the gateway maps either form.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2

from deallens.llm.errors import PROVIDER
from deallens.providers.bounded import capped_chunks, refuse_declared
from deallens.providers.errors import ResponseTooLarge


class _CappedStream(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream, *, what: str, max_bytes: int) -> None:
        self._inner = inner
        self._what = what
        self._max = max_bytes

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in capped_chunks(aiter(self._inner), provider=PROVIDER, what=self._what, max_bytes=self._max):
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class CappedTransport(httpx2.AsyncBaseTransport):
    """httpx2's transport, refusing any answer over `max_bytes` (OPENAI_MAX_BODY_BYTES).

    A Batch API result file (GET /files/{id}/content) is legitimately larger than any one
    completion: it has its own cap, `file_max_bytes` (OpenAI takes batch files up to 200 MB).
    """

    def __init__(
        self, *, max_bytes: int, file_max_bytes: int, inner: httpx2.AsyncBaseTransport | None = None
    ) -> None:
        if max_bytes < 1 or file_max_bytes < 1:
            raise ValueError("max_bytes and file_max_bytes must be at least 1")
        self._inner = inner or httpx2.AsyncHTTPTransport()
        self._max = max_bytes
        self._file_max = file_max_bytes

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        path = request.url.path
        what = f"{request.method} {path}"
        cap = self._file_max if "/files/" in path and path.endswith("/content") else self._max
        try:
            refuse_declared(PROVIDER, what, response.headers, cap)
        except ResponseTooLarge:
            await response.aclose()
            raise
        assert isinstance(response.stream, httpx2.AsyncByteStream)
        response.stream = _CappedStream(response.stream, what=what, max_bytes=cap)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
