"""Benchmark: the whole system at load on this machine, and the exactly-once invariant under it.

    python bench/load.py [--quick] [--workers 4] [--symbols 500] [--alerts 100000] [--users 3000]
                         [--syncs 30] [--interval 10] [--database-url URL]

Creates a database bench_load_<random> on the server of --database-url (default:
$DATABASE_URL), migrates it and drops it at the end (also after a failure). In this process:
the AlphaVantage stand-in (premium: REALTIME_BULK_QUOTES, 100 symbols a call, on a manual
clock), the NewsAPI and OpenAI stand-ins, an SMTP sink and a push sink that count what arrives
by Message-ID and idempotency key. The pip-installed Temporal dev server (in memory, with its
metrics endpoint), and `--workers` worker processes (`python worker.py`, every task queue).

Seeded (not timed): `--symbols` companies, `--users` users (email and a signed push webhook
each, 5 companies watched), one warm-up price sync (every company's first quote), then
`--alerts` price alerts (40% price_above, 40% price_below, 20% percent_change) with thresholds
placed on the stand-in's own deterministic price path so that about `--firing-share` of them
cross at some sync of the run, and the rest never do.

The run: `--syncs` price syncs (SyncCompanyPrices of every symbol, force: the real market may
be closed), one every `--interval` real seconds, the stand-in's clock one minute further each
time (a compressed clock: one simulated minute per interval). Beside them: news ingestion
(IngestMarketNews and IngestCompanyNews every few syncs) and the daily digest for every user
(SendDailyDigest, once). Then it waits for every firing's deliveries and the digest.

Printed: throughput, stored price -> started notification workflow (p50/p99), stored price ->
delivery at the sinks, Temporal actions per hour (the dev server's `action` counter), database
growth per simulated trading day, and lost and duplicated deliveries counted at the sinks
(every alert_history row once per channel: email and push). Exit status 1 if any delivery
was lost or duplicated, or a digest went out twice; a missed latency target alone does not
fail the run. What the figures were: bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import email
import email.policy
import json
import math
import os
import random
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import asyncpg
from aiosmtpd.controller import Controller
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from temporalio.client import Client  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from activities.alerts import monitor_id  # noqa: E402
from deallens.config import load_settings  # noqa: E402
from deallens.contracts import (  # noqa: E402
    DigestInput,
    DigestResult,
    IngestCompanyNewsInput,
    IngestMarketNewsInput,
    MonitorStatus,
    SyncCompanyPricesInput,
    SyncCompanyPricesResult,
)
from deallens.db.engine import create_engine  # noqa: E402
from deallens.db.migrate import upgrade_to_head  # noqa: E402
from deallens.domain.alert_rules import alert_params, parse_alert  # noqa: E402
from deallens.domain.universe import DemoCompany  # noqa: E402
from deallens.notify import push  # noqa: E402
from deallens.sim import alphavantage, newsapi, openai  # noqa: E402
from deallens.sim.clock import EASTERN, ManualClock, is_weekday  # noqa: E402
from deallens.sim.market import Market  # noqa: E402
from deallens.sim.serve import serve_asgi  # noqa: E402
from temporal_client import DATA_CONVERTER, interceptors  # noqa: E402

TASK_QUEUE = "deallens"
MAIL_DOMAIN = "load.deallens.local"
PUSH_SECRET = "load-push-secret"  # a test receiver's, not a credential
TARGET_P50, TARGET_P99 = 1.0, 3.0
SESSION_MINUTES = 390  # a trading day of one sync a minute
NEWS_EVERY = 5  # syncs between news ingestions
DRAIN_SECONDS = 240.0


@dataclass(frozen=True)
class Config:
    workers: int
    symbols: int
    alerts: int
    users: int
    syncs: int
    interval: float
    firing_share: float
    quick: bool


FULL = Config(workers=4, symbols=500, alerts=100_000, users=3_000, syncs=30, interval=10.0,
              firing_share=0.01, quick=False)
QUICK = Config(workers=2, symbols=40, alerts=4_000, users=200, syncs=4, interval=4.0,
               firing_share=0.02, quick=True)


def say(message: str) -> None:
    print(f"[load] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ sinks


@dataclass
class Arrivals:
    """What the sinks received, by key (Message-ID, idempotency key): how often, and when first."""

    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    first_at: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, key: str) -> None:
        now = time.time()
        with self.lock:
            self.counts[key] += 1
            self.first_at.setdefault(key, now)

    def snapshot(self) -> tuple[collections.Counter[str], dict[str, float]]:
        with self.lock:
            return collections.Counter(self.counts), dict(self.first_at)


class _SmtpCounter:
    """aiosmtpd handler: counts each accepted message by its Message-ID (headers only parsed)."""

    def __init__(self, arrivals: Arrivals) -> None:
        self.arrivals = arrivals

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        head = envelope.content.split(b"\r\n\r\n", 1)[0]
        parsed = email.message_from_bytes(head + b"\r\n\r\n", policy=email.policy.compat32)
        self.arrivals.add(str(parsed.get("Message-ID", "")).strip())
        return "250 OK"


def push_app(arrivals: Arrivals) -> Starlette:
    """Verifies each webhook's signature, as a receiver must, and counts it by idempotency key."""

    async def receive(request: Request) -> JSONResponse:
        body = await request.body()
        if not push.verify(PUSH_SECRET, request.headers, body, now=int(time.time())):
            return JSONResponse({"error": "bad or stale signature"}, status_code=401)
        arrivals.add(request.headers.get(push.IDEMPOTENCY_HEADER, ""))
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------ database


