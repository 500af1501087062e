"""One way to build a Temporal client, shared by worker.py, starter.py, schedules.py and tests.

Connection settings follow temporalio.envconfig (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
TEMPORAL_API_KEY, TEMPORAL_TLS*, config-file profiles), with `.env` values from Settings
layered under the process environment. The data converter and interceptors here must be the
worker's *and* the Replayer's, or recorded histories will not replay.
"""

from __future__ import annotations

import logging
import os
import sys

from temporalio.client import Client, Interceptor
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)

from deallens.config import Settings

DATA_CONVERTER = pydantic_data_converter


def interceptors() -> list[Interceptor]:
    # always_create_workflow_spans: schedule-started workflows have no parent span to join.
    return [TracingInterceptor(always_create_workflow_spans=True)]


def _runtime(settings: Settings) -> Runtime | None:
    # LOG_FORMAT=json: the SDK core's own warnings go through Python logging (deallens/logs.py)
    # instead of its console writer, so that every line of the process is JSON.
    forward = settings.log_format == "json"
    if not settings.temporal_metrics_bind and not forward:
        return None
    logging_config = (
        LoggingConfig(
            filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
            forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
        )
        if forward
        else LoggingConfig.default
    )
    metrics = PrometheusConfig(bind_address=settings.temporal_metrics_bind) if settings.temporal_metrics_bind else None
    return Runtime(telemetry=TelemetryConfig(logging=logging_config, metrics=metrics))


async def connect(settings: Settings) -> Client:
    # Settings (which include .env) under the process environment, which wins.
    env = {
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "TEMPORAL_NAMESPACE": settings.temporal_namespace,
        **({"TEMPORAL_API_KEY": settings.temporal_api_key.get_secret_value()} if settings.temporal_api_key else {}),
        **os.environ,
    }
    config = ClientConfig.load_client_connect_config(override_env_vars=env)
    runtime = _runtime(settings)
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
