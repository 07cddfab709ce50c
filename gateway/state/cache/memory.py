"""A bounded in-process cache (least recently used goes first): the front tier, and a store for tests."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from gateway.state.cache.store import CachedAnswer


class MemoryCache:
    def __init__(self, *, max_entries: int, now: Callable[[], float] = time.time) -> None:
        self._max_entries = max_entries
        self._now = now
        self._entries: OrderedDict[str, tuple[float, CachedAnswer]] = OrderedDict()

    async def get(self, key: str) -> CachedAnswer | None:
        return self.get_now(key)

    def get_now(self, key: str) -> CachedAnswer | None:
        """The same as `get`, without a suspension point (the front tier's fast path)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, answer = entry
        if expires_at <= self._now():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return answer

    async def put(self, key: str, answer: CachedAnswer, ttl_s: float) -> None:
        self.put_now(key, answer, ttl_s)

    def put_now(self, key: str, answer: CachedAnswer, ttl_s: float) -> None:
        if self._max_entries <= 0 or ttl_s <= 0:
            return
        self._entries[key] = (self._now() + ttl_s, answer)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    async def size(self) -> int:
        return len(self._entries)

    async def clear(self) -> None:
        self._entries.clear()

    async def aclose(self) -> None:
        self._entries.clear()
