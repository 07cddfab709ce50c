"""The seam between the request path and tracing, and the time one request spends waiting.

The router, the cache layer and the remote tier are given a `Tracer` and open a span for
each step (cache lookup, local attempt, remote chain, each provider). The OpenTelemetry
implementation is gateway/observe/tracing.py, built only when `[tracing] enabled = true`;
the default, `NO_TRACER`, makes nothing: its spans are one shared object that ignores
what it is told. Attributes are figures and names, never prompt or completion text.

`waiting()` marks time spent waiting on a local backend or a provider; the recording layer
subtracts it from the total to get the gateway's own time (its overhead). The meter of
the request being answered lives in a context variable, like OpenTelemetry's current span:
each request (each asyncio task) sees its own, and overlapping waits count once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Protocol

from gateway.core.contracts import Request, Result
from gateway.core.errors import GatewayError

AttributeValue = str | bool | int | float
Attributes = Mapping[str, AttributeValue]


class Span(Protocol):
    """What a step may say about itself (the names are OpenTelemetry's, so its spans fit)."""

    def set_attribute(self, key: str, value: AttributeValue) -> None: ...

    def add_event(self, name: str, attributes: Attributes | None = None) -> None: ...


class SpanScope(Protocol):
    def __enter__(self) -> Span: ...

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> bool | None: ...


class RequestSpan(Protocol):
    """The span of one request: told how it ended."""

    def answered(self, result: Result) -> None: ...

    def failed(self, error: GatewayError) -> None: ...


class RequestScope(Protocol):
    def __enter__(self) -> RequestSpan: ...

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> bool | None: ...


class Tracer(Protocol):
    def request(self, request: Request) -> RequestScope:
        """The span of one request, a child of the caller's W3C trace context when the request carries one."""
        ...

    def span(self, name: str, attributes: Attributes | None = None) -> SpanScope:
        """A child of the current span, open for the `with` block."""
        ...

    def record(self, name: str, start_ns: int, end_ns: int, attributes: Attributes | None = None) -> None:
        """A finished child of the current span over the given wall-clock times (time.time_ns()):
        a phase measured after the fact, such as a local backend's queue wait."""
        ...


class _NoSpan:
    """Every no-op at once: span, request span and their scopes. One instance serves every request."""

    __slots__ = ()

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        return None

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        return None

    def add_event(self, name: str, attributes: Attributes | None = None) -> None:
        return None

    def answered(self, result: Result) -> None:
        return None

    def failed(self, error: GatewayError) -> None:
        return None


class NoTracer:
    """Tracing off: no spans, nothing allocated."""

    __slots__ = ()

    def request(self, request: Request) -> RequestScope:
        return NO_SPAN

    def span(self, name: str, attributes: Attributes | None = None) -> SpanScope:
        return NO_SPAN

    def record(self, name: str, start_ns: int, end_ns: int, attributes: Attributes | None = None) -> None:
        return None


NO_SPAN = _NoSpan()
NO_TRACER = NoTracer()


class WaitMeter:
    """Seconds one request spent waiting on backends and providers; overlapping waits are counted once.

    Used as `with meter:` around each wait (through `waiting()`).
    """

    __slots__ = ("_open", "_since", "waited_s")

    def __init__(self) -> None:
        self.waited_s = 0.0
        self._open = 0
        self._since = 0.0

    def __enter__(self) -> None:
        if self._open == 0:
            self._since = time.perf_counter()
        self._open += 1

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._open -= 1
        if self._open == 0:
            self.waited_s += time.perf_counter() - self._since


class _NoWait:
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        return None


_NO_WAIT = _NoWait()
_METER: ContextVar[WaitMeter | None] = ContextVar("gateway_wait_meter", default=None)


def waiting() -> WaitMeter | _NoWait:
    """`with waiting():` around a wait on a backend or provider; nothing when no request is being measured."""
    return _METER.get() or _NO_WAIT


def measure() -> tuple[WaitMeter, Token[WaitMeter | None]]:
    """Start measuring the current request's waits; pass the token to `stop_measuring` when it is answered."""
    meter = WaitMeter()
    return meter, _METER.set(meter)


def stop_measuring(token: Token[WaitMeter | None]) -> None:
    try:
        _METER.reset(token)
    except ValueError:  # a stream closed from another context (garbage collection): that context ends anyway
        return
