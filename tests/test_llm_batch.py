"""The Batch API path over real HTTP against the OpenAI stand-in, with the jobs, the usage ledger
and the budget in a real PostgreSQL: a job through submit/poll/collect, retries that neither
submit nor store twice, an orphaned submission found again, failed lines, Batch prices in the
budget, and the stand-in's own checks."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from openai.lib._pydantic import to_strict_json_schema
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.llm_batch import LLMBatchActivities
from deallens.contracts import BatchCollectInput, BatchPollInput, BatchSubmitInput
from deallens.db import llm_batches, llm_budget
from deallens.db.llm_batches import BatchRequest
from deallens.llm.batch import MARKER_KEY, BatchRunner
from deallens.llm.errors import LLMBatchJobError, LLMBatchNotFinished, LLMServerError
from deallens.llm.gateway import LLMGateway, estimate_prompt_tokens
from deallens.llm.prices import PriceTable
from deallens.sim.clock import ManualClock
from deallens.sim.faults import SimController
from deallens.sim.openai import BATCH_LINE, make_app
from deallens.sim.openai_batch import BatchStore
from deallens.sim.serve import serve_asgi
from tests.batch_support import Verdict, verdict_messages, verdict_responder

START = dt.datetime(2026, 12, 1, 15, 0, tzinfo=dt.UTC)
DAY = START.date()
MODEL = "gpt-4o-mini"
PRICES = PriceTable.load()
MINI = PRICES.get(MODEL)
assert MINI is not None
DELAY = dt.timedelta(minutes=30)
COMPANIES = ["Apple Inc.", "Microsoft Corp.", "NVIDIA Corp."]


@dataclass
class Sim:
    url: str
    controller: SimController
    batches: BatchStore
    clock: ManualClock

    def calls(self, endpoint: str) -> int:
        return self.controller.stats.by_endpoint[endpoint]


@pytest.fixture(scope="module")
async def sim() -> AsyncIterator[Sim]:
    clock = ManualClock(START)
    app = make_app(seed=5, clock=clock, responders={"Verdict": verdict_responder}, batch_delay=DELAY)
    async with serve_asgi(app) as url:
        yield Sim(url, app.state.sim, app.state.batches, clock)


@pytest.fixture(autouse=True)
def fresh(sim: Sim) -> None:
    sim.controller.faults.clear()
    sim.controller.stats.reset()
    sim.batches.delay = DELAY
    sim.clock.set(START)


@pytest.fixture
def make_runner(db: AsyncEngine, sim: Sim) -> AsyncIterator[Callable[..., BatchRunner]]:
    gateways: list[LLMGateway] = []

    def _make(budget: str = "10", key: str | None = "sk-test") -> BatchRunner:
        gateway = LLMGateway(
            engine=db, api_key=SecretStr(key) if key else None, base_url=sim.url + "/v1", default_model=MODEL,
            prices=PRICES, daily_budget_usd=Decimal(budget), today=lambda: DAY,
        )
        gateways.append(gateway)
        return BatchRunner(gateway)

    yield _make  # type: ignore[misc]


def requests(companies: list[str] = COMPANIES, max_output_tokens: int = 200) -> list[BatchRequest]:
    return [
        BatchRequest(
            custom_id=f"company-{n}", model=MODEL, messages=verdict_messages(name), schema=Verdict,
            max_output_tokens=max_output_tokens,
        )
        for n, name in enumerate(companies, start=1)
    ]


def full_price_estimate(reqs: list[BatchRequest]) -> Decimal:
    schema = to_strict_json_schema(Verdict)
    return sum(
        (MINI.cost(prompt_tokens=estimate_prompt_tokens(r.messages, schema), completion_tokens=r.max_output_tokens)
         for r in reqs),
        Decimal(0),
    )


async def usage_rows(db: AsyncEngine) -> list[Any]:
    async with db.connect() as conn:
        return (await conn.execute(text("SELECT * FROM llm_usage ORDER BY id"))).all()


async def results(db: AsyncEngine, job_id: int) -> list[llm_batches.BatchResult]:
    return [r async for r in llm_batches.job_results(db, job_id)]


async def test_a_job_goes_through_submit_poll_and_collect_at_the_batch_price(
    db: AsyncEngine, sim: Sim, make_runner: Callable[..., BatchRunner]
) -> None:
    runner = make_runner()
    job_id = await llm_batches.create_job(db, purpose="company_insight", workflow="GenerateCompanyInsights",
                                          requests=requests())
    submitted = await runner.submit(job_id)
    assert submitted.status == "submitted" and submitted.batch_id and submitted.requests == 3

    # What went over the wire: one JSONL line per request, strict json_schema, temperature 0.
    batch = sim.batches.batches[submitted.batch_id]
    assert batch.metadata is not None and batch.metadata[MARKER_KEY].startswith("deallens-batch-")
    assert [line["custom_id"] for line in batch.lines] == ["company-1", "company-2", "company-3"]
    body = batch.lines[0]["body"]
    assert body["temperature"] == 0 and body["max_completion_tokens"] == 200
    assert body["response_format"]["json_schema"]["name"] == "Verdict"
    assert body["response_format"]["json_schema"]["strict"] is True
    assert sim.batches.files[batch.input_file_id].purpose == "batch"

    # The whole job is reserved up front, at half the standard price.
    reserved = [row for row in await usage_rows(db)]
    assert {row.status for row in reserved} == {"reserved"} and len(reserved) == 3
    committed, calls = await llm_budget.committed(db, DAY)
    assert calls == 3
    assert committed == sum(row.reserved_usd for row in reserved)
    assert abs(committed * 2 - full_price_estimate(requests())) <= Decimal("0.000003")

    polled = await runner.poll(job_id)
    assert (polled.status, polled.finished, polled.total) == ("in_progress", False, 3)
    with pytest.raises(LLMBatchNotFinished, match="still in_progress"):
        await runner.collect(job_id)

    sim.clock.advance(minutes=31)
    polled = await runner.poll(job_id)
    assert (polled.status, polled.finished, polled.done, polled.failed) == ("completed", True, 3, 0)
    assert await runner.collect(job_id) == (3, 0)

    found = await results(db, job_id)
    assert [(r.custom_id, r.status) for r in found] == [(f"company-{n}", "ok") for n in (1, 2, 3)]
    assert [r.output.company for r in found if isinstance(r.output, Verdict)] == COMPANIES
    rows = {row.id: row for row in await usage_rows(db)}
    assert {r.usage_id for r in found} == set(rows)
    for row in rows.values():
        assert row.status == "ok" and row.prompt_tokens > 0 and row.completion_tokens > 0
        assert row.cost_usd == MINI.batch().cost(prompt_tokens=row.prompt_tokens, completion_tokens=row.completion_tokens)
        full = MINI.cost(prompt_tokens=row.prompt_tokens, completion_tokens=row.completion_tokens)
        assert abs(row.cost_usd * 2 - full) <= Decimal("0.000002")
        assert row.purpose == "company_insight" and row.workflow == "GenerateCompanyInsights"
    committed, _ = await llm_budget.committed(db, DAY)
    assert committed == sum(row.cost_usd for row in rows.values())


async def test_an_answer_the_callers_check_refuses_is_recorded_as_failed_once(
    db: AsyncEngine, sim: Sim, make_runner: Callable[..., BatchRunner]
) -> None:
    runner = make_runner()
    job_id = await llm_batches.create_job(db, purpose="p", workflow=None, requests=requests())
    await runner.submit(job_id)
    sim.clock.advance(hours=1)
    await runner.collect(job_id)
    assert await llm_batches.reject_output(db, job_id, "company-2", "cites a P/E of 31.4 that was not given")
    assert not await llm_batches.reject_output(db, job_id, "company-2", "again")
    found = {r.custom_id: r for r in await results(db, job_id)}
    assert (found["company-2"].status, found["company-2"].output) == ("failed", None)
    assert found["company-2"].error == "rejected: cites a P/E of 31.4 that was not given"
    row = {r.id: r for r in await usage_rows(db)}[found["company-2"].usage_id]
    assert row.status == "failed" and row.cost_usd > 0
    job = await llm_batches.get_job(db, job_id)
    assert job is not None and (job.succeeded, job.failed) == (2, 1)
    assert await runner.collect(job_id) == (2, 1)


async def test_retried_submit_and_collect_neither_submit_nor_store_twice(
    db: AsyncEngine, sim: Sim, make_runner: Callable[..., BatchRunner]
) -> None:
    runner = make_runner()
    job_id = await llm_batches.create_job(db, purpose="company_insight", workflow=None, requests=requests())
    first = await runner.submit(job_id)
    again = await make_runner().submit(job_id)  # another worker's attempt
    assert again.batch_id == first.batch_id
    assert (sim.calls("/v1/files"), sim.calls("/v1/batches")) == (1, 1)
    assert (sim.calls("/v1/files:list"), sim.calls("/v1/batches:list")) == (0, 0)  # a first attempt has no orphan to find
    assert len(await usage_rows(db)) == 3  # reserved once

    sim.clock.advance(minutes=31)
    assert await runner.collect(job_id) == (3, 0)
    before_usage = await usage_rows(db)
    before_budget = await llm_budget.committed(db, DAY)
    downloads = sim.calls("/v1/files:content")
    assert await runner.collect(job_id) == (3, 0)
    assert await usage_rows(db) == before_usage
    assert await llm_budget.committed(db, DAY) == before_budget
    assert sim.calls("/v1/files:content") == downloads  # a collected job is answered from the database
    async with db.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM llm_batch_items"))).scalar_one() == 3


async def test_a_submission_retried_after_a_server_error_reuses_its_file_and_reservation(
    db: AsyncEngine, sim: Sim, make_runner: Callable[..., BatchRunner]
) -> None:
    runner = make_runner()
    job_id = await llm_batches.create_job(db, purpose="p", workflow=None, requests=requests())
    sim.controller.faults.add("http_500", count=1, match="/v1/batches")
    with pytest.raises(LLMServerError, match="server error \\(500\\)"):
        await runner.submit(job_id)
    job = await llm_batches.get_job(db, job_id)
    assert job is not None and (job.status, job.batch_id) == ("reserved", None)
    reserved = await llm_budget.committed(db, DAY)

    retried = await runner.submit(job_id)
    assert retried.status == "submitted" and retried.batch_id is not None
    assert (sim.calls("/v1/files"), sim.calls("/v1/batches")) == (1, 2)  # one upload; the 500, then the batch
    assert await llm_budget.committed(db, DAY) == reserved  # reserved once
    assert len(await usage_rows(db)) == 3


async def test_the_activities_refuse_an_unknown_job_for_good(db: AsyncEngine, make_runner: Callable[..., BatchRunner]) -> None:
    activities = LLMBatchActivities(make_runner()._gateway)
    env = ActivityEnvironment()
    for call, request in (
        (activities.submit, BatchSubmitInput(job_id=999)),
        (activities.poll, BatchPollInput(job_id=999)),
        (activities.collect, BatchCollectInput(job_id=999)),
    ):
        with pytest.raises(ApplicationError) as raised:
            await env.run(call, request)
        assert raised.value.type == "InvalidInput" and raised.value.non_retryable
        assert raised.value.message == "invalid input: batch job 999 does not exist"


async def test_a_submission_whose_commit_was_lost_is_found_again_not_sent_twice(
    db: AsyncEngine, sim: Sim, make_runner: Callable[..., BatchRunner]
) -> None:
    """The state a crash between the API calls and the commit leaves: the provider has the file
    (and, for the second job, the batch) under the job's marker, the job row knows nothing."""
    runner = make_runner()
    client = runner._client
    only_file = await llm_batches.create_job(db, purpose="p", workflow=None, requests=requests())
    with_batch = await llm_batches.create_job(db, purpose="p", workflow=None, requests=requests())
    for job_id in (only_file, with_batch):
        job = await llm_batches.get_job(db, job_id)
        assert job is not None
        # The dead attempt had reserved (API calls come after the reservation's commit).
        assert await llm_batches.reserve_job(
            db, job, day=DAY, limit_usd=Decimal(10), estimates={r.custom_id: Decimal("0.0001") for r in requests()}
        )
        stored = await client.files.create(file=(f"{job.marker}.jsonl", b"{}\n"), purpose="batch")
        if job_id == with_batch:
            orphan = await client.batches.create(
                input_file_id=stored.id, endpoint="/v1/chat/completions", completion_window="24h",
                metadata={MARKER_KEY: job.marker},
            )
    sim.controller.stats.reset()

    adopted = await runner.submit(with_batch)
    assert adopted.batch_id == orphan.id
    assert (sim.calls("/v1/files"), sim.calls("/v1/batches")) == (0, 0)
    assert len(await usage_rows(db)) == 6  # the dead attempts' reservations, not new ones

    resumed = await runner.submit(only_file)
    assert sim.calls("/v1/files") == 0 and sim.calls("/v1/batches") == 1  # the uploaded file is reused
    assert resumed.batch_id is not None and resumed.batch_id != orphan.id


