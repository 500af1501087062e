"""The one way to call OpenAI: budgeted, metered, validated structured outputs.

Every call
1. is priced before it is made (an upper bound: the prompt's characters / 3 as tokens, plus
   `max_output_tokens` at the output price) and reserves that estimate from today's
   LLM_DAILY_BUDGET_USD in SQL (deallens/db/llm_budget.py): a call the budget cannot cover is
   not made (`LLMUnavailable`, the caller falls back);
2. waits for its requests-per-minute slot, shared by every worker (api_rate_slots);
3. asks for a json_schema structured output (strict) at temperature 0, through the official
   client with max_retries=0 (Temporal owns retries);
4. settles the reservation to the tokens the answer reports (cached input priced as such),
   with the outcome: ok, refused, invalid (retried once), failed, or error (not billed).

A schema violation, an answer the caller's `check` rejects, or a truncated answer
(finish_reason "length") is asked once more (a truncated one with twice the output tokens);
a second bad answer is `LLMInvalidOutput`. HTTP failures map to the typed errors of
deallens/llm/errors.py: 429 rate limits and 5xx are retryable (with the server's Retry-After),
401 and insufficient_quota are permanent. The API key never appears in a message: the SDK's
exceptions are summarised in one line and not chained.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic, TypeVar

import httpx
import openai
from openai import AsyncOpenAI
from openai.lib._pydantic import to_strict_json_schema
from opentelemetry.trace import SpanKind
from pydantic import BaseModel, SecretStr, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from deallens.db import llm_budget, usage
from deallens.db.llm_budget import Reservation, Settlement
from deallens.llm.errors import (
    PROVIDER,
    LLMConfigError,
    LLMInvalidOutput,
    LLMRateLimited,
    LLMRefused,
    LLMServerError,
    LLMUnavailable,
)
from deallens.llm.prices import ModelPrice, PriceTable, PriceTableError
from deallens.observability import metrics, tracing
from deallens.llm.transport import CappedTransport
from deallens.providers.bounded import MIB
from deallens.providers.errors import ProviderError, ResponseTooLarge

log = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)

# The key the local stand-in accepts when no real key is configured (deallens/sim/openai.py).
SIMULATED_KEY = "simulated"
# Characters per token of the *estimate*: real English text runs about 4, so 3 over-reserves.
_ESTIMATE_CHARS_PER_TOKEN = 3
_ESTIMATE_TOKENS_PER_MESSAGE = 8
# A 429 without a Retry-After is retried after this long (a 5xx then follows the retry policy's backoff).
DEFAULT_RETRY_SECONDS = 5.0
_TRY_AGAIN = re.compile(r"try again in (\d+(?:\.\d+)?)(ms|s)\b", re.IGNORECASE)
_SCHEMA_NAME = re.compile(r"[^a-zA-Z0-9_-]")
# A completion is a few KB; 10 MiB is no answer of ours. Batch result files have their own cap.
DEFAULT_MAX_BODY_BYTES = 10 * MIB
DEFAULT_FILE_MAX_BODY_BYTES = 200 * MIB
# What an error line may quote of the provider's message.
_MESSAGE_CHARS = 200


@dataclass(frozen=True, slots=True)
class TokenUsage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int


@dataclass(frozen=True, slots=True)
class LLMResult(Generic[T]):
    output: T
    model: str
    usage: TokenUsage
    cost_usd: Decimal  # of the call that produced the output (earlier invalid attempts are in llm_usage too)
    usage_id: int
    attempts: int
    simulated: bool

    @property
    def source(self) -> str:
        """What produced the output, for `*_source` columns: "gpt-4o-mini", or "gpt-4o-mini-sim"."""
        return f"{self.model}-sim" if self.simulated else self.model


@dataclass(frozen=True, slots=True)
class _Answer:
    """One completion, as far as the gateway cares."""

    content: str | None
    refusal: str | None
    finish_reason: str | None
    usage: TokenUsage
    response_id: str | None
    model: str


def _utc_day() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _schema_name(schema: type[BaseModel]) -> str:
    return _SCHEMA_NAME.sub("_", schema.__name__)[:64]


def _clip(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= _MESSAGE_CHARS else line[: _MESSAGE_CHARS - 1] + "…"


def _retry_after(headers: httpx.Headers | None, message: str) -> float | None:
    """The server's delay: retry-after-ms, retry-after (seconds), the message's "try again in Xs"; None if none."""
    if headers is not None:
        for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
            value = headers.get(name)
            if value:
                try:
                    seconds = float(value) * scale
                except ValueError:
                    continue
                if 0 <= seconds <= 3600:
                    return seconds
    match = _TRY_AGAIN.search(message)
    if match:
        value = float(match.group(1))
        return value / 1000 if match.group(2).lower() == "ms" else value
    return None


def _error_message(error: openai.APIStatusError) -> tuple[str, str | None]:
    """(message, code) from OpenAI's error body, or the status line when the body is not OpenAI's."""
    body = error.body if isinstance(error.body, dict) else {}
    inner = body.get("error") if isinstance(body.get("error"), dict) else body
    message = inner.get("message") if isinstance(inner, dict) else None
    code = inner.get("code") if isinstance(inner, dict) else None
    return (str(message) if message else f"HTTP {error.status_code}"), (str(code) if code else None)


def estimate_prompt_tokens(messages: list[dict[str, str]], schema: dict[str, Any]) -> int:
    """An upper bound on what the prompt (messages plus the response schema) will be billed."""
    chars = sum(len(m.get("content", "")) + len(m.get("role", "")) for m in messages)
    chars += len(json.dumps(schema, separators=(",", ":")))
    return math.ceil(chars / _ESTIMATE_CHARS_PER_TOKEN) + _ESTIMATE_TOKENS_PER_MESSAGE * len(messages)


class LLMGateway:
    """Holds the AsyncOpenAI client (max_retries=0) and the engine of the usage ledger."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        api_key: SecretStr | None,
        base_url: str,
        default_model: str,
        prices: PriceTable,
        daily_budget_usd: Decimal,
        simulated: bool = False,
        enabled: bool = True,
        requests_per_minute: float | None = None,
        timeout_seconds: float = 60.0,
        today: Callable[[], dt.date] = _utc_day,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        file_max_body_bytes: int = DEFAULT_FILE_MAX_BODY_BYTES,
        deadline_seconds: float | None = None,
    ) -> None:
        self._engine = engine
        self._default_model = default_model
        self._prices = prices
        self._budget = Decimal(daily_budget_usd)
        self._rpm = requests_per_minute
        self._today = today
        self.simulated = simulated
        key = api_key.get_secret_value() if api_key is not None else (SIMULATED_KEY if simulated else None)
        self._unavailable: str | None = None
        if not enabled:
            self._unavailable = "disabled"
        elif key is None:
            self._unavailable = "no_key"
        # httpx's timeout is per read: a trickling answer is bounded by this deadline instead.
        self._deadline = deadline_seconds if deadline_seconds is not None else 2 * timeout_seconds
        self._client = AsyncOpenAI(
            api_key=key or "unset",
            base_url=base_url,
            max_retries=0,
            timeout=httpx.Timeout(timeout_seconds, connect=10.0),
            http_client=openai.DefaultAsyncHttpxClient(
                transport=CappedTransport(max_bytes=max_body_bytes, file_max_bytes=file_max_body_bytes)
            ),
        )

    @property
    def available(self) -> bool:
        """False when no call can ever be made (no key, or LLM_ENABLED=false): skip straight to fallbacks."""
        return self._unavailable is None

    @property
    def default_model(self) -> str:
        return self._default_model

    async def aclose(self) -> None:
        await self._client.close()

    # What the Batch API path (deallens/llm/batch.py) shares with the gateway: one client, one
    # price table, one budget, one notion of "today".
    @property
    def client(self) -> AsyncOpenAI:
        return self._client

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @property
    def prices(self) -> PriceTable:
        return self._prices

    @property
    def daily_budget_usd(self) -> Decimal:
        return self._budget

    @property
    def unavailable_reason(self) -> str | None:
        """None, "disabled" or "no_key"."""
        return self._unavailable

    def today(self) -> dt.date:
        return self._today()

    async def structured(
        self,
        *,
        purpose: str,
        schema: type[T],
        messages: list[dict[str, str]],
        max_output_tokens: int,
        workflow: str | None = None,
        model: str | None = None,
        check: Callable[[T], str | None] | None = None,
    ) -> LLMResult[T]:
        """A `schema` instance answered by the model, or a typed error (deallens/llm/errors.py).

        `check` may reject a schema-valid answer (return the reason): it counts as a schema
        violation (asked once more, then LLMInvalidOutput).
        """
        if self._unavailable == "disabled":
            raise LLMUnavailable("LLM calls are switched off (LLM_ENABLED=false)", reason="disabled")
        if self._unavailable == "no_key":
            raise LLMUnavailable("OPENAI_API_KEY is not set", reason="no_key")
        if max_output_tokens < 1:
            raise ValueError("max_output_tokens must be at least 1")
        model = model or self._default_model
        price = self._prices.get(model)
        if price is None:
            raise LLMConfigError(
                PROVIDER, f"no price for model {model!r} in the price table (OPENAI_PRICES_FILE); known: "
                + ", ".join(self._prices.models)
            )
        json_schema = to_strict_json_schema(schema)
        response_format = {
            "type": "json_schema",
            "json_schema": {"name": _schema_name(schema), "schema": json_schema, "strict": True},
        }
        conversation = list(messages)
        output_tokens = max_output_tokens
        problem = ""
        for attempt in (1, 2):
            # One span per call: model, tokens and cost; never the prompt or the answer.
            with tracing.tracer().start_as_current_span(
                "llm.chat", kind=SpanKind.CLIENT, attributes={
                    "gen_ai.system": "openai", "gen_ai.operation.name": "chat", "gen_ai.request.model": model,
                    "gen_ai.request.max_tokens": output_tokens, "deallens.llm.purpose": purpose,
                    "deallens.llm.attempt": attempt, "deallens.llm.simulated": self.simulated,
                },
            ) as span:
                answer, reservation = await self._call(
                    purpose=purpose, workflow=workflow, model=model, price=price, messages=conversation,
                    response_format=response_format, json_schema=json_schema, max_output_tokens=output_tokens,
                    attempt=attempt,
                )
                cost = price.cost(
                    prompt_tokens=answer.usage.prompt_tokens,
                    completion_tokens=answer.usage.completion_tokens,
                    cached_tokens=answer.usage.cached_tokens,
                )
                span.set_attributes({
                    "gen_ai.response.model": answer.model or model,
                    "gen_ai.response.finish_reasons": [answer.finish_reason or "unknown"],
                    "gen_ai.usage.input_tokens": answer.usage.prompt_tokens,
                    "gen_ai.usage.output_tokens": answer.usage.completion_tokens,
                    "deallens.llm.cached_tokens": answer.usage.cached_tokens,
                    "deallens.llm.cost_usd": float(cost),
                })
            metrics.llm_usage(
                model=answer.model or model, purpose=purpose, prompt_tokens=answer.usage.prompt_tokens,
                completion_tokens=answer.usage.completion_tokens, cached_tokens=answer.usage.cached_tokens,
                cost_usd=float(cost),
            )
            billed = Settlement(
                outcome="ok",
                prompt_tokens=answer.usage.prompt_tokens,
                completion_tokens=answer.usage.completion_tokens,
                cached_tokens=answer.usage.cached_tokens,
                cost_usd=cost,
                response_id=answer.response_id,
            )
            if answer.refusal:
                await llm_budget.settle(self._engine, reservation, _replace(billed, "refused", answer.refusal))
                raise LLMRefused(PROVIDER, f"{model} refused ({purpose}): {_clip(answer.refusal)}")
            output: T | None = None
            if answer.finish_reason == "length":
                problem = f"the answer was cut off at {output_tokens} output tokens (finish_reason length)"
                retry_tokens = output_tokens * 2
            else:
                retry_tokens = output_tokens
                try:
                    output = parse_answer(schema, answer.content, check=check)
                except LLMInvalidOutput as error:
                    problem = error.message
                except Exception as error:
                    # The caller's check broke: the call still happened and is billed.
                    await llm_budget.settle(self._engine, reservation, _replace(billed, "failed", f"check raised {error!r}"))
                    raise
            if output is not None:
                await llm_budget.settle(self._engine, reservation, billed)
                return LLMResult(
                    output=output, model=answer.model or model, usage=answer.usage, cost_usd=cost,
                    usage_id=reservation.usage_id, attempts=attempt, simulated=self.simulated,
                )
            final = attempt == 2
            await llm_budget.settle(self._engine, reservation, _replace(billed, "failed" if final else "invalid", problem))
            if final:
                break
            log.info("LLM %s: %s; asking once more", purpose, problem)
            output_tokens = retry_tokens
            if answer.finish_reason != "length":
                conversation = [
                    *messages,
                    {"role": "user", "content": f"Your previous answer was not accepted: {_clip(problem)}. "
                     "Answer again, following the JSON schema exactly."},
                ]
        raise LLMInvalidOutput(PROVIDER, f"{model} ({purpose}): {problem}, twice")

    async def _call(
        self,
        *,
        purpose: str,
        workflow: str | None,
        model: str,
        price: ModelPrice,
        messages: list[dict[str, str]],
        response_format: dict[str, Any],
        json_schema: dict[str, Any],
        max_output_tokens: int,
        attempt: int,
    ) -> tuple[_Answer, Reservation]:
        """Reserve, wait for the call slot, call; on an HTTP failure settle as unbilled and raise."""
        estimate = price.cost(
            prompt_tokens=estimate_prompt_tokens(messages, json_schema), completion_tokens=max_output_tokens
        )
        reservation = await llm_budget.reserve(
            self._engine, day=self._today(), limit_usd=self._budget, estimate_usd=estimate,
            model=model, purpose=purpose, workflow=workflow, attempt=attempt,
        )
        if reservation is None:
            raise LLMUnavailable(
                f"today's LLM budget (LLM_DAILY_BUDGET_USD={self._budget}) cannot cover a {purpose} call "
                f"estimated at ${estimate}",
                reason="budget",
            )
        try:
            if self._rpm:
                wait = await usage.take_call_slot(self._engine, PROVIDER, self._rpm)
                if wait > 0:
                    await asyncio.sleep(wait)
            try:
                async with asyncio.timeout(self._deadline):
                    completion = await self._client.chat.completions.create(
                        model=model,
                        messages=messages,  # type: ignore[arg-type]
                        response_format=response_format,  # type: ignore[arg-type]
                        temperature=0,
                        max_completion_tokens=max_output_tokens,
                    )
            except TimeoutError:
                raise LLMServerError(
                    PROVIDER, f"no complete answer within {self._deadline:g}s (a stalled or trickling body)"
                ) from None
            if not completion.choices:
                # An HTTP 200 whose body is an error object, or no completion at all.
                raise LLMServerError(PROVIDER, f"answered HTTP 200 without a completion{_error_in_body(completion)}")
        except BaseException as error:
            mapped = _map_error(error) if isinstance(error, Exception) else None
            detail = str(mapped) if mapped is not None else type(error).__name__
            metrics.provider_call(PROVIDER, metrics.outcome_of(mapped if mapped is not None else error))
            # Shielded: a cancelled activity must still give its reservation back.
            await asyncio.shield(
                llm_budget.settle(self._engine, reservation, Settlement(outcome="error", error=detail))
            )
            if mapped is None:
                raise
            raise mapped from None
        metrics.provider_call(PROVIDER, "ok")
        choice = completion.choices[0] if completion.choices else None
        details = completion.usage.prompt_tokens_details if completion.usage else None
        token_usage = TokenUsage(
            prompt_tokens=completion.usage.prompt_tokens if completion.usage else 0,
            completion_tokens=completion.usage.completion_tokens if completion.usage else 0,
            cached_tokens=(details.cached_tokens or 0) if details else 0,
        )
        answer = _Answer(
            content=choice.message.content if choice else None,
            refusal=choice.message.refusal if choice else None,
            finish_reason=choice.finish_reason if choice else None,
            usage=token_usage,
            response_id=completion.id[:64] if completion.id else None,
            model=completion.model or model,
        )
        return answer, reservation


