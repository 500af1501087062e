"""The OpenAI stand-in over real HTTP, driven by the official SDK: completion shape equal to the
sample, structured outputs parsed into pydantic models, refusals, truncation and errors."""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import httpx
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai import AsyncOpenAI
from openai.lib._pydantic import to_strict_json_schema  # what chat.completions.parse sends
from pydantic import BaseModel, Field

from deallens.sim.faults import SimController
from deallens.sim.openai import REFUSAL, SchemaInstance, make_app
from deallens.sim.serve import serve_asgi

SAMPLES = Path(__file__).resolve().parent / "provider-samples"
NOW = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
MODEL = "gpt-4o-mini"


def sample(name: str) -> Any:
    return json.loads((SAMPLES / f"{name}.json").read_text())


class Recommendation(str, Enum):
    BUY = "buy"
    HOLD = "hold"
    SELL = "sell"


class Risk(BaseModel):
    title: str
    severity: int = Field(ge=1, le=5)
    mitigated: bool


class Party(BaseModel):
    symbol: str
    company: str
    role: Literal["acquirer", "target"]


class DealInsight(BaseModel):
    """Nested models ($defs/$ref), an enum, Optional (anyOf with null), bounds, arrays, dates."""

    summary: str
    recommendation: Recommendation
    confidence: float = Field(ge=0, le=1)
    upside_percent: float = Field(gt=-100, lt=500)
    parties: list[Party] = Field(min_length=2, max_length=2)
    risks: list[Risk]
    target_price: float | None
    lead_risk: Risk | None
    as_of: date
    tags: list[Literal["m&a", "earnings", "regulatory"]]


@dataclass
class Sim:
    url: str
    controller: SimController

    def client(self, **options: Any) -> AsyncOpenAI:
        return AsyncOpenAI(base_url=f"{self.url}/v1", api_key=options.pop("api_key", "sk-test"), max_retries=0, **options)


@pytest.fixture(scope="module")
async def llm() -> AsyncIterator[Sim]:
    app = make_app(seed=5, clock=lambda: NOW)
    async with serve_asgi(app) as url:
        yield Sim(url, app.state.sim)


@pytest.fixture(autouse=True)
def fresh(llm: Sim) -> Sim:
    llm.controller.faults.clear()
    llm.controller.stats.reset()
    return llm


def messages(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You are an M&A analyst."}, {"role": "user", "content": text}]


async def test_completion_has_the_sample_shape(llm: Sim) -> None:
    reference = sample("openai_chat_completion_basic")
    prompt = messages("Summarise the Oracle and IBM talks.")
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{llm.url}/v1/chat/completions",
            headers={"Authorization": "Bearer sk-test"},
            json={"model": MODEL, "messages": prompt},
        )
    assert response.status_code == 200 and response.headers["x-request-id"].startswith("req_")
    body = response.json()
    assert list(body) == [*reference, "system_fingerprint"]
    choice = body["choices"][0]
    assert list(choice) == list(reference["choices"][0])
    assert list(choice["message"]) == list(reference["choices"][0]["message"])
    assert list(body["usage"]) == list(reference["usage"])
    for key in ("prompt_tokens_details", "completion_tokens_details"):
        assert list(body["usage"][key]) == list(reference["usage"][key])
    assert body["id"].startswith("chatcmpl-") and len(body["id"]) == len(reference["id"])
    assert (body["object"], body["model"], body["created"]) == ("chat.completion", MODEL, int(NOW.timestamp()))
    assert (choice["finish_reason"], choice["message"]["refusal"], choice["message"]["annotations"]) == ("stop", None, [])
    content = choice["message"]["content"]
    usage = body["usage"]
    assert usage["prompt_tokens"] == math.ceil(len("\n".join(m["content"] for m in prompt)) / 4)
    assert usage["completion_tokens"] == math.ceil(len(content) / 4)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert body["system_fingerprint"].startswith("fp_")


async def test_content_is_deterministic_per_seed_and_prompt(llm: Sim) -> None:
    async def content(url: str, text: str) -> str:
        async with AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-test", max_retries=0) as client:
            completion = await client.chat.completions.create(model=MODEL, messages=messages(text))
        return completion.choices[0].message.content or ""

    async def contents(seed: int) -> list[str]:
        async with serve_asgi(make_app(seed=seed, clock=lambda: NOW)) as url:
            return [await content(url, text) for text in ("Apple outlook", "Pfizer outlook", "Apple outlook")]

    first, again, other = await asyncio.gather(contents(1), contents(1), contents(2))
    assert first == again and first[0] == first[2] != first[1]
    assert first != other


async def test_sdk_parse_returns_the_pydantic_model(llm: Sim) -> None:
    async with llm.client() as client:
        for index in range(12):
            completion = await client.chat.completions.parse(
                model=MODEL, messages=messages(f"Analyse deal #{index}"), response_format=DealInsight
            )
            parsed = completion.choices[0].message.parsed
            assert isinstance(parsed, DealInsight)
            assert completion.choices[0].finish_reason == "stop"
            assert json.loads(completion.choices[0].message.content or "") == parsed.model_dump(mode="json")


