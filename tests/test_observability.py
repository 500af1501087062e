"""Traces and metrics of a real worker process (`python worker.py`), end to end.

One scenario per module: the worker runs with OTEL_EXPORTER_OTLP_ENDPOINT pointing at an
OTLP/HTTP receiver this test starts on loopback (protobuf decoded with opentelemetry-proto),
and with METRICS_BIND on a free port. A price sync against the AlphaVantage stand-in stores
AAPL's quote and wakes the price monitor; an alert fires and its SendAlertNotification
workflow sends an email to the SMTP sink. Then:

- the trace: one, rooted at the sync's RunWorkflow span (started without context, as a
  schedule starts it: the trace ID is its run ID), through the monitor's signal-with-start and
  its StartChildWorkflow:SendAlertNotification to StartActivity -> RunActivity of
  notifications.send_email -> the "smtp send" span, every parent present; SQL and HTTP client
  spans from the maintained instrumentations; no address or key on any span; a CLI's spans;
- /metrics, scraped over HTTP before and after: the project's counters moved and the SDK's
  metrics (temporal_workflow_completed, ...) are on the same endpoint; every metric the
  Grafana dashboard queries is one the worker exports.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gzip
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.testing import WorkflowEnvironment

from activities.alerts import monitor_id
from deallens.contracts import SyncCompanyPricesInput, SyncCompanyPricesResult
from deallens.db.alerts import add_alert
from deallens.db.models import Base
from deallens.domain.alert_rules import parse_alert
from deallens.sim import alphavantage as av_sim
from deallens.sim.serve import serve_asgi
from tests.conftest import ROOT, dev_server_address
from tests.smtp_sink import Sink, smtp_sink

DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "deallens.json"
ADDRESS = "ada@example.com"


# ------------------------------------------------------------------ a real OTLP/HTTP receiver


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    attributes: dict[str, Any]
    service: str


@dataclass
class Receiver:
    port: int = 0
    spans: list[Span] = field(default_factory=list)
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> list[Span]:
        with self.lock:
            return list(self.spans)


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


def _decode(body: bytes, receiver: Receiver) -> None:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    decoded = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                decoded.append(Span(
                    trace_id=span.trace_id.hex(), span_id=span.span_id.hex(), parent_id=span.parent_span_id.hex(),
                    name=span.name, kind=span.kind, attributes={a.key: _value(a.value) for a in span.attributes},
                    service=str(resource.get("service.name")),
                ))
    with receiver.lock:
        receiver.spans.extend(decoded)
        receiver.requests += 1


@contextlib.contextmanager
def otlp_receiver() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
                self.send_response(404)
                self.end_headers()
                return
            _decode(body, receiver)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ------------------------------------------------------------------ the scenario


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(exposition: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def declared(exposition: str) -> set[str]:
    """Every sample name the endpoint declares, series or not yet (a labelled counter that
    has not counted yet still has its HELP and TYPE lines)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names |= {s.name for s in family.samples}
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names |= {family.name + suffix for suffix in ("_bucket", "_sum", "_count")}
        else:
            names.add(family.name)
    return names


@dataclass
class Scenario:
    receiver: Receiver
    sink: Sink
    metrics_url: str
    before: Samples
    after: Samples
    exposition: str
    log: str
    sync_run_id: str
    env: dict[str, str]
    spans: list[Span]  # what the receiver held when the notification's spans were all in


async def _until(check: Any, seconds: float, what: str, log: Path | None = None) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        got = await check()
        if got:
            return got
        if time.monotonic() > deadline:
            tail = log.read_text()[-4000:] if log else "(see the worker log of the scenario)"
            raise AssertionError(f"{what}: not within {seconds} s; worker log:\n{tail}")
        await asyncio.sleep(0.25)


async def _scrape(url: str) -> str:
    async with httpx.AsyncClient(timeout=5) as http:
        answer = await http.get(url)
    answer.raise_for_status()
    assert answer.headers["content-type"].startswith("text/plain")
    return answer.text


async def _reset(engine: AsyncEngine) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        await conn.execute(text("INSERT INTO companies (symbol, name) VALUES ('AAPL', 'Apple Inc')"))
        await conn.execute(text("INSERT INTO users (id, email) VALUES (1, :email)"), {"email": ADDRESS})


