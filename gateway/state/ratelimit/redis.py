"""requests_per_minute on Redis: a sorted set of send times per provider, checked and added in one script."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.state.ratelimit.store import WINDOW_S, window_start
from gateway.state.redis_client import key_join, unavailable_when_down

if TYPE_CHECKING:
    from redis.asyncio import Redis

_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""


class RedisRateLimitState:
    def __init__(self, client: Redis, *, prefix: str, wall: Callable[[], float] = time.time) -> None:
        self._client = client
        self._prefix = prefix
        self._wall = wall
        self._acquire = client.register_script(_ACQUIRE)

    async def try_acquire(self, provider: str, per_minute: int) -> bool:
        with unavailable_when_down("rate-limit state"):
            if per_minute <= 0:
                return True
            now = self._wall()
            args: list[str | int] = [
                repr(now),
                repr(window_start(now)),
                per_minute,
                uuid.uuid4().hex,
                int(WINDOW_S * 1000) + 1000,
            ]
            return bool(await self._acquire(keys=[self._key(provider)], args=args))

    async def free_in_s(self, provider: str, per_minute: int) -> float:
        with unavailable_when_down("rate-limit state"):
            if per_minute <= 0:
                return 0.0
            now = self._wall()
            sent = await self._client.zrangebyscore(
                self._key(provider), f"({window_start(now)!r}", "+inf", start=0, num=per_minute, withscores=True
            )
            if len(sent) < per_minute:
                return 0.0
            return max(0.0, float(sent[0][1]) + WINDOW_S - now)

    async def aclose(self) -> None:
        return None  # the client belongs to whoever opened it

    def _key(self, provider: str) -> str:
        return key_join(self._prefix, "ratelimit", provider)
