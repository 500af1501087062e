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
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

# Kinds every stand-in understands; each provider adds its own.
LATENCY = "latency"
MALFORMED_JSON = "malformed_json"
EMPTY = "empty"
COMMON_KINDS: frozenset[str] = frozenset({LATENCY, "http_429", "http_500", "http_503", MALFORMED_JSON, EMPTY})


class FaultRule(BaseModel):
    """One way to misbehave, for the next `count` matching requests or with `probability`.

    Without `count` the rule stays until cleared; without `probability` it fires every time
    it matches. `latency_ms` delays the answer (for kind "latency" that is the whole fault).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    count: int | None = Field(default=None, ge=1)
    probability: float | None = Field(default=None, ge=0.0, le=1.0)
    match: str | None = Field(default=None, min_length=1)
    latency_ms: int | None = Field(default=None, ge=0, le=120_000)

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
    ) -> FaultRule:
        """Add a rule (validated like `POST /_sim/faults`; raises pydantic.ValidationError)."""
        data = {"kind": kind, "count": count, "probability": probability, "match": match, "latency_ms": latency_ms}
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
    sent the headers); every other kind replaces it with `fault_response(rule, request)`.
    """
    controller.stats.total_requests += 1
    controller.stats.by_endpoint[key or "(none)"] += 1
    rule = controller.faults.draw(key)
    if rule is None:
        return await handle()
    controller.stats.faults[rule.kind] += 1
    if rule.latency_ms:
        await asyncio.sleep(rule.latency_ms / 1000)
    if rule.kind == LATENCY:
        return await handle()
    if rule.kind == MALFORMED_JSON:
        normal = await handle()
        body = bytes(normal.body)
        return Response(body[: max(1, len(body) // 2)], status_code=200, media_type="application/json")
    return fault_response(rule, request)


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
