"""Fault injection, request statistics and the `/_sim/*` control endpoints shared by the stand-ins.

A test (or an operator running the demo) says "the next 3 GLOBAL_QUOTE calls answer the
rate-limit Note" or "10% of NewsAPI calls fail with 500" and then checks that the clients
and workflows cope. Rules are drawn from a `random.Random` seeded from the app seed, so a
run with the same seed, rules and request sequence fails the same requests every time.

In process: `app.state.sim` is the app's `SimController` (`.faults.add(...)`,
`.faults.clear()`, `.stats`). Over HTTP: `POST /_sim/faults` (a JSON rule),
`DELETE /_sim/faults`, `GET /_sim/faults`, `GET /_sim/stats`, `DELETE /_sim/stats`.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import struct
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

# Kinds every stand-in understands; each provider adds its own.
LATENCY = "latency"
MALFORMED_JSON = "malformed_json"
EMPTY = "empty"
# Faults of the connection rather than of the answer (see `answer`):
TIMEOUT = "timeout"  # hold the answer for latency_ms (default 120 s): the client's read timeout trips
CONNECTION_RESET = "connection_reset"  # reset the TCP connection (RST) before any byte of an answer
SLOW_BODY = "slow_body"  # the normal answer, one byte every interval_ms (default 1000)
TRUNCATED_BODY = "truncated_body"  # headers with the full Content-Length, half the body, then the connection closes
OVERSIZED = "oversized"  # the normal answer padded to size_bytes (default 64 MiB), Content-Length announced
OVERSIZED_CHUNKED = "oversized_chunked"  # the same, chunked: no Content-Length, the size shows only while reading
TRANSPORT_KINDS: frozenset[str] = frozenset(
    {TIMEOUT, CONNECTION_RESET, SLOW_BODY, TRUNCATED_BODY, OVERSIZED, OVERSIZED_CHUNKED}
)
COMMON_KINDS: frozenset[str] = (
    frozenset({LATENCY, "http_429", "http_500", "http_503", MALFORMED_JSON, EMPTY}) | TRANSPORT_KINDS
)
DEFAULT_TIMEOUT_MS = 120_000
DEFAULT_OVERSIZE_BYTES = 64 * 1024 * 1024
# Where serve_asgi puts the connection's asyncio transport in the ASGI scope (for connection faults).
TRANSPORT_SCOPE_KEY = "deallens.sim.transport"


class FaultRule(BaseModel):
    """One way to misbehave, for the next `count` matching requests or with `probability`.

    Without `count` the rule stays until cleared; without `probability` it fires every time
    it matches. `latency_ms` delays the answer (for kind "latency" that is the whole fault).
    `retry_after` (seconds) adds a Retry-After header to the fault's answer (an http_429 with
    one); `interval_ms` paces a slow_body; `size_bytes` sizes an oversized answer.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    count: int | None = Field(default=None, ge=1)
    probability: float | None = Field(default=None, ge=0.0, le=1.0)
    match: str | None = Field(default=None, min_length=1)
    latency_ms: int | None = Field(default=None, ge=0, le=120_000)
    retry_after: float | None = Field(default=None, ge=0, le=86_400)
    interval_ms: int | None = Field(default=None, ge=1, le=60_000)
    size_bytes: int | None = Field(default=None, ge=1, le=1024**3)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str, info: ValidationInfo) -> str:
        kinds = (info.context or {}).get("kinds")
        if kinds is not None and kind not in kinds:
            raise ValueError(f"unknown fault kind {kind!r}; this stand-in supports: {', '.join(sorted(kinds))}")
        return kind

    @model_validator(mode="after")
    def _latency_needs_duration(self) -> FaultRule:
        if self.kind == LATENCY and self.latency_ms is None:
            raise ValueError("kind 'latency' needs latency_ms (milliseconds to wait before answering)")
        return self


@dataclass
class _ActiveRule:
    rule: FaultRule
    remaining: int | None


