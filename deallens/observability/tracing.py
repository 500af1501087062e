"""The process's OpenTelemetry TracerProvider: OTLP/HTTP export when an endpoint is configured.

On when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (unless
OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none). Off, nothing is installed: the global
tracer stays the API's no-op one, and the spans made in deallens/ (SMTP sends, LLM calls)
and by the SDK's TracingInterceptor are no-op spans (microseconds, beside calls that take
milliseconds). On, the SDK itself reads every other standard variable
(OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _COMPRESSION, OTEL_BSP_*, OTEL_TRACES_SAMPLER*,
OTEL_RESOURCE_ATTRIBUTES): they are not reimplemented here.

The maintained instrumentations for httpx (every provider, webhook and OpenAI call) and
SQLAlchemy (every statement) are switched on with the exporter, so a trace shows where a
workflow's activity spent its time. Call `setup_tracing` before the database engine and the
HTTP clients are built (the instrumentations wrap their constructors), and `shutdown` before
the process ends: the BatchSpanProcessor holds the last spans until it is flushed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

log = logging.getLogger("deallens.tracing")

# Every span this project makes itself is from this tracer (the SDK's are "temporalio").
TRACER_NAME = "deallens"

WORKER_SERVICE = "deallens-worker"
CLI_SERVICE = "deallens-cli"


def tracer() -> trace.Tracer:
    """The project's tracer: a proxy that follows the provider installed later, if any."""
    return trace.get_tracer(TRACER_NAME)


def export_configured(env: Mapping[str, str] | None = None) -> bool:
    """Whether an OTLP endpoint is set for traces and the SDK is not disabled."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip() or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip())


# ------------------------------------------------------------------ a run's own trace
#
# A workflow started with no trace context (by a schedule, the Web UI, the `temporal` CLI, a
# client without tracing) gets one derived from its run ID: trace ID = the run ID's 32 hex
# digits, and a root span ID hashed from it. Derived, not random, so the workflow computes the
# same context on every replay and on every worker: its activities (and their SMTP, SQL and
# HTTP spans) stay in one trace after an eviction or a worker restart. Its RunWorkflow span is
# that root (temporal_client.TracingInterceptor forces its IDs through `forced_ids`).


def run_trace_ids(run_id: str) -> tuple[int, int]:
    """(trace ID, root span ID) for a workflow run that arrived without trace context."""
    digits = run_id.replace("-", "").lower()
    digest = hashlib.sha256(run_id.encode()).digest()
    trace_id = int(digits, 16) if re.fullmatch(r"[0-9a-f]{32}", digits) else int.from_bytes(digest[:16], "big")
    span_id = int.from_bytes(digest[16:24], "big")
    return trace_id or 1, span_id or 1


def run_traceparent(run_id: str) -> str:
    """The W3C traceparent of the run's root span (sampled)."""
    trace_id, span_id = run_trace_ids(run_id)
    return f"00-{trace_id:032x}-{span_id:016x}-01"


_forced: ContextVar[tuple[int, int] | None] = ContextVar("deallens_forced_span_ids", default=None)


class _ForceableIds(RandomIdGenerator):
    """Random IDs, except inside `forced_ids` (the root span of a run's own trace)."""

    def generate_span_id(self) -> int:
        forced = _forced.get()
        return forced[1] if forced else super().generate_span_id()

    def generate_trace_id(self) -> int:
        forced = _forced.get()
        return forced[0] if forced else super().generate_trace_id()


@contextmanager
def forced_ids(trace_id: int, span_id: int) -> Iterator[None]:
    token = _forced.set((trace_id, span_id))
    try:
        yield
    finally:
        _forced.reset(token)


def ids_forceable() -> bool:
    """Whether the installed provider is ours (so `forced_ids` takes effect)."""
    return _installed is not None and _installed.enabled


