"""The process-fault harness shared by tests/test_fault_process.py and bench/soak.py.

One trial: a workload is seeded, a real worker process (`python -m tests.fault_worker`, i.e.
worker.py with its activity timeouts capped) is started, the workload's workflow is started,
the worker is SIGKILLed after a random delay inside the workflow's running window (the
stand-ins' latency faults and a slow SMTP sink widen that window), the database is checked
for partial batches *at that moment*, a new worker process is started, and the workflow must
then complete with nothing lost and nothing stored or delivered twice.

Everything is seeded: `plan(seed, count)` draws each trial's workload and delay from one
random.Random(seed), so the printed seed replays the same sequence (FAULT_SEED).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy

from deallens.contracts import (
    AlertMonitorInput,
    DigestInput,
    DigestResult,
    FetchedQuote,
    GenerateInsightsResult,
    IngestNewsRunResult,
    NewDataInput,
    NotificationResult,
    SendAlertNotificationBatchInput,
    SyncCompanyPricesResult,
    SyncDailyOHLCResult,
)
from deallens.db.alerts import add_alert
from deallens.db.prices import store_quotes
from deallens.domain.alert_rules import parse_alert
from deallens.notify import push
from deallens.sim import alphavantage, newsapi, openai
from deallens.sim.serve import serve_asgi
from tests.insight_data import seed_universe
from tests.notify_data import fire, make_users, seed_market, watch
from tests.smtp_sink import Sink, smtp_sink

ROOT = Path(__file__).resolve().parents[1]
QUEUE = "deallens"
PUSH_SECRET = "fault-test-webhook-secret"
MONITORS = ("price", "volume", "news", "deal")
# Each workload: (low, high) of the kill delay in seconds after the workflow starts, chosen
# inside its running window with the latency faults below.
WINDOWS: dict[str, tuple[float, float]] = {
    "price_sync": (0.2, 2.5),
    "daily_bars": (0.2, 2.5),
    "news": (0.2, 3.0),
    "alert_eval": (0.1, 1.5),
    "alert_delivery": (0.2, 1.6),
    "digest": (0.2, 1.8),
    "insights": (0.2, 3.0),
}
KINDS = tuple(WINDOWS)
SIM_LATENCY_MS = {"alphavantage": 700, "newsapi": 600, "openai": 400}
SMTP_DELAY_S = 0.12
PUSH_DELAY_S = 0.15


# ------------------------------------------------------------------ the trial plan


@dataclass(frozen=True)
class Trial:
    number: int
    kind: str
    delay: float

    @property
    def label(self) -> str:
        return f"t{self.number:02d}-{self.kind}-{self.delay:.2f}s"


def seed_from_env() -> int:
    raw = os.environ.get("FAULT_SEED")
    if raw:
        try:
            return int(raw)
        except ValueError:
            raise SystemExit(f"FAULT_SEED: {raw!r} is not an integer") from None
    return random.SystemRandom().randrange(1_000_000)


def trials_from_env(default: int) -> int:
    raw = os.environ.get("FAULT_TRIALS")
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise SystemExit(f"FAULT_TRIALS: {raw!r} is not a positive integer")
    return int(raw)


def plan(seed: int, count: int) -> list[Trial]:
    """Every workload in turn (shuffled each round), each with a random kill delay."""
    rng = random.Random(seed)
    trials: list[Trial] = []
    while len(trials) < count:
        kinds = list(KINDS)
        rng.shuffle(kinds)
        for kind in kinds[: count - len(trials)]:
            low, high = WINDOWS[kind]
            trials.append(Trial(len(trials) + 1, kind, round(rng.uniform(low, high), 3)))
    return trials


# ------------------------------------------------------------------ the stack around the worker


@dataclass
class Receiver:
    """A webhook receiver that verifies signatures, records each request on arrival, answers slowly."""

    url: str = ""
    delay: float = PUSH_DELAY_S
    keys: list[str] = field(default_factory=list)
    forged: int = 0


@dataclass
class Stack:
    database_url: str
    temporal_address: str
    sink: Sink
    receiver: Receiver
    urls: dict[str, str]
    apps: dict[str, Starlette]
    timeout_cap_s: float = 6.0

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "TEMPORAL_ADDRESS": self.temporal_address,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.sink.port),
            "SMTP_TLS": "none",
            "PUSH_ALLOW_PRIVATE_HOSTS": "true",
            "ALPHAVANTAGE_BASE_URL": self.urls["alphavantage"],
            "ALPHAVANTAGE_CALLS_PER_MINUTE": "6000",
            "ALPHAVANTAGE_CALLS_PER_DAY": "1000000",
            "NEWSAPI_BASE_URL": self.urls["newsapi"],
            "NEWSAPI_CALLS_PER_MINUTE": "6000",
            "NEWSAPI_CALLS_PER_DAY": "100000",
            "OPENAI_BASE_URL": self.urls["openai"] + "/v1",
            "LLM_REQUESTS_PER_MINUTE": "6000",
            "WORKER_CONCURRENCY": "4",
            "FAULT_TIMEOUT_CAP_SECONDS": str(self.timeout_cap_s),
            "LOG_LEVEL": "WARNING",
        }

    def slow_sims(self) -> None:
        """Latency on every request: a workflow spends its time inside provider activities."""
        for name, app in self.apps.items():
            app.state.sim.faults.clear()
            app.state.sim.faults.add("latency", latency_ms=SIM_LATENCY_MS[name])

    def reset_sinks(self) -> None:
        with self.sink._lock:
            self.sink.messages.clear()
        self.receiver.keys.clear()
        self.receiver.forged = 0


@contextlib.asynccontextmanager
async def running_stack(database_url: str, temporal_address: str, *, timeout_cap_s: float = 6.0) -> AsyncIterator[Stack]:
    """The three stand-ins, a slow SMTP sink and a slow webhook receiver, all on loopback."""
    receiver = Receiver()

    async def receive(request: Request) -> JSONResponse:
        body = await request.body()
        if not push.verify(PUSH_SECRET, request.headers, body, now=int(time.time())):
            receiver.forged += 1
            return JSONResponse({"error": "bad signature"}, status_code=401)
        receiver.keys.append(request.headers[push.IDEMPOTENCY_HEADER])
        await asyncio.sleep(receiver.delay)
        return JSONResponse({"ok": True})

    def slow_data(number: int) -> None:
        time.sleep(SMTP_DELAY_S)  # the sink's own thread: the message is in flight meanwhile

    apps = {
        "alphavantage": alphavantage.make_app(seed=11, calls_per_minute=6000),
        "newsapi": newsapi.make_app(seed=11),
        "openai": openai.make_app(seed=11),
    }
    async with contextlib.AsyncExitStack() as stack:
        urls = {name: await stack.enter_async_context(serve_asgi(app)) for name, app in apps.items()}
        receiver.url = await stack.enter_async_context(
            serve_asgi(Starlette(routes=[Route("/hook/{user}", receive, methods=["POST"])]))
        )
        sink = stack.enter_context(smtp_sink(on_data=slow_data))
        yield Stack(database_url, temporal_address, sink, receiver, urls, apps, timeout_cap_s)


class Workers:
    """Worker processes of one trial; all stopped (SIGTERM, then SIGKILL) at its end."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log, self.procs = env, log, list[subprocess.Popen[bytes]]()

    def start(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.fault_worker"], cwd=ROOT, env=self.env,
                stdout=out, stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc

    async def ready(self, started: int, timeout: float = 60) -> None:
        """Until the `started`-th banner is in the log (the worker is polling)."""
        deadline = time.monotonic() + timeout
        while self.log.read_text(errors="replace").count("DealLens worker on") < started:
            if self.procs[-1].poll() is not None:
                raise AssertionError(f"the worker exited with {self.procs[-1].returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the worker did not start within {timeout} s:\n{self.tail()}")
            await asyncio.sleep(0.05)

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else "(no log)"

    async def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                await asyncio.to_thread(proc.wait, 20)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait, 5)


