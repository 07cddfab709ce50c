"""How a local HTTP backend's failures become gateway errors, the same way for vLLM and Ollama.

The router's reading of each class: InvalidArgument and DeadlineExceeded go
back to the client; CapacityExceeded escalates as "local_capacity"; any other
error escalates as "local_error".
"""

from __future__ import annotations

import time

from gateway.core.errors import BackendError, CapacityExceeded, DeadlineExceeded, GatewayError, InvalidArgument


def status_error(backend: str, status: int, detail: str, *, retry_after_s: float | None = None) -> GatewayError:
    """An HTTP error status from the server -> the gateway error that says what to change."""
    detail = " ".join(detail.split())[:300]
    if status in (400, 422):
        return InvalidArgument(f"{backend} refused the request: {detail}")
    if status in (401, 403):
        return BackendError(f"{backend}: HTTP {status}: check the API key the gateway sends ({detail})")
    if status == 404:
        return BackendError(f"{backend}: HTTP 404: {detail}")
    if status == 429:
        return CapacityExceeded(f"{backend} is at capacity (HTTP 429): {detail}")
    return BackendError(f"{backend}: HTTP {status}: {detail}", retryable=status >= 500, retry_after_s=retry_after_s)


def timeout_error(backend: str, deadline: float | None, timeout_s: float) -> GatewayError:
    """A request ran out of time: the client's deadline, or the backend's own timeout."""
    if deadline is not None and time.monotonic() >= deadline - 0.001:
        return DeadlineExceeded(f"the request's deadline passed while {backend} was generating")
    return BackendError(f"{backend} gave no complete answer within {timeout_s:.1f} s", retryable=True)


def connect_error(backend: str, where: str, hint: str, exc: BaseException) -> BackendError:
    return BackendError(f"{backend} at {where} is unreachable ({type(exc).__name__}: {exc}); {hint}", retryable=True)


def retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
