"""OpenAI stand-in: POST /v1/chat/completions and GET /v1/models, enough for the official SDK.

Completions have the exact shape of the real API (provider-samples/openai_chat_completion_*),
so `AsyncOpenAI(base_url=url + "/v1")` works unchanged, including
`chat.completions.parse(response_format=SomeModel)`: with a json_schema response format the
content is a JSON string generated from the schema (pydantic's `$defs`/`$ref`, anyOf with
null, enums, bounds, arrays, nested objects), so it parses into the caller's model.

Content is deterministic: a hash of (seed, model, messages, response_format) picks it, so a
test can assert on it and a cache keyed on the prompt behaves as in production. Token counts
are ceil(characters / 4), close enough for cost accounting tests.

Structured outputs are dispatched by the json_schema `name` to a responder registered with
`@structured_responder(name)` (a function of the request returning the answer's JSON value),
so an answer can be derived from the prompt (sentiment from the headlines it is given, a deal
from the article). Responders live in modules of `deallens.sim.responders`, each imported by
`make_app`: a new kind of call adds its module there without editing this file. A schema no
responder claims gets a schema-valid instance generated from the schema itself.

The Batch API (/v1/files, /v1/batches) lives in deallens/sim/openai_batch.py; its lines are
answered here, by the same responders and fault rules (key "batch_line").

Prompt caching as OpenAI does it: a prompt whose first message was seen before and is at least
`cache_min_tokens` long (1024 in production) reports that prefix, in steps of 128 tokens (or
`cache_min_tokens` when smaller), as `usage.prompt_tokens_details.cached_tokens`.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import pkgutil
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from deallens.sim.clock import Clock, system_clock, utc
from deallens.sim.faults import COMMON_KINDS, EMPTY, FaultRule, SimController, answer, control_routes, json_response
from deallens.sim.market import SIM_COMPANIES

# Exact texts of the real service (provider-samples/openai_*.json).
INVALID_API_KEY = (
    "Incorrect API key provided: {masked}. You can find your API key at https://platform.openai.com/account/api-keys."
)
MISSING_API_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth "
    "(i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API "
    "from your browser and are prompted for a username and password. You can obtain an API key from "
    "https://platform.openai.com/account/api-keys."
)
RATE_LIMIT_TPM = (
    "Rate limit reached for {model} in organization org-********** on tokens per min (TPM): Limit 10000, Used 9348, "
    "Requested 5086. Please try again in 26.604s. Visit https://platform.openai.com/account/rate-limits to learn more."
)
INSUFFICIENT_QUOTA = (
    "You exceeded your current quota, please check your plan and billing details. For more information on this error, "
    "read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors."
)
REFUSAL = "I'm very sorry, but I can't assist with that."
RATE_LIMIT_RPM = "Rate limit reached for {model} in organization org-********** on requests per min (RPM)."
SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"
OVERLOADED = "The engine is currently overloaded, please try again later."
INVALID_JSON_BODY = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library "
    "correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble "
    "figuring out how to fix this, please contact us through our help center at help.openai.com.)"
)

INVALID_KEY = "invalid"  # the one key this stand-in rejects (besides a missing one)...
REVOKED_KEY_PREFIX = "sk-revoked-"  # ...and keys like this, which look real (to test that none leaks)
MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano")
MODELS_CREATED = 1_715_367_049  # a fixed "created" for the model list
CHAT_COMPLETIONS = "/v1/chat/completions"
# The fault-plan key of one request line inside a batch (`match: "batch_line"` aims a rule at them).
BATCH_LINE = "batch_line"
DEFAULT_BATCH_DELAY = timedelta(minutes=20)
MAX_SCHEMA_DEPTH = 12

# error_200: an error object (server_error) sent with HTTP 200 instead of a completion.
ERROR_200 = "error_200"
# schema_violation: JSON that breaks the requested schema; bad_json_content: content that is
# not JSON at all (the HTTP body itself stays valid, unlike the common malformed_json).
FAULT_KINDS: frozenset[str] = COMMON_KINDS | {
    "rate_limit", "insufficient_quota", "refusal", "length", "schema_violation", "bad_json_content",
    "invented_figure", ERROR_200,
}
# The delay the rate-limit sample asks for ("Please try again in 26.604s"), also sent as headers.
RATE_LIMIT_RESET_SECONDS = 26.604
# OpenAI caches prompts from 1024 tokens on, in increments of 128.
CACHE_MIN_TOKENS = 1024
CACHE_INCREMENT = 128


@dataclass(frozen=True)
class StructuredRequest:
    """What a structured-output responder sees: the request, and the call's seeded generator."""

    model: str
    messages: list[Any]
    schema_name: str
    schema: dict[str, Any]
    rng: random.Random
    now: datetime

    @property
    def text(self) -> str:
        """All message text, in order (system first)."""
        return _message_text(self.messages)

    @property
    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if isinstance(message, dict) and message.get("role") == "user" and isinstance(message.get("content"), str):
                return message["content"]
        return ""

    def generated(self) -> Any:
        """A schema-valid instance generated from the schema, for responders that fill in only some fields."""
        return SchemaInstance(self.schema, self.rng, self.now).build()


