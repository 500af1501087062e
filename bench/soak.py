"""Soak: many process-fault trials in a row, and optionally a long SMTP relay outage.

    python bench/soak.py [--trials 200] [--seed N] [--real-timeouts] [--smtp-outage 600] [--database-url URL]

Each trial is one of tests/test_fault_process.py's (tests/faults.py): a workload (price sync,
daily bars, news ingestion, alert evaluation, alert delivery, digest batches, insight
generation) on a real worker process that is SIGKILLed after a random delay inside the
workflow's running window, then a new worker: the workflow must complete, no partial batch
may be visible at the kill, nothing may be stored or delivered twice (but the one message in
flight, with the same id), nothing lost. `--real-timeouts` runs the worker without the
fault worker's timeout cap (recovery then waits the production heartbeat and start-to-close
timeouts: minutes per trial).

`--smtp-outage S` then stops the SMTP relay for S seconds under the real worker (production
retry policies) with alert emails and digests to send, restarts it, and counts what arrived
and what was parked.

Creates a database bench_soak_<random> on the server of --database-url (default
$DATABASE_URL), starts its own Temporal dev server, and drops the database at the end.
Prints each trial's line and the totals: trials, seed, held, lost, duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deallens.config import load_settings  # noqa: E402
from deallens.contracts import DigestInput, DigestResult, NotificationResult, SendAlertNotificationBatchInput  # noqa: E402
from deallens.db.engine import create_engine  # noqa: E402
from deallens.db.migrate import upgrade_to_head  # noqa: E402
from deallens.db.models import Base  # noqa: E402
from tests.conftest import TEMPORAL_CLI, dev_server_address  # noqa: E402
from tests.faults import Outcome, plan, rows, run_trial, running_stack  # noqa: E402
from tests.notify_data import make_users, seed_market, watch  # noqa: E402
from tests.test_fault_infra import RestartableSink, Worker, burst  # noqa: E402
from temporal_client import DATA_CONVERTER, interceptors  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def truncate(db: AsyncEngine) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    async with db.begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


def classify(error: BaseException) -> str:
    message = str(error)
    if "missing" in message or "not within" in message or "never had" in message:
        return "lost"
    if "more than once" in message or "twice" in message or "partial" in message or "partly" in message:
        return "duplicated"
    return "other"


async def soak(args: argparse.Namespace, database_url: str, env: WorkflowEnvironment, workdir: Path) -> int:
    db = create_engine(database_url, pool_size=4)
    address = dev_server_address(env.client)
    failures: collections.Counter[str] = collections.Counter()
    outcomes: list[Outcome] = []
    trials = plan(args.seed, args.trials)
    started = time.monotonic()
    try:
        async with running_stack(database_url, address, timeout_cap_s=0 if args.real_timeouts else 6) as stack:
            for trial in trials:
                await truncate(db)
                try:
                    outcome = await run_trial(db, env.client, stack, trial, workdir / f"{trial.label}.log")
                except AssertionError as error:
                    kind = classify(error)
                    failures[kind] += 1
                    print(f"[soak seed={args.seed}] {trial.label}: FAILED ({kind}): {str(error).splitlines()[0]}", flush=True)
                    continue
                outcomes.append(outcome)
                print(outcome.line(args.seed), flush=True)
            mid = sum(o.mid_run for o in outcomes)
            resent = sum(o.in_flight_resent for o in outcomes)
            by_kind = collections.Counter(o.trial.kind for o in outcomes)
            print(
                f"soak: trials={len(trials)} seed={args.seed} held={len(outcomes)} lost={failures['lost']} "
                f"duplicated={failures['duplicated']} other failures={failures['other']} killed mid-run={mid} "
                f"in-flight re-sends (same id)={resent} in {time.monotonic() - started:.0f} s; "
                f"per workload: {dict(sorted(by_kind.items()))}",
                flush=True,
            )
            if args.smtp_outage:
                await truncate(db)
                failures["smtp"] += await smtp_outage(db, stack, env, args.smtp_outage, workdir)
    finally:
        await db.dispose()
    return 1 if sum(failures.values()) else 0


async def smtp_outage(db: AsyncEngine, stack: object, env: WorkflowEnvironment, seconds: float, workdir: Path) -> int:
    relay = RestartableSink()
    relay.start()
    stack.sink = relay.sink  # type: ignore[attr-defined]
    ids, at = await burst(db, stack, 10, push=False)  # type: ignore[arg-type]
    readers = await make_users(db, 10, start=100)
    market = await seed_market(db, ["AAPL"], until=dt.date(2026, 11, 27))
    await watch(db, readers, list(market.values()))
    worker = Worker(stack.env(), workdir / "smtp-outage.log", capped=False)  # type: ignore[attr-defined]
    await worker.start()
    try:
        relay.stop()
        tag = secrets.token_hex(3)
        batch = await env.client.start_workflow(
            "SendAlertNotificationBatch", SendAlertNotificationBatchInput(kind="price", triggered_at=at),
            id=f"soak-smtp-batch-{tag}", task_queue="deallens", result_type=NotificationResult,
        )
        digest = await env.client.start_workflow(
            "SendDailyDigest", DigestInput(date=dt.date(2026, 12, 1), user_ids=readers),
            id=f"soak-smtp-digest-{tag}", task_queue="deallens", result_type=DigestResult,
        )
        print(f"smtp outage: relay down for {seconds:.0f} s ...", flush=True)
        await asyncio.sleep(seconds)
        relay.start()
        back = time.monotonic()
        sent, digested = await asyncio.wait_for(asyncio.gather(batch.result(), digest.result()), 1800)
        waited = time.monotonic() - back
        await asyncio.sleep(1)
    finally:
        await worker.stop()
        relay.stop()
    arrived = collections.Counter(relay.sink.message_ids())
    parked = sent.counts.failed + digested.counts.failed
    twice = sum(n - 1 for n in arrived.values() if n > 1)
    expected = len(ids) + len(readers)
    lost = expected - len(arrived)
    attempts = sorted({a for (a,) in await rows(db, "SELECT attempts FROM notification_deliveries")})
    print(
        f"smtp outage {seconds:.0f} s: {len(ids)} alert emails + {len(readers)} digests; arrived {len(arrived)} "
        f"({waited:.0f} s after the relay returned), lost {lost}, duplicated {twice}, parked {parked}, "
        f"ledger attempts {attempts}",
        flush=True,
    )
    return int(bool(parked or lost or twice))


async def main_async(args: argparse.Namespace) -> int:
    raw = args.database_url or os.environ.get("DATABASE_URL")
    server = load_settings(database_url=raw, _env_file=None).database_url if raw else None
    if not server:
        print("soak: --database-url or DATABASE_URL: a PostgreSQL server to create the soak database on", file=sys.stderr)
        return 2
    name = f"bench_soak_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(_dsn(server))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = _with_database(server, name)
    try:
        engine = create_engine(url, pool_size=1)
        try:
            await upgrade_to_head(engine)
        finally:
            await engine.dispose()
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(TEMPORAL_CLI), data_converter=DATA_CONVERTER, interceptors=interceptors()
        )
        async with env:
            with tempfile.TemporaryDirectory(prefix="soak-") as workdir:
                return await soak(args, url, env, Path(workdir))
    finally:
        admin = await asyncpg.connect(_dsn(server))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python bench/soak.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=200, help="process-fault trials (default 200)")
    parser.add_argument("--seed", type=int, default=None, help="replay a sequence (default: a random seed, printed)")
    parser.add_argument("--real-timeouts", action="store_true", help="no timeout cap: production recovery times")
    parser.add_argument("--smtp-outage", type=float, default=0, metavar="S", help="then stop the relay S seconds (e.g. 600)")
    parser.add_argument("--database-url", default=None, help="PostgreSQL server (default $DATABASE_URL)")
    args = parser.parse_args()
    if args.trials < 0:
        parser.error("--trials: must be 0 or more")
    if args.smtp_outage < 0:
        parser.error("--smtp-outage: seconds must be 0 or more")
    if args.seed is None:
        import random

        args.seed = random.SystemRandom().randrange(1_000_000)
    print(f"soak: seed={args.seed} trials={args.trials} smtp outage={args.smtp_outage:.0f} s", flush=True)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
