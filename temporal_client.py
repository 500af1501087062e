"""One way to build a Temporal client, shared by worker.py, starter.py, schedules.py and tests.

Connection settings follow temporalio.envconfig (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
TEMPORAL_API_KEY, TEMPORAL_TLS*, config-file profiles), with `.env` values from Settings
layered under the process environment. The data converter (codec.py) encrypts payloads when
TEMPORAL_CODEC_KEYS is set and refuses oversize ones in every process. The data converter
and interceptors here must be the worker's *and* the Replayer's, or recorded histories will
not replay.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from typing import Any

import temporalio.worker
import temporalio.workflow
from temporalio.client import Client, Interceptor
from temporalio.contrib.opentelemetry import TracingInterceptor, TracingWorkflowInboundInterceptor
from temporalio.converter import DataConverter
from temporalio.envconfig import ClientConfig, ClientConnectConfig
from temporalio.runtime import (
    BUFFERED_METRIC_KIND_COUNTER,
    BUFFERED_METRIC_KIND_GAUGE,
    BUFFERED_METRIC_KIND_HISTOGRAM,
    LogForwardingConfig,
    LoggingConfig,
    MetricBuffer,
    MetricBufferDurationFormat,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)

from codec import data_converter
from deallens.config import Settings
from deallens.observability import tracing
from deallens.observability.metrics import SdkKinds, SdkMetrics

# The converter without encryption (the pydantic converter, with the 2 MiB guard): tests,
# benches and the replay of histories recorded without the codec. Processes that talk to a
# real cluster take `data_converter(settings)`, which encrypts when TEMPORAL_CODEC_KEYS is set.
DATA_CONVERTER: DataConverter = data_converter(None)


class _RunTracedWorkflow(TracingWorkflowInboundInterceptor):
    """A workflow started without trace context traces under its run's own trace.

    The SDK's interceptor would leave every activity of such a workflow (a schedule firing)
    a trace of its own. Here the missing context is derived from the run ID
    (deallens/observability/tracing.py, `run_traceparent`): deterministic, so replays and
    other workers compute the same one and the whole run — activities, SMTP sends, SQL, HTTP —
    is one trace whose ID is the run ID's hex digits.
    """

    def _load_workflow_context_carrier(self) -> dict[str, str] | None:
        carrier = super()._load_workflow_context_carrier()
        # Only while this process exports traces: otherwise no header is added to any command
        # (headers never take part in replay's determinism check, so either way replays).
        if not carrier and tracing.ids_forceable():
            carrier = {"traceparent": tracing.run_traceparent(temporalio.workflow.info().run_id)}
            self._workflow_context_carrier = carrier
        return carrier


class DealLensTracingInterceptor(TracingInterceptor):
    """The SDK's TracingInterceptor (the subclassing route its docstring describes), with a
    run's own trace for workflows started without context; its RunWorkflow span is the root."""

    def workflow_interceptor_class(
        self, input: temporalio.worker.WorkflowInterceptorClassInput
    ) -> type[TracingWorkflowInboundInterceptor]:
        super().workflow_interceptor_class(input)  # registers the span extern function
        return _RunTracedWorkflow

    def _completed_workflow_span(self, params: Any) -> Any:
        run_id = (params.attributes or {}).get("temporalRunID")
        if (
            params.name.startswith("RunWorkflow:")
            and isinstance(run_id, str)
            and params.context.get("traceparent") == tracing.run_traceparent(run_id)
            and tracing.ids_forceable()
        ):
            # The run's root span itself: no parent, the IDs its children already point at.
            with tracing.forced_ids(*tracing.run_trace_ids(run_id)):
                return super()._completed_workflow_span(dataclasses.replace(params, context={}))
        return super()._completed_workflow_span(params)


def interceptors() -> list[Interceptor]:
    # The tracer is the global one: deallens/observability/tracing.py installs it (or not);
    # without a provider every span here is the API's no-op span.
    return [DealLensTracingInterceptor(always_create_workflow_spans=True)]


# Ample for a busy worker between two drains (the refresh tick and every scrape drain it).
_METRIC_BUFFER_SIZE = 100_000


def _logging_config(settings: Settings) -> LoggingConfig:
    # LOG_FORMAT=json: the SDK core's own warnings go through Python logging (deallens/logs.py)
    # instead of its console writer, so that every line of the process is JSON.
    if settings.log_format != "json":
        return LoggingConfig.default
    return LoggingConfig(
        filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
        forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
    )


def _runtime(settings: Settings) -> Runtime | None:
    """The runtime of a process that exports no metrics: the default, unless logs are JSON."""
    if settings.log_format != "json":
        return None
    return Runtime(telemetry=TelemetryConfig(logging=_logging_config(settings)))


def worker_runtime(settings: Settings) -> tuple[Runtime, SdkMetrics]:
    """A Runtime whose SDK metrics go to a MetricBuffer, and the collector that drains it.

    The SDK's own PrometheusConfig would serve them on a port of their own; buffered, they
    join the project's metrics on the worker's one /metrics endpoint (METRICS_BIND).
    """
    buffer = MetricBuffer(_METRIC_BUFFER_SIZE, duration_format=MetricBufferDurationFormat.SECONDS)
    runtime = Runtime(telemetry=TelemetryConfig(logging=_logging_config(settings), metrics=buffer))
    kinds = SdkKinds(
        counter=int(BUFFERED_METRIC_KIND_COUNTER),
        gauge=int(BUFFERED_METRIC_KIND_GAUGE),
        histogram=int(BUFFERED_METRIC_KIND_HISTOGRAM),
    )
    return runtime, SdkMetrics(buffer.retrieve_updates, kinds)


def connect_config(settings: Settings) -> ClientConnectConfig:
    """Client.connect's keyword arguments: Settings (which include .env, and the mTLS paths
    under their short aliases) under the process environment, which wins."""
    env = {
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "TEMPORAL_NAMESPACE": settings.temporal_namespace,
        **({"TEMPORAL_API_KEY": settings.temporal_api_key.get_secret_value()} if settings.temporal_api_key else {}),
        **{
            name: str(path)
            for name, path in (
                ("TEMPORAL_TLS_CLIENT_CERT_PATH", settings.temporal_tls_client_cert_path),
                ("TEMPORAL_TLS_CLIENT_KEY_PATH", settings.temporal_tls_client_key_path),
                ("TEMPORAL_TLS_SERVER_CA_CERT_PATH", settings.temporal_tls_server_ca_cert_path),
            )
            if path is not None
        },
        **os.environ,
    }
    return ClientConfig.load_client_connect_config(override_env_vars=env)


async def connect(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    """A client with the project's converter (encrypting when TEMPORAL_CODEC_KEYS is set) and
    interceptors; `runtime` only for a worker that exports metrics (the CLIs keep the default
    runtime and never bind a port)."""
    config = connect_config(settings)
    runtime = runtime or _runtime(settings)
    return await Client.connect(
        **config,
        data_converter=data_converter(settings),
        interceptors=interceptors(),
        **({"runtime": runtime} if runtime else {}),
    )


def exit_skipping_teardown(code: int) -> None:
    """End a short-lived client-only process (CLI) without interpreter teardown.

    The SDK's Rust runtime threads can outlive the event loop; tearing the interpreter down
    under them sometimes aborts with "PyGILState_Release: thread state ... must be current"
    (temporalio/sdk-python#300, open). The work is done and flushed by then, so skip it.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
