"""An in-process front tier over a shared store: hot keys answer without a thread hop or a round trip.

Entries never change once written (the same key always means the same
answer), so the front tier only has to respect expiry: an entry found in the
shared store is kept in front for what is left of its TTL.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.state.cache.memory import MemoryCache
from gateway.state.cache.store import Cache, CachedAnswer


class TieredCache:
    def __init__(
        self, front: MemoryCache, shared: Cache, *, ttl_s: float, now: Callable[[], float] = time.time
    ) -> None:
        self._front = front
        self._shared = shared
        self._ttl_s = ttl_s
        self._now = now

    async def get(self, key: str) -> CachedAnswer | None:
        answer = self._front.get_now(key)
        if answer is not None:
            return answer
        answer = await self._shared.get(key)
        if answer is not None:
            self._front.put_now(key, answer, answer.created_at + self._ttl_s - self._now())
        return answer

    async def put(self, key: str, answer: CachedAnswer, ttl_s: float) -> None:
        await self._shared.put(key, answer, ttl_s)
        self._front.put_now(key, answer, ttl_s)

    async def size(self) -> int:
        return await self._shared.size()

    async def clear(self) -> None:
        await self._front.clear()
        await self._shared.clear()

    async def aclose(self) -> None:
        await self._front.aclose()
        await self._shared.aclose()
