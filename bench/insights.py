"""Benchmark: insight contexts set-based against a per-company query loop, then the cache.

    python bench/insights.py [--companies 1000] [--bars 504] [--database-url URL]

Creates a database bench_ohlc_<random> (bench/ohlc_upsert.py's helper) on the server of
--database-url (default: $DATABASE_URL), seeds --companies companies with --bars daily bars
each (two years of weekdays, generated in one SQL statement; not timed), then:

1. contexts set-based: deallens.db.insight_context.company_contexts over all companies
   (four statements for the batch: window functions over ohlc_data, companies, stories, deals);
2. the same contexts by a per-company loop (the same four lookups, one company at a time, the
   indicators computed in Python from the bars): the baseline, in the same run; both must
   produce identical figures;
3. a first insight run over every context against the OpenAI stand-in (in process, over real
   HTTP): one call each; then a second run on unchanged data: LLM calls (target 0), cache hit
   rate and time.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import time
from decimal import Decimal
from pathlib import Path

from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ohlc_upsert  # noqa: E402  (bench/ohlc_upsert.py: bench_database())

from deallens.config import load_settings  # noqa: E402
from deallens.db import insight_context  # noqa: E402
from deallens.domain.insights import indicators  # noqa: E402
from deallens.domain.insights.context import fundamental_figures  # noqa: E402
from deallens.llm import insight_runs  # noqa: E402
from deallens.llm.gateway import LLMGateway  # noqa: E402
from deallens.llm.prices import PriceTable  # noqa: E402
from deallens.sim.openai import make_app  # noqa: E402
from deallens.sim.serve import serve_asgi  # noqa: E402

AS_OF = dt.date(2026, 11, 30)
TARGET_RATIO = 10.0

_SEED = text(
    """
    INSERT INTO ohlc_data (company_id, date, open, high, low, close, volume, source)
    SELECT c.id, d.day, p.close, p.close * 1.01, p.close * 0.99, p.close,
           1000000 + (c.id * 7919 + d.n * 104729) % 500000, 'bench'
      FROM unnest(CAST(:ids AS bigint[])) AS c(id)
     CROSS JOIN LATERAL (
           SELECT day, row_number() OVER (ORDER BY day) AS n
             FROM generate_series(CAST(:end AS date) - 1100, CAST(:end AS date), interval '1 day') AS g(day)
            WHERE extract(isodow FROM day) < 6
            ORDER BY day DESC LIMIT :bars) d
     CROSS JOIN LATERAL (
           SELECT round((100 + 20 * sin((d.n + c.id) / 15.0) + 3 * sin(d.n * 1.7 + c.id) + d.n * ((c.id % 5) - 2) * 0.02)::numeric, 4)
                  AS close) p
    """
)
_LOOP_COMPANY = text("SELECT id, symbol, name, sector, fundamentals FROM companies WHERE id = :id")
_LOOP_STORIES = text(
    "SELECT a.id FROM news_company nc JOIN news_articles a ON a.id = nc.news_id "
    "WHERE nc.company_id = :id AND a.published_at > CAST(:as_of AS date) - 14 ORDER BY a.published_at DESC LIMIT 5"
)
_LOOP_DEALS = text(
    "SELECT id FROM deals WHERE (acquirer_company_id = :id OR target_company_id = :id) "
    "AND status NOT IN ('completed', 'terminated') LIMIT 3"
)


async def seed(engine, companies: int, bars: int) -> list[int]:  # type: ignore[no-untyped-def]
    async with engine.begin() as conn:
        ids = list((await conn.execute(text(
            "INSERT INTO companies (symbol, name, sector, fundamentals) SELECT 'B' || g, 'Bench ' || g, "
            "(ARRAY['Technology','Health Care','Financials','Energy'])[1 + g % 4], "
            "CAST('{\"pe_ratio\": \"21.5\", \"eps\": \"4.2\", \"market_cap\": \"90000000000\"}' AS json) "
            "FROM generate_series(1, :n) g RETURNING id"), {"n": companies})).scalars())
        for start in range(0, len(ids), 200):
            await conn.execute(_SEED, {"ids": ids[start : start + 200], "end": AS_OF, "bars": bars})
        await conn.execute(text("ANALYZE ohlc_data"))
    return ids


async def loop_figures(engine, ids: list[int]) -> dict[int, dict]:  # type: ignore[no-untyped-def,type-arg]
    """The baseline: the same lookups, one company at a time."""
    out = {}
    async with engine.connect() as conn:
        for company_id in ids:
            bars = await insight_context.company_bars(conn, company_id, AS_OF)
            company = (await conn.execute(_LOOP_COMPANY, {"id": company_id})).one()
            await conn.execute(_LOOP_STORIES, {"id": company_id, "as_of": AS_OF})
            await conn.execute(_LOOP_DEALS, {"id": company_id})
            agg = indicators.aggregates_from_bars(company_id, bars)
            assert agg is not None
            out[company_id] = {**indicators.figures(agg), **fundamental_figures(company.fundamentals)}
    return out


REPEATS = 3


async def best_of(action):  # type: ignore[no-untyped-def]
    """(fastest of REPEATS runs in seconds, the last result): the machine is shared, the minimum is the figure."""
    times, result = [], None
    for _ in range(REPEATS):
        t = time.perf_counter()
        result = await action()
        times.append(time.perf_counter() - t)
    return min(times), result


async def main(companies: int, bars: int, server_url: str) -> int:
    async with ohlc_upsert.bench_database(server_url) as (_url, engine):
        t = time.perf_counter()
        ids = await seed(engine, companies, bars)
        print(f"seeded {companies} companies x {bars} bars in {time.perf_counter() - t:.1f} s (not timed below)",
              file=sys.stderr)
        # Warm both paths once (plans, pool), then time them.
        async with engine.connect() as conn:
            await insight_context.company_contexts(conn, ids[:20], AS_OF)
        await loop_figures(engine, ids[:20])

        async def set_based_all() -> dict:  # type: ignore[type-arg]
            async with engine.connect() as conn:
                return await insight_context.company_contexts(conn, ids, AS_OF)

        async def statement_only() -> None:
            async with engine.connect() as conn:
                await insight_context.bar_aggregates(conn, ids, AS_OF)

        async def in_batches() -> None:
            async with engine.connect() as conn:
                for start in range(0, len(ids), 20):
                    await insight_context.company_contexts(conn, ids[start : start + 20], AS_OF)

        set_based, contexts = await best_of(set_based_all)
        aggregates_only, _ = await best_of(statement_only)
        batched, _ = await best_of(in_batches)
        loop, looped = await best_of(lambda: loop_figures(engine, ids))
        for company_id, figures in looped.items():
            got = {k: v for k, v in contexts[company_id].figures.items() if k != "news_sentiment_avg"}
            assert got == figures, (company_id, got, figures)
        ratio = loop / set_based
        print(f"contexts for {companies} companies ({bars} bars each), best of {REPEATS}, identical figures on both paths:")
        print(f"  {'set-based, one batch of ' + str(companies) + ':':<42}{set_based:8.3f} s")
        print(f"  {'  of which the indicator statement:':<42}{aggregates_only:8.3f} s")
        print(f"  {'set-based, batches of 20 (the activity):':<42}{batched:8.3f} s")
        print(f"  {'per-company query loop (baseline):':<42}{loop:8.3f} s")
        print(f"  ratio loop / set-based: {ratio:.1f}x (target >= {TARGET_RATIO:.0f}x: {'met' if ratio >= TARGET_RATIO else 'NOT met'})")

        app = make_app(seed=1)
        async with serve_asgi(app) as url:
            gateway = LLMGateway(
                engine=engine, api_key=None, base_url=f"{url}/v1", default_model="gpt-4o-mini",
                prices=PriceTable.load(), daily_budget_usd=Decimal("1000"), simulated=True, today=lambda: AS_OF,
            )
            ordered = [contexts[i] for i in sorted(contexts)]
            t = time.perf_counter()
            first = await insight_runs.run(engine, gateway, ordered, today=AS_OF, workflow="bench")
            first_s = time.perf_counter() - t
            async with engine.connect() as conn:
                contexts_again = await insight_context.company_contexts(conn, ids, AS_OF)
            t = time.perf_counter()
            second = await insight_runs.run(engine, gateway, [contexts_again[i] for i in sorted(contexts_again)],
                                            today=AS_OF, workflow="bench")
            second_s = time.perf_counter() - t
            await gateway.aclose()
        hit_rate = second.reused / max(1, second.reused + second.analysed + second.fallback)
        print(f"first insight run:  {first.llm_calls} LLM calls, {first.analysed} analysed, {first.fallback} rule-based, {first_s:.2f} s")
        print(f"second run, unchanged data: {second.llm_calls} LLM calls (target 0), cache hit rate {hit_rate:.1%}, "
              f"{second_s:.3f} s (+ {set_based:.3f} s to assemble the contexts)")
        ok = ratio >= TARGET_RATIO and second.llm_calls == 0
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python bench/insights.py", description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=1000)
    parser.add_argument("--bars", type=int, default=504, help="daily bars per company (504: two years)")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    args = parser.parse_args()
    if not args.database_url:
        parser.error("--database-url or DATABASE_URL is required")
    url = load_settings(database_url=args.database_url, _env_file=None).database_url
    sys.exit(asyncio.run(main(args.companies, args.bars, url)))