async def test_a_schema_violation_a_refusal_and_an_error_line_are_recorded_as_such(
    db: AsyncEngine, sim: Sim, make_runner: Callable[..., BatchRunner]
) -> None:
    runner = make_runner()
    names = [f"Company {n}" for n in range(1, 6)]
    job_id = await llm_batches.create_job(db, purpose="p", workflow=None, requests=requests(names))
    sim.controller.faults.add("schema_violation", count=1, match=BATCH_LINE)
    sim.controller.faults.add("refusal", count=1, match=BATCH_LINE)
    sim.controller.faults.add("http_500", count=1, match=BATCH_LINE)
    await runner.submit(job_id)
    sim.clock.advance(hours=1)
    polled = await runner.poll(job_id)
    assert (polled.done, polled.failed) == (4, 1)  # the API counts only the error line as failed
    assert await runner.collect(job_id) == (2, 3)

    found = {r.custom_id: r for r in await results(db, job_id)}
    rows = {row.id: row for row in await usage_rows(db)}
    violated, refused, errored = found["company-1"], found["company-2"], found["company-3"]
    assert violated.status == "failed" and violated.output is None
    assert violated.error is not None and "does not match the Verdict schema" in violated.error
    assert refused.status == "refused" and refused.error is not None and "refused" in refused.error
    assert errored.status == "error" and errored.error is not None and errored.error.startswith("500")
    assert [found[c].status for c in ("company-4", "company-5")] == ["ok", "ok"]
    # Answers are billed (at the Batch price) whatever they said; an error line is not.
    assert rows[violated.usage_id].status == "failed" and rows[violated.usage_id].cost_usd > 0
    assert rows[refused.usage_id].status == "refused" and rows[refused.usage_id].cost_usd > 0
    assert rows[errored.usage_id].status == "error" and rows[errored.usage_id].cost_usd == 0
    assert all(row.status != "reserved" for row in rows.values())


