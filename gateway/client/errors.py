"""Typed errors: each carries the gRPC status code and the server's message."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType

import grpc


class GatewayError(Exception):
    """A call failed. `code` is the gRPC status, `message` the server's words (they name the bad field)."""

    def __init__(self, code: grpc.StatusCode, message: str, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.metadata: Mapping[str, str] = MappingProxyType(dict(metadata or {}))  # the call's trailing metadata


class InvalidArgument(GatewayError):
    """The request is malformed; the message names the field and what to change. Not retried."""


class Unauthenticated(GatewayError):
    """No API key, a wrong one, or a revoked one."""


class PermissionDenied(GatewayError):
    """The key may not use this task or tier."""


class ResourceExhausted(GatewayError):
    """Every allowed tier is out of budget or capacity, or the key is over its quota (the message says until when)."""

    @property
    def resets_at(self) -> datetime | None:
        """When the spent budget or quota comes back (the `x-gateway-resets-at` trailer); None when unknown."""
        value = self.metadata.get("x-gateway-resets-at", "")
        try:
            return datetime.fromisoformat(value) if value else None
        except ValueError:
            return None


class DeadlineExceeded(GatewayError):
    """The call's deadline passed before an answer."""


class Unavailable(GatewayError):
    """The gateway could not be reached or is draining. The only code the client retries."""


class Cancelled(GatewayError):
    """The call was cancelled."""


class Internal(GatewayError):
    """A fault inside the gateway."""


class IncompleteStream(GatewayError):
    """A stream ended without its final chunk."""

    def __init__(self) -> None:
        super().__init__(grpc.StatusCode.DATA_LOSS, "the stream ended without its final chunk")


_BY_CODE: Mapping[grpc.StatusCode, type[GatewayError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.INTERNAL: Internal,
}


def from_rpc_error(error: grpc.RpcError) -> GatewayError:
    """The typed error for a failed call (sync grpc.Call or grpc.aio.AioRpcError)."""
    code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
    details: str | None = error.details()  # type: ignore[attr-defined]
    trailing = error.trailing_metadata() or ()  # type: ignore[attr-defined]
    metadata = {str(k): v for k, v in trailing if isinstance(v, str)}
    return _BY_CODE.get(code, GatewayError)(code, details or code.name.lower(), metadata)