# ------------------------------------------------------------------ helpers


async def scalar(db: AsyncEngine, sql: str, **params: Any) -> Any:
    async with db.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar_one()


async def rows(db: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with db.connect() as conn:
        return list(await conn.execute(text(sql), params))


async def until(check: Callable[[], Awaitable[Any]], seconds: float, what: str, workers: Workers) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds:.0f} s; worker log:\n{workers.tail()}")
        await asyncio.sleep(0.25)


def repeated(received: list[str]) -> dict[str, int]:
    return {key: n for key, n in collections.Counter(received).items() if n != 1}


def at_most_one_in_flight_twice(received: list[str], expected: set[str], channel: str) -> int:
    """Every id arrived; at most one twice (the message in flight when one sending activity
    died: the receiver had it, the worker never heard so and its successor sent it again,
    same id). The exactly-once contract of tests/test_alert_delivery_crash.py."""
    counts = collections.Counter(received)
    assert set(counts) == expected, f"{channel}: missing {sorted(expected - set(counts))[:5]}, unexpected {sorted(set(counts) - expected)[:5]}"
    again = repeated(received)
    assert len(again) <= 1 and set(again.values()) <= {2}, f"{channel}: delivered more than once: {again}"
    return len(again)


def each_once_but_in_flight(received: list[str], expected: set[str], in_flight: set[str], channel: str) -> int:
    """Every id arrived; none twice except messages that were in flight at the kill (the
    receiver had them, the ledger did not say sent: the dead worker never heard the answer),
    and those at most twice, with the same id. One per sending activity that was running
    (tests/test_alert_delivery_crash.py): several when several notification workflows were."""
    counts = collections.Counter(received)
    assert set(counts) == expected, f"{channel}: missing {sorted(expected - set(counts))[:5]}, unexpected {sorted(set(counts) - expected)[:5]}"
    again = repeated(received)
    assert set(again.values()) <= {2} and set(again) <= in_flight, (
        f"{channel}: delivered more than once: {again} (in flight at the kill: {sorted(in_flight)})"
    )
    return len(again)


