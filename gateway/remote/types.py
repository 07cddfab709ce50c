"""Values the remote tier takes and returns, and the errors it raises (each carries the attempts)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from gateway.core.contracts import Attempt, Backend, Completion, Usage
from gateway.core.errors import DeadlineExceeded, ResourceExhausted, Unavailable
from gateway.remote.retry import RetryPolicy
from gateway.state.breaker.machine import BreakerSettings


@dataclass(frozen=True, slots=True)
class RemoteResult:
    completion: Completion
    attempts: tuple[Attempt, ...]


@dataclass(frozen=True, slots=True)
class ProviderSlot:
    """An enabled provider and its limits."""

    backend: Backend
    daily_token_budget: int = 0  # prompt + completion tokens per UTC day; 0 = no limit
    requests_per_minute: int = 0  # 0 = no limit
    max_retries: int = 2  # retries of the same provider before falling back to the next
    price_in_per_mtok: float = 0.0
    price_out_per_mtok: float = 0.0
    budget_cached_weight: float = 1.0  # what one prompt-cache read counts against daily_token_budget

    def charge(self, usage: Usage) -> int:
        """Tokens an answer counts against the daily budget: every token, prompt-cache reads at their weight."""
        discount = usage.cached_prompt_tokens * (1.0 - self.budget_cached_weight)
        return max(usage.total - math.floor(discount), 0)

    @property
    def name(self) -> str:
        return self.backend.name


@dataclass(frozen=True, slots=True)
class DisabledProvider:
    """A configured provider that cannot be called (no key, SDK missing): named in errors and usage."""

    name: str
    reason: str
    daily_token_budget: int = 0


@dataclass(frozen=True, slots=True)
class RemoteSettings:
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    latency_alpha: float = 0.3  # EWMA weight of the newest latency (URGENT ordering)
    continue_streams: bool = True  # a stream broken after its first piece is continued by the next provider
    stream_chunk_timeout_s: float | None = None  # a stream silent this long has stalled; None = the SDK's timeout


@dataclass(frozen=True, slots=True)
class ProviderUsageRow:
    """One provider's spend today (UTC), for GetUsage."""

    provider: str
    tokens_used: int
    token_budget: int  # 0 = no limit
    requests: int
    remaining: int | None  # None = no limit
    resets_at: datetime  # the next UTC midnight


class RemoteUnavailable(Unavailable):
    """No provider could answer (failures, open circuits, missing keys)."""

    def __init__(self, message: str, attempts: tuple[Attempt, ...]) -> None:
        super().__init__(message)
        self.attempts = attempts


class RemoteExhausted(ResourceExhausted):
    """Every allowed provider is out of its daily token budget or its requests per minute."""

    def __init__(self, message: str, attempts: tuple[Attempt, ...], resets_at: datetime) -> None:
        super().__init__(message, resets_at=resets_at)
        self.attempts = attempts


class RemoteDeadlineExceeded(DeadlineExceeded):
    def __init__(self, message: str, attempts: tuple[Attempt, ...]) -> None:
        super().__init__(message)
        self.attempts = attempts
