"""GatewayError -> HTTP status and OpenAI's error body: the one place errors become HTTP answers.

The body is OpenAI's `{"error": {"message", "type", "param", "code"}}`, so OpenAI SDKs raise
their usual typed errors (BadRequestError, AuthenticationError, RateLimitError, ...). `code`
is the gRPC status name in lower case, the same on both doors. A spent budget or quota
(ResourceExhausted with `resets_at`) adds `Retry-After` in whole seconds.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gateway.core.errors import GatewayError, ResourceExhausted, Status

_HTTP_STATUS = {
    Status.INVALID_ARGUMENT: 400,
    Status.UNAUTHENTICATED: 401,
    Status.PERMISSION_DENIED: 403,
    Status.RESOURCE_EXHAUSTED: 429,
    Status.UNAVAILABLE: 503,
    Status.DEADLINE_EXCEEDED: 504,
    Status.INTERNAL: 500,
}
_ERROR_TYPE = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "service_unavailable",
    504: "timeout",
}
SDK_LONGEST_RETRY_AFTER_S = 60  # longer waits: x-should-retry: false
_PARAM = re.compile(r"^([A-Za-z_][\w.\[\]-]*): ")  # messages say "field: what to change"


def http_status(error: GatewayError) -> int:
    """The HTTP status for a gateway error (400, 401, 403, 429, 503, 504; 500 for anything unexpected)."""
    return _HTTP_STATUS[error.status]


def error_type(status: int) -> str:
    return _ERROR_TYPE.get(status, "invalid_request_error" if status < 500 else "server_error")


def param_of(error: GatewayError) -> str | None:
    """The request field a bad-input error is about: its `param`, else the "field: ..." prefix of its message."""
    param = getattr(error, "param", None)
    if isinstance(param, str) and param:
        return param
    if error.status is not Status.INVALID_ARGUMENT:
        return None
    match = _PARAM.match(error.message)
    return match.group(1) if match else None


def error_body(status: int, message: str, *, code: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type(status), "param": param, "code": code}}


def gateway_error_body(error: GatewayError) -> dict[str, Any]:
    return error_body(http_status(error), error.message, code=error.status.value.lower(), param=param_of(error))


def error_headers(error: GatewayError, now: datetime) -> dict[str, str]:
    """`Retry-After` (seconds, at least 1) and `x-gateway-resets-at` (as gRPC's trailers) when a spent
    budget or quota resets at a known time.

    The OpenAI SDKs retry a 429 by themselves: the Python SDK waits out a Retry-After of up to a
    minute (a longer one it replaces by its own short backoff), the Node SDK any Retry-After (it
    would sleep until a daily budget resets). Beyond a minute, `x-should-retry: false` tells both
    not to retry. A deadline that passed is not retried either.
    """
    headers: dict[str, str] = {}
    if isinstance(error, ResourceExhausted) and error.resets_at is not None:
        wait_s = max(1, math.ceil((error.resets_at - now).total_seconds()))
        headers["Retry-After"] = str(wait_s)
        headers["x-gateway-resets-at"] = error.resets_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if wait_s > SDK_LONGEST_RETRY_AFTER_S:
            headers["x-should-retry"] = "false"
    elif error.status is Status.DEADLINE_EXCEEDED:
        headers["x-should-retry"] = "false"
    return headers


def error_response(
    status: int, message: str, *, code: str, param: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(error_body(status, message, code=code, param=param), status=status, headers=headers)


def gateway_error_response(error: GatewayError, now: datetime) -> web.Response:
    """The HTTP answer to a gateway error: its status, OpenAI's error body, Retry-After where it applies."""
    return web.json_response(gateway_error_body(error), status=http_status(error), headers=error_headers(error, now))
