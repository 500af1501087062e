"""The observability parts one at a time, in process: the LLM call's span and metrics (the
OpenAI stand-in over real HTTP, the ledger in PostgreSQL), the SMTP send's span (the SMTP
sink over TCP), the SDK-metrics collector, a run's own trace IDs, URL redaction, the
settings, and that everything is off (and costs nothing) unless configured.

Spans go to an in-memory exporter of a TracerProvider of the test's own: the process-wide
provider can be set once only, and the worker test (test_observability.py) covers that path.
"""

from __future__ import annotations

import datetime as dt
import email.message
import math
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import BaseModel, SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from deallens.config import ConfigError, load_settings
from deallens.llm.gateway import LLMGateway
from deallens.llm.prices import PriceTable
from deallens.notify.email import SmtpConfig, SmtpMailer
from deallens.notify.errors import PermanentDeliveryError
from deallens.observability import metrics, tracing
from deallens.sim.openai import make_app
from deallens.sim.serve import serve_asgi
from tests.smtp_sink import smtp_sink

DAY = dt.date(2026, 12, 1)


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "tracer", lambda: provider.get_tracer(tracing.TRACER_NAME))
    yield exporter
    provider.shutdown()


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    yield metrics.enable()
    metrics.disable()


# ------------------------------------------------------------------ the LLM call


class Tone(BaseModel):
    company: str
    stance: str


@pytest.fixture
async def openai_sim() -> AsyncIterator[str]:
    app = make_app(seed=5, responders={"Tone": lambda request: {"company": "Apple", "stance": "positive"}})
    async with serve_asgi(app) as url:
        yield f"{url}/v1"