async def test_json_object_and_max_tokens(llm: Sim) -> None:
    async with llm.client() as client:
        completion = await client.chat.completions.create(
            model=MODEL, messages=messages("JSON please"), response_format={"type": "json_object"}
        )
        assert isinstance(json.loads(completion.choices[0].message.content or ""), dict)
        short = await client.chat.completions.create(model=MODEL, messages=messages("Long essay"), max_completion_tokens=5)
        assert short.choices[0].finish_reason == "length"
        assert short.usage is not None and short.usage.completion_tokens == 5
        models = await client.models.list()
        assert MODEL in [m.id for m in models.data]


async def test_refusal_is_surfaced_by_the_sdk(llm: Sim) -> None:
    reference = sample("openai_chat_completion_refusal")["choices"][0]
    llm.controller.faults.add("refusal", count=1)
    async with llm.client() as client:
        completion = await client.chat.completions.parse(model=MODEL, messages=messages("x"), response_format=DealInsight)
        message = completion.choices[0].message
        assert (message.content, message.refusal, message.parsed) == (None, reference["message"]["refusal"], None)
        assert message.refusal == REFUSAL and completion.choices[0].finish_reason == "stop"
        again = await client.chat.completions.parse(model=MODEL, messages=messages("x"), response_format=DealInsight)
        assert isinstance(again.choices[0].message.parsed, DealInsight)


async def test_length_is_surfaced_by_the_sdk(llm: Sim) -> None:
    llm.controller.faults.add("length", count=2)
    async with llm.client() as client:
        with pytest.raises(openai.LengthFinishReasonError):
            await client.chat.completions.parse(model=MODEL, messages=messages("x"), response_format=DealInsight)
        truncated = await client.chat.completions.create(
            model=MODEL, messages=messages("x"), response_format={"type": "json_object"}
        )
        assert truncated.choices[0].finish_reason == "length"
        with pytest.raises(json.JSONDecodeError):
            json.loads(truncated.choices[0].message.content or "")
    assert llm.controller.stats.faults == {"length": 2}


async def test_empty_completion(llm: Sim) -> None:
    llm.controller.faults.add("empty", count=1)
    async with llm.client() as client:
        completion = await client.chat.completions.create(model=MODEL, messages=messages("x"))
    assert completion.choices[0].message.content == ""
    assert completion.usage is not None and completion.usage.completion_tokens == 0


@pytest.mark.parametrize(
    ("kind", "error", "status", "reference"),
    [
        ("rate_limit", openai.RateLimitError, 429, "openai_error_429_rate_limit_exceeded_tpm"),
        ("insufficient_quota", openai.RateLimitError, 429, "openai_error_429_insufficient_quota"),
        ("http_500", openai.InternalServerError, 500, None),
        ("http_503", openai.InternalServerError, 503, None),
    ],
)
async def test_error_faults_raise_the_sdk_errors_once(
    llm: Sim, kind: str, error: type[openai.APIStatusError], status: int, reference: str | None
) -> None:
    llm.controller.faults.add(kind, count=1)
    async with llm.client() as client:
        with pytest.raises(error) as raised:
            # The sample's TPM body names the requested model, gpt-4.
            await client.chat.completions.create(model="gpt-4", messages=messages("x"))
        assert raised.value.status_code == status
        body = raised.value.response.json()
        if reference is not None:
            assert body == sample(reference)
        else:
            assert list(body["error"]) == ["message", "type", "param", "code"] and body["error"]["type"] == "server_error"
        assert (await client.chat.completions.create(model="gpt-4", messages=messages("x"))).choices


async def test_authentication_and_bad_requests(llm: Sim) -> None:
    reference = sample("openai_error_401_invalid_api_key")
    async with llm.client(api_key="invalid") as client:
        with pytest.raises(openai.AuthenticationError) as raised:
            await client.chat.completions.create(model=MODEL, messages=messages("x"))
    body = raised.value.response.json()
    assert list(body["error"]) == list(reference["error"])
    assert (body["error"]["type"], body["error"]["code"]) == ("invalid_request_error", "invalid_api_key")
    async with httpx.AsyncClient(base_url=llm.url) as client:
        missing = await client.post("/v1/chat/completions", json={"model": MODEL, "messages": messages("x")})
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
        auth = {"Authorization": "Bearer sk-test"}
        no_messages = await client.post("/v1/chat/completions", headers=auth, json={"model": MODEL})
        assert no_messages.status_code == 400 and no_messages.json()["error"]["param"] == "messages"
        not_json = await client.post("/v1/chat/completions", headers=auth, content=b"{")
        assert not_json.status_code == 400 and not_json.json()["error"]["type"] == "invalid_request_error"
        llm.controller.faults.add("malformed_json", count=1)
        broken = await client.post("/v1/chat/completions", headers=auth, json={"model": MODEL, "messages": messages("x")})
        assert broken.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            broken.json()


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=2**32))
def test_generated_instances_validate_against_pydantic_schemas(seed: int) -> None:
    """Every draw of the generator satisfies the schema the SDK sends (strict form included)."""
    for schema in (DealInsight.model_json_schema(), to_strict_json_schema(DealInsight)):
        value = SchemaInstance(schema, random.Random(seed), NOW).build()
        DealInsight.model_validate_json(json.dumps(value))