def parse_answer(schema: type[T], content: str | None, *, check: Callable[[T], str | None] | None = None) -> T:
    """The model's content as a `schema` instance that passes `check`, or LLMInvalidOutput saying why.

    The one reading of a structured output (the gateway's and any test's): JSON held to the
    schema (extra fields, wrong types, out-of-range values and unknown labels all refused),
    then to the caller's check. A check that raises is a bug of ours and propagates as is.
    """
    try:
        output = schema.model_validate_json(content or "")
    except ValidationError as error:
        first = error.errors()[0]
        # The location holds the answer's own keys: a model (or an injected article) can put a
        # newline or a screenful there, so it is clipped to one short line like the message.
        where = _clip(".".join(str(p) for p in first.get("loc", ()))[:80]) or "(root)"
        raise LLMInvalidOutput(
            PROVIDER, f"the answer does not match the {_schema_name(schema)} schema at {where}: {_clip(first['msg'])}"
        ) from None
    reason = check(output) if check is not None else None
    if reason:
        raise LLMInvalidOutput(PROVIDER, f"the answer was rejected: {_clip(reason)}")
    return output


def _replace(settlement: Settlement, outcome: llm_budget.Outcome, error: str) -> Settlement:
    return Settlement(
        outcome=outcome,
        prompt_tokens=settlement.prompt_tokens,
        completion_tokens=settlement.completion_tokens,
        cached_tokens=settlement.cached_tokens,
        cost_usd=settlement.cost_usd,
        response_id=settlement.response_id,
        error=error,
    )


