"""What the OpenAI stand-in adds for the LLM gateway, over real HTTP with the official SDK:
structured-output responders by schema name, prompt caching as OpenAI reports it, and the
faults of the samples (rate limit with its delay, schema violations, non-JSON content)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI
from openai.lib._pydantic import to_strict_json_schema

from deallens.domain.news.sentiment import ArticleText
from deallens.llm.sentiment import NewsSentimentBatch, build_messages
from deallens.sim.openai import CACHE_MIN_TOKENS, STRUCTURED_RESPONDERS, StructuredRequest, load_responders, make_app
from deallens.sim.responders.news_sentiment import simulated_score
from deallens.sim.serve import serve_asgi

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
MODEL = "gpt-4o-mini"


def json_schema_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


@pytest.fixture
async def client() -> AsyncIterator[tuple[AsyncOpenAI, Any]]:
    def echo(request: StructuredRequest) -> dict[str, Any]:
        return {"echo": request.last_user_text, "schema": request.schema_name}

    app = make_app(seed=1, clock=lambda: NOW, responders={"Echo": echo})
    async with serve_asgi(app) as url:
        async with AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-test", max_retries=0) as sdk:
            yield sdk, app.state.sim


def test_responder_modules_register_by_schema_name() -> None:
    responders = load_responders()
    assert "NewsSentimentBatch" in responders and responders == STRUCTURED_RESPONDERS


async def test_a_responder_answers_from_the_prompt(client: tuple[AsyncOpenAI, Any]) -> None:
    sdk, _ = client
    schema = {"type": "object", "properties": {"echo": {"type": "string"}, "schema": {"type": "string"}},
              "required": ["echo", "schema"], "additionalProperties": False}
    completion = await sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "ping 42"}], response_format=json_schema_format("Echo", schema),  # type: ignore[arg-type]
    )
    assert json.loads(completion.choices[0].message.content or "") == {"echo": "ping 42", "schema": "Echo"}


async def test_news_sentiment_scores_each_article_of_the_prompt(client: tuple[AsyncOpenAI, Any]) -> None:
    sdk, _ = client
    articles = [ArticleText(5, "Apple beats estimates on strong iPhone demand", None),
                ArticleText(9, "Intel shares plunge after weak forecast", "The chipmaker warned again.")]
    completion = await sdk.chat.completions.create(
        model=MODEL, messages=build_messages(articles),  # type: ignore[arg-type]
        response_format=json_schema_format("NewsSentimentBatch", to_strict_json_schema(NewsSentimentBatch)),  # type: ignore[arg-type]
    )
    batch = NewsSentimentBatch.model_validate_json(completion.choices[0].message.content or "")
    assert [(a.id, a.score) for a in batch.articles] == [
        (5, simulated_score(articles[0].title, None)), (9, simulated_score(articles[1].title, articles[1].description))
    ]
    assert batch.articles[0].label == "positive" and batch.articles[1].label == "negative"


async def test_prompt_caching_follows_openais_rules(client: tuple[AsyncOpenAI, Any]) -> None:
    sdk, _ = client
    long_system = "You are a careful analyst of merger news. " * 120  # about 1,260 tokens
    short_system = "Be brief."

    async def cached(system: str, question: str) -> tuple[int, int]:
        completion = await sdk.chat.completions.create(
            model=MODEL, messages=[{"role": "system", "content": system}, {"role": "user", "content": question}]
        )
        assert completion.usage is not None and completion.usage.prompt_tokens_details is not None
        return completion.usage.prompt_tokens, completion.usage.prompt_tokens_details.cached_tokens or 0

    prompt, first = await cached(long_system, "Deal A?")
    _, second = await cached(long_system, "Deal B?")
    assert first == 0 and second > 0 and second % 128 == 0 and CACHE_MIN_TOKENS <= second <= prompt
    await cached(short_system, "Deal A?")
    assert (await cached(short_system, "Deal B?"))[1] == 0  # under 1,024 tokens: never cached


async def test_rate_limit_carries_the_samples_delay(client: tuple[AsyncOpenAI, Any]) -> None:
    sdk, sim = client
    sim.faults.add("rate_limit", count=1)
    with pytest.raises(openai.RateLimitError) as caught:
        await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    headers = caught.value.response.headers
    assert headers["retry-after"] == "27" and headers["x-ratelimit-reset-tokens"] == "26.604s"
    assert caught.value.code == "rate_limit_exceeded" and "Please try again in 26.604s" in caught.value.message


@pytest.mark.parametrize("fault", ["schema_violation", "bad_json_content"])
async def test_content_faults_keep_the_http_answer_valid(fault: str, client: tuple[AsyncOpenAI, Any]) -> None:
    sdk, sim = client
    sim.faults.add(fault, count=1)
    completion = await sdk.chat.completions.create(
        model=MODEL, messages=build_messages([ArticleText(1, "Apple beats estimates", None)]),  # type: ignore[arg-type]
        response_format=json_schema_format("NewsSentimentBatch", to_strict_json_schema(NewsSentimentBatch)),  # type: ignore[arg-type]
    )
    content = completion.choices[0].message.content or ""
    assert completion.choices[0].finish_reason == "stop"
    with pytest.raises(ValueError):
        NewsSentimentBatch.model_validate_json(content)
    if fault == "schema_violation":
        assert "unexpected_field" in json.loads(content)


async def test_a_revoked_looking_key_is_refused_masked(client: tuple[AsyncOpenAI, Any]) -> None:
    sdk, _ = client
    revoked = sdk.with_options(api_key="sk-revoked-0123456789abcdefXYZ1")
    with pytest.raises(openai.AuthenticationError) as caught:
        await revoked.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert "sk-revok" in caught.value.message and "0123456789abcdef" not in caught.value.message
