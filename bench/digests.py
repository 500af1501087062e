"""Benchmark: 10,000 users' daily digests rendered and delivered to a local SMTP sink.

    python bench/digests.py [--users 10000] [--batch-size 250] [--parallel 2] [--database-url URL]

Creates a database bench_digests_<random> on the server of --database-url (default:
$DATABASE_URL, else postgresql+asyncpg://postgres@127.0.0.1:5432/postgres), migrates it, and
seeds with a few set-based statements (not timed): 200 companies with ~30 weekday bars each,
--users users watching 5 companies each, fired alerts for 20% of them in the digest's window,
news with sentiment on 50 companies and AI insights on 20.

An aiosmtpd sink runs in a process of its own (a small script fed to `python -c`): it counts
the messages, their bytes and their distinct Message-IDs (read from the header lines only;
bodies are not kept), per phase.

  1. transport floor: one pre-built digest message (rendered once with the real Renderer and
     build_message), sent --users times over one SmtpMailer connection, only its Message-ID
     changed: no database, no rendering;
  2. the real path: the pip-installed Temporal dev server, the real workers (worker.build_workers)
     and `SendDailyDigest` for the seeded date, timed from the workflow's start to its result.

It checks that the sink got exactly one message per user (count == distinct Message-IDs ==
users) and that the digest_deliveries ledger has one 'sent' row per user, and exits non-zero
otherwise. Target: 10,000 digests in <= 60 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import resource
import secrets
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import alert_eval as eval_bench  # noqa: E402  (bench/alert_eval.py: admin() and with_database())
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from deallens.config import load_settings  # noqa: E402
from deallens.contracts import DigestInput, DigestResult  # noqa: E402
from deallens.db import digests  # noqa: E402
from deallens.db.engine import create_engine  # noqa: E402
from deallens.db.migrate import upgrade_to_head  # noqa: E402
from deallens.notify.content import DigestContent, FiredAlertRow, InsightRow, NewsRow, WatchlistRow  # noqa: E402
from deallens.notify.email import SmtpConfig, SmtpMailer  # noqa: E402
from deallens.notify.message import build_message  # noqa: E402
from deallens.notify.render import Renderer  # noqa: E402
from temporal_client import DATA_CONVERTER, interceptors  # noqa: E402
from workflows import search_attributes
from worker import build_workers, open_resources  # noqa: E402

TASK_QUEUE = "bench-digests"
DEFAULT_SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
COMPANIES = 200
WATCHED = 5  # companies per user
# A Saturday: the seeded users (UTC, DIGEST_HOUR 7) get the window [Fri 07:00 UTC, Sat 07:00 UTC),
# which holds Friday's close (a day with no new session would send only to users with alerts).
PERIOD = dt.date(2026, 11, 28)
END = dt.datetime.combine(PERIOD, dt.time(7), tzinfo=dt.UTC)
START = END - dt.timedelta(days=1)
MAIL_FROM = "DealLens <alerts@deallens.local>"
TARGET_SECONDS = 60.0

# ------------------------------------------------------------------ the SMTP sink (own process)

SINK_SCRIPT = r'''
import json, re, resource, socket, sys, threading
from aiosmtpd.controller import Controller

MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)
KIND = re.compile(r"<([a-z-]+?)-[0-9]")  # <digest-daily-2026-11-27-17@...> -> digest-daily


def peak_rss_kib():
    # VmHWM, not ru_maxrss: Linux carries the parent's peak RSS over fork + exec into ru_maxrss.
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class Handler:
    def __init__(self):
        self.lock = threading.Lock()
        self.phase = "idle"
        self.phases = {}

    def stats(self):
        return self.phases.setdefault(self.phase, {"messages": 0, "bytes": 0, "ids": set(), "connections": 0})

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        with self.lock:
            self.stats()["connections"] += 1
        return responses

    async def handle_DATA(self, server, session, envelope):
        data = envelope.content
        end = data.find(b"\r\n\r\n")
        if end < 0:
            end = data.find(b"\n\n")
        match = MESSAGE_ID.search(data if end < 0 else data[:end])
        with self.lock:
            stats = self.stats()
            stats["messages"] += 1
            stats["bytes"] += len(data)
            stats["ids"].add(match.group(1).decode("ascii", "replace") if match else None)
        return "250 OK"

    def report(self):
        with self.lock:
            return {
                "phases": {
                    name: {
                        "messages": s["messages"],
                        "unique": len({i for i in s["ids"] if i is not None}),
                        "without_id": int(None in s["ids"]),
                        "bytes": s["bytes"],
                        "connections": s["connections"],
                        "prefixes": sorted({KIND.match(i).group(1) if KIND.match(i) else i for i in s["ids"] if i}),
                    }
                    for name, s in self.phases.items()
                },
                "maxrss_kib": peak_rss_kib(),
            }


with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
handler = Handler()
controller = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=10)
controller.start()
print(json.dumps({"port": port}), flush=True)
for line in sys.stdin:
    command, _, arg = line.strip().partition(" ")
    if command == "phase":
        with handler.lock:
            handler.phase = arg
        print(json.dumps({"ok": True}), flush=True)
    elif command == "stop":
        controller.stop()
        print(json.dumps(handler.report()), flush=True)
        break
'''


class SinkProcess:
    """The aiosmtpd sink in a child process, driven by one-line commands on its stdin."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SINK_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.port = int(self._reply()["port"])
        self.report: dict[str, Any] | None = None

    def _reply(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the SMTP sink process exited (code {self.proc.poll()})")
        return json.loads(line)  # type: ignore[no-any-return]

    def _send(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._reply()

    def phase(self, name: str) -> None:
        self._send(f"phase {name}")

    def stop(self) -> dict[str, Any]:
        if self.report is None:
            self.report = self._send("stop")
            self.proc.wait(timeout=15)
        return self.report

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# ------------------------------------------------------------------ data


async def seed(engine: AsyncEngine, users: int) -> dict[str, int]:
    """Set-based: a handful of INSERT ... SELECT statements; row counts by table."""
    window = {"start": START, "end": END}
    statements = [
        # 200 companies, B0..B199.
        ("companies", """
            INSERT INTO companies (symbol, name, sector, exchange, currency)
            SELECT 'B' || n, 'Bench ' || n || ' Holdings Inc', (ARRAY['Tech', 'Health', 'Energy', 'Finance'])[1 + n % 4],
                   'NASDAQ', 'USD'
            FROM generate_series(0, CAST(:companies AS int) - 1) AS n ORDER BY n
        """, {"companies": COMPANIES}),
        # ~30 weekday bars each, up to the day before the digest: a wavy, drifting series.
        ("ohlc_data", """
            INSERT INTO ohlc_data (company_id, date, open, high, low, close, volume, source)
            SELECT company_id, d, round(o, 4), round(greatest(o, p) * 1.01, 4), round(least(o, p) * 0.99, 4),
                   round(p, 4), 1000000 + 1000 * n, 'bench'
            FROM (
                SELECT c.id AS company_id, c.n, s.d,
                       CAST(s.p0 * (1 + 0.04 * sin(s.k * 0.45 + c.n) + 0.002 * s.k * (c.n % 3 - 1)) AS numeric) AS p,
                       CAST(s.p0 * (1 + 0.04 * sin(s.k * 0.45 + c.n) + 0.002 * s.k * (c.n % 3 - 1))
                            * (1 + 0.003 * cos(s.k + c.n)) AS numeric) AS o
                FROM (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM companies) c
                CROSS JOIN LATERAL (
                    SELECT d::date AS d, row_number() OVER (ORDER BY d) AS k, 20 + c.n * 2.5 AS p0
                    FROM generate_series(CAST(:first AS timestamp), CAST(:last AS timestamp), interval '1 day') AS d
                    WHERE extract(isodow FROM d) < 6
                ) s
            ) bars
        """, {"first": PERIOD - dt.timedelta(days=43), "last": PERIOD - dt.timedelta(days=1)}),
        ("users", """
            INSERT INTO users (email, name, timezone)
            SELECT 'user' || i || '@bench.example.com', 'Bench User ' || i,
                   (ARRAY['UTC', 'America/New_York', 'Europe/London', 'Asia/Tokyo', 'Australia/Sydney'])[1 + i % 5]
            FROM generate_series(1, CAST(:users AS int)) AS i ORDER BY i
        """, {"users": users}),
        # 5 companies a user, spread deterministically: each company gets users/40 watchers.
        ("watchlist", """
            INSERT INTO watchlist (user_id, company_id, added_at)
            SELECT u.id, c.id, timestamptz '2026-01-01 00:00+00' + make_interval(mins => k)
            FROM (SELECT id, row_number() OVER (ORDER BY id) AS r FROM users) u
            CROSS JOIN generate_series(0, CAST(:watched AS int) - 1) AS k
            JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM companies) c
              ON c.n = (u.r * 7 + k * 37) % CAST(:companies AS int)
        """, {"watched": WATCHED, "companies": COMPANIES}),
        # 20% of the users have 1-3 alerts on their watched companies...
        ("alerts", """
            INSERT INTO alerts (user_id, company_id, kind, params, name, last_triggered_at)
            SELECT u.id, w.company_id, 'price',
                   jsonb_build_object('type', 'price_above', 'threshold', '100', 'urgent', false),
                   c.symbol || ' breakout', CAST(:end AS timestamptz) - interval '1 hour'
            FROM (SELECT id, row_number() OVER (ORDER BY id) AS r FROM users) u
            CROSS JOIN LATERAL (
                SELECT company_id FROM watchlist WHERE user_id = u.id ORDER BY company_id LIMIT 1 + (u.r / 5) % 3
            ) w
            JOIN companies c ON c.id = w.company_id
            WHERE u.r % 5 = 0
        """, {"end": END}),
        # ...each fired once in the digest's window, and every other one also 3 days before (not shown).
        ("alert_history", """
            INSERT INTO alert_history (alert_id, triggered_at, value, threshold, data_at, message, dedup_key)
            SELECT a.id, t.at, 101.5, 100, t.at, c.symbol || ' rose above 100.00 (now 101.50)', 'bench-' || a.id || '-' || t.n
            FROM alerts a JOIN companies c ON c.id = a.company_id
            CROSS JOIN LATERAL (
                SELECT 1 AS n, CAST(:end AS timestamptz) - make_interval(mins => 1 + CAST((a.id * 37) % 1430 AS int)) AS at
                UNION ALL
                SELECT 2, CAST(:start AS timestamptz) - interval '2 days' WHERE a.id % 2 = 0
            ) t
        """, window),
        # 4 articles in the window (and one older) on every 4th company: 50 companies with news.
        ("news_articles", """
            INSERT INTO news_articles (url, canonical_url, title, description, publisher, category, published_at,
                                       sentiment_score, sentiment_source, source)
            SELECT 'https://news.example.com/' || c.symbol || '/' || j, 'https://news.example.com/' || c.symbol || '/' || j,
                   c.name || ' ' || (ARRAY['beats estimates as margins widen', 'cuts guidance on softer demand',
                                           'announces buyback and raises dividend', 'faces probe over supply contracts',
                                           'names new chief executive'])[j] || ', analysts say',
                   'Bench coverage of ' || c.name, (ARRAY['Reuters', 'Bloomberg', 'MarketWatch'])[1 + j % 3], 'company',
                   CASE WHEN j = 5 THEN CAST(:start AS timestamptz) - interval '2 days'
                        ELSE CAST(:end AS timestamptz) - make_interval(mins => 30 + CAST((c.n * 53 + j * 211) % 1380 AS int)) END,
                   round(CAST(0.95 * sin(c.n + j * 1.7) AS numeric), 4), 'bench', 'bench'
            FROM (SELECT id, symbol, name, row_number() OVER (ORDER BY id) - 1 AS n FROM companies) c
            CROSS JOIN generate_series(1, 5) AS j
            WHERE c.n % 4 = 0
        """, window),
        # Each article is about its company; the first of each also mentions the next company.
        ("news_company", """
            INSERT INTO news_company (news_id, company_id, relevance)
            SELECT a.id, c.id, 0.9
            FROM news_articles a JOIN companies c ON c.symbol = split_part(a.url, '/', 4)
            UNION ALL
            SELECT a.id, n.id, 0.4
            FROM news_articles a JOIN companies c ON c.symbol = split_part(a.url, '/', 4)
            JOIN companies n ON n.symbol = 'B' || (CAST(substr(c.symbol, 2) AS int) + 1)
            WHERE split_part(a.url, '/', 5) = '1'
        """, {}),
        # A company insight in the window on every 10th company.
        ("ai_insights", """
            INSERT INTO ai_insights (kind, subject_id, content, recommendation, model, source, created_at)
            SELECT 'company', c.id,
                   jsonb_build_object('summary', c.name || ' reported revenue growth ahead of consensus, '
                       || 'with operating margin up on lower input costs. Management reiterated full-year guidance '
                       || 'and flagged continued investment in capacity. Valuation remains in line with peers; the '
                       || 'main risks are customer concentration and a slower second half.'),
                   (ARRAY['buy', 'hold', 'sell', 'strong_buy'])[1 + (c.n / 10) % 4], 'bench-model', 'bench',
                   CAST(:end AS timestamptz) - make_interval(hours => 2 + CAST(c.n % 7 AS int))
            FROM (SELECT id, name, row_number() OVER (ORDER BY id) - 1 AS n FROM companies) c
            WHERE c.n % 10 = 0
        """, {"end": END}),
    ]
    counts = {}
    async with engine.begin() as conn:
        for table, sql, params in statements:
            counts[table] = (await conn.execute(text(sql), params)).rowcount
    async with engine.connect() as conn:
        # A production database has statistics: let the planner see the seeded sizes.
        await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(text("ANALYZE"))
    return counts


# ------------------------------------------------------------------ the transport floor


def floor_message_content() -> DigestContent:
    """A digest like an average seeded one: 5 watched companies, 1 alert, 2 news, 1 insight."""
    series = [[round(30 + 2.5 * n + 1.2 * ((k * 7 + n * 3) % 11) - 0.3 * k, 4) for k in range(31)] for n in range(WATCHED)]
    at = END - dt.timedelta(hours=3)
    return DigestContent(
        kind="daily",
        period=PERIOD,
        user_id=1,
        user_name="Bench User 1",
        user_email="user1@bench.example.com",
        timezone="America/New_York",
        watchlist=[
            WatchlistRow(
                company_id=n + 1, symbol=f"B{n}", name=f"Bench {n} Holdings Inc", last_close=Decimal(str(closes[-1])),
                day_change_pct=(closes[-1] / closes[-2] - 1) * 100, week_change_pct=(closes[-1] / closes[-6] - 1) * 100,
                closes=closes, as_of=PERIOD - dt.timedelta(days=1),
            )
            for n, closes in enumerate(series)
        ],
        alerts=[FiredAlertRow(alert_history_id=1, alert_name="B0 breakout", symbol="B0",
                              message="B0 rose above 100.00 (now 101.50)", triggered_at=at)],
        news=[
            NewsRow(title=f"Bench {n} Holdings Inc beats estimates as margins widen, analysts say",
                    url=f"https://news.example.com/B{n}/1", publisher="Bloomberg", published_at=at,
                    sentiment_score=0.61 - n, symbols=[f"B{n}"])
            for n in range(2)
        ],
        insights=[InsightRow(subject="B0", recommendation="buy", created_at=at, summary=(
            "Bench 0 Holdings Inc reported revenue growth ahead of consensus, with operating margin up on lower input "
            "costs. Management reiterated full-year guidance and flagged continued investment in capacity. Valuation "
            "remains in line with peers; the main risks are customer concentration and a slower second half."))],
        unsubscribe_url=digests.unsubscribe_url("http://127.0.0.1:8090", secrets.token_hex(16), "daily"),
    )


async def transport_floor(smtp: SmtpConfig, count: int) -> tuple[float, int]:
    """(seconds, message bytes): `count` sends of one pre-built message over one connection."""
    content = floor_message_content()
    message = build_message(
        Renderer().render_digest(content), sender=MAIL_FROM, to=content.user_email, to_name=content.user_name,
        message_id="<floor-0@deallens.local>", unsubscribe_url=content.unsubscribe_url,
    )
    size = len(message.as_bytes())
    async with SmtpMailer(smtp) as mailer:
        started = time.perf_counter()
        for n in range(count):
            message.replace_header("Message-ID", f"<floor-{n}@deallens.local>")
            await mailer.send(message)
        seconds = time.perf_counter() - started
    return seconds, size


# ------------------------------------------------------------------ the run


async def ledger(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT status, count(*) AS n FROM digest_deliveries WHERE kind = 'daily' AND period = :p GROUP BY status"),
            {"p": PERIOD},
        )
        return {r.status: r.n for r in rows}


async def bench(server_url: str, users: int, batch_size: int, parallel: int, sink: SinkProcess) -> dict[str, Any]:
    name = f"bench_digests_{secrets.token_hex(4)}"
    await eval_bench.admin(server_url, f'CREATE DATABASE "{name}"')
    url = eval_bench.with_database(server_url, name)
    engine = create_engine(url, pool_size=2)
    try:
        await upgrade_to_head(engine)
        started = time.monotonic()
        counts = await seed(engine, users)
        shown = ", ".join(f"{n:,} {table}" for table, n in counts.items())
        print(f"seeded {shown} in {time.monotonic() - started:.1f} s (not timed)", flush=True)
        settings = load_settings(
            _env_file=None, database_url=url, smtp_host="127.0.0.1", smtp_port=sink.port, smtp_tls="none",
            mail_from=MAIL_FROM, public_base_url="http://127.0.0.1:8090", alphavantage_base_url="http://127.0.0.1:9",
            newsapi_base_url="http://127.0.0.1:9", openai_base_url="http://127.0.0.1:9", log_level="WARNING",
        )

        sink.phase("floor")
        floor_seconds, floor_size = await transport_floor(SmtpConfig.from_settings(settings), users)
        print(f"transport floor: {users:,} pre-built messages over one connection in {floor_seconds:.2f} s", flush=True)

        sink.phase("pipeline")
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
            data_converter=DATA_CONVERTER, interceptors=interceptors(), search_attributes=search_attributes.ALL,
        )
        async with env, open_resources(settings) as resources, contextlib.AsyncExitStack() as stack:
            for worker in build_workers(env.client, settings, resources, task_queue=TASK_QUEUE):
                await stack.enter_async_context(worker)
            started = time.perf_counter()
            result: DigestResult = await env.client.execute_workflow(
                "SendDailyDigest",
                DigestInput(date=PERIOD, batch_size=batch_size, parallel_batches=parallel),
                id=f"bench-digest-{secrets.token_hex(4)}",
                task_queue=TASK_QUEUE,
                result_type=DigestResult,
                # A batch failing on every attempt retries for a long time: fail the run instead.
                execution_timeout=dt.timedelta(minutes=10),
            )
            pipeline_seconds = time.perf_counter() - started
        sink.phase("done")
        return {
            "result": result, "pipeline_seconds": pipeline_seconds, "floor_seconds": floor_seconds,
            "floor_size": floor_size, "ledger": await ledger(engine),
        }
    finally:
        await engine.dispose()
        await eval_bench.admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def report(users: int, batch_size: int, parallel: int, run: dict[str, Any], sink: dict[str, Any]) -> bool:
    result: DigestResult = run["result"]
    seconds, floor_seconds = run["pipeline_seconds"], run["floor_seconds"]
    got = sink["phases"].get("pipeline", {"messages": 0, "unique": 0, "bytes": 0, "connections": 0, "prefixes": []})
    floor = sink["phases"].get("floor", {"messages": 0, "unique": 0, "bytes": 0})
    bench_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sink_rss = sink["maxrss_kib"] / 1024
    average = got["bytes"] / got["messages"] if got["messages"] else 0.0
    print(f"SendDailyDigest, {users:,} users, batch size {batch_size}, {parallel} batches in parallel")
    print(f"  users            {result.users:>10,}   (sent {result.counts.sent:,}, failed {result.counts.failed:,}, "
          f"skipped {result.counts.skipped:,}, already done {result.counts.already_done:,})")
    print(f"  batches          {result.batches:>10,}   (SMTP connections seen by the sink: {got['connections']:,})")
    print(f"  total            {seconds:>10.2f} s (workflow start -> result)")
    print(f"  pipeline         {users / seconds:>10,.0f} msgs/s")
    print(f"  transport floor  {users / floor_seconds:>10,.0f} msgs/s   ({floor_seconds:.2f} s, one connection, "
          f"one pre-built {run['floor_size'] / 1024:.1f} KiB message, no DB, no rendering)")
    print(f"  ratio            {seconds / floor_seconds:>10.1f}x the floor's time")
    print(f"  average message  {average / 1024:>10.1f} KiB   ({got['bytes'] / 2**20:,.1f} MiB in all)")
    print(f"  peak RSS         {bench_rss:>10.0f} MiB bench process (workers, floor client), {sink_rss:.0f} MiB sink process")
    checks = [
        (f"sink messages == users ({got['messages']:,} / {users:,})", got["messages"] == users),
        (f"distinct Message-IDs == users ({got['unique']:,} / {users:,})", got["unique"] == users),
        (f"only digest Message-IDs in the pipeline phase ({', '.join(got['prefixes'])})", got["prefixes"] == ["digest-daily"]),
        (f"floor phase: {floor['messages']:,} messages, {floor['unique']:,} distinct", floor["messages"] == floor["unique"] == users),
        (f"ledger: {run['ledger'].get('sent', 0):,} 'sent' rows of {sum(run['ledger'].values()):,}",
         run["ledger"] == {"sent": users}),
        (f"workflow counted {result.counts.sent:,} sent", result.counts.sent == users and result.users == users),
    ]
    ok = True
    for label, passed in checks:
        ok &= passed
        print(f"check: {label}: {'OK' if passed else 'FAIL'}")
    print(f"target ≤ {TARGET_SECONDS:.0f} s: {'met' if seconds <= TARGET_SECONDS else 'NOT met'} ({seconds:.1f} s)")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(prog="python bench/digests.py", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    # The workflow's own defaults (what the schedule runs).
    parser.add_argument("--batch-size", type=int, default=DigestInput.model_fields["batch_size"].default)
    parser.add_argument("--parallel", type=int, default=DigestInput.model_fields["parallel_batches"].default)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_SERVER))
    args = parser.parse_args()
    if args.users < 5:
        parser.error("--users must be at least 5")
    server = load_settings(_env_file=None, database_url=args.database_url).database_url
    assert server is not None
    sink = SinkProcess()
    try:
        run = asyncio.run(bench(server, args.users, args.batch_size, args.parallel, sink))
        ok = report(args.users, args.batch_size, args.parallel, run, sink.stop())
    finally:
        sink.kill()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