def with_database(url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def admin(server_url: str, statement: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def load_companies(count: int) -> list[DemoCompany]:
    """Symbols the stand-in does not know by itself (LD001 ...), prices from $10 to $500."""
    rand = random.Random(20_261_201)
    return [
        DemoCompany(f"LD{n:03d}", f"Load Company {n}", "TECHNOLOGY", "Software", "NASDAQ",
                    Decimal(rand.randrange(1_000, 50_000)).scaleb(-2))
        for n in range(1, count + 1)
    ]


async def seed_universe(engine: Any, companies: list[DemoCompany], users: int, push_url: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO companies (symbol, name, sector, industry, exchange) "
            "SELECT * FROM unnest(CAST(:s AS text[]), CAST(:n AS text[]), CAST(:sec AS text[]), "
            "CAST(:ind AS text[]), CAST(:ex AS text[]))"
        ), {"s": [c.symbol for c in companies], "n": [c.name for c in companies],
            "sec": [c.sector for c in companies], "ind": [c.industry for c in companies],
            "ex": [c.exchange for c in companies]})
        # A cap no run reaches: the invariant counted is one delivery per firing and channel.
        await conn.execute(text(
            "INSERT INTO users (email, name, daily_alert_cap, push_webhook_url, push_webhook_secret) "
            "SELECT 'user' || g || '@load.local', 'Load user ' || g, 100000, :push || '/push/' || g, :secret "
            "FROM generate_series(1, :n) g"
        ), {"n": users, "push": push_url, "secret": PUSH_SECRET})
        # Five companies each, spread evenly: every digest has a watchlist.
        await conn.execute(text(
            "INSERT INTO watchlist (user_id, company_id) "
            "SELECT u.id, c.id FROM users u JOIN LATERAL ("
            "  SELECT id FROM companies ORDER BY (id * 7919 + u.id * 104729) % 1000003 LIMIT 5) c ON true"
        ))


@dataclass(frozen=True)
class PricePath:
    """One company's prices at the syncs of the run (minute 1..syncs) and its reference."""

    company_id: int
    symbol: str
    start: Decimal  # the warm-up sync's stored price
    previous_close: Decimal
    prices: list[Decimal]


def sim_minute(start: dt.datetime, minute: int) -> dt.datetime:
    return start + dt.timedelta(minutes=minute)


def price_paths(companies: list[DemoCompany], ids: dict[str, int], start: dt.datetime, syncs: int) -> list[PricePath]:
    """The stand-in's prices at each sync, computed from the same deterministic market."""
    market = Market(0)
    paths = []
    for company in companies:
        first = market.quote(company, start)
        prices = [Decimal(str(market.quote(company, sim_minute(start, k)).bar.close)) for k in range(1, syncs + 1)]
        paths.append(PricePath(ids[company.symbol], company.symbol, Decimal(str(first.bar.close)),
                           Decimal(str(first.previous_close)), prices))
    return paths


def alert_definition(rand: random.Random, path: PricePath, fires: bool) -> dict[str, Any]:
    """A price alert on `path`'s company that crosses at some sync of the run if `fires`
    (its threshold between the starting price and the run's extreme), else never does (beyond
    the extreme). Falls back to a never-firing one when the path does not move that way."""
    roll = rand.random()
    cent = Decimal("0.01")
    if roll < 0.4:
        top = max(path.prices)
        if fires and top > path.start + cent:
            threshold = (path.start + (top - path.start) * Decimal(rand.uniform(0.05, 0.95))).quantize(cent, ROUND_FLOOR)
            if path.start < threshold < top:
                return {"type": "price_above", "symbol": path.symbol, "threshold": threshold}
        return {"type": "price_above", "symbol": path.symbol,
                "threshold": (top * Decimal(1 + rand.uniform(0.001, 0.3))).quantize(cent, ROUND_CEILING)}
    if roll < 0.8:
        bottom = min(path.prices)
        if fires and bottom < path.start - cent:
            threshold = (path.start - (path.start - bottom) * Decimal(rand.uniform(0.05, 0.95))).quantize(cent, ROUND_CEILING)
            if bottom < threshold < path.start:
                return {"type": "price_below", "symbol": path.symbol, "threshold": threshold}
        return {"type": "price_below", "symbol": path.symbol,
                "threshold": (bottom * Decimal(1 - rand.uniform(0.001, 0.3))).quantize(cent, ROUND_FLOOR)}
    moves = [abs(p - path.previous_close) * 100 / path.previous_close for p in path.prices]
    begin = abs(path.start - path.previous_close) * 100 / path.previous_close
    tenth = Decimal("0.1")
    if fires and max(moves) > begin + tenth:
        percent = (begin + (max(moves) - begin) * Decimal(rand.uniform(0.05, 0.95))).quantize(tenth, ROUND_CEILING)
        if begin < percent <= max(moves):
            return {"type": "percent_change", "symbol": path.symbol, "percent": percent}
    percent = max(Decimal("0.5"), max(moves) * Decimal(1 + rand.uniform(0.05, 2))).quantize(tenth, ROUND_CEILING)
    return {"type": "percent_change", "symbol": path.symbol, "percent": min(percent, Decimal(50))}


async def seed_alerts(url: str, paths: list[PricePath], user_ids: list[int], cfg: Config) -> None:
    rand = random.Random(20_261_202)
    now = dt.datetime.now(dt.UTC)
    records = []
    for _ in range(cfg.alerts):
        path = paths[rand.randrange(len(paths))]
        user_id = rand.choice(user_ids)
        rule = parse_alert({"user_id": user_id, **alert_definition(rand, path, rand.random() < cfg.firing_share)})
        # Evaluated already: they read the quotes after the warm-up one, as in the steady state.
        records.append((user_id, path.company_id, "price", json.dumps(alert_params(rule)), now, now))
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.copy_records_to_table(
            "alerts", records=records, columns=("user_id", "company_id", "kind", "params", "created_at", "evaluated_at")
        )
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def database_size(engine: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT pg_database_size(current_database())"))).scalar_one())


# ------------------------------------------------------------------ Temporal


def scrape_actions(port: int) -> float:
    """The dev server's `action` counter (billable actions), summed over its label sets."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:  # noqa: S310 - loopback
        body = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if re.match(r"action(\{| )", line))


async def start_workers(cfg: Config, env: dict[str, str], logs: Path) -> list[subprocess.Popen[bytes]]:
    processes = []
    for n in range(cfg.workers):
        out = (logs / f"worker-{n}.log").open("wb")
        processes.append(subprocess.Popen(
            [sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        ))
    return processes


def stop_workers(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def notification_starts(client: Client) -> tuple[dict[int, float], dict[dt.datetime, float]]:
    """Start times of notify-<history id> and of notify-batch-<kind>-<triggered_at> (their first run)."""
    singles: dict[int, float] = {}
    batches: dict[dt.datetime, float] = {}
    query = "WorkflowType = 'SendAlertNotification' OR WorkflowType = 'SendAlertNotificationBatch'"
    async for execution in client.list_workflows(query):
        started = execution.start_time.timestamp()
        if execution.id.startswith("notify-batch-"):
            at = dt.datetime.fromisoformat(execution.id.split("-", 3)[3])
            batches[at] = min(started, batches.get(at, started))
        elif execution.id.startswith("notify-"):
            history_id = int(execution.id.removeprefix("notify-"))
            singles[history_id] = min(started, singles.get(history_id, started))
    return singles, batches


async def evaluate_activities(client: Client) -> tuple[list[float], list[float], list[float], list[float]]:
    """Per `alerts.evaluate` activity of the price monitor (every run of it): seconds from
    scheduled to started (waiting for a worker slot and a poll) and from started to completed
    (the evaluation itself); then for the workflow task that follows (the one starting the
    notifications): scheduled to started (waiting for the sticky worker to pick it up) and
    started to completed (running it). Where the time from evaluation to notification goes."""
    waits, runs, task_waits, task_runs = [], [], [], []
    async for execution in client.list_workflows(f"WorkflowId = '{monitor_id('price')}'"):
        history = await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
        scheduled: dict[int, float] = {}
        started: dict[int, float] = {}
        after_evaluation = False
        task_scheduled = task_started = None
        for event in history.events:
            at = event.event_time.ToDatetime(dt.UTC).timestamp()
            if event.HasField("activity_task_scheduled_event_attributes"):
                if event.activity_task_scheduled_event_attributes.activity_type.name == "alerts.evaluate":
                    scheduled[event.event_id] = at
            elif event.HasField("activity_task_started_event_attributes"):
                key = event.activity_task_started_event_attributes.scheduled_event_id
                if key in scheduled:
                    started[key] = at
                    waits.append(at - scheduled[key])
            elif event.HasField("activity_task_completed_event_attributes"):
                key = event.activity_task_completed_event_attributes.scheduled_event_id
                if key in started:
                    runs.append(at - started[key])
                    after_evaluation, task_scheduled = True, None
            elif after_evaluation and event.HasField("workflow_task_scheduled_event_attributes"):
                task_scheduled = at
            elif after_evaluation and task_scheduled and event.HasField("workflow_task_started_event_attributes"):
                task_started = at
                task_waits.append(at - task_scheduled)
            elif after_evaluation and task_started and event.HasField("workflow_task_completed_event_attributes"):
                task_runs.append(at - task_started)
                after_evaluation, task_scheduled, task_started = False, None, None
    return waits, runs, task_waits, task_runs


# ------------------------------------------------------------------ figures


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def seconds_line(label: str, values: list[float]) -> str:
    if not values:
        return f"  {label:<48} (none)"
    return (f"  {label:<48} p50 {statistics.median(values):6.3f} s   p99 {percentile(values, 0.99):6.3f} s   "
            f"max {max(values):6.3f} s   ({len(values):,})")


@dataclass
class LoadAverage:
    samples: list[float] = field(default_factory=list)

    async def sample(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.samples.append(os.getloadavg()[0])
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)


def session_start(now: dt.datetime) -> dt.datetime:
    """10:00 New York time of the latest weekday session that ended before `now`: the
    stand-in's clock runs through it (the real market may be closed while the bench runs)."""
    day = now.astimezone(EASTERN).date()
    while True:
        opened = dt.datetime.combine(day, dt.time(10, 0), tzinfo=EASTERN)
        if is_weekday(day) and opened + dt.timedelta(hours=6) <= now:
            return opened.astimezone(dt.UTC)
        day -= dt.timedelta(days=1)


# ------------------------------------------------------------------ the run


async def bench(server_url: str, cfg: Config) -> int:
    name = f"bench_load_{secrets.token_hex(4)}"
    await admin(server_url, f'CREATE DATABASE "{name}"')
    url = with_database(server_url, name)
    engine = create_engine(url, pool_size=4)
    logs = Path(tempfile.mkdtemp(prefix="deallens-load-"))
    smtp_arrivals, push_arrivals = Arrivals(), Arrivals()
    workers: list[subprocess.Popen[bytes]] = []
    try:
        await upgrade_to_head(engine)
        companies = load_companies(cfg.symbols)
        start = session_start(dt.datetime.now(dt.UTC))
        clock = ManualClock(start)
        metrics_port = free_port()
        smtp = Controller(_SmtpCounter(smtp_arrivals), hostname="127.0.0.1", port=free_port())
        smtp.start()
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(smtp.stop)
            av_url = await stack.enter_async_context(serve_asgi(alphavantage.make_app(
                seed=0, clock=clock, premium=True, companies=companies)))
            news_url = await stack.enter_async_context(serve_asgi(newsapi.make_app(seed=0)))
            openai_url = await stack.enter_async_context(serve_asgi(openai.make_app(seed=0)))
            push_url = await stack.enter_async_context(serve_asgi(push_app(push_arrivals)))
            env = await stack.enter_async_context(await WorkflowEnvironment.start_local(
                dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
                dev_server_extra_args=["--metrics-port", str(metrics_port), "--log-level", "error"],
                data_converter=DATA_CONVERTER, interceptors=interceptors(),
            ))
            client = env.client
            await seed_universe(engine, companies, cfg.users, push_url)
            worker_env = {
                **{k: v for k, v in os.environ.items() if not k.startswith(("DEALLENS_", "DEVSTACK_"))},
                "DATABASE_URL": url, "TEMPORAL_ADDRESS": client.service_client.config.target_host,
                "ALPHAVANTAGE_BASE_URL": av_url, "ALPHAVANTAGE_API_KEY": "load-bench", "ALPHAVANTAGE_PREMIUM": "true",
                "ALPHAVANTAGE_CALLS_PER_MINUTE": "600", "ALPHAVANTAGE_CALLS_PER_DAY": "10000000",
                "PRICE_SYNC_MAX_SYMBOLS": str(math.ceil(cfg.symbols / 100) + 1),
                "NEWSAPI_BASE_URL": news_url, "NEWS_API_KEY": "load-bench", "NEWSAPI_CALLS_PER_DAY": "100000",
                "NEWSAPI_CALLS_PER_MINUTE": "600", "OPENAI_BASE_URL": f"{openai_url}/v1", "OPENAI_API_KEY": "load-bench",
                "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp.port), "SMTP_TLS": "none",
                "MAIL_FROM": f"DealLens <alerts@{MAIL_DOMAIN}>", "PUSH_ALLOW_PRIVATE_HOSTS": "true", "LOG_LEVEL": "WARNING",
                # The stand-in's session is an earlier one (module docstring): its quotes are not stale.
                "ALERT_MAX_QUOTE_AGE_SECONDS": str(7 * 86_400),
            }
            workers = await start_workers(cfg, worker_env, logs)
            symbols = [c.symbol for c in companies]
            say(f"{cfg.workers} workers starting; warm-up sync of {len(symbols)} symbols at {start:%Y-%m-%d %H:%M} UTC (simulated)")
            warm = await client.execute_workflow(
                "SyncCompanyPrices", SyncCompanyPricesInput(symbols=symbols, force=True), id="load-sync-0",
                task_queue=TASK_QUEUE, execution_timeout=dt.timedelta(minutes=5), result_type=SyncCompanyPricesResult,
            )
            if warm.stored != len(symbols):
                raise SystemExit(f"warm-up sync stored {warm.stored} of {len(symbols)} quotes: {warm.symbols[:3]}")
            async with engine.connect() as conn:
                ids = {r.symbol: r.id for r in await conn.execute(text("SELECT symbol, id FROM companies"))}
                user_ids = list((await conn.execute(text("SELECT id FROM users ORDER BY id"))).scalars())
                # Wait until the monitor has read the warm-up quotes (its cursor): alerts then see the run's only.
                for _ in range(300):
                    cursors = (await conn.execute(text("SELECT count(*) FROM alert_cursors WHERE kind = 'price'"))).scalar_one()
                    if cursors >= len(symbols):
                        break
                    await asyncio.sleep(0.1)
                    await conn.commit()
            paths = price_paths(companies, ids, start, cfg.syncs)
            seeded = time.monotonic()
            await seed_alerts(url, paths, user_ids, cfg)
            say(f"seeded {cfg.alerts:,} alerts on {cfg.symbols} symbols for {cfg.users:,} users in {time.monotonic() - seeded:.1f} s")

            size_before = await database_size(engine)
            actions_before = scrape_actions(metrics_port)
            stop_sampling = asyncio.Event()
            load = LoadAverage()
            sampler = asyncio.create_task(load.sample(stop_sampling))
            run_started = time.time()
            load_from = dt.datetime.now(dt.UTC)
            handles = []
            for k in range(1, cfg.syncs + 1):
                due = run_started + (k - 1) * cfg.interval
                await asyncio.sleep(max(0.0, due - time.time()))
                clock.set(sim_minute(start, k))
                handles.append(await client.start_workflow(
                    "SyncCompanyPrices", SyncCompanyPricesInput(symbols=symbols, force=True), id=f"load-sync-{k}",
                    task_queue=TASK_QUEUE, execution_timeout=dt.timedelta(minutes=10),
                ))
                if k % NEWS_EVERY == 1:
                    handles.append(await client.start_workflow(
                        "IngestMarketNews", IngestMarketNewsInput(), id=f"load-news-market-{k}", task_queue=TASK_QUEUE,
                        execution_timeout=dt.timedelta(minutes=10),
                    ))
                    handles.append(await client.start_workflow(
                        "IngestCompanyNews", IngestCompanyNewsInput(), id=f"load-news-company-{k}", task_queue=TASK_QUEUE,
                        execution_timeout=dt.timedelta(minutes=10),
                    ))
                if k == min(2, cfg.syncs):
                    digest = await client.start_workflow(
                        "SendDailyDigest", DigestInput(date=dt.datetime.now(dt.UTC).date()), id="load-digest",
                        task_queue=TASK_QUEUE, execution_timeout=dt.timedelta(minutes=30), result_type=DigestResult,
                    )
            syncs_sent = time.time()
            say(f"{cfg.syncs} syncs started over {syncs_sent - run_started:.0f} s; waiting for them and for the deliveries")
            for handle in handles:
                await handle.result()
            syncs_done = time.time()
            await wait_for_deliveries(engine, client, smtp_arrivals, push_arrivals)
            digest_result = await digest.result()
            finished = time.time()
            stop_sampling.set()
            await sampler
            size_after = await database_size(engine)
            actions_after = scrape_actions(metrics_port)
            status = await client.get_workflow_handle(monitor_id("price")).query("status", result_type=MonitorStatus)
            singles, batches = await notification_starts(client)
            described = await digest.describe()
            window = (described.start_time.timestamp(), described.close_time.timestamp()) if described.close_time else None
            evaluations = await evaluate_activities(client)
            figures = await collect(engine, load_from, smtp_arrivals, push_arrivals, singles, batches, start, window,
                                    evaluations)
        return report(cfg, figures, status, digest_result, load, run_started=run_started, syncs_done=syncs_done,
                      finished=finished, size_before=size_before, size_after=size_after,
                      actions=actions_after - actions_before, smtp=smtp_arrivals)
    finally:
        stop_workers(workers)
        await engine.dispose()
        await admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        say(f"worker logs: {logs}")


async def wait_for_deliveries(engine: Any, client: Client, smtp: Arrivals, pushes: Arrivals) -> None:
    """Until every firing has reached both sinks, no notification workflow is running and the
    firings stopped growing for a few checks (or DRAIN_SECONDS without progress)."""
    last, idle_since, settled = -1, time.monotonic(), 0
    running = "ExecutionStatus = 'Running' AND WorkflowType STARTS_WITH 'SendAlertNotification'"
    while time.monotonic() - idle_since < DRAIN_SECONDS:
        async with engine.connect() as conn:
            firings = (await conn.execute(text("SELECT count(*) FROM alert_history"))).scalar_one()
        emails = sum(1 for key in smtp.snapshot()[0] if key.startswith("<alert-"))
        arrived = emails + len(pushes.snapshot()[0])
        busy = (await client.count_workflows(running)).count
        settled = settled + 1 if arrived >= 2 * firings and busy == 0 else 0
        if settled >= 4:
            return
        if arrived != last:
            last, idle_since = arrived, time.monotonic()
        await asyncio.sleep(0.5)
    say(f"gave up waiting: no delivery for {DRAIN_SECONDS:.0f} s")


@dataclass
class Figures:
    quotes: int
    firings: int
    lost: int
    duplicated: int
    unexpected: int
    to_start: list[float]
    to_evaluation: list[float]  # stored -> the evaluation that fired it (its triggered_at)
    evaluation_to_start: list[float]
    slowest: list[tuple[float, int, float, float]]  # (to start, sync, to evaluation, evaluation to start)
    evaluate_waits: list[float]
    evaluate_runs: list[float]
    task_waits: list[float]
    task_runs: list[float]
    digest_window: tuple[float, float] | None
    to_start_in_digest: list[float]
    to_email: list[float]
    to_push: list[float]
    deliveries: int
    first_fired: float | None
    last_delivered: float | None


async def collect(engine: Any, since: dt.datetime, smtp: Arrivals, pushes: Arrivals,
                  singles: dict[int, float], batches: dict[dt.datetime, float], start: dt.datetime,
                  digest_window: tuple[float, float] | None,
                  evaluations: tuple[list[float], list[float], list[float], list[float]]) -> Figures:
    async with engine.connect() as conn:
        quotes = (await conn.execute(text("SELECT count(*) FROM price_quotes WHERE created_at >= :t"), {"t": since})).scalar_one()
        rows = (await conn.execute(text(
            "SELECT h.id, h.triggered_at, h.data_at, extract(epoch FROM q.created_at) AS stored_at "
            "FROM alert_history h LEFT JOIN price_quotes q ON 'price:' || q.id = h.dedup_key ORDER BY h.id"
        ))).all()
    emails, email_at = smtp.snapshot()
    pushed, push_at = pushes.snapshot()
    expected_email = {f"<alert-{r.id}-email@{MAIL_DOMAIN}>" for r in rows}
    expected_push = {f"alert-{r.id}-push" for r in rows}
    alert_emails = {k: n for k, n in emails.items() if k.startswith("<alert-")}
    lost = len(expected_email - alert_emails.keys()) + len(expected_push - pushed.keys())
    duplicated = sum(n - 1 for n in alert_emails.values() if n > 1) + sum(n - 1 for n in pushed.values() if n > 1)
    unexpected = len(alert_emails.keys() - expected_email) + len(pushed.keys() - expected_push)
    to_start, to_email, to_push, to_evaluation, evaluation_to_start = [], [], [], [], []
    slowest, in_digest = [], []
    for r in rows:
        if r.stored_at is None:
            continue
        stored = float(r.stored_at)
        to_evaluation.append(r.triggered_at.timestamp() - stored)
        started = singles.get(r.id, batches.get(r.triggered_at))
        if started is not None:
            to_start.append(started - stored)
            evaluation_to_start.append(started - r.triggered_at.timestamp())
            sync = round((r.data_at - start).total_seconds() / 60)
            slowest.append((started - stored, sync, r.triggered_at.timestamp() - stored, started - r.triggered_at.timestamp()))
            if digest_window and digest_window[0] <= stored <= digest_window[1]:
                in_digest.append(started - stored)
        if (at := email_at.get(f"<alert-{r.id}-email@{MAIL_DOMAIN}>")) is not None:
            to_email.append(at - stored)
        if (at := push_at.get(f"alert-{r.id}-push")) is not None:
            to_push.append(at - stored)
    deliveries = sum(alert_emails.values()) + sum(pushed.values())
    arrivals = [t for k, t in email_at.items() if k.startswith("<alert-")] + list(push_at.values())
    return Figures(
        quotes=quotes, firings=len(rows), lost=lost, duplicated=duplicated, unexpected=unexpected,
        to_start=to_start, to_evaluation=to_evaluation, evaluation_to_start=evaluation_to_start,
        slowest=sorted(slowest, reverse=True)[:5], evaluate_waits=evaluations[0], evaluate_runs=evaluations[1],
        task_waits=evaluations[2], task_runs=evaluations[3],
        digest_window=digest_window, to_start_in_digest=in_digest,
        to_email=to_email, to_push=to_push, deliveries=deliveries,
        first_fired=min((r.triggered_at.timestamp() for r in rows), default=None),
        last_delivered=max(arrivals, default=None),
    )


def report(cfg: Config, f: Figures, status: Any, digest: Any, load: LoadAverage, *, run_started: float,
           syncs_done: float, finished: float, size_before: int, size_after: int, actions: float,
           smtp: Arrivals) -> int:
    wall = syncs_done - run_started
    simulated_minutes = cfg.syncs
    digest_ids = [k for k in smtp.snapshot()[0] if k.startswith("<digest-")]
    digest_dups = sum(n - 1 for k, n in smtp.snapshot()[0].items() if k.startswith("<digest-") and n > 1)
    print(f"load: {cfg.workers} worker processes, {cfg.alerts:,} active price alerts on {cfg.symbols} symbols, "
          f"{cfg.users:,} users; {cfg.syncs} price syncs (bulk quotes), one every {cfg.interval:g} s real "
          f"= 1 simulated minute; news every {NEWS_EVERY} syncs; the daily digest for every user")
    print(f"machine: {os.cpu_count()} CPUs; load average during the run min {min(load.samples):.1f} "
          f"mean {statistics.mean(load.samples):.1f} max {max(load.samples):.1f}")
    print(f"run: syncs {wall:.1f} s (start of the first to end of the last), everything delivered after "
          f"{finished - run_started:.1f} s")
    print("throughput")
    print(f"  quotes stored          {f.quotes:>9,}   {f.quotes / wall:8.1f}/s")
    evaluated = status.evaluations * cfg.alerts
    print(f"  alerts evaluated       {evaluated:>9,}   {evaluated / wall:8.0f}/s   "
          f"({status.evaluations} evaluations of {cfg.alerts:,})")
    span = (f.last_delivered - f.first_fired) if f.first_fired and f.last_delivered else float("nan")
    print(f"  firings                {f.firings:>9,}   ({f.firings / cfg.alerts:.2%} of the alerts over the run)")
    print(f"  notifications          {f.deliveries:>9,}   {f.deliveries / span:8.1f}/s   (email + push, first firing "
          f"to last arrival {span:.1f} s)")
    took = f"{f.digest_window[1] - f.digest_window[0]:.1f} s, " if f.digest_window else ""
    print(f"  digests                {len(digest_ids):>9,}   ({took}sent {digest.counts.sent}, failed {digest.counts.failed}, "
          f"skipped {digest.counts.skipped} of {digest.users:,} eligible)")
    print("latency (from the quote's stored_at)")
    print(seconds_line("-> notification workflow started", f.to_start))
    print(seconds_line("   of which -> the evaluation that fired it", f.to_evaluation))
    print(seconds_line("   of which evaluation -> notification started", f.evaluation_to_start))
    if f.digest_window:
        print(seconds_line("   stored while the digest ran -> started", f.to_start_in_digest))
    print(seconds_line("   evaluate activity: scheduled -> started", f.evaluate_waits))
    print(seconds_line("   evaluate activity: started -> completed", f.evaluate_runs))
    print(seconds_line("   next workflow task: scheduled -> started", f.task_waits))
    print(seconds_line("   next workflow task: started -> completed", f.task_runs))
    print("  slowest: " + "; ".join(
        f"sync {sync}: {total:.2f} s ({evaluation:.2f} + {after:.2f})" for total, sync, evaluation, after in f.slowest))
    print(seconds_line("-> email at the SMTP sink", f.to_email))
    print(seconds_line("-> push at the webhook sink", f.to_push))
    per_hour = actions / simulated_minutes * 60
    print(f"Temporal actions: {actions:,.0f} in the run = {per_hour:,.0f} per hour at one sync a minute "
          f"({actions / wall * 3600:,.0f} per real hour of this compressed run)")
    grown = size_after - size_before
    print(f"database: +{grown / 2**20:.1f} MiB over {simulated_minutes} simulated minutes = "
          f"{grown / simulated_minutes * SESSION_MINUTES / 2**20:,.0f} MiB per simulated trading day "
          f"({SESSION_MINUTES} syncs; before retention)")
    print(f"deliveries: {f.firings:,} firings x 2 channels: lost {f.lost}, duplicated {f.duplicated}, "
          f"unexpected {f.unexpected}; digests duplicated {digest_dups}")
    ok = f.lost == 0 and f.duplicated == 0 and f.unexpected == 0 and digest_dups == 0 and f.firings > 0
    print(f"check: 0 lost, 0 duplicated: {'OK' if ok else 'FAILED'}")
    if f.to_start:
        p50, p99 = statistics.median(f.to_start), percentile(f.to_start, 0.99)
        print(f"target: p50 <= {TARGET_P50:.0f} s: {'PASS' if p50 <= TARGET_P50 else 'FAIL'} ({p50:.3f} s)")
        print(f"target: p99 <= {TARGET_P99:.0f} s: {'PASS' if p99 <= TARGET_P99 else 'FAIL'} ({p99:.3f} s)")
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(prog="python bench/load.py", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small numbers (what tests/test_bench_load.py runs)")
    for option, kind in (("workers", int), ("symbols", int), ("alerts", int), ("users", int), ("syncs", int),
                         ("interval", float), ("firing-share", float)):
        parser.add_argument(f"--{option}", type=kind, default=None)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    args = parser.parse_args()
    if not args.database_url:
        parser.error("--database-url or DATABASE_URL is required (a PostgreSQL server to create a database on)")
    base = QUICK if args.quick else FULL
    overrides = {k: v for k, v in vars(args).items() if k in Config.__dataclass_fields__ and v is not None}
    cfg = Config(**{**base.__dict__, **overrides})
    if not 1 <= cfg.symbols <= 1000 or cfg.alerts < 1 or cfg.users < 1 or cfg.syncs < 1 or cfg.workers < 1:
        parser.error("--symbols must be 1..1000, and --alerts, --users, --syncs, --workers at least 1")
    if cfg.interval <= 0 or not 0 < cfg.firing_share <= 1:
        parser.error("--interval must be > 0 and --firing-share within (0, 1]")
    server = load_settings(_env_file=None, database_url=args.database_url).database_url
    assert server is not None
    from temporal_client import exit_skipping_teardown

    exit_skipping_teardown(asyncio.run(bench(server, cfg)))


if __name__ == "__main__":
    main()
