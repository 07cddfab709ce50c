"""requests_per_minute in one process: a sliding one-minute window per provider."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from gateway.state.ratelimit.store import WINDOW_S


class RateLimiter:
    def __init__(self, per_minute: int, monotonic: Callable[[], float]) -> None:
        self._limit = per_minute  # 0: unlimited
        self._now = monotonic
        self._sent: deque[float] = deque()

    @property
    def per_minute(self) -> int:
        return self._limit

    def try_acquire(self) -> bool:
        """Count one request now if the window has room; never waits."""
        if self._limit <= 0:
            return True
        now = self._now()
        while self._sent and self._sent[0] <= now - WINDOW_S:
            self._sent.popleft()
        if len(self._sent) >= self._limit:
            return False
        self._sent.append(now)
        return True

    def free_in_s(self) -> float:
        """Seconds until the window has room again (0 when it has room now)."""
        if self._limit <= 0 or len(self._sent) < self._limit:
            return 0.0
        return max(0.0, self._sent[0] + WINDOW_S - self._now())


class MemoryRateLimits:
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
