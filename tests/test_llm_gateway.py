"""The LLM gateway over real HTTP against the OpenAI stand-in, with the usage ledger and the budget
in a real PostgreSQL: what each outcome records, what each failure raises, and that concurrent
callers cannot spend more than the day's budget."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import httpx
import pytest
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel, Field, SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from deallens.db import llm_budget
from deallens.db.engine import create_engine
from deallens.llm.errors import (
    LLMConfigError,
    LLMInvalidOutput,
    LLMRateLimited,
    LLMRefused,
    LLMServerError,
    LLMUnavailable,
)
from deallens.llm.gateway import LLMGateway, _retry_after, estimate_prompt_tokens
from deallens.llm.prices import PACKAGED_PRICES, ModelPrice, PriceTable
from deallens.sim.faults import SimController
from deallens.sim.openai import RATE_LIMIT_RESET_SECONDS, StructuredRequest, make_app
from deallens.sim.serve import serve_asgi

NOW = dt.datetime(2026, 12, 1, 15, 0, tzinfo=dt.UTC)
DAY = NOW.date()
MODEL = "gpt-4o-mini"
PRICES = PriceTable.load()
MINI = PRICES.get(MODEL)
assert MINI is not None


class Verdict(BaseModel):
    """A small structured answer; the stand-in's "Verdict" responder derives it from the prompt."""

    company: str
    stance: Literal["positive", "negative", "neutral"]
    confidence: float = Field(ge=0, le=1)


def verdict_responder(request: StructuredRequest) -> dict[str, Any]:
    asked = [m["content"] for m in request.messages if m["content"].startswith("Company:")]
    company = asked[0].split(":", 1)[1].strip() if asked else "unknown"
    return {"company": company, "stance": "positive", "confidence": 0.75}


@dataclass
class Sim:
    url: str
    controller: SimController


@pytest.fixture(scope="module")
async def sim() -> AsyncIterator[Sim]:
    # A low cache threshold so that short test prompts can be cached.
    app = make_app(seed=3, clock=lambda: NOW, responders={"Verdict": verdict_responder}, cache_min_tokens=16)
    async with serve_asgi(app) as url:
        yield Sim(url, app.state.sim)


@pytest.fixture(autouse=True)
def fresh(sim: Sim) -> None:
    sim.controller.faults.clear()
    sim.controller.stats.reset()


@pytest.fixture
def make_gateway(db: AsyncEngine, sim: Sim) -> Callable[..., LLMGateway]:
    made: list[LLMGateway] = []

    def _make(**overrides: Any) -> LLMGateway:
        options: dict[str, Any] = dict(
            engine=db, api_key=SecretStr("sk-test"), base_url=f"{sim.url}/v1", default_model=MODEL,
            prices=PRICES, daily_budget_usd=Decimal("1.00"), today=lambda: DAY, timeout_seconds=5.0,
        )
        options.update(overrides)
        gateway = LLMGateway(**options)
        made.append(gateway)
        return gateway

    return _make


def ask(company: str = "Apple", system: str = "You rate the tone of financial news about one company. ") -> list[dict[str, str]]:
    # Long enough a system prompt (over the stand-in's 16-token cache threshold) to be cached.
    system = system * 3
    return [{"role": "system", "content": system}, {"role": "user", "content": f"Company: {company}"}]


async def structured(gateway: LLMGateway, **overrides: Any) -> Any:
    options: dict[str, Any] = dict(purpose="test", schema=Verdict, messages=ask(), max_output_tokens=200, workflow="Test")
    options.update(overrides)
    return await gateway.structured(**options)


async def usage_rows(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(
            "SELECT status, attempt, prompt_tokens, completion_tokens, cached_tokens, cost_usd, reserved_usd,"
            " purpose, workflow, model, error, day, settled_at FROM llm_usage ORDER BY id"
        ))).all())


def estimate(messages: list[dict[str, str]], max_output_tokens: int = 200) -> Decimal:
    assert MINI is not None
    schema = to_strict_json_schema(Verdict)
    return MINI.cost(prompt_tokens=estimate_prompt_tokens(messages, schema), completion_tokens=max_output_tokens)


# ------------------------------------------------------------------ successful calls


