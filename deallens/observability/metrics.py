"""The worker's Prometheus metrics: the project's own, and the Temporal SDK's forwarded.

One /metrics endpoint per worker (METRICS_BIND, off by default; the CLIs never bind it).
`enable()` builds a registry of its own (never prometheus_client's global one, so nothing
else in the process leaks onto the endpoint) and `serve()` exposes it over HTTP.

Until `enable()` runs, every recording function below returns at its first line: callers
(activities, the LLM gateway, the delivery engine) record unconditionally and pay nothing
when metrics are off. Nothing here may be called from workflow code: a replayed workflow
would count twice, and workflow code must not do I/O; record in activities and domain code.

The SDK's metrics (temporal_workflow_completed, temporal_activity_execution_latency, ...)
reach the same registry through `SdkMetrics`: the worker's Temporal Runtime records into a
MetricBuffer (temporal_client.worker_runtime), which this collector drains on every scrape
and on the worker's refresh tick, keeping counters' running sums and histograms' buckets.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

# The project's metric names, as exposed (counters gain _total, histograms _bucket/_sum/_count).
PROVIDER_CALLS = "deallens_provider_calls"
QUOTA_LEFT = "deallens_provider_quota_left"
LLM_TOKENS = "deallens_llm_tokens"
LLM_COST = "deallens_llm_cost_usd"
LLM_BUDGET_LEFT = "deallens_llm_budget_left_usd"
ALERT_EVALUATIONS = "deallens_alert_evaluations"
ALERTS_FIRED = "deallens_alerts_fired"
ALERTS_ACTIVE = "deallens_alerts_active"
EVALUATION_SECONDS = "deallens_alert_evaluation_duration_seconds"
NOTIFICATIONS = "deallens_notifications"
PARKED = "deallens_parked_deliveries"
FRESHNESS = "deallens_data_freshness_lag_seconds"

# One evaluation is one set-based statement: from milliseconds to tens of seconds.
_EVAL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, math.inf)


@dataclass(frozen=True)
class _Project:
    provider_calls: Counter
    quota_left: Gauge
    llm_tokens: Counter
    llm_cost: Counter
    llm_budget_left: Gauge
    alert_evaluations: Counter
    alerts_fired: Counter
    alerts_active: Gauge
    evaluation_seconds: Histogram
    notifications: Counter
    parked: Gauge
    freshness: Gauge


_project: _Project | None = None
_registry: CollectorRegistry | None = None


def enabled() -> bool:
    return _project is not None


def enable() -> CollectorRegistry:
    """Create the registry and the project's metrics (once per process); returns the registry."""
    global _project, _registry
    if _registry is not None:
        return _registry
    # No *_created series: a scrape stays small, and rate() needs none of them.
    disable_created_metrics()
    registry = CollectorRegistry(auto_describe=True)
    _project = _Project(
        provider_calls=Counter(
            PROVIDER_CALLS, "Calls to external providers, by provider and outcome (ok or the error kind).",
            ["provider", "outcome"], registry=registry,
        ),
        quota_left=Gauge(
            QUOTA_LEFT, "Calls the provider's daily quota still allows today (ledger day).",
            ["provider"], registry=registry,
        ),
        llm_tokens=Counter(
            LLM_TOKENS, "LLM tokens billed, by model and type (prompt, completion, cached).",
            ["model", "type"], registry=registry,
        ),
        llm_cost=Counter(LLM_COST, "LLM spend in US dollars, by model and purpose.", ["model", "purpose"], registry=registry),
        llm_budget_left=Gauge(
            LLM_BUDGET_LEFT, "What today's LLM budget (LLM_DAILY_BUDGET_USD) still allows, in US dollars.", registry=registry,
        ),
        alert_evaluations=Counter(
            ALERT_EVALUATIONS, "Alert evaluations run (one set-based pass over a kind's alerts), by kind.",
            ["kind"], registry=registry,
        ),
        alerts_fired=Counter(ALERTS_FIRED, "Alerts fired, by kind.", ["kind"], registry=registry),
        alerts_active=Gauge(
            ALERTS_ACTIVE, "Active alerts, by kind: what each evaluation of the kind reads.", ["kind"], registry=registry,
        ),
        evaluation_seconds=Histogram(
            EVALUATION_SECONDS, "Duration of one alert evaluation, by kind.", ["kind"],
            buckets=_EVAL_BUCKETS, registry=registry,
        ),
        notifications=Counter(
            NOTIFICATIONS, "Notifications by channel and outcome (sent, failed, skipped, already_done).",
            ["channel", "outcome"], registry=registry,
        ),
        parked=Gauge(
            PARKED, "Deliveries parked as failed after their retries ran out, by what (alert channel or digest).",
            ["what"], registry=registry,
        ),
        freshness=Gauge(
            FRESHNESS, "Now minus the newest row of each data type (quote, bar, article, insight).",
            ["data_type"], registry=registry,
        ),
    )
    _registry = registry
    return registry