async def test_the_budget_is_reserved_at_batch_prices_and_a_job_it_cannot_cover_is_not_sent(
    db: AsyncEngine, sim: Sim, make_runner: Callable[..., BatchRunner]
) -> None:
    full = full_price_estimate(requests())
    # Between half and the full estimate: the job fits only at the Batch price.
    between = make_runner(budget=str((full * Decimal("0.75")).quantize(Decimal("0.000001"))))
    fits = await llm_batches.create_job(db, purpose="p", workflow=None, requests=requests())
    assert (await between.submit(fits)).status == "submitted"
    committed, _ = await llm_budget.committed(db, DAY)
    assert committed * 2 <= full + Decimal("0.000003")

    # The same budget cannot hold a second such job: nothing is sent, nothing stays reserved.
    refused = await llm_batches.create_job(db, purpose="p", workflow=None, requests=requests())
    outcome = await between.submit(refused)
    assert outcome.status == "rejected" and outcome.batch_id is None
    assert outcome.reason is not None and "LLM_DAILY_BUDGET_USD" in outcome.reason
    assert sim.calls("/v1/batches") == 1
    assert await llm_budget.committed(db, DAY) == (committed, 3)
    assert (await between.poll(refused)).finished
    assert await between.collect(refused) == (0, 3)
    assert {r.status for r in await results(db, refused)} == {"error"}

    # Without a key: not sent either, and said why.
    keyless = await llm_batches.create_job(db, purpose="p", workflow=None, requests=requests())
    no_key = await make_runner(key=None).submit(keyless)
    assert no_key.status == "rejected" and no_key.reason == "OPENAI_API_KEY is not set"


