"""What the remote tier asks of request windows: requests_per_minute per provider.

Implementations: memory.py (one process, the default), sqlite.py (processes on
one box), redis.py (every replica). The shared ones keep the same sliding
one-minute window as memory.py, driven by wall-clock time so processes agree.
"""

from __future__ import annotations

from typing import Protocol

WINDOW_S = 60.0


class ProviderRateLimits(Protocol):
    """The calls RemoteTier makes."""

    async def try_acquire(self, provider: str, per_minute: int) -> bool: ...

    async def free_in_s(self, provider: str, per_minute: int) -> float: ...


class RateLimitState(ProviderRateLimits, Protocol):
    """ProviderRateLimits, plus shutdown."""

    async def aclose(self) -> None: ...


def window_start(now: float) -> float:
    """Requests at or before this moment no longer count."""
    return now - WINDOW_S