# ------------------------------------------------------------------ the workloads


@dataclass
class Outcome:
    """What one trial found: where the kill landed, what held, what was re-sent in flight."""

    trial: Trial
    kill_point: str = ""
    mid_run: bool = False
    seconds: float = 0.0
    in_flight_resent: int = 0
    checks: list[str] = field(default_factory=list)

    def line(self, seed: int) -> str:
        where = self.kill_point if self.mid_run else f"after completion ({self.kill_point})"
        return (
            f"[fault seed={seed}] {self.trial.label}: killed at {where}; recovered in {self.seconds:.1f} s; "
            f"in-flight re-sends {self.in_flight_resent}; held: {', '.join(self.checks)}"
        )


class Workload:
    """Seed, start, check at the kill, check at the end. Subclasses fill in the four."""

    kind = ""

    def __init__(self, db: AsyncEngine, client: Client, stack: Stack, tag: str) -> None:
        self.db, self.client, self.stack, self.tag = db, client, stack, tag
        self.handle: WorkflowHandle[Any, Any] | None = None
        self.in_flight: set[str] = set()

    async def seed(self) -> None: ...

    async def start(self) -> None: ...

    async def at_kill(self, outcome: Outcome) -> None:
        """The database as the killed worker left it: no partial batch visible."""

    async def finish(self, workers: Workers, outcome: Outcome) -> None:
        """Until the workload completed; then nothing lost, nothing twice."""
        assert self.handle is not None
        await asyncio.wait_for(self.handle.result(), timeout=180)

    async def running(self) -> bool:
        assert self.handle is not None
        return (await self.handle.describe()).status is WorkflowExecutionStatus.RUNNING

    async def kill_point(self) -> str:
        """The activities pending at the kill (with their attempt), or the workflow's state."""
        assert self.handle is not None
        described = await self.handle.describe()
        pending = described.raw_description.pending_activities
        if pending:
            return ", ".join(f"{p.activity_type.name}#{p.attempt}" for p in pending)
        return "between activities (a workflow task)" if described.status is WorkflowExecutionStatus.RUNNING else described.status.name


