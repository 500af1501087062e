"""The process's OpenTelemetry TracerProvider: OTLP/HTTP export when an endpoint is configured.

Off unless OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (and
OTEL_SDK_DISABLED is not true): then nothing is installed, the global tracer stays the API's
no-op one, and the spans made in deallens/ (SMTP sends, LLM calls) and by the SDK's
TracingInterceptor cost a function call each. When on, the SDK itself reads every other
standard variable (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _COMPRESSION, OTEL_BSP_*,
OTEL_TRACES_SAMPLER*, OTEL_RESOURCE_ATTRIBUTES): they are not reimplemented here.

The maintained instrumentations for httpx (every provider, webhook and OpenAI call) and
SQLAlchemy (every statement) are switched on with the exporter, so a trace shows where a
workflow's activity spent its time. Call `setup_tracing` before the database engine and the
HTTP clients are built (the instrumentations wrap their constructors), and `shutdown` before
the process ends: the BatchSpanProcessor holds the last spans until it is flushed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from opentelemetry import trace

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
    return bool(env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip() or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip())


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
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    # The exporter reads the endpoint, headers, timeout and compression from OTEL_* itself.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    instrumentors: list[object] = []
    httpx_instrumentor = HTTPXClientInstrumentor()
    httpx_instrumentor.instrument(tracer_provider=provider)
    instrumentors.append(httpx_instrumentor)
    sqlalchemy_instrumentor = SQLAlchemyInstrumentor()
    # No sqlcommenter: statements stay byte-identical (prepared-statement caches, pg_stat_statements).
    sqlalchemy_instrumentor.instrument(tracer_provider=provider, enable_commenter=False)
    instrumentors.append(sqlalchemy_instrumentor)
    _installed = Tracing(enabled=True, service_name=name, _provider=provider, _instrumentors=instrumentors)
    return _installed


def shutdown_tracing() -> None:
    """Flush and remove what `setup_tracing` installed (a no-op when it installed nothing)."""
    global _installed
    if _installed is not None:
        _installed.shutdown()
        _installed = None
