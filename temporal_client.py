"""One way to build a Temporal client, shared by worker.py, starter.py, schedules.py and tests.

Connection settings follow temporalio.envconfig (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
TEMPORAL_API_KEY, TEMPORAL_TLS*, config-file profiles), with `.env` values from Settings
layered under the process environment. The data converter (codec.py) encrypts payloads when
TEMPORAL_CODEC_KEYS is set and refuses oversize ones in every process. The data converter
and interceptors here must be the worker's *and* the Replayer's, or recorded histories will
not replay.
"""

from __future__ import annotations

import os
import sys

from temporalio.client import Client, Interceptor
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.converter import DataConverter
from temporalio.envconfig import ClientConfig, ClientConnectConfig
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from codec import data_converter
from deallens.config import Settings

# The converter without encryption (the pydantic converter, with the 2 MiB guard): tests,
# benches and the replay of histories recorded without the codec. Processes that talk to a
# real cluster take `data_converter(settings)`, which encrypts when TEMPORAL_CODEC_KEYS is set.
DATA_CONVERTER: DataConverter = data_converter(None)


def interceptors() -> list[Interceptor]:
    # always_create_workflow_spans: schedule-started workflows have no parent span to join.
    return [TracingInterceptor(always_create_workflow_spans=True)]


def _runtime(settings: Settings) -> Runtime | None:
    if not settings.temporal_metrics_bind:
        return None
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=settings.temporal_metrics_bind)))


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


async def connect(settings: Settings) -> Client:
    config = connect_config(settings)
    runtime = _runtime(settings)
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