def disable() -> None:
    """Forget the registry (tests; a worker that stops serving)."""
    global _project, _registry
    _project, _registry = None, None


# ------------------------------------------------------------------ recording (no-ops when off)


def provider_call(provider: str, outcome: str) -> None:
    if _project is None:
        return
    _project.provider_calls.labels(provider, outcome).inc()


def outcome_of(error: BaseException) -> str:
    """An error's class as an outcome label: ProviderUnavailable -> provider_unavailable."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", type(error).__name__).lower()


def quota_left(provider: str, calls: int) -> None:
    if _project is None:
        return
    _project.quota_left.labels(provider).set(max(0, calls))


def llm_usage(
    *, model: str, purpose: str, prompt_tokens: int, completion_tokens: int, cached_tokens: int, cost_usd: float
) -> None:
    if _project is None:
        return
    _project.llm_tokens.labels(model, "prompt").inc(max(0, prompt_tokens))
    _project.llm_tokens.labels(model, "completion").inc(max(0, completion_tokens))
    _project.llm_tokens.labels(model, "cached").inc(max(0, cached_tokens))
    _project.llm_cost.labels(model, purpose).inc(max(0.0, cost_usd))


@contextmanager
def alert_evaluation(kind: str) -> Iterator[Callable[[int], None]]:
    """Times one evaluation; the caller reports how many alerts fired through the callable."""
    if _project is None:
        yield _ignore
        return
    started = time.perf_counter()
    fired: list[int] = []
    try:
        yield fired.append
    finally:
        project = _project
        if project is not None:
            project.evaluation_seconds.labels(kind).observe(time.perf_counter() - started)
            project.alert_evaluations.labels(kind).inc()
            if fired:
                project.alerts_fired.labels(kind).inc(sum(fired))


def _ignore(_: int) -> None:
    return None


def notifications(channel: str, counts: Mapping[str, int]) -> None:
    """One send activity's tally: {"sent": 2, "failed": 0, ...} for `channel`."""
    if _project is None:
        return
    for outcome, count in counts.items():
        if count:
            _project.notifications.labels(channel, outcome).inc(count)


def llm_budget_left(usd: float) -> None:
    if _project is None:
        return
    _project.llm_budget_left.set(max(0.0, usd))


def active_alerts(counts: Mapping[str, int], kinds: Sequence[str]) -> None:
    """Active alerts per kind (0 for a known kind with none)."""
    if _project is None:
        return
    for kind in kinds:
        _project.alerts_active.labels(kind).set(counts.get(kind, 0))


def parked(what: str, count: int) -> None:
    if _project is None:
        return
    _project.parked.labels(what).set(count)


def freshness_lag(data_type: str, seconds: float | None) -> None:
    """None: no row of that type yet (the series is removed rather than faked)."""
    if _project is None:
        return
    if seconds is None:
        try:
            _project.freshness.remove(data_type)
        except KeyError:
            pass
        return
    _project.freshness.labels(data_type).set(max(0.0, seconds))


# ------------------------------------------------------------------ the SDK's metrics


class BufferedUpdate(Protocol):
    """temporalio.runtime.BufferedMetricUpdate, structurally (no temporalio import under deallens/)."""

    @property
    def metric(self) -> Any: ...

    @property
    def value(self) -> int | float: ...

    @property
    def attributes(self) -> Mapping[str, str | int | float | bool]: ...


