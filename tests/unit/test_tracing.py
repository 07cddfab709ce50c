"""The tracing seam and the overhead figure: waits counted once, overhead = own time, trace context, OTel wiring."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.api import trace_context
from gateway.config import ConfigError, TracingConfig
from gateway.core import trace
from gateway.core.contracts import Delta, Escalation, Message, ModelEntry, Privacy, Request, Result, Role, Tier, Usage
from gateway.core.errors import Unavailable
from gateway.observe.metrics import Metrics
from gateway.observe.tracing import OtelTracer, export_headers, otlp_exporter
from gateway.routing.recording_router import RecordingRouter

ROOT = Path(__file__).resolve().parents[2]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


class FakeClock:
    """Stands in for time.perf_counter: moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr("time.perf_counter", fake)
    return fake


def request(**fields: object) -> Request:
    return Request("r1", (Message(Role.USER, "the prompt text"),), 8, **fields)  # type: ignore[arg-type]


def result() -> Result:
    return Result(
        "r1", "the answer text", Tier.LOCAL, "echo", "echo", 0.9, Escalation.NONE, Usage(3, 2), (), "stop", 1.0
    )


class Waiting:
    """An answerer that spends `own_s` of its own time and waits `wait_s` on a 'backend' (twice, overlapping)."""

    def __init__(self, clock: FakeClock, own_s: float, wait_s: float) -> None:
        self._clock, self._own_s, self._wait_s = clock, own_s, wait_s

    async def generate(self, _: Request) -> Result:
        self._clock.advance(self._own_s)
        with trace.waiting(), trace.waiting():  # a hedge racing the first wait: its seconds are not counted twice
            self._clock.advance(self._wait_s)
        return result()

    async def stream(self, _: Request) -> AsyncIterator[Delta | Result]:
        self._clock.advance(self._own_s)
        with trace.waiting():
            self._clock.advance(self._wait_s)
        yield Delta("the answer")
        yield result()

    def models(self) -> list[ModelEntry]:
        return []


async def test_overhead_is_the_time_not_spent_waiting_on_a_backend(clock: FakeClock) -> None:
    answered = await RecordingRouter(Waiting(clock, own_s=0.002, wait_s=5.0)).generate(request())
    assert answered.overhead_ms == pytest.approx(2.0)


async def test_a_streams_consumer_time_is_not_the_gateways(clock: FakeClock) -> None:
    events = []
    async for event in RecordingRouter(Waiting(clock, own_s=0.003, wait_s=1.0)).stream(request()):
        clock.advance(7.0)  # the client reads slowly
        events.append(event)
    final = events[-1]
    assert isinstance(final, Result)
    assert final.overhead_ms == pytest.approx(3.0)


async def test_each_request_has_its_own_meter(clock: FakeClock) -> None:
    """Concurrent requests (one task each, as gRPC and GenerateBatch run them) never see each other's waits."""
    router = RecordingRouter(Waiting(clock, own_s=0.001, wait_s=2.0))
    answers = await asyncio.gather(*(router.generate(request()) for _ in range(3)))
    assert [a.overhead_ms for a in answers] == pytest.approx([1.0, 1.0, 1.0])
    assert trace.waiting() is not None and not isinstance(trace.waiting(), trace.WaitMeter)  # none left behind


def test_waiting_outside_a_request_measures_nothing() -> None:
    with trace.waiting():
        pass
    assert not isinstance(trace.waiting(), trace.WaitMeter)


def test_the_no_op_tracer_hands_out_one_shared_object() -> None:
    first = trace.NO_TRACER.span("gateway.cache", {"a": 1})
    assert first is trace.NO_TRACER.span("gateway.local") is trace.NO_TRACER.request(request())
    with first as span:
        span.set_attribute("k", "v")
        span.add_event("e", {"k": 1})


def test_the_overhead_histogram_observes_each_answer() -> None:
    metrics = Metrics()
    answered = Result("r1", "t", Tier.CACHE, "echo", "echo", None, Escalation.NONE, Usage(), (), "stop", 1.0)
    metrics.answered(request(), dataclasses.replace(answered, overhead_ms=0.3))
    body = metrics.render().decode()
    assert 'gateway_overhead_seconds_count{tier="cache"} 1.0' in body
    assert 'gateway_overhead_seconds_bucket{le="0.0005",tier="cache"} 1.0' in body
    assert 'gateway_overhead_seconds_bucket{le="0.00025",tier="cache"} 0.0' in body


# -- the caller's trace context ---------------------------------------------------------------------------


def test_traceparent_and_tracestate_come_from_grpc_metadata() -> None:
    metadata = (("authorization", "Bearer x"), ("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01"), ("tracestate", "a=1"))
    traced = trace_context.from_metadata(request(), metadata)
    assert (traced.traceparent, traced.tracestate) == (f"00-{TRACE_ID}-{PARENT_ID}-01", "a=1")
    assert trace_context.from_metadata(request(), None) == request()