async def test_a_rejected_key_gives_the_reservation_back(
    db: AsyncEngine, sim: Sim, make_runner: Callable[..., BatchRunner]
) -> None:
    job_id = await llm_batches.create_job(db, purpose="p", workflow=None, requests=requests())
    outcome = await make_runner(key="invalid").submit(job_id)
    assert outcome.status == "rejected" and outcome.reason is not None and "401" in outcome.reason
    assert "invalid" not in outcome.reason.replace("invalid_api_key", "")
    committed, _ = await llm_budget.committed(db, DAY)
    assert committed == 0
    assert {row.status for row in await usage_rows(db)} == {"error"}


async def test_an_expired_batch_keeps_what_was_answered_and_fails_the_rest(
    db: AsyncEngine, sim: Sim, make_runner: Callable[..., BatchRunner]
) -> None:
    sim.batches.delay = dt.timedelta(hours=30)
    runner = make_runner()
    job_id = await llm_batches.create_job(db, purpose="p", workflow=None, requests=requests())
    await runner.submit(job_id)
    sim.clock.advance(hours=23)
    assert not (await runner.poll(job_id)).finished
    sim.clock.advance(hours=2)
    polled = await runner.poll(job_id)
    assert (polled.status, polled.finished, polled.failed) == ("expired", True, 3)
    assert await runner.collect(job_id) == (0, 3)
    found = await results(db, job_id)
    assert all(r.error is not None and "completion window expired" in r.error for r in found)
    assert await llm_budget.committed(db, DAY) == (Decimal(0), 3)


