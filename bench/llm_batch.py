"""Benchmark: a Batch API job of N requests through submit and collect, against the OpenAI stand-in.

    python bench/llm_batch.py [--requests 5000] [--database-url URL]

Creates a database bench_batch_<random> on the server of --database-url (default:
$DATABASE_URL), migrates it, and drops it at the end. Times create_job, submit (whole-job
reservation, JSONL, upload, batch creation) and collect (download, validation, the
set-based store and settlement), then, as the baseline measured in the same run, the same
results of a second job stored one request at a time (an UPDATE of the item and a
llm_budget.settle per request, the gateway's per-call path). Also prints what the job cost at
the Batch price against the same tokens at the standard price. bench/README.md has figures.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import secrets
import sys
import time
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from pydantic import SecretStr
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deallens.config import load_settings  # noqa: E402
from deallens.db import llm_batches, llm_budget  # noqa: E402
from deallens.db.engine import create_engine  # noqa: E402
from deallens.db.llm_batches import BatchRequest, ItemOutcome  # noqa: E402
from deallens.db.llm_budget import Reservation, Settlement  # noqa: E402
from deallens.llm.batch import BatchRunner, _outcome  # noqa: E402
from deallens.llm.gateway import LLMGateway  # noqa: E402
from deallens.llm.prices import PriceTable  # noqa: E402
from deallens.sim.clock import ManualClock  # noqa: E402
from deallens.sim.openai import make_app  # noqa: E402
from deallens.sim.serve import serve_asgi  # noqa: E402
from tests.batch_support import Verdict, verdict_messages, verdict_responder  # noqa: E402

START = dt.datetime(2026, 12, 1, 15, 0, tzinfo=dt.UTC)
MODEL = "gpt-4o-mini"


def _dsn(url: str, name: str | None = None) -> str:
    url = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}")) if name else url


def _line(label: str, seconds: float, n: int) -> str:
    return f"{label:<52} {seconds:8.3f} s  {n / seconds:10.0f} requests/s"


async def run(server: str, n: int) -> None:
    name = f"bench_batch_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(_dsn(server))
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = load_settings(_env_file=None, database_url=_dsn(server, name)).database_url
    assert url is not None
    engine = create_engine(url, pool_size=4)
    try:
        from deallens.db.migrate import upgrade_to_head

        await upgrade_to_head(engine)
        clock = ManualClock(START)
        app = make_app(seed=1, clock=clock, responders={"Verdict": verdict_responder}, batch_delay=dt.timedelta(minutes=5))
        prices = PriceTable.load()
        async with serve_asgi(app) as sim:
            gateway = LLMGateway(
                engine=engine, api_key=SecretStr("sk-bench"), base_url=sim + "/v1", default_model=MODEL, prices=prices,
                daily_budget_usd=Decimal(1000), today=lambda: START.date(),
            )
            requests = [BatchRequest(f"c-{i}", MODEL, verdict_messages(f"Company {i}"), Verdict, 200) for i in range(n)]
            runner = BatchRunner(gateway)

            t = time.perf_counter()
            job = await llm_batches.create_job(engine, purpose="bench", workflow=None, requests=requests)
            print(_line("create_job", time.perf_counter() - t, n))
            t = time.perf_counter()
            await runner.submit(job)
            print(_line("submit (reserve, JSONL, upload, create)", time.perf_counter() - t, n))
            clock.advance(minutes=6)
            await runner.poll(job)  # the stand-in answers the lines here (not timed)
            t = time.perf_counter()
            succeeded, failed = await runner.collect(job)
            collect = time.perf_counter() - t
            print(_line("collect (download, validate, set-based store)", collect, n))
            assert (succeeded, failed) == (n, 0), (succeeded, failed)

            # Baseline: the same results for a second job, stored and settled one request at a time.
            baseline_job = await llm_batches.create_job(engine, purpose="bench", workflow=None, requests=requests)
            await runner.submit(baseline_job)
            clock.advance(minutes=6)
            await runner.poll(baseline_job)
            batch = await gateway.client.batches.retrieve((await llm_batches.get_job(engine, baseline_job)).batch_id)  # type: ignore[union-attr,arg-type]
            content = await gateway.client.files.content(batch.output_file_id)  # type: ignore[arg-type]
            lines = {json.loads(raw)["custom_id"]: json.loads(raw) for raw in content.text.splitlines() if raw}
            items = await llm_batches.load_items(engine, baseline_job)
            price = prices.get(MODEL).batch()  # type: ignore[union-attr]
            t = time.perf_counter()
            outcomes: list[ItemOutcome] = [_outcome(i, lines.get(i.custom_id), Verdict, price, "completed") for i in items]
            for item, outcome in zip(items, outcomes, strict=True):
                async with engine.begin() as conn:
                    await conn.execute(
                        text("UPDATE llm_batch_items SET status = :s, output = CAST(:o AS jsonb) "
                             "WHERE job_id = :j AND custom_id = :c AND status = 'pending'"),
                        {"s": outcome.status, "o": json.dumps(outcome.output), "j": baseline_job, "c": item.custom_id},
                    )
                assert item.usage_id is not None
                await llm_budget.settle(
                    engine, Reservation(item.usage_id, Decimal(0), START.date()),
                    Settlement(outcome="ok", prompt_tokens=outcome.prompt_tokens,
                               completion_tokens=outcome.completion_tokens, cost_usd=outcome.cost_usd),
                )
            baseline = time.perf_counter() - t
            print(_line("baseline: validate, then store + settle per request", baseline, n))
            print(f"{'collect vs baseline':<52} {baseline / collect:8.1f} x faster")
            await gateway.aclose()

        async with engine.connect() as conn:
            row = (await conn.execute(
                text("SELECT sum(u.prompt_tokens) AS p, sum(u.completion_tokens) AS c, sum(u.cost_usd) AS usd "
                     "FROM llm_usage u JOIN llm_batch_items i ON i.usage_id = u.id WHERE i.job_id = :j"), {"j": job},
            )).one()
            calls = (await conn.execute(
                text("SELECT u.prompt_tokens AS p, u.completion_tokens AS c "
                     "FROM llm_usage u JOIN llm_batch_items i ON i.usage_id = u.id WHERE i.job_id = :j"), {"j": job},
            )).all()
        standard_price = prices.get(MODEL)
        assert standard_price is not None
        exact = standard_price.cost(prompt_tokens=int(row.p), completion_tokens=int(row.c))
        batch_exact = standard_price.batch().cost(prompt_tokens=int(row.p), completion_tokens=int(row.c))
        per_call = sum((standard_price.cost(prompt_tokens=c.p, completion_tokens=c.c) for c in calls), Decimal(0))
        print(f"{'tokens of the job':<52} {int(row.p)} prompt + {int(row.c)} completion")
        print(f"{'Batch / standard price, on the whole job':<52} ${batch_exact:.6f} / ${exact:.6f} = {batch_exact / exact:.3f}")
        print(f"{'Batch / standard, as billed per call (µ$ ceiling)':<52} ${row.usd:.6f} / ${per_call:.6f} = {row.usd / per_call:.3f}")
    finally:
        await engine.dispose()
        admin = await asyncpg.connect(_dsn(server))
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    args = parser.parse_args()
    if not args.database_url:
        parser.error("--database-url or $DATABASE_URL is required")
    asyncio.run(run(args.database_url, args.requests))


if __name__ == "__main__":
    main()
