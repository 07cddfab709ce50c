"""requests_per_minute: a sliding one-minute window per provider, in this process."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

WINDOW_S = 60.0


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
