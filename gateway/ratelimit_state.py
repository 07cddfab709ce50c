"""requests_per_minute shared by several gateway processes: the store interface and the window arithmetic.

Fills gateway/remote_state.py's ProviderRateLimits (what RemoteTier calls; its
LocalRateLimits is the one-process form) with the same sliding one-minute
window as gateway/ratelimit.py, kept in a store replicas share
(gateway/ratelimit_sqlite.py, gateway/ratelimit_redis.py) and driven by
wall-clock time so processes agree.
"""

from __future__ import annotations

from typing import Protocol

from gateway.ratelimit import WINDOW_S
from gateway.remote_state import ProviderRateLimits


class RateLimitState(ProviderRateLimits, Protocol):
    """ProviderRateLimits, plus shutdown."""

    async def aclose(self) -> None: ...


def window_start(now: float) -> float:
    """Requests at or before this moment no longer count."""
    return now - WINDOW_S