class PriceSync(Workload):
    kind = "price_sync"
    symbols = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META"]

    async def seed(self) -> None:
        async with self.db.begin() as conn:
            await conn.execute(
                text("INSERT INTO companies (symbol, name) SELECT s, s || ' Inc' FROM unnest(CAST(:s AS text[])) s"),
                {"s": self.symbols},
            )

    async def start(self) -> None:
        self.handle = await self.client.start_workflow(
            "SyncCompanyPrices", {"symbols": self.symbols, "force": True}, id=f"fault-prices-{self.tag}",
            task_queue=QUEUE, result_type=SyncCompanyPricesResult,
        )

    async def at_kill(self, outcome: Outcome) -> None:
        stored = await scalar(self.db, "SELECT count(*) FROM price_quotes")
        assert stored in (0, len(self.symbols)), f"a partial quote batch is visible: {stored} of {len(self.symbols)}"
        outcome.checks.append(f"quotes all-or-nothing at the kill ({stored})")

    async def finish(self, workers: Workers, outcome: Outcome) -> None:
        assert self.handle is not None
        result = await asyncio.wait_for(self.handle.result(), timeout=180)
        assert result.stored == len(self.symbols), result
        per_symbol = await rows(self.db, "SELECT company_id, count(*) FROM price_quotes GROUP BY company_id")
        assert len(per_symbol) == len(self.symbols) and {n for _, n in per_symbol} == {1}, per_symbol
        outcome.checks.append("one quote per symbol")


class DailyBars(Workload):
    kind = "daily_bars"
    symbols = ["AAPL", "MSFT", "JPM", "XOM"]

    async def seed(self) -> None:
        await PriceSync.seed(self)  # type: ignore[arg-type]
        self.snapshot: dict[int, int] = {}

    async def start(self) -> None:
        self.handle = await self.client.start_workflow(
            "SyncDailyOHLC", {"symbols": self.symbols}, id=f"fault-bars-{self.tag}",
            task_queue=QUEUE, result_type=SyncDailyOHLCResult,
        )

    async def at_kill(self, outcome: Outcome) -> None:
        self.snapshot = dict(await rows(self.db, "SELECT company_id, count(*) FROM ohlc_data GROUP BY company_id"))

    async def finish(self, workers: Workers, outcome: Outcome) -> None:
        assert self.handle is not None
        result = await asyncio.wait_for(self.handle.result(), timeout=180)
        assert {r.outcome.value for r in result.symbols} == {"updated"}, result
        final = dict(await rows(self.db, "SELECT company_id, count(*) FROM ohlc_data GROUP BY company_id"))
        assert len(final) == len(self.symbols) and min(final.values()) > 20, final
        partial = {c: n for c, n in self.snapshot.items() if n != final[c]}
        assert not partial, f"a symbol's bars were partly stored at the kill: {partial} (final {final})"
        twice = await scalar(self.db, "SELECT count(*) - count(DISTINCT (company_id, date)) FROM ohlc_data")
        assert twice == 0
        outcome.checks.append(f"bars all-or-nothing per symbol at the kill ({len(self.snapshot)} complete)")


class News(Workload):
    kind = "news"

    async def start(self) -> None:
        self.handle = await self.client.start_workflow(
            "IngestMarketNews", {}, id=f"fault-news-{self.tag}", task_queue=QUEUE, result_type=IngestNewsRunResult,
        )

    async def at_kill(self, outcome: Outcome) -> None:
        loose = await scalar(self.db, "SELECT count(*) FROM news_articles WHERE story_id IS NULL")
        assert loose == 0, f"{loose} stored article(s) without a story at the kill"
        stored = await scalar(self.db, "SELECT count(*) FROM news_articles")
        outcome.checks.append(f"every article had its story at the kill ({stored})")

    async def finish(self, workers: Workers, outcome: Outcome) -> None:
        assert self.handle is not None
        result = await asyncio.wait_for(self.handle.result(), timeout=180)
        assert result.failed == {}, result.failed
        total, urls, canonical, loose, unscored = (
            await rows(
                self.db,
                "SELECT count(*), count(DISTINCT url), count(DISTINCT canonical_url), "
                "count(*) FILTER (WHERE story_id IS NULL), count(*) FILTER (WHERE sentiment_label IS NULL) "
                "FROM news_articles",
            )
        )[0]
        assert total > 0 and total == urls == canonical, (total, urls, canonical)
        assert loose == 0 and unscored == 0, (loose, unscored)
        outcome.checks.append(f"{total} articles once each, all in stories, all scored")