async def test_a_call_is_validated_metered_and_settled(make_gateway: Callable[..., LLMGateway], db: AsyncEngine) -> None:
    gateway = make_gateway()
    result = await structured(gateway, messages=ask("Pfizer"))
    assert result.output == Verdict(company="Pfizer", stance="positive", confidence=0.75)
    assert (result.model, result.attempts, result.source) == (MODEL, 1, MODEL)
    [row] = await usage_rows(db)
    assert (row.status, row.purpose, row.workflow, row.model, row.day, row.attempt) == ("ok", "test", "Test", MODEL, DAY, 1)
    assert row.prompt_tokens == result.usage.prompt_tokens > 0 and row.completion_tokens == result.usage.completion_tokens > 0
    assert row.settled_at is not None and row.error is None
    expected = (Decimal(row.prompt_tokens) * Decimal("0.15") + Decimal(row.completion_tokens) * Decimal("0.60")) / 10**6
    assert row.cost_usd == result.cost_usd == expected.quantize(Decimal("0.000001"), rounding="ROUND_CEILING")
    # The reservation was an upper bound, and the day's ledger now holds the real cost only.
    assert row.reserved_usd == estimate(ask("Pfizer")) >= row.cost_usd
    assert await llm_budget.committed(db, DAY) == (row.cost_usd, 1)


async def test_cached_input_is_priced_as_cached(make_gateway: Callable[..., LLMGateway], db: AsyncEngine) -> None:
    gateway = make_gateway()
    # A system prompt of this test only (the stand-in's cache lives as long as the module's server).
    system = "You judge whether a headline is good or bad news for the company it names. "
    first = await structured(gateway, messages=ask("Ford", system))
    second = await structured(gateway, messages=ask("Tesla", system))  # same system prompt: its prefix is cached
    assert first.usage.cached_tokens == 0 and second.usage.cached_tokens > 0
    assert MINI is not None
    assert second.cost_usd == MINI.cost(
        prompt_tokens=second.usage.prompt_tokens,
        completion_tokens=second.usage.completion_tokens,
        cached_tokens=second.usage.cached_tokens,
    )
    uncached = MINI.cost(prompt_tokens=second.usage.prompt_tokens, completion_tokens=second.usage.completion_tokens)
    assert second.cost_usd < uncached
    rows = await usage_rows(db)
    assert [r.cached_tokens for r in rows] == [0, second.usage.cached_tokens]


def test_price_table_prices_cached_input_and_dated_snapshots() -> None:
    assert MINI == ModelPrice(Decimal("0.15"), Decimal("0.075"), Decimal("0.60"))
    assert PRICES.get("gpt-4o-2024-08-06") == PRICES.get("gpt-4o") != PRICES.get("gpt-4o-mini")
    assert PRICES.get("claude-3") is None
    # 1M prompt tokens of which 400k cached, 100k out: 0.6*0.15 + 0.4*0.075 + 0.1*0.60.
    assert MINI.cost(prompt_tokens=1_000_000, cached_tokens=400_000, completion_tokens=100_000) == Decimal("0.180000")
    assert PACKAGED_PRICES.read_text() == (PACKAGED_PRICES.parents[2] / "tests/provider-samples/openai_prices_per_1m_tokens_usd.csv").read_text()


# ------------------------------------------------------------------ answers that are not usable


async def test_a_refusal_is_recorded_as_a_refusal(make_gateway: Callable[..., LLMGateway], sim: Sim, db: AsyncEngine) -> None:
    sim.controller.faults.add("refusal", count=1)
    with pytest.raises(LLMRefused, match="refused .*can't assist"):
        await structured(make_gateway())
    [row] = await usage_rows(db)
    assert row.status == "refused" and row.cost_usd > 0 and "can't assist" in row.error
    assert sim.controller.stats.total_requests == 1  # asking again would be refused again


@pytest.mark.parametrize("fault", ["length", "schema_violation", "bad_json_content"])
async def test_a_bad_answer_is_asked_once_more(
    fault: str, make_gateway: Callable[..., LLMGateway], sim: Sim, db: AsyncEngine
) -> None:
    sim.controller.faults.add(fault, count=1)
    result = await structured(make_gateway())
    assert result.attempts == 2 and result.output.company == "Apple"
    first, second = await usage_rows(db)
    assert (first.status, first.attempt, second.status, second.attempt) == ("invalid", 1, "ok", 2)
    assert first.cost_usd > 0  # a bad answer is billed all the same
    assert ("cut off at 200 output tokens" if fault == "length" else "does not match the Verdict schema") in first.error
    committed, calls = await llm_budget.committed(db, DAY)
    assert (committed, calls) == (first.cost_usd + second.cost_usd, 2)