async def test_an_llm_call_has_a_span_with_tokens_and_cost_and_counts_them(
    db: AsyncEngine, openai_sim: str, spans: InMemorySpanExporter, registry: CollectorRegistry
) -> None:
    gateway = LLMGateway(
        engine=db, api_key=SecretStr("sk-canary-0123456789"), base_url=openai_sim, default_model="gpt-4o-mini",
        prices=PriceTable.load(), daily_budget_usd=Decimal("1.00"), today=lambda: DAY, timeout_seconds=5.0,
    )
    prompt = "Rate the tone of this headline about Apple: PRIVATE-PROMPT-TEXT"
    try:
        result = await gateway.structured(
            purpose="sentiment", schema=Tone, messages=[{"role": "user", "content": prompt}], max_output_tokens=50,
        )
    finally:
        await gateway.aclose()
    (span,) = [s for s in spans.get_finished_spans() if s.name == "llm.chat"]
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.request.model"] == "gpt-4o-mini" and attributes["deallens.llm.purpose"] == "sentiment"
    assert attributes["gen_ai.usage.input_tokens"] == result.usage.prompt_tokens > 0
    assert attributes["gen_ai.usage.output_tokens"] == result.usage.completion_tokens > 0
    assert attributes["deallens.llm.cost_usd"] == pytest.approx(float(result.cost_usd))
    shown = repr(attributes)
    assert "PRIVATE-PROMPT-TEXT" not in shown and "sk-canary" not in shown

    def sample(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    assert sample("deallens_llm_tokens_total", model=result.model, type="prompt") == result.usage.prompt_tokens
    assert sample("deallens_llm_tokens_total", model=result.model, type="completion") == result.usage.completion_tokens
    assert sample("deallens_llm_cost_usd_total", model=result.model, purpose="sentiment") == pytest.approx(float(result.cost_usd))
    assert sample("deallens_provider_calls_total", provider="openai", outcome="ok") == 1


# ------------------------------------------------------------------ the SMTP send


def _message(to: str) -> email.message.EmailMessage:
    message = email.message.EmailMessage()
    message["From"], message["To"], message["Subject"] = "alerts@deallens.local", to, "AAPL above 200"
    message["Message-ID"] = f"<{to.split('@')[0]}@deallens.local>"
    message.set_content("body")
    return message


async def test_each_smtp_send_is_a_client_span_without_addresses(spans: InMemorySpanExporter) -> None:
    with smtp_sink(refuse_rcpt={"gone@example.com": "550 5.1.1 <gone@example.com> user unknown"}) as sink:
        async with SmtpMailer(SmtpConfig(host="127.0.0.1", port=sink.port, timeout=5.0)) as mailer:
            await mailer.send(_message("ada@example.com"))
            with pytest.raises(PermanentDeliveryError):
                await mailer.send(_message("gone@example.com"))
    sent, refused = [s for s in spans.get_finished_spans() if s.name == "smtp send"]
    assert sent.kind == trace.SpanKind.CLIENT and sent.status.status_code == trace.StatusCode.UNSET
    assert (sent.attributes or {})["server.port"] == sink.port
    assert refused.status.status_code == trace.StatusCode.ERROR
    assert (refused.attributes or {})["error.type"] == "PermanentDeliveryError"
    shown = repr([dict(s.attributes or {}) for s in (sent, refused)]) + repr(refused.status.description) + repr(refused.events)
    assert "example.com" not in shown


# ------------------------------------------------------------------ the SDK's metrics


class _Metric:
    def __init__(self, name: str, kind: int) -> None:
        self.name, self.kind, self.description, self.unit = name, kind, f"{name} help", None


class _Update:
    def __init__(self, metric: _Metric, value: float, **attributes: Any) -> None:
        self.metric, self.value, self.attributes = metric, value, attributes


def test_sdk_metrics_are_folded_into_counters_gauges_and_histograms() -> None:
    completed = _Metric("workflow_completed", 0)
    slots = _Metric("temporal_worker_task_slots_available", 1)
    latency = _Metric("activity_execution_latency", 2)
    pending = [
        _Update(completed, 1, workflow_type="A"), _Update(completed, 2, workflow_type="A"),
        _Update(completed, 1, workflow_type="B"),
        _Update(slots, 100, task_queue="q"), _Update(slots, 97, task_queue="q"),
        _Update(latency, 0.02, activity_type="x"), _Update(latency, 3.0, activity_type="x"),
    ]
    drained: list[list[_Update]] = [pending]

    def drain() -> list[_Update]:
        return drained.pop() if drained else []

    collector = metrics.SdkMetrics(drain, metrics.SdkKinds(counter=0, gauge=1, histogram=2))
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    assert 'temporal_workflow_completed_total{workflow_type="A"} 3.0' in text
    assert 'temporal_workflow_completed_total{workflow_type="B"} 1.0' in text
    assert 'temporal_worker_task_slots_available{task_queue="q"} 97.0' in text
    assert 'temporal_activity_execution_latency_bucket{activity_type="x",le="0.01"} 0.0' in text
    assert 'temporal_activity_execution_latency_bucket{activity_type="x",le="0.025"} 1.0' in text
    assert 'temporal_activity_execution_latency_bucket{activity_type="x",le="+Inf"} 2.0' in text
    assert 'temporal_activity_execution_latency_count{activity_type="x"} 2.0' in text
    # Counters keep their running sum across drains.
    drained.append([_Update(completed, 5, workflow_type="A")])
    assert 'temporal_workflow_completed_total{workflow_type="A"} 8.0' in generate_latest(registry).decode()
    assert metrics.SDK_BUCKETS[-1] == math.inf


# ------------------------------------------------------------------ off unless configured


def test_metrics_off_record_nothing_and_on_count() -> None:
    metrics.disable()
    assert not metrics.enabled()
    metrics.provider_call("alphavantage", "ok")  # no registry: returns at once
    with metrics.alert_evaluation("price") as fired:
        fired(3)
    registry = metrics.enable()
    try:
        metrics.provider_call("alphavantage", "ok")
        with metrics.alert_evaluation("price") as fired:
            fired(2)
        metrics.freshness_lag("article", None)  # no row yet: no series, no error
        assert registry.get_sample_value("deallens_provider_calls_total", {"provider": "alphavantage", "outcome": "ok"}) == 1
        assert registry.get_sample_value("deallens_alerts_fired_total", {"kind": "price"}) == 2
        assert registry.get_sample_value("deallens_alert_evaluation_duration_seconds_count", {"kind": "price"}) == 1
        assert registry.get_sample_value("deallens_data_freshness_lag_seconds", {"data_type": "article"}) is None
    finally:
        metrics.disable()


def test_tracing_is_off_without_an_otlp_endpoint() -> None:
    assert not tracing.export_configured({})
    assert not tracing.export_configured({"OTEL_SERVICE_NAME": "x", "OTEL_EXPORTER_OTLP_ENDPOINT": " "})
    assert tracing.export_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert tracing.export_configured({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"})
    assert not tracing.export_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_SDK_DISABLED": "true"})
    assert not tracing.export_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_TRACES_EXPORTER": "none"})
    installed = tracing.setup_tracing(tracing.CLI_SERVICE, env={})
    try:
        assert not installed.enabled and not tracing.ids_forceable()
        # Nothing was installed: the API's no-op spans.
        assert not tracing.tracer().start_span("x").is_recording()
    finally:
        tracing.shutdown_tracing()


def test_a_run_without_context_gets_its_own_deterministic_trace() -> None:
    run_id = "01a23193-02c6-7652-9f04-b328a2aab067"
    trace_id, span_id = tracing.run_trace_ids(run_id)
    assert f"{trace_id:032x}" == run_id.replace("-", "")
    assert tracing.run_trace_ids(run_id) == (trace_id, span_id) and span_id != 0
    assert tracing.run_traceparent(run_id) == f"00-{trace_id:032x}-{span_id:016x}-01"
    other = tracing.run_trace_ids("not-a-uuid")
    assert other != (trace_id, span_id) and all(other)


def test_credentials_in_urls_are_redacted() -> None:
    url = "https://www.alphavantage.co/query?function=GLOBAL_QUOTE&symbol=AAPL&apikey=ABC123"
    assert tracing.redact_url(url) == "https://www.alphavantage.co/query?function=GLOBAL_QUOTE&symbol=AAPL&apikey=REDACTED"
    assert tracing.redact_url("https://newsapi.org/v2/everything?q=x&apiKey=k&page=2") == (
        "https://newsapi.org/v2/everything?q=x&apiKey=REDACTED&page=2"
    )


def test_metrics_bind_is_validated() -> None:
    assert load_settings(_env_file=None).metrics_bind is None
    assert load_settings(_env_file=None, metrics_bind="0.0.0.0:9464").metrics_bind == "0.0.0.0:9464"
    assert load_settings(_env_file=None, metrics_bind="[::1]:9464").metrics_bind == "[::1]:9464"
    for bad in ("9464", "host:99999", "a b:1"):
        with pytest.raises(ConfigError, match=r"^METRICS_BIND: expected host:port"):
            load_settings(_env_file=None, metrics_bind=bad)
    with pytest.raises(ConfigError, match=r"^METRICS_REFRESH_SECONDS"):
        load_settings(_env_file=None, metrics_refresh_seconds=0)