class AlertEval(Workload):
    kind = "alert_eval"
    users = 8

    async def seed(self) -> None:
        self.user_ids = await make_users(self.db, self.users, push_webhook_secret=PUSH_SECRET)
        async with self.db.begin() as conn:
            await conn.execute(text("INSERT INTO companies (symbol, name) VALUES ('AAPL', 'Apple Inc')"))
            await conn.execute(
                text("UPDATE users SET push_webhook_url = :base || '/hook/' || id WHERE id = ANY(:ids)"),
                {"base": self.stack.receiver.url, "ids": self.user_ids},
            )
        for user in self.user_ids:
            await add_alert(self.db, parse_alert({
                "user_id": user, "type": "price_above", "symbol": "AAPL", "threshold": 200, "urgent": True,
            }))
        now = dt.datetime.now(dt.UTC)
        value = Decimal("210")
        await store_quotes(self.db, [FetchedQuote(
            symbol="AAPL", price=value, open=value, high=value, low=value, previous_close=Decimal(200),
            change=Decimal(10), change_percent=Decimal(5), volume=1_000_000, latest_trading_day=now.date(),
            quoted_at=now, source="test",
        )])

    async def start(self) -> None:
        self.handle = await self.client.start_workflow(
            "AlertMonitor", AlertMonitorInput(kind="price"), id="alert-monitor-price", task_queue=QUEUE,
            start_signal="new_data", start_signal_args=[NewDataInput(symbols=["AAPL"])],
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )

    async def running(self) -> bool:
        return await scalar(
            self.db, "SELECT count(*) FROM notification_deliveries WHERE status = 'sent'"
        ) < 2 * self.users

    async def kill_point(self) -> str:
        """The monitor's pending activity, else where its notifications stood (the sends run
        in the notification workflows it started)."""
        own = await super().kill_point()
        if not own.startswith("between"):
            return own
        fired = await scalar(self.db, "SELECT count(*) FROM alert_history")
        ledger = await rows(self.db, "SELECT channel, status, count(*) FROM notification_deliveries GROUP BY 1, 2 ORDER BY 1, 2")
        states = ", ".join(f"{c} {s} {n}" for c, s, n in ledger) or "no delivery rows yet"
        return f"{fired} fired; notifications: {states}"

    async def at_kill(self, outcome: Outcome) -> None:
        self.in_flight = await ledger_matches_sinks(self.db, self.stack, outcome)

    async def finish(self, workers: Workers, outcome: Outcome) -> None:
        async def delivered() -> bool:
            return not await self.running()

        await until(delivered, 180, "every firing delivered on both channels", workers)
        history = await rows(self.db, "SELECT id FROM alert_history ORDER BY id")
        assert len(history) == self.users, f"{len(history)} firings for {self.users} alerts"
        ids = [h for (h,) in history]
        await asyncio.sleep(0.5)  # a straggler from the dead worker would land now
        outcome.in_flight_resent += check_alert_deliveries(self.stack, ids, self.in_flight)
        outcome.checks.append(f"{self.users} alerts fired once, delivered once per channel")