@pytest.fixture(scope="module")
async def scenario(
    dev_env: WorkflowEnvironment, engine: AsyncEngine, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Scenario]:
    await _reset(engine)
    await add_alert(engine, parse_alert({
        "user_id": 1, "type": "price_above", "symbol": "AAPL", "threshold": 1, "cooldown_seconds": 0,
    }))
    log = tmp_path_factory.mktemp("observability") / "worker.log"
    metrics_port = _free_port()
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    with otlp_receiver() as receiver, smtp_sink() as sink:
        async with serve_asgi(av_sim.make_app(seed=1)) as av_url:
            env = {
                "PATH": "/usr/bin:/bin", "HOME": "/tmp", "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "WARNING",
                "DATABASE_URL": database_url, "TEMPORAL_ADDRESS": dev_server_address(dev_env.client),
                "ALPHAVANTAGE_BASE_URL": av_url, "ALPHAVANTAGE_CALLS_PER_MINUTE": "6000",
                "ALPHAVANTAGE_CALLS_PER_DAY": "10000",
                "NEWSAPI_BASE_URL": "http://127.0.0.1:9", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
                "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(sink.port), "SMTP_TLS": "none",
                # Whatever the sim's quote time, the alert may judge it.
                "ALERT_MAX_QUOTE_AGE_SECONDS": str(7 * 86_400),
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
                "OTEL_BSP_SCHEDULE_DELAY": "200",
                "METRICS_BIND": f"127.0.0.1:{metrics_port}",
                "METRICS_REFRESH_SECONDS": "1",
            }
            with log.open("wb") as out:
                worker = subprocess.Popen(
                    [sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            try:
                yield await _run(dev_env, receiver, sink, metrics_url, log, worker, env)
            finally:
                if worker.poll() is None:
                    os.killpg(worker.pid, signal.SIGTERM)
                await asyncio.to_thread(worker.wait, 60)
                with contextlib.suppress(Exception):
                    await dev_env.client.get_workflow_handle(monitor_id("price")).terminate("test over")


async def _run(
    dev_env: WorkflowEnvironment, receiver: Receiver, sink: Sink, metrics_url: str, log: Path,
    worker: subprocess.Popen[bytes], env: dict[str, str],
) -> Scenario:
    async def ready() -> bool:
        if worker.poll() is not None:
            raise AssertionError(f"the worker ended ({worker.returncode}):\n{log.read_text()}")
        if "task queues: deallens" not in log.read_text():
            return False
        with contextlib.suppress(httpx.HTTPError):
            return bool(await _scrape(metrics_url))
        return False

    await _until(ready, 90, "the worker's banner and /metrics", log)
    before = parse(await _scrape(metrics_url))
    handle = await dev_env.client.start_workflow(
        "SyncCompanyPrices", SyncCompanyPricesInput(symbols=["NOPE", "AAPL"], force=True),
        id="observability-sync", task_queue="deallens", result_type=SyncCompanyPricesResult,
    )
    result = await handle.result()
    assert [(s.symbol, s.outcome.value) for s in result.symbols] == [("NOPE", "unknown"), ("AAPL", "updated")]
    await asyncio.to_thread(sink.wait_for, 1, 90)

    async def traced() -> bool:
        names = {s.name for s in receiver.snapshot()}
        return {"smtp send", "RunWorkflow:SendAlertNotification", "RunActivity:notifications.send_email"} <= names

    await _until(traced, 60, "the notification's spans at the OTLP receiver", log)

    async def counted() -> str | None:
        exposition = await _scrape(metrics_url)
        samples = parse(exposition)
        done = (
            value(samples, "deallens_notifications_total", channel="email", outcome="sent") >= 1
            and value(samples, "deallens_data_freshness_lag_seconds", data_type="quote") > 0
            and value(samples, "temporal_workflow_completed_total", workflow_type="SendAlertNotification") >= 1
        )
        return exposition if done else None

    exposition = await _until(counted, 60, "the notification on /metrics", log)
    return Scenario(
        receiver=receiver, sink=sink, metrics_url=metrics_url, before=before, after=parse(exposition),
        exposition=exposition, log=log.read_text(), sync_run_id=str(handle.result_run_id), env=env,
        spans=receiver.snapshot(),
    )


# ------------------------------------------------------------------ the trace


def _chain(span: Span, by_id: dict[str, Span]) -> list[str]:
    names = [span.name]
    while span.parent_id:
        parent = by_id.get(span.parent_id)
        assert parent is not None, f"{span.name}: parent {span.parent_id} was never exported"
        assert parent.trace_id == span.trace_id
        names.append(parent.name)
        span = parent
    return names


async def test_one_trace_from_the_sync_through_the_notification_to_the_smtp_send(scenario: Scenario) -> None:
    spans = scenario.spans
    by_id = {s.span_id: s for s in spans}
    (smtp,) = [s for s in spans if s.name == "smtp send"]
    (run,) = [s for s in spans if s.name == "RunWorkflow:SendAlertNotification"]
    (sync,) = [s for s in spans if s.name == "RunWorkflow:SyncCompanyPrices"]
    # The sync was started without trace context (as a schedule starts it): its RunWorkflow
    # span is the root, and the trace ID is its run ID's hex digits.
    assert sync.parent_id == "" and sync.trace_id == scenario.sync_run_id.replace("-", "")
    assert smtp.trace_id == run.trace_id == sync.trace_id
    chain = _chain(smtp, by_id)
    assert chain[:4] == [
        "smtp send",
        "RunActivity:notifications.send_email",
        "StartActivity:notifications.send_email",
        "StartChildWorkflow:SendAlertNotification",
    ]
    assert chain[-3:] == ["RunActivity:alerts.signal_monitors", "StartActivity:alerts.signal_monitors",
                          "RunWorkflow:SyncCompanyPrices"]
    # The notification workflow's own span sits beside its activities (the SDK's layout:
    # workflow spans are instants, so they parent nothing), under the child-workflow start.
    assert run.parent_id == by_id[by_id[smtp.parent_id].parent_id].parent_id
    # Every span the sync's workflow made is in that one trace.
    of_sync = [s for s in spans if s.attributes.get("temporalWorkflowID") == "observability-sync"]
    assert len(of_sync) >= 8 and {s.trace_id for s in of_sync} == {sync.trace_id}

    assert smtp.kind == 3  # SPAN_KIND_CLIENT
    assert smtp.attributes["server.port"] == scenario.sink.port
    assert smtp.attributes["deallens.smtp.recipients"] == 1
    assert {s.service for s in spans} == {"deallens-worker"}

    # The maintained SQLAlchemy instrumentation: the delivery ledger's statements under the activity.
    activity = by_id[smtp.parent_id]
    sql = [s for s in spans if s.parent_id == activity.span_id and s.attributes.get("db.system") == "postgresql"]
    assert any("notification_deliveries" in str(s.attributes.get("db.statement")) for s in sql), sql
    # The httpx instrumentation: the sync's provider calls to the stand-in, key redacted.
    fetches = {s.span_id for s in spans if s.name == "RunActivity:alphavantage.fetch_quote"}
    gets = [s for s in spans if s.parent_id in fetches and s.name == "GET"]
    assert len(gets) == 2 and all("apikey=REDACTED" in s.attributes["http.url"] for s in gets)
    # No personal data and no key on any span; the gauge refresh adds no traces of its own.
    flat = json.dumps([s.attributes for s in spans], default=str)
    assert ADDRESS not in flat and "apikey=simulated" not in flat
    assert not [s for s in spans if "price_quotes)) AS quote" in str(s.attributes.get("db.statement"))]


# ------------------------------------------------------------------ the metrics


async def test_the_counters_moved_on_one_endpoint(scenario: Scenario) -> None:
    before, after = scenario.before, scenario.after

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("deallens_provider_calls_total", provider="alphavantage", outcome="ok") >= 1
    assert moved("deallens_provider_calls_total", provider="alphavantage", outcome="unknown_symbol") >= 1
    assert moved("deallens_alert_evaluations_total", kind="price") >= 1
    assert moved("deallens_alerts_fired_total", kind="price") == 1
    assert moved("deallens_alert_evaluation_duration_seconds_count", kind="price") >= 1
    assert moved("deallens_notifications_total", channel="email", outcome="sent") == 1
    # Gauges from the worker's refresh tick and the provider calls.
    assert 0 < value(after, "deallens_provider_quota_left", provider="alphavantage") < 10_000
    assert value(after, "deallens_llm_budget_left_usd") == 2.0  # LLM_DAILY_BUDGET_USD's default, nothing spent
    assert value(after, "deallens_parked_deliveries", what="email") == 0
    assert value(after, "deallens_alerts_active", kind="price") == 1 and value(after, "deallens_alerts_active", kind="news") == 0
    lag = value(after, "deallens_data_freshness_lag_seconds", data_type="quote")
    assert 0 < lag <= 8 * 86_400
    assert ("deallens_data_freshness_lag_seconds", frozenset({("data_type", "article")})) not in after  # no article yet
    # The SDK's metrics, forwarded through the MetricBuffer onto the same endpoint.
    assert moved("temporal_workflow_completed_total", workflow_type="SyncCompanyPrices") == 1
    assert moved("temporal_activity_execution_latency_count", activity_type="notifications.send_email") >= 1
    assert value(after, "temporal_activity_execution_failed_total", activity_type="alphavantage.fetch_quote") >= 1


async def test_the_dashboard_queries_only_exported_metrics(scenario: Scenario) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = declared(scenario.exposition)
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 10
    queried = {m for e in exprs for m in re.findall(r"\b((?:deallens|temporal)_[a-z0-9_]+)\b", e)}
    assert queried and queried <= exported, sorted(queried - exported)
    # Every project metric is on the dashboard.
    project = {n.removesuffix("_bucket") for n in queried if n.startswith("deallens_")}
    assert {
        "deallens_provider_calls_total", "deallens_provider_quota_left", "deallens_llm_tokens_total",
        "deallens_llm_cost_usd_total", "deallens_alert_evaluations_total", "deallens_alerts_fired_total",
        "deallens_alerts_active", "deallens_llm_budget_left_usd",
        "deallens_alert_evaluation_duration_seconds", "deallens_notifications_total",
        "deallens_parked_deliveries", "deallens_data_freshness_lag_seconds",
    } <= project


# ------------------------------------------------------------------ a schedule firing


async def test_a_schedule_started_sync_is_one_trace_rooted_at_its_run(
    scenario: Scenario, dev_env: WorkflowEnvironment
) -> None:
    client = dev_env.client
    schedule = await client.create_schedule(
        "observability-prices",
        Schedule(
            action=ScheduleActionStartWorkflow(
                "SyncCompanyPrices", SyncCompanyPricesInput(symbols=["AAPL"], force=True),
                id="observability-scheduled-sync", task_queue="deallens",
            ),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=dt.timedelta(days=1))]),
            state=ScheduleState(paused=True),
        ),
    )
    try:
        await schedule.trigger()

        async def started() -> tuple[str, str] | None:
            actions = (await schedule.describe()).info.recent_actions
            if not actions:
                return None
            action = actions[0].action
            return action.workflow_id, action.first_execution_run_id  # type: ignore[attr-defined]

        # The schedule appends its firing time to the workflow ID.
        workflow_id, run_id = await _until(started, 60, "the schedule's action")
        await client.get_workflow_handle(workflow_id, run_id=run_id).result()

        def of_run() -> list[Span]:
            return [s for s in scenario.receiver.snapshot() if s.attributes.get("temporalRunID") == run_id]

        async def flushed() -> bool:
            return {"RunWorkflow:SyncCompanyPrices", "CompleteWorkflow:SyncCompanyPrices"} <= {s.name for s in of_run()}

        await _until(flushed, 60, "the scheduled run's spans")
        spans = scenario.receiver.snapshot()
        by_id = {s.span_id: s for s in spans}
        (root,) = [s for s in of_run() if s.name == "RunWorkflow:SyncCompanyPrices"]
        assert root.parent_id == "" and root.trace_id == run_id.replace("-", "")
        in_trace = [s for s in spans if s.trace_id == root.trace_id]
        fetch = [s for s in in_trace if s.name == "RunActivity:alphavantage.fetch_quote"]
        assert len(fetch) == 1 and _chain(fetch[0], by_id) == [
            "RunActivity:alphavantage.fetch_quote", "StartActivity:alphavantage.fetch_quote", "RunWorkflow:SyncCompanyPrices",
        ]
        # The provider call and the statements of its activities are in the run's trace too.
        assert any(s.name == "GET" and s.parent_id == fetch[0].span_id for s in in_trace)
        assert any(s.attributes.get("db.system") == "postgresql" for s in in_trace)
    finally:
        await schedule.delete()


# ------------------------------------------------------------------ a CLI


async def test_a_cli_exports_its_spans_before_it_exits(scenario: Scenario) -> None:
    """`starter.py alerts add` wakes the monitor (signal-with-start): its client span reaches the
    receiver under service deallens-cli although the CLI ends with os._exit."""
    env = {**scenario.env, "OTEL_BSP_SCHEDULE_DELAY": "60000"}  # only the shutdown flush can send it
    definition = json.dumps({"user_id": 1, "type": "price_above", "symbol": "AAPL", "threshold": 1_000_000})
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "starter.py", "alerts", "add", definition], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    cli = [s for s in scenario.receiver.snapshot() if s.service == "deallens-cli"]
    assert [s.name for s in cli if s.name.startswith("SignalWithStartWorkflow")] == ["SignalWithStartWorkflow:AlertMonitor"]
    assert all(s.kind == 3 for s in cli if s.name.startswith("SignalWithStart"))
    # The CLI ran with the worker's METRICS_BIND, whose port the worker holds: a CLI that tried
    # to serve /metrics there would have failed to bind.
    assert env["METRICS_BIND"] == scenario.metrics_url.removeprefix("http://").removesuffix("/metrics")
