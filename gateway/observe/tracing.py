"""OpenTelemetry traces of each request, exported over OTLP: the `Tracer` of gateway/core/trace.py.

Imported only when `[tracing] enabled = true` (gateway/app/tracing.py): with tracing off
the gateway never loads OpenTelemetry. One trace per request:

    gateway.request            the request; a child of the caller's W3C traceparent when it sent one
      gateway.cache            the response-cache lookup (gateway.cache.result)
      gateway.local            the local attempt (queue estimate at admission, outcome, confidence, tokens)
      gateway.remote           the provider chain (order; skipped providers as `provider.skipped` events)
        gateway.provider       one per provider tried (each try a `provider.attempt` event, retries `provider.retry`)

Attributes are names, figures and outcomes; never prompt or completion text, never keys.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from opentelemetry import trace as otel
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.config import ConfigError, TracingConfig
from gateway.core.contracts import Request, Result
from gateway.core.errors import GatewayError
from gateway.core.trace import Attributes, AttributeValue, RequestScope, RequestSpan, SpanScope

INSTRUMENTATION = "gateway"


class OtelTracer:
    """Spans on an OpenTelemetry tracer; the current span (OpenTelemetry's context) is the parent."""

    def __init__(self, tracer: otel.Tracer) -> None:
        self._tracer = tracer
        self._propagator = TraceContextTextMapPropagator()

    def request(self, request: Request) -> RequestScope:
        return self._request_span(request)

    def span(self, name: str, attributes: Attributes | None = None) -> SpanScope:
        return self._tracer.start_as_current_span(name, attributes=attributes)

    def record(self, name: str, start_ns: int, end_ns: int, attributes: Attributes | None = None) -> None:
        self._tracer.start_span(name, attributes=attributes, start_time=start_ns).end(end_time=end_ns)

    @contextmanager
    def _request_span(self, request: Request) -> Iterator[RequestSpan]:
        parent = None
        if request.traceparent:
            carrier = {"traceparent": request.traceparent}
            if request.tracestate:
                carrier["tracestate"] = request.tracestate
            parent = self._propagator.extract(carrier)  # malformed: an empty context, so a new trace
        with self._tracer.start_as_current_span(
            "gateway.request", context=parent, kind=otel.SpanKind.SERVER, attributes=request_attributes(request)
        ) as span:
            yield _RequestSpan(span)


@dataclass(frozen=True, slots=True)
class _RequestSpan:
    span: otel.Span

    def answered(self, result: Result) -> None:
        self.span.set_attributes(result_attributes(result))

    def failed(self, error: GatewayError) -> None:
        self.span.set_attribute("gateway.error.status", error.status.value)
        self.span.set_status(otel.Status(otel.StatusCode.ERROR, error.message))


def request_attributes(request: Request) -> dict[str, AttributeValue]:
    """What the request asked for: its id, task, priority, privacy, limits. Not its messages."""
    attributes: dict[str, AttributeValue] = {
        "gateway.request_id": request.request_id,
        "gateway.task": request.task,
        "gateway.priority": request.priority.name.lower(),
        "gateway.privacy": request.privacy.name.lower(),
        "gen_ai.request.max_tokens": request.max_tokens,
    }
    if request.model:
        attributes["gateway.request.model"] = request.model
    if request.client:
        attributes["gateway.client"] = request.client
    return attributes


def result_attributes(result: Result) -> dict[str, AttributeValue]:
    """How the request was answered. Not the text."""
    attributes: dict[str, AttributeValue] = {
        "gateway.tier": result.tier.value,
        "gateway.provider": result.provider,
        "gateway.model": result.model,
        "gateway.escalation": result.escalation.value,
        "gateway.attempts": len(result.attempts),
        "gateway.finish_reason": result.finish_reason,
        "gateway.latency_ms": round(result.latency_ms, 3),
        "gateway.overhead_ms": round(result.overhead_ms, 3),
        "gen_ai.usage.input_tokens": result.usage.prompt_tokens,
        "gen_ai.usage.output_tokens": result.usage.completion_tokens,
    }
    if result.confidence is not None:
        attributes["gateway.confidence"] = result.confidence
    if result.request is not None:  # as access control and the policy decided it (a local-only key, a rule)
        attributes["gateway.privacy"] = result.request.privacy.name.lower()
    return attributes


class Tracing:
    """The tracer provider of one server: its spans are batched off the event loop and flushed on close."""

    def __init__(self, config: TracingConfig, exporter: SpanExporter) -> None:
        sampler = ParentBased(TraceIdRatioBased(config.sample_ratio))
        self._provider = TracerProvider(
            sampler=sampler, resource=Resource.create({"service.name": config.service_name})
        )
        self._provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = OtelTracer(self._provider.get_tracer(INSTRUMENTATION))

    def close(self) -> None:
        """Export what is still queued, then stop (blocking: run it in a thread)."""
        self._provider.shutdown()


def open_tracing(config: TracingConfig, env: Mapping[str, str], exporter: SpanExporter | None = None) -> Tracing:
    """Tracing as configured; `exporter` replaces the OTLP exporter (tests hand in an in-memory one)."""
    return Tracing(config, exporter if exporter is not None else otlp_exporter(config, env))


def otlp_exporter(config: TracingConfig, env: Mapping[str, str]) -> SpanExporter:
    headers = export_headers(config, env)
    endpoint = config.endpoint or None
    if config.protocol == "http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter(endpoint=endpoint, headers=headers, timeout=config.timeout_s)
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

    return GrpcExporter(endpoint=endpoint, headers=headers, timeout=config.timeout_s)


def export_headers(config: TracingConfig, env: Mapping[str, str]) -> dict[str, str] | None:
    """`key=value,key2=value2` from the variable named by headers_env (the values are secrets: never logged)."""
    if not config.headers_env:
        return None
    raw = env.get(config.headers_env, "")
    if not raw:
        raise ConfigError(
            f"tracing.headers_env: the environment variable {config.headers_env} is not set; "
            "set it to 'key=value,...' or leave headers_env empty"
        )
    headers = {}
    for index, item in enumerate(raw.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"tracing.headers_env: item {index + 1} of {config.headers_env} is not 'key=value'; fix the variable"
            )
        headers[key.strip().lower()] = value.strip()
    return headers