class FaultPlan:
    """The rules in force, checked in the order they were added; the first that fires wins."""

    def __init__(self, seed: int, kinds: frozenset[str], *, normalize_match: Callable[[str], str] = str) -> None:
        self.kinds = kinds
        self._seed = seed
        self._normalize = normalize_match
        self._rules: list[_ActiveRule] = []
        self._rng = random.Random(f"faults:{seed}")

    def add(
        self,
        kind: str,
        *,
        count: int | None = None,
        probability: float | None = None,
        match: str | None = None,
        latency_ms: int | None = None,
        retry_after: float | None = None,
        interval_ms: int | None = None,
        size_bytes: int | None = None,
    ) -> FaultRule:
        """Add a rule (validated like `POST /_sim/faults`; raises pydantic.ValidationError)."""
        data = {
            "kind": kind, "count": count, "probability": probability, "match": match, "latency_ms": latency_ms,
            "retry_after": retry_after, "interval_ms": interval_ms, "size_bytes": size_bytes,
        }
        data = {key: value for key, value in data.items() if value is not None}
        return self.add_rule(self.validate(data))

    def validate(self, data: object) -> FaultRule:
        return FaultRule.model_validate(data, context={"kinds": self.kinds})

    def add_rule(self, rule: FaultRule) -> FaultRule:
        if rule.match is not None:
            rule = rule.model_copy(update={"match": self._normalize(rule.match)})
        self._rules.append(_ActiveRule(rule, rule.count))
        return rule

    def clear(self) -> None:
        """Remove every rule and restart the probability draws, so the next test repeats exactly."""
        self._rules.clear()
        self._rng = random.Random(f"faults:{self._seed}")

    @property
    def rules(self) -> list[FaultRule]:
        return [active.rule for active in self._rules]

    def draw(self, key: str) -> FaultRule | None:
        """The rule that fires for a request to `key` (function or path), consuming one of its count."""
        for active in self._rules:
            rule = active.rule
            if rule.match is not None and rule.match != key:
                continue
            if rule.probability is not None and self._rng.random() >= rule.probability:
                continue
            if active.remaining is not None:
                active.remaining -= 1
                if active.remaining == 0:
                    self._rules.remove(active)
            return rule
        return None


@dataclass
class SimStats:
    """What a stand-in has been asked and how it answered (control endpoints excluded)."""

    total_requests: int = 0
    by_endpoint: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    rate_limit_refusals: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "total_requests": self.total_requests,
            "by_endpoint": dict(sorted(self.by_endpoint.items())),
            "faults": dict(sorted(self.faults.items())),
            "rate_limit_refusals": self.rate_limit_refusals,
        }

    def reset(self) -> None:
        self.total_requests = 0
        self.by_endpoint.clear()
        self.faults.clear()
        self.rate_limit_refusals = 0


class SimController:
    """Everything a test may poke at in one running stand-in: `app.state.sim`."""

    def __init__(self, seed: int, kinds: frozenset[str], *, normalize_match: Callable[[str], str] = str) -> None:
        self.seed = seed
        self.faults = FaultPlan(seed, kinds, normalize_match=normalize_match)
        self.stats = SimStats()


FaultResponder = Callable[[FaultRule, Request], Response]