class AlertDelivery(Workload):
    kind = "alert_delivery"
    firings = 12

    async def seed(self) -> None:
        users = await make_users(self.db, self.firings, push_webhook_secret=PUSH_SECRET)
        async with self.db.begin() as conn:
            await conn.execute(
                text("UPDATE users SET push_webhook_url = :base || '/hook/' || id WHERE id = ANY(:ids)"),
                {"base": self.stack.receiver.url, "ids": users},
            )
        self.at = dt.datetime.now(dt.UTC).replace(microsecond=0)
        self.ids = [await fire(self.db, user, None, urgent=True, at=self.at) for user in users]

    async def start(self) -> None:
        self.handle = await self.client.start_workflow(
            "SendAlertNotificationBatch",
            SendAlertNotificationBatchInput(kind="price", triggered_at=self.at, send_heartbeat_seconds=2),
            id=f"fault-notify-{self.tag}", task_queue=QUEUE, result_type=NotificationResult,
        )

    async def at_kill(self, outcome: Outcome) -> None:
        self.in_flight = await ledger_matches_sinks(self.db, self.stack, outcome)

    async def finish(self, workers: Workers, outcome: Outcome) -> None:
        assert self.handle is not None
        result = await asyncio.wait_for(self.handle.result(), timeout=180)
        assert result.counts.sent + result.counts.already_done == 2 * self.firings, result
        await asyncio.sleep(0.5)
        outcome.in_flight_resent += check_alert_deliveries(self.stack, self.ids, self.in_flight)
        statuses = await rows(self.db, "SELECT DISTINCT channel, status FROM notification_deliveries")
        assert set(statuses) == {("email", "sent"), ("push", "sent")}, statuses
        outcome.checks.append(f"{self.firings} firings delivered once per channel")


class Digest(Workload):
    kind = "digest"
    users = 6
    day = dt.date(2026, 12, 1)  # Monday 30 November's session closed in its window

    async def seed(self) -> None:
        self.user_ids = await make_users(self.db, self.users)
        ids = await seed_market(self.db, ["AAPL", "MSFT"], until=dt.date(2026, 11, 27))
        await watch(self.db, self.user_ids, list(ids.values()))

    async def start(self) -> None:
        self.handle = await self.client.start_workflow(
            "SendDailyDigest", DigestInput(date=self.day, batch_size=2, parallel_batches=2),
            id=f"fault-digest-{self.tag}", task_queue=QUEUE, result_type=DigestResult,
        )

    async def at_kill(self, outcome: Outcome) -> None:
        await asyncio.sleep(SMTP_DELAY_S + 0.2)  # a message the sink was accepting lands now
        sent = {m for (m,) in await rows(self.db, "SELECT message_id FROM digest_deliveries WHERE status = 'sent'")}
        arrived = set(self.stack.sink.message_ids())
        assert sent <= arrived, f"the ledger says sent but the relay never had: {sorted(sent - arrived)}"
        self.in_flight = arrived - sent
        outcome.checks.append(f"ledger 'sent' ⊆ arrived at the kill ({len(sent)})")

    async def finish(self, workers: Workers, outcome: Outcome) -> None:
        assert self.handle is not None
        result = await asyncio.wait_for(self.handle.result(), timeout=180)
        assert result.counts.sent + result.counts.already_done == self.users, result
        await asyncio.sleep(0.5)
        ledger = await rows(self.db, "SELECT status, message_id FROM digest_deliveries")
        assert {s for s, _ in ledger} == {"sent"} and len(ledger) == self.users, ledger
        outcome.in_flight_resent += each_once_but_in_flight(
            self.stack.sink.message_ids(), {m for _, m in ledger}, self.in_flight, "digest email"
        )
        outcome.checks.append(f"{self.users} digests once each")


class Insights(Workload):
    kind = "insights"
    companies = 5

    async def seed(self) -> None:
        ids = await seed_universe(self.db, self.companies, end=dt.datetime.now(dt.UTC).date(), bars=80)
        [user] = await make_users(self.db, 1)
        await watch(self.db, [user], ids)

    async def start(self) -> None:
        self.handle = await self.client.start_workflow(
            "GenerateCompanyInsights", {}, id=f"fault-insights-{self.tag}", task_queue=QUEUE,
            result_type=GenerateInsightsResult,
        )

    async def at_kill(self, outcome: Outcome) -> None:
        stored, incomplete = (await rows(
            self.db,
            "SELECT count(*), count(*) FILTER (WHERE content IS NULL OR input_hash IS NULL OR source IS NULL) "
            "FROM ai_insights",
        ))[0]
        assert incomplete == 0, f"{incomplete} incomplete insight row(s) at the kill"
        outcome.checks.append(f"insights complete or absent at the kill ({stored})")

    async def finish(self, workers: Workers, outcome: Outcome) -> None:
        assert self.handle is not None
        result = await asyncio.wait_for(self.handle.result(), timeout=180)
        assert result.failed == {} and result.analysed + result.reused == self.companies, result
        total, subjects = (await rows(self.db, "SELECT count(*), count(DISTINCT subject_id) FROM ai_insights"))[0]
        assert total == subjects == self.companies, (total, subjects)
        outcome.checks.append(f"{self.companies} insights, one per company")


