"""Prometheus metrics, kept in a registry owned by the server (no process-wide globals)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from gateway.contracts import Result

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self, queue_depth: Callable[[], float] = lambda: 0.0) -> None:
        self.registry = CollectorRegistry()
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

    def record(self, result: Result) -> None:
        self.requests.labels(result.tier.value, result.provider, result.escalation.value).inc()
        self.latency.labels(result.tier.value).observe(result.latency_ms / 1000)

    def on_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