def test_traceparent_comes_from_http_headers_and_oversized_values_are_dropped() -> None:
    headers = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "tracestate": "x" * 600}
    traced = trace_context.from_headers(request(), headers.get)
    assert (traced.traceparent, traced.tracestate) == (f"00-{TRACE_ID}-{PARENT_ID}-01", "")
    assert trace_context.from_headers(request(), {"traceparent": "0" * 200}.get).traceparent == ""


# -- OpenTelemetry ------------------------------------------------------------------------------------------


@pytest.fixture
def exported() -> Iterator[tuple[OtelTracer, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield OtelTracer(provider.get_tracer("test")), exporter
    provider.shutdown()


def test_a_request_span_is_a_child_of_the_callers_context(exported: tuple[OtelTracer, InMemorySpanExporter]) -> None:
    tracer, exporter = exported
    with tracer.request(request(traceparent=f"00-{TRACE_ID}-{PARENT_ID}-01", tracestate="desk=7")) as span:
        with tracer.span("gateway.local", {"gateway.backend": "echo"}):
            pass
        span.answered(result())
    local, outer = exporter.get_finished_spans()
    assert outer.context.trace_id == int(TRACE_ID, 16) and outer.parent.span_id == int(PARENT_ID, 16)
    assert outer.context.trace_state.get("desk") == "7"
    assert local.parent.span_id == outer.context.span_id
    assert outer.attributes["gateway.tier"] == "local" and outer.attributes["gen_ai.usage.input_tokens"] == 3
    assert "the prompt text" not in str(outer.attributes) and "the answer text" not in str(outer.attributes)


def test_a_malformed_traceparent_starts_a_new_trace(exported: tuple[OtelTracer, InMemorySpanExporter]) -> None:
    tracer, exporter = exported
    with tracer.request(request(traceparent="00-not-a-trace-01")):
        pass
    (span,) = exporter.get_finished_spans()
    assert span.parent is None and span.context.trace_id != 0


def test_a_failed_request_has_an_error_status(exported: tuple[OtelTracer, InMemorySpanExporter]) -> None:
    tracer, exporter = exported
    with tracer.request(request()) as span:
        span.failed(Unavailable("no healthy tier"))
    (finished,) = exporter.get_finished_spans()
    assert finished.status.status_code.name == "ERROR" and finished.status.description == "no healthy tier"
    assert finished.attributes["gateway.error.status"] == "UNAVAILABLE"


def test_the_otlp_exporter_follows_the_config() -> None:
    env = {"OTLP_HEADERS": "x-api-key=s3cret, x-team=desk"}
    config = TracingConfig(enabled=True, protocol="http", endpoint="http://collector:4318/v1/traces")
    http = otlp_exporter(config.model_copy(update={"headers_env": "OTLP_HEADERS"}), env)
    assert type(http).__module__.startswith("opentelemetry.exporter.otlp.proto.http")
    assert http._endpoint == "http://collector:4318/v1/traces"
    grpc = otlp_exporter(TracingConfig(enabled=True, endpoint="http://collector:4317"), {})
    assert type(grpc).__module__.startswith("opentelemetry.exporter.otlp.proto.grpc")
    assert export_headers(TracingConfig(headers_env="OTLP_HEADERS"), env) == {"x-api-key": "s3cret", "x-team": "desk"}


def test_bad_exporter_headers_name_the_variable_without_its_value() -> None:
    with pytest.raises(ConfigError, match=r"tracing\.headers_env: the environment variable MISSING is not set"):
        export_headers(TracingConfig(headers_env="MISSING"), {})
    with pytest.raises(ConfigError, match=r"item 2 of OTLP_HEADERS is not 'key=value'") as caught:
        export_headers(TracingConfig(headers_env="OTLP_HEADERS"), {"OTLP_HEADERS": "a=s3cret,broken"})
    assert "s3cret" not in str(caught.value)


def test_with_tracing_off_the_gateway_never_imports_opentelemetry() -> None:
    code = (
        "import sys, gateway.app.server, gateway.cli, local_models.echo\n"
        "from gateway.app.tracing import build_tracing\n"
        "from gateway.config import load_config\n"
        "handle = build_tracing(load_config().tracing, {})\n"
        "print(type(handle.tracer).__name__, [m for m in sys.modules if m.startswith('opentelemetry')])"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "NoTracer []"


async def test_the_request_span_ends_with_the_privacy_the_request_was_decided_with() -> None:
    """A local-only API key (or rule) makes the request LOCAL_ONLY below the doors; its span says so once answered."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    class Decided:
        async def generate(self, asked: Request) -> Result:
            return dataclasses.replace(result(), request=dataclasses.replace(asked, privacy=Privacy.LOCAL_ONLY))

        def models(self) -> list[ModelEntry]:
            return []

    seen: list[Request] = []
    recorder = RecordingRouter(
        Decided(),  # type: ignore[arg-type]
        on_answer=[lambda decided, _: seen.append(decided)],
        tracer=OtelTracer(provider.get_tracer("test")),
    )
    await recorder.generate(request())
    [span] = exporter.get_finished_spans()
    assert span.attributes is not None and span.attributes["gateway.privacy"] == "local_only"
    assert [q.privacy for q in seen] == [Privacy.LOCAL_ONLY]  # observers get the decided request, not the caller's
