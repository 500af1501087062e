"""What metrics and tracing cost on the hot paths, off and on (figures only, no target).

    .venv/bin/python bench/observability.py [--calls 200000]

Baseline: an empty Python function call, measured in the same run. Then, per call:
a metric recorded with metrics off (the default: METRICS_BIND unset) and on, and a span
started and ended with tracing off (the API's no-op tracer, the default without an OTLP
endpoint) and on (an SDK TracerProvider whose processor drops spans, so the exporter's
network cost is not in the figure). Ratios are against the baseline.
"""

from __future__ import annotations

import argparse
import timeit

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult, BatchSpanProcessor

from deallens.observability import metrics


class _Drop(SpanExporter):
    def export(self, spans):  # type: ignore[no-untyped-def]
        return SpanExportResult.SUCCESS


def _per_call(fn, calls: int) -> float:  # type: ignore[no-untyped-def]
    return min(timeit.repeat(fn, number=calls, repeat=3)) / calls * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    calls = parser.parse_args().calls

    def empty() -> None:
        return None

    base = _per_call(empty, calls)
    metrics.disable()
    metric_off = _per_call(lambda: metrics.provider_call("alphavantage", "ok"), calls)
    metrics.enable()
    metric_on = _per_call(lambda: metrics.provider_call("alphavantage", "ok"), calls)
    metrics.disable()

    noop = trace.NoOpTracerProvider().get_tracer("bench")
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Drop(), max_queue_size=calls * 4))
    sdk = provider.get_tracer("bench")

    def span(tracer: trace.Tracer):  # type: ignore[no-untyped-def]
        def run() -> None:
            with tracer.start_as_current_span("smtp send", attributes={"server.port": 25}):
                pass
        return run

    span_calls = max(1, calls // 10)
    span_off = _per_call(span(noop), span_calls)
    span_on = _per_call(span(sdk), span_calls)
    provider.shutdown()

    print(f"baseline: empty call            {base:8.0f} ns")
    for name, ns in (
        ("metric, metrics off", metric_off), ("metric, metrics on", metric_on),
        ("span, tracing off (no-op)", span_off), ("span, tracing on (SDK)", span_on),
    ):
        print(f"{name:32s} {ns:8.0f} ns  ({ns / base:6.1f} x baseline)")


if __name__ == "__main__":
    main()