WORKLOADS: dict[str, type[Workload]] = {
    w.kind: w for w in (PriceSync, DailyBars, News, AlertEval, AlertDelivery, Digest, Insights)
}
assert set(WORKLOADS) == set(KINDS)


async def ledger_matches_sinks(db: AsyncEngine, stack: Stack, outcome: Outcome) -> set[str]:
    """At the kill: every delivery the ledger calls sent did arrive (never 'sent' and lost).
    Returns the ids in flight: arrived, but not (yet) recorded as sent."""
    await asyncio.sleep(SMTP_DELAY_S + 0.2)  # a message the sink was accepting lands now
    sent = await rows(db, "SELECT alert_history_id, channel FROM notification_deliveries WHERE status = 'sent'")
    ids = {f"<alert-{h}-email@deallens.local>" if c == "email" else f"alert-{h}-push" for h, c in sent}
    arrived = set(stack.sink.message_ids()) | set(stack.receiver.keys)
    lost = sorted(ids - arrived)
    assert not lost, f"the ledger says sent but the receiver never had: {lost}"
    outcome.checks.append(f"ledger 'sent' ⊆ arrived at the kill ({len(sent)})")
    return arrived - ids


def check_alert_deliveries(stack: Stack, history_ids: list[int], in_flight: set[str] | None = None) -> int:
    """Once per channel; `in_flight` (the ids in flight at a kill) may have arrived twice.
    Without it, at most one per channel (one sending activity per channel was running)."""
    assert stack.receiver.forged == 0
    emails = {f"<alert-{h}-email@deallens.local>" for h in history_ids}
    pushes = {f"alert-{h}-push" for h in history_ids}
    if in_flight is None:
        return at_most_one_in_flight_twice(stack.sink.message_ids(), emails, "email") + at_most_one_in_flight_twice(
            stack.receiver.keys, pushes, "push"
        )
    return each_once_but_in_flight(stack.sink.message_ids(), emails, in_flight, "email") + each_once_but_in_flight(
        stack.receiver.keys, pushes, in_flight, "push"
    )


# ------------------------------------------------------------------ one trial


async def clear_temporal(client: Client) -> None:
    """The alert monitors are singletons per namespace: terminate them between trials."""
    for kind in MONITORS:
        with contextlib.suppress(Exception):
            await client.get_workflow_handle(f"alert-monitor-{kind}").terminate("fault trial over")


async def run_trial(db: AsyncEngine, client: Client, stack: Stack, trial: Trial, log: Path) -> Outcome:
    outcome = Outcome(trial)
    stack.reset_sinks()
    stack.slow_sims()
    workload = WORKLOADS[trial.kind](db, client, stack, f"{trial.number}-{secrets.token_hex(3)}")
    await workload.seed()
    workers = Workers(stack.env(), log)
    try:
        first = workers.start()
        await workers.ready(1)
        await workload.start()
        await asyncio.sleep(trial.delay)
        outcome.mid_run = await workload.running()
        outcome.kill_point = await workload.kill_point()
        first.send_signal(signal.SIGKILL)
        assert await asyncio.to_thread(first.wait, 30) == -signal.SIGKILL
        killed_at = time.monotonic()
        await workload.at_kill(outcome)
        workers.start()
        await workers.ready(2)
        await workload.finish(workers, outcome)
        outcome.seconds = time.monotonic() - killed_at
    except BaseException as error:
        raise AssertionError(f"{trial.label} ({outcome.kill_point}): {error}\nworker log:\n{workers.tail()}") from error
    finally:
        await workers.stop_all()
        await clear_temporal(client)
    return outcome