Responder = Callable[[StructuredRequest], Any]
STRUCTURED_RESPONDERS: dict[str, Responder] = {}


def structured_responder(name: str) -> Callable[[Responder], Responder]:
    """Register the answer to json_schema `name` (modules under deallens.sim.responders)."""

    def register(function: Responder) -> Responder:
        STRUCTURED_RESPONDERS[name] = function
        return function

    return register


def load_responders() -> dict[str, Responder]:
    """Import every module of deallens.sim.responders (each registers its responders)."""
    from deallens.sim import responders

    for module in pkgutil.iter_modules(responders.__path__):
        importlib.import_module(f"{responders.__name__}.{module.name}")
    return dict(STRUCTURED_RESPONDERS)

_SENTENCES = (
    "Revenue growth remains solid, supported by resilient demand in the core business.",
    "Margins could come under pressure if input costs keep rising over the next few quarters.",
    "The balance sheet is strong, leaving room for buybacks and selective acquisitions.",
    "Valuation already reflects much of the expected upside, so the risk-reward looks balanced.",
    "Regulatory scrutiny is the main risk to the announced transaction closing on schedule.",
    "Management guidance was cautious, which the market may read as conservative rather than weak.",
    "Recent news flow is mixed: positive product momentum is offset by concerns about competition.",
    "A successful integration would add to earnings within two years, according to the company's plan.",
    "Volume has picked up around the announcement, suggesting institutional repositioning.",
    "Overall, the outlook is moderately positive, with execution risk as the key watch point.",
)
_WORDS = ("growth", "margin", "demand", "outlook", "merger", "synergy", "guidance", "valuation", "momentum", "risk")


def _error(status: int, message: str, *, type_: str, code: str | None, param: str | None = None) -> Response:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return json_response(body, status, indent=2)


def _mask(key: str) -> str:
    """How OpenAI echoes a wrong key: "sk-PMafP***...***E873"."""
    if len(key) <= 12:
        return key[:3] + "*" * max(0, len(key) - 3)
    return key[:8] + "*" * (len(key) - 12) + key[-4:]


def _tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def _message_text(messages: list[Any]) -> str:
    parts: list[str] = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return "\n".join(parts)


class SchemaError(ValueError):
    """A json_schema this stand-in cannot produce an instance of."""