def map_error(error: Exception) -> Exception | None:
    """The SDK's exception as one of deallens.llm.errors (public for the Batch API path)."""
    return _map_error(error)


def _error_in_body(completion: Any) -> str:
    """': <message>' of an error object an HTTP-200 body carried instead of a completion, or ''."""
    extra = getattr(completion, "model_extra", None) or {}
    inner = extra.get("error")
    if isinstance(inner, dict) and inner.get("message"):
        return f": {_clip(str(inner['message']))}"
    return ""


def _map_error(error: Exception) -> Exception | None:
    """The SDK's exception as one of ours, in one line without the key; None if not an API error."""
    if isinstance(error, ProviderError):
        return error  # ours already (LLMServerError above, ResponseTooLarge from the transport)
    if isinstance(error.__cause__, ResponseTooLarge):
        return error.__cause__
    if isinstance(error, openai.APITimeoutError):
        return LLMServerError(PROVIDER, "the request timed out")
    if isinstance(error, openai.APIConnectionError):
        cause = type(error.__cause__).__name__ if error.__cause__ is not None else ""
        if cause == "ConnectError" or not cause:
            return LLMServerError(PROVIDER, "cannot connect to the API")
        if cause == "RemoteProtocolError":
            return LLMServerError(PROVIDER, "the connection closed before the answer was complete")
        return LLMServerError(PROVIDER, f"the connection failed ({cause})")
    if not isinstance(error, openai.APIStatusError):
        if isinstance(error, (httpx.HTTPError, json.JSONDecodeError)):
            return LLMServerError(PROVIDER, f"unreadable answer ({type(error).__name__})")
        return None
    status = error.status_code
    message, code = _error_message(error)
    if status == 401:
        return LLMConfigError(PROVIDER, "OPENAI_API_KEY was rejected (401 invalid_api_key): set a valid key")
    if status == 429 and code == "insufficient_quota":
        return LLMConfigError(PROVIDER, "the OpenAI account has no quota left (429 insufficient_quota): check billing")
    if status == 429:
        return LLMRateLimited(
            PROVIDER, f"rate limited (429 {code or 'rate_limit'}): {_clip(message)}",
            retry_after=_retry_after(error.response.headers, message) or DEFAULT_RETRY_SECONDS,
        )
    if status >= 500:
        return LLMServerError(
            PROVIDER, f"server error ({status}): {_clip(message)}",
            retry_after=_retry_after(error.response.headers, message),
        )
    if status == 403:
        return LLMConfigError(PROVIDER, f"forbidden (403 {code or ''}): {_clip(message)}".replace("  ", " "))
    return LLMConfigError(PROVIDER, f"the request was refused ({status} {code or 'invalid_request'}): {_clip(message)}")