async def test_a_truncated_answer_is_retried_with_more_room(
    make_gateway: Callable[..., LLMGateway], sim: Sim, db: AsyncEngine
) -> None:
    sim.controller.faults.add("length", count=1)
    await structured(make_gateway(), max_output_tokens=150)
    first, second = await usage_rows(db)
    assert second.reserved_usd == estimate(ask(), 300)  # the second ask had twice the output tokens


@pytest.mark.parametrize("fault", ["length", "schema_violation"])
async def test_a_second_bad_answer_fails(
    fault: str, make_gateway: Callable[..., LLMGateway], sim: Sim, db: AsyncEngine
) -> None:
    sim.controller.faults.add(fault, count=2)
    with pytest.raises(LLMInvalidOutput, match="twice$"):
        await structured(make_gateway())
    assert [(r.status, r.attempt) for r in await usage_rows(db)] == [("invalid", 1), ("failed", 2)]
    assert sim.controller.stats.total_requests == 2


async def test_the_callers_check_rejects_like_a_schema_violation(
    make_gateway: Callable[..., LLMGateway], db: AsyncEngine
) -> None:
    with pytest.raises(LLMInvalidOutput, match="rejected: company Apple is not in the context"):
        await structured(make_gateway(), check=lambda v: f"company {v.company} is not in the context")
    assert [r.status for r in await usage_rows(db)] == ["invalid", "failed"]


async def test_a_check_that_raises_still_settles_the_call(make_gateway: Callable[..., LLMGateway], db: AsyncEngine) -> None:
    def broken(_: Verdict) -> str | None:
        raise KeyError("figures")

    with pytest.raises(KeyError):
        await structured(make_gateway(), check=broken)
    [row] = await usage_rows(db)
    assert row.status == "failed" and row.cost_usd > 0 and "KeyError" in row.error
    assert (await llm_budget.committed(db, DAY))[0] == row.cost_usd


# ------------------------------------------------------------------ HTTP failures


async def test_a_rate_limit_is_retryable_after_the_servers_delay(
    make_gateway: Callable[..., LLMGateway], sim: Sim, db: AsyncEngine
) -> None:
    sim.controller.faults.add("rate_limit", count=1)
    with pytest.raises(LLMRateLimited) as caught:
        await structured(make_gateway())
    assert not caught.value.permanent and caught.value.retry_after == 27  # the Retry-After header
    assert "\n" not in str(caught.value) and "tokens per min" in str(caught.value)
    [row] = await usage_rows(db)
    assert (row.status, row.cost_usd, row.prompt_tokens) == ("error", 0, 0)
    assert await llm_budget.committed(db, DAY) == (Decimal(0), 1)  # the reservation was given back


def test_retry_after_sources() -> None:
    assert _retry_after(httpx.Headers({"retry-after-ms": "1500", "retry-after": "9"}), "") == 1.5
    assert _retry_after(httpx.Headers({"retry-after": "9"}), "") == 9
    assert _retry_after(httpx.Headers({}), "Please try again in 26.604s. Visit") == RATE_LIMIT_RESET_SECONDS
    assert _retry_after(httpx.Headers({}), "Please try again in 120ms.") == 0.12
    assert _retry_after(None, "no hint") is None


@pytest.mark.parametrize("fault", ["http_500", "http_503"])
async def test_server_errors_are_retryable(
    fault: str, make_gateway: Callable[..., LLMGateway], sim: Sim, db: AsyncEngine
) -> None:
    sim.controller.faults.add(fault, count=1)
    with pytest.raises(LLMServerError, match=f"server error \\({fault[-3:]}\\)") as caught:
        await structured(make_gateway())
    assert not caught.value.permanent
    assert [(r.status, r.cost_usd) for r in await usage_rows(db)] == [("error", 0)]


async def test_a_timeout_is_retryable_and_releases_the_reservation(
    make_gateway: Callable[..., LLMGateway], sim: Sim, db: AsyncEngine
) -> None:
    sim.controller.faults.add("latency", latency_ms=2_000, count=1)
    with pytest.raises(LLMServerError, match="timed out"):
        await structured(make_gateway(timeout_seconds=0.3))
    assert [r.status for r in await usage_rows(db)] == ["error"]
    assert (await llm_budget.committed(db, DAY))[0] == 0


async def test_a_rejected_key_is_permanent_and_never_shown(
    make_gateway: Callable[..., LLMGateway], db: AsyncEngine
) -> None:
    secret = "sk-revoked-Zq81PLmN4eVt7wXy0123456789abcdEF"
    with pytest.raises(LLMConfigError) as caught:
        await structured(make_gateway(api_key=SecretStr(secret)))
    message = str(caught.value)
    assert caught.value.permanent and message == "openai: OPENAI_API_KEY was rejected (401 invalid_api_key): set a valid key"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    [row] = await usage_rows(db)
    for fragment in (secret, secret[:8], secret[-4:]):
        assert fragment not in message and fragment not in (row.error or "")


