"""Prometheus metrics, kept in a registry owned by the server (no process-wide globals)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.core.contracts import Request, Result
from gateway.core.errors import GatewayError

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
OVERHEAD_BUCKETS_S = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)


GateFigures = Mapping[str, tuple[int, int, int]]  # admission gate -> (limit, in flight, queued)


class Metrics:
    def __init__(
        self,
        queue_depth: Callable[[], float] = lambda: 0.0,
        gates: Callable[[], GateFigures] = dict,
        loop_lag: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_GateCollector(gates))
        lag = Gauge("gateway_event_loop_lag_seconds", "How far behind the event loop runs", registry=self.registry)
        lag.set_function(loop_lag)
        self.requests = Counter(
            "gateway_requests", "Answered requests", ["tier", "provider", "escalation"], registry=self.registry
        )
        self.latency = Histogram(
            "gateway_request_latency_seconds",
            "End-to-end latency",
            ["tier"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "gateway_local_batch_size",
            "Requests decoded together",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32),
            registry=self.registry,
        )
        self.batch_seconds = Histogram("gateway_local_batch_seconds", "Micro-batch duration", registry=self.registry)
        queue = Gauge("gateway_local_in_flight", "Local requests accepted and not finished", registry=self.registry)
        queue.set_function(queue_depth)
        tasks = Gauge(
            "gateway_asyncio_tasks", "asyncio tasks alive in this process (read at scrape)", registry=self.registry
        )
        tasks.set_function(_asyncio_tasks)
        self.outcomes = Counter(
            "gateway_request_outcomes",
            "Requests by tier, provider and outcome (ok, or the gRPC status of the failure)",
            ["tier", "provider", "outcome"],
            registry=self.registry,
        )
        self.provider_latency = Histogram(
            "gateway_provider_latency_seconds",
            "End-to-end latency by tier and the provider that answered",
            ["tier", "provider"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.overhead = Histogram(
            "gateway_overhead_seconds",
            "The gateway's own time per answer: its time on the request less the waits on backends and providers",
            ["tier"],
            buckets=OVERHEAD_BUCKETS_S,
            registry=self.registry,
        )
        self.cache_lookups = Counter(
            "gateway_cache_lookups", "Response cache lookups by result", ["result"], registry=self.registry
        )
        self.cache_hit_ratio = Gauge(
            "gateway_cache_hit_ratio", "Hits / (hits + misses) since start, this process", registry=self.registry
        )
        self.cache_entries = Gauge("gateway_cache_entries", "Entries in the shared cache", registry=self.registry)
        self.budget_used = Gauge(
            "gateway_budget_tokens_used", "Tokens counted today (UTC)", ["provider"], registry=self.registry
        )
        self.budget_limit = Gauge(
            "gateway_budget_tokens_limit", "Daily token budget (0 = none)", ["provider"], registry=self.registry
        )
        self.breaker_state = Gauge(
            "gateway_breaker_state",
            "Circuit breaker per provider: 0 closed, 1 half-open, 2 open",
            ["provider"],
            registry=self.registry,
        )
        self.cost = Counter("gateway_cost_usd", "Dollars spent on remote answers", ["provider"], registry=self.registry)
        self.reference_cost = Counter(
            "gateway_reference_cost_usd", "Dollars the reference provider would have charged", registry=self.registry
        )
        self.local_accuracy = Gauge(
            "gateway_local_accuracy",
            "Live accuracy of answers kept locally (audit agreement at the current threshold): estimate, low, high",
            ["task", "bound"],
            registry=self.registry,
        )
        self.local_audits = Gauge(
            "gateway_local_audits", "Audits behind the live accuracy estimate", ["task"], registry=self.registry
        )
        self.task_threshold = Gauge(
            "gateway_task_threshold", "Confidence threshold in force per task", ["task"], registry=self.registry
        )
        self._hits = 0
        self._misses = 0
        self._answer_series: dict[tuple[str, str, str], _AnswerSeries] = {}

    def record(self, result: Result) -> None:
        self.requests.labels(result.tier.value, result.provider, result.escalation.value).inc()
        self.latency.labels(result.tier.value).observe(result.latency_ms / 1000)

    def answered(self, request: Request, result: Result) -> None:
        """Every answer, cache hits included (a RecordingRouter observer); label lookups cached per series."""
        key = (result.tier.value, result.provider, result.escalation.value)
        series = self._answer_series.get(key)
        if series is None:
            tier, provider, escalation = key
            series = self._answer_series[key] = _AnswerSeries(
                self.requests.labels(tier, provider, escalation),
                self.outcomes.labels(tier, provider, "ok"),
                self.latency.labels(tier),
                self.provider_latency.labels(tier, provider),
                self.overhead.labels(tier),
            )
        seconds = result.latency_ms / 1000
        series.requests.inc()
        series.outcomes.inc()
        series.latency.observe(seconds)
        series.provider_latency.observe(seconds)
        series.overhead.observe(result.overhead_ms / 1000)

    def failed(self, request: Request, error: GatewayError, seconds: float) -> None:
        self.outcomes.labels("none", "none", error.status.value.lower()).inc()

    def cache_lookup(self, result: str) -> None:
        self.cache_lookups.labels(result).inc()  # a handful of label values: cheap enough
        if result == "hit":
            self._hits += 1
        elif result == "miss":
            self._misses += 1
        else:
            return
        self.cache_hit_ratio.set(self._hits / (self._hits + self._misses))

    def costs(self, provider: str, spent: float, reference: float) -> None:
        if spent:
            self.cost.labels(provider).inc(spent)
        if reference:
            self.reference_cost.inc(reference)

    def budgets(self, rows: Mapping[str, tuple[int, int]]) -> None:
        """provider -> (tokens used today, daily budget)."""
        for provider, (used, limit) in rows.items():
            self.budget_used.labels(provider).set(used)
            self.budget_limit.labels(provider).set(limit)

    def breakers(self, states: Mapping[str, float]) -> None:
        for provider, value in states.items():
            self.breaker_state.labels(provider).set(value)

    def accuracy(self, task: str, *, audited: int, estimate: float, low: float, high: float, threshold: float) -> None:
        """The audit's live estimate for one task (estimate is NaN before the first audit)."""
        for bound, value in (("estimate", estimate), ("low", low), ("high", high)):
            self.local_accuracy.labels(task, bound).set(value)
        self.local_audits.labels(task).set(audited)
        self.task_threshold.labels(task).set(threshold)

    def on_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _GateCollector(Collector):
    """Each admission gate's limit, calls in flight and calls queued, read at scrape."""

    def __init__(self, gates: Callable[[], GateFigures]) -> None:
        self._gates = gates

    def collect(self) -> list[GaugeMetricFamily]:  # type: ignore[override]
        families = [
            GaugeMetricFamily("gateway_admission_limit", "Adaptive concurrency limit per gate", labels=["gate"]),
            GaugeMetricFamily("gateway_admission_in_flight", "Calls holding room per gate", labels=["gate"]),
            GaugeMetricFamily("gateway_admission_queued", "Calls waiting for room per gate", labels=["gate"]),
        ]
        for gate, figures in sorted(self._gates().items()):
            for family, value in zip(families, figures, strict=True):
                family.add_metric([gate], float(value))
        return families


@dataclass(frozen=True, slots=True)
class _AnswerSeries:
    """The labelled children one kind of answer increments."""

    requests: Counter
    outcomes: Counter
    latency: Histogram
    provider_latency: Histogram
    overhead: Histogram


def _asyncio_tasks() -> float:
    """Tasks of the running loop (scrapes run on it); NaN when read off the loop."""
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:
        return float("nan")
