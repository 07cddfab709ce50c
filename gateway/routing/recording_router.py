"""The outermost decorator: tells observers about every answer (cache hits included) and every failure.

Usage records, Prometheus metrics, the in-memory counters, the request log, the
training recorder and the audit all hang off this one place, so a cached answer
is counted exactly like a routed one. Each answer observer is handed the
request as it was decided (`Result.request`: access control and the policy
applied, e.g. LOCAL_ONLY for a local-only API key or a `local_only` rule), never
the caller's copy from before those layers. It also opens the request's span (the cache, local and provider
spans below are its children) and measures the gateway's own time: from here
to the answer, less the time spent waiting on backends and providers
(`Result.overhead_ms`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Sequence

from gateway.core import trace
from gateway.core.contracts import Delta, ModelEntry, Request, Result
from gateway.core.errors import GatewayError
from gateway.routing.answerer import Answerer

AnswerObserver = Callable[[Request, Result], None]
FailureObserver = Callable[[Request, GatewayError, float], None]  # request, error, seconds spent


class RecordingRouter:
    def __init__(
        self,
        inner: Answerer,
        *,
        on_answer: Sequence[AnswerObserver] = (),
        on_failure: Sequence[FailureObserver] = (),
        tracer: trace.Tracer = trace.NO_TRACER,
    ) -> None:
        self._inner = inner
        self._on_answer = on_answer
        self._on_failure = on_failure
        self._tracer = tracer

    async def generate(self, request: Request) -> Result:
        started = time.perf_counter()
        meter, token = trace.measure()
        try:
            with self._tracer.request(request) as span:
                try:
                    result = await self._inner.generate(request)
                except GatewayError as exc:
                    span.failed(exc)
                    self._failed(request, exc, started)
                    raise
                result = _with_overhead(result, started, meter)
                span.answered(result)
        finally:
            trace.stop_measuring(token)
        self._answered(request, result)
        return result

    async def stream(self, request: Request) -> AsyncIterator[Delta | Result]:
        """As generate; the time the consumer takes between pieces is not the gateway's (it waits in `yield`)."""
        started = time.perf_counter()
        meter, token = trace.measure()
        try:
            with self._tracer.request(request) as span:
                try:
                    async for piece in self._inner.stream(request):
                        event = _with_overhead(piece, started, meter) if isinstance(piece, Result) else piece
                        if isinstance(event, Result):
                            span.answered(event)
                            self._answered(request, event)
                        with meter:
                            yield event
                except GatewayError as exc:
                    span.failed(exc)
                    self._failed(request, exc, started)
                    raise
        finally:
            trace.stop_measuring(token)

    def models(self) -> list[ModelEntry]:
        return self._inner.models()

    def _answered(self, request: Request, result: Result) -> None:
        decided = result.request if result.request is not None else request  # None only from stand-in routers
        for observe in self._on_answer:
            observe(decided, result)

    def _failed(self, request: Request, error: GatewayError, started: float) -> None:
        seconds = time.perf_counter() - started
        for observe in self._on_failure:
            observe(request, error, seconds)


def _with_overhead(result: Result, started: float, meter: trace.WaitMeter) -> Result:
    own_s = max(time.perf_counter() - started - meter.waited_s, 0.0)
    return dataclasses.replace(result, overhead_ms=own_s * 1000)