def gateway_from_settings(settings: Any, engine: AsyncEngine) -> LLMGateway:
    """The gateway a worker holds, from deallens.config.Settings.

    Raises PriceTableError (one line naming the variable) when the prices cannot be read or
    do not price OPENAI_MODEL: better at start-up than as a failure of every call.
    """
    try:
        prices = PriceTable.load(settings.openai_prices_file)
    except PriceTableError as error:
        raise PriceTableError(f"OPENAI_PRICES_FILE: {error}") from None
    if prices.get(settings.openai_model) is None:
        raise PriceTableError(
            f"OPENAI_MODEL: no price for {settings.openai_model!r} in the price table "
            f"(known: {', '.join(prices.models)}); add it with OPENAI_PRICES_FILE"
        )
    return LLMGateway(
        engine=engine,
        api_key=settings.openai_api_key,
        base_url=settings.openai_base_url,
        default_model=settings.openai_model,
        prices=prices,
        daily_budget_usd=settings.llm_daily_budget_usd,
        simulated=settings.openai_simulated,
        enabled=settings.llm_enabled,
        requests_per_minute=settings.llm_requests_per_minute,
        timeout_seconds=settings.llm_timeout_seconds,
        max_body_bytes=settings.openai_max_body_bytes,
        deadline_seconds=settings.llm_deadline_seconds,
    )
