"""One way to build a Temporal client, shared by worker.py, starter.py, schedules.py and tests.

Connection settings follow temporalio.envconfig (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
TEMPORAL_API_KEY, TEMPORAL_TLS*, config-file profiles), with `.env` values from Settings
layered under the process environment. The data converter and interceptors here must be the
worker's *and* the Replayer's, or recorded histories will not replay.
"""

from __future__ import annotations

import os
import sys

from temporalio.client import Client, Interceptor
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig
from temporalio.runtime import (
    BUFFERED_METRIC_KIND_COUNTER,
    BUFFERED_METRIC_KIND_GAUGE,
    BUFFERED_METRIC_KIND_HISTOGRAM,
    MetricBuffer,
    MetricBufferDurationFormat,
    Runtime,
    TelemetryConfig,
)

from deallens.config import Settings
from deallens.observability.metrics import SdkKinds, SdkMetrics

DATA_CONVERTER = pydantic_data_converter


def interceptors() -> list[Interceptor]:
    # always_create_workflow_spans: schedule-started workflows have no parent span to join, so
    # their RunWorkflow span starts the trace (activities and their SMTP/HTTP/SQL spans under it).
    # The tracer is the global one: deallens/observability/tracing.py installs it (or not).
    return [TracingInterceptor(always_create_workflow_spans=True)]


# Ample for a busy worker between two drains (the refresh tick and every scrape drain it).
_METRIC_BUFFER_SIZE = 100_000


def worker_runtime() -> tuple[Runtime, SdkMetrics]:
    """A Runtime whose SDK metrics go to a MetricBuffer, and the collector that drains it.

    The SDK's own PrometheusConfig would serve them on a port of their own; buffered, they
    join the project's metrics on the worker's one /metrics endpoint (METRICS_BIND).
    """
    buffer = MetricBuffer(_METRIC_BUFFER_SIZE, duration_format=MetricBufferDurationFormat.SECONDS)
    runtime = Runtime(telemetry=TelemetryConfig(metrics=buffer))
    kinds = SdkKinds(
        counter=int(BUFFERED_METRIC_KIND_COUNTER),
        gauge=int(BUFFERED_METRIC_KIND_GAUGE),
        histogram=int(BUFFERED_METRIC_KIND_HISTOGRAM),
    )
    return runtime, SdkMetrics(buffer.retrieve_updates, kinds)


async def connect(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    """A client with the project's converter and interceptors; `runtime` only for a worker
    that exports metrics (the CLIs keep the default runtime and never bind a port)."""
    # Settings (which include .env) under the process environment, which wins.
    env = {
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "TEMPORAL_NAMESPACE": settings.temporal_namespace,
        **({"TEMPORAL_API_KEY": settings.temporal_api_key.get_secret_value()} if settings.temporal_api_key else {}),
        **os.environ,
    }
    config = ClientConfig.load_client_connect_config(override_env_vars=env)
    return await Client.connect(
        **config,
        data_converter=DATA_CONVERTER,
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
