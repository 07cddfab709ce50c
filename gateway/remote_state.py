"""Where the remote tier keeps provider health and request windows: the interfaces and the in-process forms.

RemoteTier talks to these two narrow async interfaces, so shared stores
(SQLite or Redis, for several gateway processes) can replace the in-process
defaults below without changing the tier.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from gateway.breaker import BreakerSettings, BreakerState, CircuitBreaker, Permit
from gateway.ratelimit import RateLimiter


class ProviderBreakers(Protocol):
    """One circuit breaker per provider (gateway/breaker.py has the state machine)."""

    async def allow(self, provider: str) -> Permit | None: ...

    async def release(self, provider: str, permit: Permit) -> None: ...

    async def record_success(self, provider: str) -> None: ...

    async def record_failure(self, provider: str) -> None: ...

    async def block_for(self, provider: str, seconds: float) -> None: ...

    async def state(self, provider: str) -> BreakerState: ...

    async def describe(self, provider: str) -> str: ...


class ProviderRateLimits(Protocol):
    """requests_per_minute windows per provider."""

    async def try_acquire(self, provider: str, per_minute: int) -> bool: ...

    async def free_in_s(self, provider: str, per_minute: int) -> float: ...


class LocalBreakers:
    """In-process breakers, one per provider, created on first use."""

    def __init__(self, settings: BreakerSettings, monotonic: Callable[[], float]) -> None:
        self._settings = settings
        self._now = monotonic
        self._breakers: dict[str, CircuitBreaker] = {}

    def _get(self, provider: str) -> CircuitBreaker:
        if provider not in self._breakers:
            self._breakers[provider] = CircuitBreaker(self._settings, self._now)
        return self._breakers[provider]

    async def allow(self, provider: str) -> Permit | None:
        return self._get(provider).allow()

    async def release(self, provider: str, permit: Permit) -> None:
        self._get(provider).release(permit)

    async def record_success(self, provider: str) -> None:
        self._get(provider).record_success()

    async def record_failure(self, provider: str) -> None:
        self._get(provider).record_failure()

    async def block_for(self, provider: str, seconds: float) -> None:
        self._get(provider).block_for(seconds)

    async def state(self, provider: str) -> BreakerState:
        breaker = self._get(provider)
        state = breaker.state
        if state is BreakerState.CLOSED and not breaker.ready():
            return BreakerState.OPEN  # closed, but the provider asked us to wait (Retry-After)
        return state

    async def describe(self, provider: str) -> str:
        return self._get(provider).describe()


class LocalRateLimits:
    """In-process sliding one-minute windows, one per provider."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._now = monotonic
        self._limiters: dict[str, RateLimiter] = {}

    def _get(self, provider: str, per_minute: int) -> RateLimiter:
        limiter = self._limiters.get(provider)
        if limiter is None or limiter.per_minute != per_minute:
            limiter = self._limiters[provider] = RateLimiter(per_minute, self._now)
        return limiter

    async def try_acquire(self, provider: str, per_minute: int) -> bool:
        return self._get(provider, per_minute).try_acquire()

    async def free_in_s(self, provider: str, per_minute: int) -> float:
        return self._get(provider, per_minute).free_in_s()
