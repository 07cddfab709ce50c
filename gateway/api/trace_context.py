"""The caller's W3C trace context (`traceparent`, `tracestate`), from gRPC metadata or HTTP headers, onto the request.

Carried as text; only the tracer (gateway/observe/tracing.py, when tracing is on) parses it,
and a malformed value starts a new trace. Oversized values are dropped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

from gateway.core.contracts import Request

MAX_TRACEPARENT = 128  # version 00 is 55 characters; later versions may add fields
MAX_TRACESTATE = 512  # the W3C limit a propagator must accept


def from_metadata(request: Request, metadata: Iterable[tuple[str, str | bytes]] | None) -> Request:
    """gRPC: the request with the caller's trace context from its invocation metadata (keys are lower case)."""
    traceparent = tracestate = ""
    for key, value in metadata or ():
        if key == "traceparent" and isinstance(value, str):
            traceparent = value
        elif key == "tracestate" and isinstance(value, str):
            tracestate = value
    return _with(request, traceparent, tracestate)


def from_headers(request: Request, header: Callable[[str], str | None]) -> Request:
    """HTTP: the request with the caller's trace context; `header` looks a header up (e.g. `request.headers.get`)."""
    return _with(request, header("traceparent") or "", header("tracestate") or "")


def _with(request: Request, traceparent: str, tracestate: str) -> Request:
    traceparent = traceparent.strip()
    if not traceparent or len(traceparent) > MAX_TRACEPARENT:
        return request
    tracestate = tracestate.strip() if len(tracestate) <= MAX_TRACESTATE else ""
    return dataclasses.replace(request, traceparent=traceparent, tracestate=tracestate)
