"""The gateway's error tree and the one place it maps to gRPC status codes.

Messages say what to change. Standard library only, so backends and providers
raise these without importing grpc.
"""

from __future__ import annotations

import enum
from datetime import datetime


class Status(enum.Enum):
    """The gRPC status each error maps to (names match grpc.StatusCode)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"


class GatewayError(Exception):
    status = Status.INTERNAL
    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(GatewayError):
    """Bad input: the message names the field and what to change."""

    status = Status.INVALID_ARGUMENT


class Unauthenticated(GatewayError):
    status = Status.UNAUTHENTICATED


class PermissionDenied(GatewayError):
    status = Status.PERMISSION_DENIED


class ResourceExhausted(GatewayError):
    """Every allowed tier is out of budget or capacity; `resets_at` says when a spent budget or quota comes back."""

    status = Status.RESOURCE_EXHAUSTED

    def __init__(self, message: str, *, resets_at: datetime | None = None) -> None:
        super().__init__(message)
        self.resets_at = resets_at


class CapacityExceeded(ResourceExhausted):
    """A local backend cannot start the request within its deadline."""


class DeadlineExceeded(GatewayError):
    status = Status.DEADLINE_EXCEEDED


class Unavailable(GatewayError):
    """No healthy tier could answer."""

    status = Status.UNAVAILABLE
    retryable = True


class BackendError(GatewayError):
    """A backend or provider failed; `retryable` says whether the same call may succeed."""

    status = Status.UNAVAILABLE

    def __init__(self, message: str, *, retryable: bool = False, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s