class SchemaInstance:
    """Builds one JSON value that validates against a JSON Schema (the subset pydantic and OpenAI use).

    Covers objects, arrays (items, prefixItems, min/maxItems), strings (formats date-time,
    date, time, email, uri, uuid; min/maxLength), numbers and integers with (exclusive)
    bounds, booleans, enum/const, anyOf/oneOf with null, allOf and local $ref. `pattern`
    and `multipleOf` are not honoured. String values follow the property name (a ticker
    for "symbol", a company name for "company", sentences for "summary"...).
    """

    def __init__(self, root: dict[str, Any], rng: random.Random, now: datetime) -> None:
        self._root = root
        self._rng = rng
        self._now = now

    def build(self) -> Any:
        return self._value(self._root, "value", 0)

    def _resolve(self, ref: str) -> dict[str, Any]:
        if not ref.startswith("#/"):
            raise SchemaError(f"only local $ref are supported, got {ref!r}")
        node: Any = self._root
        for part in ref[2:].split("/"):
            node = node[part]
        return node

    def _value(self, schema: dict[str, Any], name: str, depth: int) -> Any:
        if depth > MAX_SCHEMA_DEPTH:
            raise SchemaError(f"schema nests deeper than {MAX_SCHEMA_DEPTH} levels at {name!r}")
        rng = self._rng
        if "$ref" in schema:
            return self._value({**self._resolve(schema["$ref"]), **{k: v for k, v in schema.items() if k != "$ref"}}, name, depth + 1)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return rng.choice(schema["enum"])
        variants = schema.get("anyOf") or schema.get("oneOf")
        if variants:
            concrete = [v for v in variants if v.get("type") != "null"]
            nullable = len(concrete) < len(variants)
            if nullable and (not concrete or depth > MAX_SCHEMA_DEPTH // 2 or rng.random() < 0.15):
                return None
            return self._value(rng.choice(concrete), name, depth + 1)
        if "allOf" in schema:
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                merged.update(self._resolve(part["$ref"]) if "$ref" in part else part)
            return self._value(merged, name, depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            concrete_types = [t for t in kind if t != "null"]
            kind = rng.choice(concrete_types) if concrete_types else "null"
        match kind:
            case "object":
                return self._object(schema, depth)
            case "array":
                return self._array(schema, name, depth)
            case "integer":
                return self._number(schema, integer=True)
            case "number":
                return self._number(schema, integer=False)
            case "boolean":
                return rng.random() < 0.5
            case "null":
                return None
            case _:
                return self._string(schema, name)

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        properties: dict[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", properties))
        result = {
            key: self._value(sub, key, depth + 1)
            for key, sub in properties.items()
            if key in required or self._rng.random() < 0.7
        }
        extra = schema.get("additionalProperties")
        if not properties and isinstance(extra, dict):
            for index in range(1, self._rng.randint(1, 3) + 1):
                result[f"key_{index}"] = self._value(extra, f"key_{index}", depth + 1)
        return result

    def _array(self, schema: dict[str, Any], name: str, depth: int) -> list[Any]:
        if "prefixItems" in schema:
            return [self._value(item, name, depth + 1) for item in schema["prefixItems"]]
        # Deep in a recursive schema, arrays fall back to their minimum so that generation ends.
        low = schema.get("minItems", 0 if depth > MAX_SCHEMA_DEPTH // 2 else 1)
        high = max(low, schema.get("maxItems", max(low, 3)))
        items = [self._value(schema.get("items", {}), name, depth + 1) for _ in range(self._rng.randint(low, high))]
        if schema.get("uniqueItems"):
            unique: list[Any] = []
            for item in items:
                if item not in unique:
                    unique.append(item)
            items = unique
        return items

    def _number(self, schema: dict[str, Any], *, integer: bool) -> float | int:
        step = 1.0 if integer else 0.01
        low = schema.get("minimum", -math.inf)
        high = schema.get("maximum", math.inf)
        if "exclusiveMinimum" in schema:
            low = max(low, schema["exclusiveMinimum"] + step)
        if "exclusiveMaximum" in schema:
            high = min(high, schema["exclusiveMaximum"] - step)
        if integer:
            low, high = math.ceil(low), math.floor(high)
        if math.isinf(low) and math.isinf(high):
            low, high = 0, 100
        elif math.isinf(low):
            low = high - 100
        elif math.isinf(high):
            high = low + 100
        if low > high:
            raise SchemaError(f"empty numeric range in {schema}")
        if integer:
            return self._rng.randint(int(low), int(high))
        value = round(self._rng.uniform(low, high), 2)
        return min(high, max(low, value))

    def _string(self, schema: dict[str, Any], name: str) -> str:
        rng, now = self._rng, self._now
        match schema.get("format"):
            case "date-time":
                return now.strftime("%Y-%m-%dT%H:%M:%SZ")
            case "date":
                return now.date().isoformat()
            case "time":
                return now.strftime("%H:%M:%S")
            case "email":
                return "analyst@example.com"
            case "uri":
                return f"https://example.com/{rng.choice(_WORDS)}"
            case "uuid":
                return str(uuid.UUID(int=rng.getrandbits(128), version=4))
        lowered = name.lower()
        if any(word in lowered for word in ("symbol", "ticker")):
            text = rng.choice(SIM_COMPANIES).symbol
        elif any(word in lowered for word in ("company", "acquirer", "target")):
            text = rng.choice(SIM_COMPANIES).name
        elif any(word in lowered for word in ("summary", "analysis", "rationale", "reason", "description", "thesis", "explanation")):
            text = " ".join(rng.sample(_SENTENCES, 2))
        else:
            text = " ".join(rng.sample(_WORDS, rng.randint(1, 3)))
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        if len(text) < low:
            text = (text + " ") * (low // max(1, len(text)) + 1)
        return text[:high] if high is not None else text


class _Chat:
    """One chat completion request, validated, and the completion it deterministically gets."""

    def __init__(
        self,
        seed: int,
        body: dict[str, Any],
        moment: datetime,
        serial: int,
        *,
        responders: dict[str, Responder] | None = None,
        cached_tokens: int = 0,
    ) -> None:
        self.responders = responders or {}
        self.cached_tokens = cached_tokens
        self.model: str = body["model"]
        self.messages: list[Any] = body["messages"]
        self.body = body
        self.moment = moment
        digest = hashlib.sha256(
            json.dumps([seed, self.model, self.messages, body.get("response_format")], sort_keys=True, default=str).encode()
        ).hexdigest()
        self.rng = random.Random(digest)
        self.id = "chatcmpl-" + hashlib.sha256(f"{digest}:{serial}".encode()).hexdigest()[:29]
        self.fingerprint = "fp_" + hashlib.sha256(f"{seed}:{self.model}".encode()).hexdigest()[:10]
        self.prompt_tokens = _tokens(_message_text(self.messages))

    def content(self) -> str:
        """The answer's text; each call draws afresh from the request's seeded generator."""
        response_format = self.body.get("response_format") or {"type": "text"}
        match response_format.get("type"):
            case "json_schema":
                spec = response_format["json_schema"]
                schema = spec.get("schema", {"type": "object"})
                responder = self.responders.get(str(spec.get("name", "")))
                if responder is not None:
                    request = StructuredRequest(self.model, self.messages, str(spec["name"]), schema, self.rng, self.moment)
                    return json.dumps(responder(request), separators=(",", ":"))
                return json.dumps(SchemaInstance(schema, self.rng, self.moment).build(), separators=(",", ":"))
            case "json_object":
                sentiment = self.rng.choice(("positive", "neutral", "negative"))
                value = {"summary": " ".join(self.rng.sample(_SENTENCES, 2)), "sentiment": sentiment,
                         "confidence": round(self.rng.uniform(0.5, 0.95), 2)}
                return json.dumps(value, separators=(",", ":"))
            case _:
                return " ".join(self.rng.sample(_SENTENCES, self.rng.randint(2, 4)))

    def completion(self, content: str | None, *, finish_reason: str = "stop", refusal: str | None = None) -> dict[str, Any]:
        completion_tokens = _tokens(content or refusal or "")
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": int(self.moment.timestamp()),
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": refusal, "annotations": []},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": self.prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": min(self.cached_tokens, self.prompt_tokens), "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            },
            "service_tier": "default",
            "system_fingerprint": self.fingerprint,
        }

    def answer(self) -> dict[str, Any]:
        content = self.content()
        limit = self.body.get("max_completion_tokens") or self.body.get("max_tokens")
        if isinstance(limit, int) and _tokens(content) > limit:
            return self.completion(content[: limit * 4], finish_reason="length")
        return self.completion(content)


def _validate(body: object) -> Response | None:
    """A 400 in OpenAI's words for a request the real API would reject, else None."""
    if not isinstance(body, dict):
        return _error(400, INVALID_JSON_BODY, type_="invalid_request_error", code=None)
    if not isinstance(body.get("model"), str) or not body["model"]:
        return _error(400, "you must provide a model parameter", type_="invalid_request_error", code=None)
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return _error(400, "Missing required parameter: 'messages'.", type_="invalid_request_error",
                      code="missing_required_parameter", param="messages")
    if body.get("stream"):
        return _error(400, "This stand-in does not stream; call without stream=true.", type_="invalid_request_error",
                      code="unsupported_parameter", param="stream")
    response_format = body.get("response_format")
    if response_format is not None:
        if not isinstance(response_format, dict) or response_format.get("type") not in ("text", "json_object", "json_schema"):
            return _error(400, "Invalid value for 'response_format.type': expected 'text', 'json_object' or 'json_schema'.",
                          type_="invalid_request_error", code="invalid_value", param="response_format.type")
        if response_format["type"] == "json_schema" and not isinstance(response_format.get("json_schema"), dict):
            return _error(400, "Missing required parameter: 'response_format.json_schema'.", type_="invalid_request_error",
                          code="missing_required_parameter", param="response_format.json_schema")
    return None


def _read_key_problem(request: Request) -> Response | None:
    """The 401 the real API answers for a missing or rejected key, else None."""
    key = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if not key:
        return _error(401, MISSING_API_KEY, type_="invalid_request_error", code="invalid_api_key")
    if key == INVALID_KEY or key.startswith(REVOKED_KEY_PREFIX):
        return _error(401, INVALID_API_KEY.format(masked=_mask(key)), type_="invalid_request_error", code="invalid_api_key")
    return None


async def _read_request(request: Request) -> dict[str, Any] | Response:
    """The validated request body, or the 401/400 the real API would answer."""
    key_problem = _read_key_problem(request)
    if key_problem is not None:
        return key_problem
    try:
        body = await request.json()
    except ValueError:
        body = None
    problem = _validate(body)
    if problem is not None:
        return problem
    assert isinstance(body, dict)
    return body


def _completion_response(completion: dict[str, Any]) -> Response:
    request_id = "req_" + hashlib.sha256(completion["id"].encode()).hexdigest()[:32]
    return json_response(completion, indent=2, headers={"x-request-id": request_id})


def _error_fault(rule: FaultRule, model: str) -> Response:
    match rule.kind:
        case "rate_limit":
            response = _error(429, RATE_LIMIT_TPM.format(model=model), type_="tokens", code="rate_limit_exceeded")
            response.headers["retry-after"] = str(math.ceil(RATE_LIMIT_RESET_SECONDS))
            response.headers["x-ratelimit-reset-tokens"] = f"{RATE_LIMIT_RESET_SECONDS}s"
            return response
        case "http_429":
            # A 429 that names no delay (no Retry-After, no "try again in"); a rule's retry_after adds one.
            return _error(429, RATE_LIMIT_RPM.format(model=model), type_="requests", code="rate_limit_exceeded")
        case "error_200":
            return _error(200, SERVER_ERROR, type_="server_error", code=None)
        case "insufficient_quota":
            return _error(429, INSUFFICIENT_QUOTA, type_="insufficient_quota", code="insufficient_quota")
        case "http_500":
            return _error(500, SERVER_ERROR, type_="server_error", code=None)
        case _:
            assert rule.kind == "http_503", rule.kind
            return _error(503, OVERLOADED, type_="server_error", code=None)


def _schema_problem(error: SchemaError) -> Response:
    return _error(400, f"Invalid schema for response_format: {error}", type_="invalid_request_error",
                  code="invalid_json_schema", param="response_format")


def _completion_fault(rule: FaultRule, chat: _Chat) -> Response:
    return _completion_response(faulty_completion(rule, chat))


def faulty_completion(rule: FaultRule, chat: _Chat) -> dict[str, Any]:
    """A completion that went wrong on the model's side: refused, cut off, or empty (also for batch lines)."""
    match rule.kind:
        case "refusal":
            return chat.completion(None, refusal=REFUSAL)
        case "length":
            content = chat.content()
            return chat.completion(content[: max(2, len(content) // 4)], finish_reason="length")
        case "schema_violation":
            return chat.completion(json.dumps(_violating(chat.content())))
        case "bad_json_content":
            return chat.completion("Sure! Here is the JSON you asked for: {not json")
        case "invented_figure":
            return chat.completion(json.dumps(_inventing(chat.content())))
        case _:
            assert rule.kind == EMPTY, rule.kind
            return chat.completion("")


def _violating(content: str) -> Any:
    """The answer with its first required field gone: valid JSON that breaks any schema requiring it."""
    try:
        value = json.loads(content)
    except ValueError:
        return {"unexpected": True}
    if isinstance(value, dict) and value:
        value.pop(next(iter(value)))
        value["unexpected_field"] = "not in the schema"
        return value
    return {"unexpected": True}


def _inventing(content: str) -> Any:
    """The answer with a number nobody gave it: a figure it cites, and a sentence stating it."""
    try:
        value = json.loads(content)
    except ValueError:
        return content
    if isinstance(value, dict):
        if isinstance(value.get("figures"), list):
            value["figures"].append({"name": "forward_pe_ratio", "value": 987.65})
        prose = [key for key, text in value.items() if isinstance(text, str)]
        if prose:  # the longest text field: prose, not an enum
            key = max(prose, key=lambda k: len(value[k]))
            value[key] = f"{value[key]} The forward P/E is 987.65."
    return value


_COMPLETION_FAULTS = frozenset({"refusal", "length", "schema_violation", "bad_json_content", "invented_figure", EMPTY})
COMPLETION_FAULTS = _COMPLETION_FAULTS
# Faults a batch line answers with an error line (the error file) instead of a completion.
_LINE_ERROR_FAULTS = frozenset({"rate_limit", "http_429", "insufficient_quota", "http_500", "http_503"})


def make_app(
    *,
    seed: int = 0,
    clock: Clock | None = None,
    responders: dict[str, Responder] | None = None,
    cache_min_tokens: int = CACHE_MIN_TOKENS,
    batch_delay: timedelta = DEFAULT_BATCH_DELAY,
) -> Starlette:
    """The OpenAI stand-in. Any bearer key works except a missing one and the literal "invalid".

    `responders` add to (or replace) the registered structured-output responders.
    `batch_delay`: how long after its creation (on `clock`) a batch of /v1/batches completes;
    beyond 24 h it expires instead (deallens/sim/openai_batch.py).
    """
    from deallens.sim.openai_batch import BatchStore, batch_routes

    now: Clock = clock or system_clock
    controller = SimController(seed, FAULT_KINDS)
    answers = {**load_responders(), **(responders or {})}
    seen_prefixes: set[str] = set()
    served = 0

    def cached_tokens(body: dict[str, Any]) -> int:
        """The cached prefix of this prompt: its first message, if seen before and long enough."""
        first = _message_text(body["messages"][:1])
        tokens = _tokens(first)
        key = hashlib.sha256(f"{body['model']}\n{first}".encode()).hexdigest()
        hit = key in seen_prefixes
        seen_prefixes.add(key)
        if not hit or tokens < cache_min_tokens:
            return 0
        step = max(1, min(CACHE_INCREMENT, cache_min_tokens))
        return tokens // step * step

    async def chat_completions(request: Request) -> Response:
        nonlocal served
        served += 1
        parsed = await _read_request(request)
        chat = None
        if not isinstance(parsed, Response):
            chat = _Chat(seed, parsed, utc(now()), served, responders=answers, cached_tokens=cached_tokens(parsed))

        async def handle() -> Response:
            if chat is None:
                assert isinstance(parsed, Response)
                return parsed
            try:
                return _completion_response(chat.answer())
            except SchemaError as error:
                return _schema_problem(error)

        def fault_response(rule: FaultRule, request: Request) -> Response:
            if rule.kind not in _COMPLETION_FAULTS:
                return _error_fault(rule, chat.model if chat else "gpt-4")
            if chat is None:  # nothing to complete: the request itself is refused
                assert isinstance(parsed, Response)
                return parsed
            try:
                return _completion_fault(rule, chat)
            except SchemaError as error:
                return _schema_problem(error)

        return await answer(controller, CHAT_COMPLETIONS, request, handle, fault_response)

    def complete_line(body: dict[str, Any], serial: int) -> tuple[int, dict[str, Any]]:
        """(status, body) of one batch line: answered by the same responders and faults as the chat endpoint."""
        problem = _validate(body)
        if problem is not None:
            return problem.status_code, json.loads(bytes(problem.body))
        chat = _Chat(seed, body, utc(now()), serial, responders=answers, cached_tokens=cached_tokens(body))
        rule = controller.faults.draw(BATCH_LINE)
        try:
            if rule is not None and rule.kind in _COMPLETION_FAULTS:
                controller.stats.faults[rule.kind] += 1
                return 200, faulty_completion(rule, chat)
            if rule is not None and rule.kind in _LINE_ERROR_FAULTS:
                controller.stats.faults[rule.kind] += 1
                response = _error_fault(rule, chat.model)
                return response.status_code, json.loads(bytes(response.body))
            return 200, chat.answer()
        except SchemaError as error:
            response = _schema_problem(error)
            return response.status_code, json.loads(bytes(response.body))

    batches = BatchStore(controller=controller, clock=now, delay=batch_delay, complete_line=complete_line, seed=seed)

    async def models(request: Request) -> Response:
        data = [{"id": m, "object": "model", "created": MODELS_CREATED, "owned_by": "system"} for m in MODELS]
        return json_response({"object": "list", "data": data}, indent=2)

    app = Starlette(
        routes=[
            Route(CHAT_COMPLETIONS, chat_completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            *batch_routes(batches),
            *control_routes(controller),
        ]
    )
    app.state.sim = controller
    app.state.batches = batches  # files and batches: tests change `.delay` or read `.lines_answered`
    return app
