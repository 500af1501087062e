"""Benchmark: from a stored crossing price to its notification workflow having started.

    python bench/alert_latency.py [--alerts 100000] [--probes 100] [--database-url URL]

Creates a database bench_latency_<random> on the server of --database-url (default:
$DATABASE_URL), migrates it, seeds 100,000 active price alerts (bench/alert_eval.py's
seed: 2,000 companies, 10,000 users), starts the pip-installed Temporal dev server, the
real workers and the price AlertMonitor, then for each probe:

  t0  store a fresh quote for one company with `deallens.db.prices.store_quotes`, then
      signal-with-start the monitor with `new_data` (exactly what SyncCompanyPrices does
      after storing), the quote crossing a probe alert's threshold;
  t1  the start time of that firing's notification workflow (notify-<alert_history_id>).

It prints p50, p90, p99 and max of t1 - t0. Targets: p50 <= 1 s, p99 <= 3 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import secrets
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import alert_eval as eval_bench  # noqa: E402  (bench/alert_eval.py: the 100k-alert seed)
from temporalio.common import WorkflowIDConflictPolicy  # noqa: E402
from temporalio.service import RPCError  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from activities.alerts import monitor_id  # noqa: E402
from deallens.config import load_settings  # noqa: E402
from deallens.contracts import AlertMonitorInput, FetchedQuote, NewDataInput  # noqa: E402
from deallens.db import prices  # noqa: E402
from deallens.db.alerts import add_alert  # noqa: E402
from deallens.db.engine import create_engine  # noqa: E402
from deallens.db.migrate import upgrade_to_head  # noqa: E402
from deallens.domain.alert_rules import parse_alert  # noqa: E402
from temporal_client import DATA_CONVERTER, interceptors  # noqa: E402
from workflows import search_attributes
from worker import build_workers, open_resources  # noqa: E402

TASK_QUEUE = "bench-latency"
TARGET_P50, TARGET_P99 = 1.0, 3.0


def quote(symbol: str, price: Decimal) -> FetchedQuote:
    return FetchedQuote(
        symbol=symbol, price=price, open=price, high=price, low=price, previous_close=price, change=Decimal(0),
        change_percent=Decimal(0), volume=1_000_000, latest_trading_day=dt.date.today(),
        quoted_at=dt.datetime.now(dt.UTC), source="bench",
    )


async def probe(engine, client, symbol: str, user_id: int) -> float:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        price = (await conn.execute(text(
            "SELECT q.price FROM price_quotes q JOIN companies c ON c.id = q.company_id "
            "WHERE c.symbol = :s ORDER BY q.quoted_at DESC LIMIT 1"
        ), {"s": symbol})).scalar_one()
    alert_id = await add_alert(
        engine, parse_alert({"user_id": user_id, "type": "price_above", "symbol": symbol, "threshold": price * Decimal("1.0005")})
    )
    t0 = time.time()
    await prices.store_quotes(engine, [quote(symbol, (price * Decimal("1.001")).quantize(Decimal("0.01")))])
    await client.start_workflow(
        "AlertMonitor", AlertMonitorInput(kind="price"), id=monitor_id("price"), task_queue=TASK_QUEUE,
        start_signal="new_data", start_signal_args=[NewDataInput(symbols=[symbol])],
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        async with engine.connect() as conn:
            history_id = (await conn.execute(
                text("SELECT id FROM alert_history WHERE alert_id = :a"), {"a": alert_id}
            )).scalar_one_or_none()
        if history_id is not None:
            with contextlib.suppress(RPCError):
                described = await client.get_workflow_handle(f"notify-{history_id}").describe()
                return described.start_time.timestamp() - t0
        await asyncio.sleep(0.005)
    raise RuntimeError(f"no notification started for probe alert {alert_id} within 30 s")


async def bench(server_url: str, alerts: int, probes: int) -> None:
    name = f"bench_latency_{secrets.token_hex(4)}"
    await eval_bench.admin(server_url, f'CREATE DATABASE "{name}"')
    url = eval_bench.with_database(server_url, name)
    engine = create_engine(url, pool_size=5)
    try:
        await upgrade_to_head(engine)
        started = time.monotonic()
        await eval_bench.seed(engine, url, alerts)
        print(f"seeded {alerts:,} price alerts on {eval_bench.COMPANIES:,} companies in {time.monotonic() - started:.1f} s (not timed)")
        settings = load_settings(
            _env_file=None, database_url=url, alphavantage_base_url="http://127.0.0.1:9",
            newsapi_base_url="http://127.0.0.1:9", openai_base_url="http://127.0.0.1:9/v1",
        )
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
            data_converter=DATA_CONVERTER, interceptors=interceptors(), search_attributes=search_attributes.ALL,
        )
        async with env, open_resources(settings) as resources, contextlib.AsyncExitStack() as stack:
            for worker in build_workers(env.client, settings, resources, task_queue=TASK_QUEUE):
                await stack.enter_async_context(worker)
            # Warm up: the monitor starts and settles (the seeded quotes are stale: nothing fires).
            await probe(engine, env.client, "B1", 1)
            latencies = [await probe(engine, env.client, f"B{n}", n) for n in range(2, probes + 2)]
    finally:
        await engine.dispose()
        await eval_bench.admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    latencies.sort()
    p50 = statistics.median(latencies)
    p90 = latencies[int(0.9 * (len(latencies) - 1))]
    p99 = latencies[int(0.99 * (len(latencies) - 1))]
    print(f"{len(latencies)} probes with {alerts:,} active alerts: stored price -> notification workflow started")
    print(f"  p50 {p50 * 1000:7.0f} ms   p90 {p90 * 1000:7.0f} ms   p99 {p99 * 1000:7.0f} ms   max {latencies[-1] * 1000:7.0f} ms")
    print(f"target: p50 <= {TARGET_P50:.0f} s: {'PASS' if p50 <= TARGET_P50 else 'FAIL'} ({p50:.3f} s)")
    print(f"target: p99 <= {TARGET_P99:.0f} s: {'PASS' if p99 <= TARGET_P99 else 'FAIL'} ({p99:.3f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python bench/alert_latency.py", description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=100_000)
    parser.add_argument("--probes", type=int, default=100)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    args = parser.parse_args()
    if not args.database_url:
        parser.error("--database-url or DATABASE_URL is required (a PostgreSQL server to create a database on)")
    server = load_settings(_env_file=None, database_url=args.database_url).database_url
    assert server is not None
    asyncio.run(bench(server, args.alerts, args.probes))


if __name__ == "__main__":
    main()
