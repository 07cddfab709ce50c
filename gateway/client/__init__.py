"""Clients for the gateway's gRPC API: GatewayClient (blocking) and AsyncGatewayClient (asyncio).

Typed requests and results (frozen dataclasses), typed errors carrying the gRPC code, a deadline on
every call, retries with backoff on UNAVAILABLE only, an API key and TLS. Built on grpc and the
gateway.v1 stubs alone: importing it loads none of the server (no torch, no routing).
"""

from gateway.client.aio import AsyncGatewayClient
from gateway.client.channel import Tls
from gateway.client.errors import (
    Cancelled,
    DeadlineExceeded,
    GatewayError,
    IncompleteStream,
    Internal,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from gateway.client.retry import RetryPolicy
from gateway.client.sync import DEFAULT_TARGET, DEFAULT_TIMEOUT_S, GatewayClient
from gateway.client.types import (
    Attempt,
    Escalation,
    LatencySummary,
    Message,
    ModelInfo,
    Priority,
    Privacy,
    ProviderUsage,
    Request,
    Result,
    TaskAccuracy,
    Tier,
    Usage,
    UsageReport,
)

__all__ = [
    "DEFAULT_TARGET",
    "DEFAULT_TIMEOUT_S",
    "AsyncGatewayClient",
    "Attempt",
    "Cancelled",
    "DeadlineExceeded",
    "Escalation",
    "GatewayClient",
    "GatewayError",
    "IncompleteStream",
    "Internal",
    "InvalidArgument",
    "LatencySummary",
    "Message",
    "ModelInfo",
    "PermissionDenied",
    "Priority",
    "Privacy",
    "ProviderUsage",
    "Request",
    "ResourceExhausted",
    "Result",
    "RetryPolicy",
    "TaskAccuracy",
    "Tier",
    "Tls",
    "Unauthenticated",
    "Unavailable",
    "Usage",
    "UsageReport",
]