async def test_insufficient_quota_is_permanent(make_gateway: Callable[..., LLMGateway], sim: Sim) -> None:
    sim.controller.faults.add("insufficient_quota", count=1)
    with pytest.raises(LLMConfigError, match="no quota left \\(429 insufficient_quota\\)") as caught:
        await structured(make_gateway())
    assert caught.value.permanent


async def test_a_model_without_a_price_is_refused_before_any_call(
    make_gateway: Callable[..., LLMGateway], sim: Sim, db: AsyncEngine
) -> None:
    with pytest.raises(LLMConfigError, match="no price for model 'gpt-5-turbo'"):
        await structured(make_gateway(), model="gpt-5-turbo")
    assert sim.controller.stats.total_requests == 0 and await usage_rows(db) == []


# ------------------------------------------------------------------ no key, no budget


async def test_without_a_key_or_switched_off_nothing_is_called(
    make_gateway: Callable[..., LLMGateway], sim: Sim, db: AsyncEngine
) -> None:
    for gateway, reason in ((make_gateway(api_key=None), "no_key"), (make_gateway(enabled=False), "disabled")):
        assert not gateway.available
        with pytest.raises(LLMUnavailable) as caught:
            await structured(gateway)
        assert caught.value.reason == reason
    simulated = make_gateway(api_key=None, simulated=True)  # the stand-in takes the simulated key
    assert simulated.available and (await structured(simulated)).source == f"{MODEL}-sim"
    assert sim.controller.stats.total_requests == 1


async def test_over_budget_no_call_is_made(make_gateway: Callable[..., LLMGateway], sim: Sim, db: AsyncEngine) -> None:
    gateway = make_gateway(daily_budget_usd=estimate(ask()) - Decimal("0.000001"))
    with pytest.raises(LLMUnavailable, match="cannot cover a test call") as caught:
        await structured(gateway)
    assert caught.value.reason == "budget"
    assert sim.controller.stats.total_requests == 0 and await usage_rows(db) == []


async def test_the_budget_resets_with_the_day(make_gateway: Callable[..., LLMGateway], db: AsyncEngine) -> None:
    budget = estimate(ask()) * Decimal("1.5")
    days = iter([DAY, DAY, DAY + dt.timedelta(days=1)])
    gateway = make_gateway(daily_budget_usd=budget, today=lambda: next(days))
    await structured(gateway)
    # The real cost is far under the estimate, so a second call fits the first day too...
    await structured(gateway)
    # ...and the next day starts from zero.
    await structured(gateway)
    assert [r.day for r in await usage_rows(db)] == [DAY, DAY, DAY + dt.timedelta(days=1)]


async def test_concurrent_workers_cannot_overspend(
    make_gateway: Callable[..., LLMGateway], sim: Sim, database_url: str, db: AsyncEngine
) -> None:
    """Two workers (engines of their own), a budget for 5 calls' reservations, 20 calls at once."""
    other_engine = create_engine(database_url, pool_size=10)
    try:
        budget = estimate(ask()) * 5
        # Latency keeps the first reservations in flight while the others try.
        sim.controller.faults.add("latency", latency_ms=300)
        gateways = [make_gateway(daily_budget_usd=budget), make_gateway(daily_budget_usd=budget, engine=other_engine)]
        outcomes = await asyncio.gather(
            *(structured(gateways[i % 2]) for i in range(20)), return_exceptions=True
        )
    finally:
        await other_engine.dispose()
    made = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, LLMUnavailable)]
    assert len(made) == 5 and len(refused) == 15
    assert sim.controller.stats.total_requests == 5
    rows = await usage_rows(db)
    assert len(rows) == 5 and {r.status for r in rows} == {"ok"}
    committed, _ = await llm_budget.committed(db, DAY)
    assert committed == sum(r.cost_usd for r in rows) <= budget


async def test_calls_are_spaced_by_the_requests_per_minute_limit(make_gateway: Callable[..., LLMGateway]) -> None:
    gateway = make_gateway(requests_per_minute=600)  # one call every 0.1 s (+ 50 ms margin)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(*(structured(gateway, messages=ask(f"Company {i}")) for i in range(5)))
    assert loop.time() - started >= 4 * 0.15 - 0.05
