"""Provider failures -> BackendError, the same way for every SDK.

The SDKs disagree on exception classes but agree on shape: an HTTP status
(`status_code`, or `code` for google-genai) with the response's headers, a
timeout, a dropped connection, or a body that does not parse. This maps by
shape so every provider reports the same thing for the same fault.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import Mapping
from typing import Any

from gateway.core.errors import BackendError

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
REQUEST_FAULT_STATUS = frozenset({400, 404, 413, 422})  # the request's fault, not the provider's health


class ProviderError(BackendError):
    """A provider call failed.

    `status_code`: the HTTP status when the provider answered with one.
    `maybe_billed`: the request may have reached the model (timeout, dropped
    connection, unreadable body), so its tokens may have been spent.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after_s: float | None = None,
        status_code: int | None = None,
        maybe_billed: bool = False,
    ) -> None:
        super().__init__(message, retryable=retryable, retry_after_s=retry_after_s)
        self.status_code = status_code
        self.maybe_billed = maybe_billed

    @property
    def counts_against_health(self) -> bool:
        """Whether the circuit breaker should count this (a bad request says nothing about the provider)."""
        return self.status_code not in REQUEST_FAULT_STATUS


def map_error(provider: str, exc: BaseException, *, key_env: str = "", secret: str = "") -> ProviderError:
    """Describe any SDK exception as a ProviderError; `secret` (the API key) is blanked from the text."""
    if isinstance(exc, ProviderError):
        return exc
    error = _map(provider, exc, key_env)
    if secret and secret in error.message:
        error = ProviderError(
            error.message.replace(secret, "***"),
            retryable=error.retryable,
            retry_after_s=error.retry_after_s,
            status_code=error.status_code,
            maybe_billed=error.maybe_billed,
        )
    return error


def _map(provider: str, exc: BaseException, key_env: str) -> ProviderError:
    status = _status_of(exc)
    if status is not None:
        headers = _headers_of(exc)
        retry_after = retry_after_s(headers) if headers is not None else None
        return ProviderError(
            f"{provider}: HTTP {status}{_hint(status, key_env)}: {_short(exc)}",
            retryable=status in RETRYABLE_STATUS or status >= 500,
            retry_after_s=retry_after,
            status_code=status,
        )
    if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError):
        return ProviderError(f"{provider}: malformed response body: {_short(exc)}", retryable=False, maybe_billed=True)
    if _is_timeout(exc):
        return ProviderError(f"{provider}: timed out: {_short(exc)}", retryable=True, maybe_billed=True)
    if _is_transport(exc):
        return ProviderError(f"{provider}: connection failed: {_short(exc)}", retryable=True, maybe_billed=True)
    return ProviderError(f"{provider}: {type(exc).__name__}: {_short(exc)}", retryable=False, maybe_billed=True)


def retry_after_s(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds the provider asked us to wait: retry-after-ms, or Retry-After as seconds or an HTTP date."""
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _status_of(exc: BaseException) -> int | None:
    for value in (getattr(exc, "status_code", None), getattr(exc, "code", None)):
        if isinstance(value, int) and 100 <= value <= 599:
            return value
    response = getattr(exc, "response", None)
    for value in (getattr(response, "status_code", None), getattr(response, "status", None)):
        if isinstance(value, int) and 100 <= value <= 599:
            return value
    return None


def _headers_of(exc: BaseException) -> Mapping[str, str] | None:
    headers: Any = getattr(getattr(exc, "response", None), "headers", None)
    return headers if isinstance(headers, Mapping) else None


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError | asyncio.TimeoutError) or "Timeout" in type(exc).__name__


def _is_transport(exc: BaseException) -> bool:
    name = type(exc).__name__
    module = type(exc).__module__.split(".")[0]
    return (
        isinstance(exc, ConnectionError | OSError)
        or module in {"httpx", "httpx2", "httpcore", "httpcore2", "aiohttp"}
        or any(word in name for word in ("Connection", "Protocol", "Payload", "Disconnected"))
    )


def _hint(status: int, key_env: str) -> str:
    if status in (401, 403):
        return f" (check the API key{' in ' + key_env if key_env else ''})"
    if status == 429:
        return " (rate limited)"
    return ""


def _short(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