@dataclass
class Tracing:
    """What `setup_tracing` installed; `shutdown` flushes the last spans and removes the hooks."""

    enabled: bool
    service_name: str | None = None
    _provider: object | None = None
    _instrumentors: list[object] = field(default_factory=list)

    def shutdown(self) -> None:
        for instrumentor in self._instrumentors:
            try:
                instrumentor.uninstrument()  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - a teardown problem must not hide the exit code
                log.debug("uninstrument failed", exc_info=True)
        self._instrumentors.clear()
        provider, self._provider = self._provider, None
        if provider is not None:
            provider.shutdown()  # type: ignore[attr-defined]  # flushes the BatchSpanProcessor


_installed: Tracing | None = None


def setup_tracing(default_service_name: str, env: Mapping[str, str] | None = None) -> Tracing:
    """Install the TracerProvider (once per process) when an OTLP endpoint is configured.

    service.name is OTEL_SERVICE_NAME when set, else `default_service_name` (deallens-worker
    for workers, deallens-cli for the command-line tools).
    """
    global _installed
    if _installed is not None:
        return _installed
    if not export_configured(env):
        _installed = Tracing(enabled=False)
        return _installed
    # Imported only when on: the exporter pulls in protobuf and requests.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    env = os.environ if env is None else env
    name = env.get("OTEL_SERVICE_NAME", "").strip() or default_service_name
    # Resource.create also merges OTEL_RESOURCE_ATTRIBUTES (service.name above wins).
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}), id_generator=_ForceableIds())
    # The exporter reads the endpoint, headers, timeout and compression from OTEL_* itself.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    instrumentors: list[object] = []
    httpx_instrumentor = HTTPXClientInstrumentor()
    httpx_instrumentor.instrument(
        tracer_provider=provider, request_hook=_redact_request, async_request_hook=_redact_request_async
    )
    instrumentors.append(httpx_instrumentor)
    sqlalchemy_instrumentor = SQLAlchemyInstrumentor()
    # No sqlcommenter: statements stay byte-identical (prepared-statement caches, pg_stat_statements).
    # skip_dep_check: the 0.66 release declares sqlalchemy < 2.1 while it only uses the engine
    # event API that 2.1 keeps; tests/test_observability.py asserts the statement spans exist.
    sqlalchemy_instrumentor.instrument(tracer_provider=provider, enable_commenter=False, skip_dep_check=True)
    instrumentors.append(sqlalchemy_instrumentor)
    _installed = Tracing(enabled=True, service_name=name, _provider=provider, _instrumentors=instrumentors)
    return _installed


@contextmanager
def untraced() -> Iterator[None]:
    """No spans from the instrumentations inside (the worker's periodic gauge refresh would
    otherwise be a root trace every few seconds)."""
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    with suppress_instrumentation():
        yield


# AlphaVantage and NewsAPI take their key in the query string: the instrumentation records
# the full URL, so every credential-looking parameter's value is replaced on the span.
_SECRET_PARAM = re.compile(r"(?i)([?&](?:api_?key|key|token|access_token|secret|password|sig|signature)=)[^&#]*")
_URL_ATTRIBUTES = ("http.url", "url.full")


def redact_url(url: str) -> str:
    return _SECRET_PARAM.sub(r"\1REDACTED", url)


def _redact_request(span: trace.Span, request: object) -> None:
    if not span.is_recording():
        return
    url = redact_url(str(getattr(request, "url", "")))
    present = getattr(span, "attributes", None) or {}  # the SDK's span is readable
    for attribute in _URL_ATTRIBUTES:
        if attribute in present:
            span.set_attribute(attribute, url)


async def _redact_request_async(span: trace.Span, request: object) -> None:
    _redact_request(span, request)


def shutdown_tracing() -> None:
    """Flush and remove what `setup_tracing` installed (a no-op when it installed nothing)."""
    global _installed
    if _installed is not None:
        _installed.shutdown()
        _installed = None


@contextmanager
def traced_process(default_service_name: str) -> Iterator[Tracing]:
    """setup_tracing for the block, flushed at its end (the CLIs end with os._exit)."""
    try:
        yield setup_tracing(default_service_name)
    finally:
        shutdown_tracing()
