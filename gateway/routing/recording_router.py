"""The outermost decorator: tells observers about every answer (cache hits included) and every failure.

Usage records, Prometheus metrics, the in-memory counters and the request log
all hang off this one place, so a cached answer is counted exactly like a
routed one.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence

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
    ) -> None:
        self._inner = inner
        self._on_answer = on_answer
        self._on_failure = on_failure

    async def generate(self, request: Request) -> Result:
        started = time.perf_counter()
        try:
            result = await self._inner.generate(request)
        except GatewayError as exc:
            self._failed(request, exc, started)
            raise
        self._answered(request, result)
        return result

    async def stream(self, request: Request) -> AsyncIterator[Delta | Result]:
        started = time.perf_counter()
        try:
            async for event in self._inner.stream(request):
                if isinstance(event, Result):
                    self._answered(request, event)
                yield event
        except GatewayError as exc:
            self._failed(request, exc, started)
            raise

    def models(self) -> list[ModelEntry]:
        return self._inner.models()

    def _answered(self, request: Request, result: Result) -> None:
        for observe in self._on_answer:
            observe(request, result)

    def _failed(self, request: Request, error: GatewayError, started: float) -> None:
        seconds = time.perf_counter() - started
        for observe in self._on_failure:
            observe(request, error, seconds)
