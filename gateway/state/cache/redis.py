"""The response cache on Redis, shared by every gateway replica.

Each entry is a string key with a TTL (Redis expires it), its value the expiry
time and the answer (so expiry also holds against the gateway's clock); a sorted set indexes
the entries by expiry time so the size bound can drop the entries nearest to
expiry (the oldest, with one TTL) atomically in the same script that writes.
Assumes one Redis (or a primary with replicas), not Redis Cluster: the script
touches keys it computes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.state.cache.store import CachedAnswer
from gateway.state.redis_client import key_join

if TYPE_CHECKING:
    from redis.asyncio import Redis

_PUT = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[6])
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[5])
if excess > 0 then
  local old = redis.call('ZPOPMIN', KEYS[2], excess)
  for i = 1, #old, 2 do redis.call('DEL', ARGV[7] .. old[i]) end
end
return 1
"""

_CLEAR = """
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, member in ipairs(members) do redis.call('DEL', ARGV[1] .. member) end
redis.call('DEL', KEYS[1])
return #members
"""


class RedisCache:
    def __init__(self, client: Redis, *, prefix: str, max_entries: int, now: Callable[[], float] = time.time) -> None:
        self._client = client
        self._entry_prefix = key_join(prefix, "cache", "e", "")
        self._index = key_join(prefix, "cache", "index")
        self._max_entries = max_entries
        self._now = now
        self._put = client.register_script(_PUT)
        self._clear = client.register_script(_CLEAR)

    async def get(self, key: str) -> CachedAnswer | None:
        raw = await self._client.get(self._entry_prefix + key)
        if raw is None:
            return None
        text = raw.decode() if isinstance(raw, bytes) else raw
        expires_at, _, answer = text.partition("\n")
        return CachedAnswer.from_json(answer) if float(expires_at) > self._now() else None

    async def put(self, key: str, answer: CachedAnswer, ttl_s: float) -> None:
        now = self._now()
        ttl_ms = max(int(ttl_s * 1000), 1)
        value = f"{now + ttl_s!r}\n{answer.to_json()}"
        args: list[str | int] = [
            value,
            ttl_ms,
            repr(now),
            repr(now + ttl_s),
            self._max_entries,
            key,
            self._entry_prefix,
        ]
        await self._put(keys=[self._entry_prefix + key, self._index], args=args)

    async def size(self) -> int:
        return int(await self._client.zcount(self._index, f"({self._now()!r}", "+inf"))

    async def clear(self) -> None:
        await self._clear(keys=[self._index], args=[self._entry_prefix])

    async def aclose(self) -> None:
        return None  # the client belongs to whoever opened it