async def answer(
    controller: SimController,
    key: str,
    request: Request,
    handle: Callable[[], Awaitable[Response]],
    fault_response: FaultResponder,
) -> Response:
    """Count the request, apply the first fault rule that fires, otherwise answer normally.

    "latency" and "malformed_json" wrap the normal answer (the latter cuts its body in half
    and keeps status 200, like a connection dropped mid-body behind a proxy that already
    sent the headers), as do the connection faults of TRANSPORT_KINDS; every other kind
    replaces it with `fault_response(rule, request)` (with a Retry-After if the rule has one).
    """
    controller.stats.total_requests += 1
    controller.stats.by_endpoint[key or "(none)"] += 1
    rule = controller.faults.draw(key)
    if rule is None:
        return await handle()
    controller.stats.faults[rule.kind] += 1
    if rule.latency_ms and rule.kind != TIMEOUT:
        await asyncio.sleep(rule.latency_ms / 1000)
    if rule.kind == LATENCY:
        return await handle()
    if rule.kind == TIMEOUT:
        hold = (rule.latency_ms if rule.latency_ms is not None else DEFAULT_TIMEOUT_MS) / 1000
        return _Held(await handle(), seconds=hold)
    if rule.kind == CONNECTION_RESET:
        return _Reset()
    if rule.kind in TRANSPORT_KINDS or rule.kind == MALFORMED_JSON:
        normal = await handle()
        body = bytes(normal.body)
        if rule.kind == MALFORMED_JSON:
            return Response(body[: max(1, len(body) // 2)], status_code=200, media_type="application/json")
        if rule.kind == SLOW_BODY:
            return _Trickle(normal, interval=(rule.interval_ms or 1000) / 1000)
        if rule.kind == TRUNCATED_BODY:
            return _Truncated(normal)
        return _Oversized(normal, size=rule.size_bytes or DEFAULT_OVERSIZE_BYTES, announce=rule.kind == OVERSIZED)
    response = fault_response(rule, request)
    if rule.retry_after is not None:
        response.headers["retry-after"] = f"{rule.retry_after:g}"
    return response


def _start(response: Response, *, content_length: int | None) -> dict[str, Any]:
    headers = [(k, v) for k, v in response.raw_headers if k.lower() != b"content-length"]
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    return {"type": "http.response.start", "status": response.status_code, "headers": headers}


def _transport(scope: Scope) -> asyncio.Transport | None:
    transport = scope.get(TRANSPORT_SCOPE_KEY)
    return transport if isinstance(transport, asyncio.BaseTransport) else None  # type: ignore[return-value]


async def _client_gone(scope: Scope, seconds: float) -> bool:
    """Wait up to `seconds`; True as soon as the client has closed the connection (stop sending then)."""
    transport = _transport(scope)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        if transport is not None and transport.is_closing():
            return True
        left = deadline - loop.time()
        if left <= 0:
            return False
        await asyncio.sleep(min(left, 0.05))


class _Held(Response):
    """The normal answer after `seconds` (unless the client gave up first): a server that hangs."""

    def __init__(self, normal: Response, *, seconds: float) -> None:
        super().__init__(b"", status_code=normal.status_code)
        self._normal = normal
        self._seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not await _client_gone(scope, self._seconds):
            await self._normal(scope, receive, send)


class _Reset(Response):
    """No answer: the connection is reset (SO_LINGER 0, then abort), as a crashed server's would be."""

    def __init__(self) -> None:
        super().__init__(b"", status_code=500)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        transport = _transport(scope)
        if transport is None:  # not served by serve_asgi: the nearest thing is an unfinished answer
            raise ConnectionResetError("simulated connection reset")
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        for _ in range(3):  # let the server see the connection go before it would answer for us
            await asyncio.sleep(0)


class _Trickle(Response):
    """The normal answer with its real Content-Length, sent one byte every `interval` seconds."""

    def __init__(self, normal: Response, *, interval: float) -> None:
        super().__init__(bytes(normal.body), status_code=normal.status_code)
        self.raw_headers = normal.raw_headers
        self._interval = interval

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = bytes(self.body)
        await send(_start(self, content_length=len(body)))
        for index in range(len(body)):
            await send({"type": "http.response.body", "body": body[index : index + 1], "more_body": True})
            if await _client_gone(scope, self._interval):
                return
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class _Truncated(Response):
    """Headers announcing the whole body, half of it, then the connection closes."""

    def __init__(self, normal: Response) -> None:
        super().__init__(bytes(normal.body), status_code=normal.status_code)
        self.raw_headers = normal.raw_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = bytes(self.body)
        await send(_start(self, content_length=len(body) + 1))
        await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
        transport = _transport(scope)
        if transport is None:
            raise ConnectionResetError("simulated truncated body")
        await asyncio.sleep(0.05)  # let the half body go out before the FIN
        transport.close()
        for _ in range(3):
            await asyncio.sleep(0)


_PAD_CHUNK = 64 * 1024


class _Oversized(Response):
    """The normal JSON object with a "padding" string that takes it to `size` bytes, streamed."""

    def __init__(self, normal: Response, *, size: int, announce: bool) -> None:
        super().__init__(bytes(normal.body), status_code=normal.status_code)
        self.raw_headers = normal.raw_headers
        self._size = size
        self._announce = announce

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = bytes(self.body).rstrip()
        head = body[:-1] + b',"padding":"' if body.endswith(b"}") and len(body) > 2 else b'{"padding":"'
        tail = b'"}'
        pad = max(0, self._size - len(head) - len(tail))
        await send(_start(self, content_length=len(head) + pad + len(tail) if self._announce else None))
        await send({"type": "http.response.body", "body": head, "more_body": True})
        chunk = b"x" * _PAD_CHUNK
        transport = _transport(scope)
        while pad > 0:
            if transport is not None and transport.is_closing():
                return
            piece = chunk if pad >= _PAD_CHUNK else chunk[:pad]
            pad -= len(piece)
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": tail, "more_body": False})


def json_response(
    body: object, status_code: int = 200, *, indent: int | None = None, headers: dict[str, str] | None = None
) -> Response:
    """JSON as the provider writes it (AlphaVantage indents by 4, OpenAI by 2, NewsAPI not at all)."""
    separators = (",", ":") if indent is None else (",", ": ")
    text = json.dumps(body, ensure_ascii=False, indent=indent, separators=separators)
    return Response(text.encode("utf-8"), status_code=status_code, media_type="application/json", headers=headers)


def gateway_error(status_code: int) -> Response:
    """What a load balancer in front of an API answers when the service behind it is down."""
    reasons = {429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Temporarily Unavailable"}
    reason = reasons[status_code]
    html = (
        f"<html>\r\n<head><title>{status_code} {reason}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status_code} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
    return Response(html, status_code=status_code, media_type="text/html")


def _validation_problem(error: ValidationError) -> Response:
    problems = []
    for item in error.errors(include_url=False):
        field_name = ".".join(str(part) for part in item["loc"]) or "(rule)"
        problems.append({"field": field_name, "message": item["msg"]})
    detail = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
    return json_response({"detail": f"invalid request body: {detail}", "errors": problems}, 422)


async def read_json(request: Request) -> object | Response:
    """The JSON body, or a 422 that says the body must be JSON."""
    try:
        return await request.json()
    except ValueError:
        return json_response(
            {"detail": "invalid request body: send a JSON object, e.g. {\"kind\": \"http_500\", \"count\": 1}",
             "errors": [{"field": "(body)", "message": "not valid JSON"}]},
            422,
        )


def validated(model: type[BaseModel], data: object, *, context: dict[str, Any] | None = None) -> BaseModel | Response:
    """`data` validated as `model`, or a 422 naming each bad field."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as error:
        return _validation_problem(error)


def control_routes(controller: SimController) -> list[Route]:
    """The `/_sim/*` endpoints for one stand-in (not counted in its stats)."""

    async def add_fault(request: Request) -> Response:
        data = await read_json(request)
        if isinstance(data, Response):
            return data
        rule = validated(FaultRule, data, context={"kinds": controller.faults.kinds})
        if isinstance(rule, Response):
            return rule
        assert isinstance(rule, FaultRule)
        stored = controller.faults.add_rule(rule)
        return json_response({"added": stored.model_dump(), "rules": _dump(controller.faults.rules)}, 201)

    async def list_faults(request: Request) -> Response:
        return json_response({"rules": _dump(controller.faults.rules), "kinds": sorted(controller.faults.kinds)})

    async def clear_faults(request: Request) -> Response:
        controller.faults.clear()
        return json_response({"rules": []})

    async def get_stats(request: Request) -> Response:
        return json_response(controller.stats.as_dict())

    async def reset_stats(request: Request) -> Response:
        controller.stats.reset()
        return json_response(controller.stats.as_dict())

    return [
        Route("/_sim/faults", add_fault, methods=["POST"]),
        Route("/_sim/faults", list_faults, methods=["GET"]),
        Route("/_sim/faults", clear_faults, methods=["DELETE"]),
        Route("/_sim/stats", get_stats, methods=["GET"]),
        Route("/_sim/stats", reset_stats, methods=["DELETE"]),
    ]


def _dump(rules: Iterable[FaultRule]) -> list[dict[str, Any]]:
    return [rule.model_dump() for rule in rules]