async def test_bad_jobs_are_refused_with_one_line_and_nothing_written(db: AsyncEngine) -> None:
    twice = [*requests(["A"]), *requests(["B"])]
    with pytest.raises(LLMBatchJobError, match="custom_id 'company-1' appears twice"):
        await llm_batches.create_job(db, purpose="p", workflow=None, requests=twice)
    mixed = [requests(["A"])[0], BatchRequest("other", "gpt-4o", verdict_messages("B"), Verdict, 10)]
    with pytest.raises(LLMBatchJobError, match="one model"):
        await llm_batches.create_job(db, purpose="p", workflow=None, requests=mixed)
    with pytest.raises(LLMBatchJobError, match="at least one request"):
        await llm_batches.create_job(db, purpose="p", workflow=None, requests=[])
    with pytest.raises(LLMBatchJobError, match="cannot be imported"):
        await llm_batches.create_job(
            db, purpose="p", workflow=None, requests=[BatchRequest("x", MODEL, verdict_messages("A"), "nowhere:Thing", 5)]
        )
    async with db.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM llm_batch_jobs"))).scalar_one() == 0


async def test_the_stand_in_fails_a_batch_whose_input_the_real_service_would_refuse(
    sim: Sim, make_runner: Callable[..., BatchRunner]
) -> None:
    client = make_runner()._client
    lines = [
        {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}},
        {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}},
    ]
    stored = await client.files.create(
        file=("bad.jsonl", "".join(json.dumps(line) + "\n" for line in lines).encode()), purpose="batch"
    )
    batch = await client.batches.create(input_file_id=stored.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert batch.status == "failed"
    assert batch.errors is not None and [e.code for e in batch.errors.data or []] == ["duplicate_custom_id"]
    cancelled = await client.batches.cancel(
        (await client.batches.create(
            input_file_id=(await client.files.create(file=("ok.jsonl", (json.dumps(lines[0]) + "\n").encode()),
                                                      purpose="batch")).id,
            endpoint="/v1/chat/completions", completion_window="24h",
        )).id
    )
    assert cancelled.status == "cancelled" and cancelled.request_counts is not None
    assert cancelled.request_counts.failed == 1


async def test_the_stand_in_pages_batches_and_files_like_the_sdk_expects(
    sim: Sim, make_runner: Callable[..., BatchRunner]
) -> None:
    client = make_runner()._client
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}}
    made = []
    for n in range(3):
        stored = await client.files.create(file=(f"page-{n}.jsonl", (json.dumps(line) + "\n").encode()), purpose="batch")
        made.append((await client.batches.create(
            input_file_id=stored.id, endpoint="/v1/chat/completions", completion_window="24h", metadata={"n": str(n)},
        )).id)
    listed = [b.id async for b in client.batches.list(limit=1)]
    assert listed[:3] == made[::-1]  # newest first, across pages
    names = [f.filename async for f in client.files.list(purpose="batch", limit=2)]
    assert names[:3] == ["page-2.jsonl", "page-1.jsonl", "page-0.jsonl"]
    sim.clock.advance(minutes=31)
    done = await client.batches.retrieve(made[0])
    assert done.status == "completed" and done.output_file_id is not None
    output = (await client.files.content(done.output_file_id)).text.splitlines()
    answer = json.loads(output[0])
    assert answer["custom_id"] == "a" and answer["response"]["status_code"] == 200
    assert answer["response"]["body"]["object"] == "chat.completion"