# Durations arrive in seconds (MetricBufferDurationFormat.SECONDS): a latency's buckets.
SDK_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, math.inf)
_LABEL = re.compile(r"[^a-zA-Z0-9_]")


@dataclass(frozen=True)
class SdkKinds:
    """The BufferedMetricKind values of counters, gauges and histograms."""

    counter: int
    gauge: int
    histogram: int


class SdkMetrics(Collector):
    """Folds the SDK's buffered metric updates into Prometheus families on each collect.

    Counters arrive as deltas and are summed; gauges keep their last value; histogram values
    are bucketed here. Names get the `temporal_` prefix the SDK's own Prometheus exporter uses.
    """

    def __init__(self, drain: Callable[[], Sequence[BufferedUpdate]], kinds: SdkKinds, prefix: str = "temporal_") -> None:
        self._drain = drain
        self._kinds = kinds
        self._prefix = prefix
        self._lock = threading.Lock()
        # name -> (kind, description, {labels: value or [bucket counts..., sum, count]})
        self._families: dict[str, tuple[int, str, dict[tuple[tuple[str, str], ...], Any]]] = {}

    def pump(self) -> int:
        """Drain the SDK's buffer into the running totals; returns how many updates it held."""
        with self._lock:
            updates = self._drain()
            for update in updates:
                metric = update.metric
                name = metric.name if metric.name.startswith(self._prefix) else self._prefix + metric.name
                name = _LABEL.sub("_", name)
                family = self._families.get(name)
                if family is None:
                    family = (metric.kind, metric.description or name, {})
                    self._families[name] = family
                series = family[2]
                labels = tuple(sorted((_LABEL.sub("_", str(k)), str(v)) for k, v in update.attributes.items()))
                value = float(update.value)
                if metric.kind == self._kinds.counter:
                    series[labels] = series.get(labels, 0.0) + value
                elif metric.kind == self._kinds.histogram:
                    state = series.get(labels)
                    if state is None:
                        state = series[labels] = [0] * len(SDK_BUCKETS) + [0.0, 0]
                    for i, bound in enumerate(SDK_BUCKETS):
                        if value <= bound:
                            state[i] += 1
                    state[-2] += value
                    state[-1] += 1
                else:
                    series[labels] = value
            return len(updates)

    def collect(self) -> Iterator[Metric]:
        self.pump()
        with self._lock:
            # Copies (histogram states included): a concurrent pump must not change what is yielded.
            families = {
                name: (kind, doc, {k: list(v) if isinstance(v, list) else v for k, v in series.items()})
                for name, (kind, doc, series) in self._families.items()
            }
        for name, (kind, doc, series) in sorted(families.items()):
            if kind == self._kinds.counter:
                family = Metric(name, doc, "counter")
                for labels, value in series.items():
                    family.add_sample(family.name + "_total", dict(labels), value)
            elif kind == self._kinds.histogram:
                family = Metric(name, doc, "histogram")
                for labels, state in series.items():
                    base = dict(labels)
                    for i, bound in enumerate(SDK_BUCKETS):
                        le = "+Inf" if bound == math.inf else repr(float(bound))
                        family.add_sample(name + "_bucket", {**base, "le": le}, state[i])
                    family.add_sample(name + "_sum", base, state[-2])
                    family.add_sample(name + "_count", base, state[-1])
            else:
                family = Metric(name, doc, "gauge")
                for labels, value in series.items():
                    family.add_sample(name, dict(labels), value)
            yield family

    def describe(self) -> Iterator[Metric]:
        # Families appear as the SDK records them: nothing to describe up front (and
        # describing must not drain the buffer).
        return iter(())


# ------------------------------------------------------------------ the endpoint


@dataclass
class Endpoint:
    host: str
    port: int
    _server: Any
    _thread: threading.Thread

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve(bind: str, registry: CollectorRegistry) -> Endpoint:
    """Serve `registry` at http://bind/metrics (prometheus_client's threaded HTTP server).

    `bind` is host:port (validated by Settings); port 0 picks a free one (see Endpoint.port).
    """
    from prometheus_client import start_http_server

    host, _, port = bind.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    server, thread = start_http_server(int(port), addr=host, registry=registry)
    return Endpoint(host=host, port=server.server_address[1], _server=server, _thread=thread)
