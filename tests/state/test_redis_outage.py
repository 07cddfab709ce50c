"""With Redis unreachable, the Redis stores say UNAVAILABLE naming the store, and the cache is just a miss."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.core.contracts import Tier
from gateway.core.errors import Unavailable
from gateway.routing.cache_policy import CachePolicy
from gateway.routing.cached_router import CachedRouter
from gateway.state.breaker.machine import BreakerSettings
from gateway.state.breaker.redis import RedisBreakerStore
from gateway.state.budget.redis import RedisLedger
from gateway.state.cache.redis import RedisCache
from gateway.state.ratelimit.redis import RedisRateLimitState
from gateway.state.redis_client import open_redis
from tests.gateway_process import free_port
from tests.unit.test_cache import REQUEST, FakeRouter


@pytest.fixture
async def dead_redis() -> AsyncIterator[Any]:
    client = open_redis(f"redis://127.0.0.1:{free_port()}/0", wait_s=1.0)  # nothing listens there
    yield client
    await client.aclose()


async def test_the_ledger_breakers_and_rate_limits_say_unavailable(dead_redis: Any) -> None:
    with pytest.raises(Unavailable, match="token ledger unreachable"):
        await RedisLedger(dead_redis, prefix="x:").reserve("openai", 10, day="2026-11-26", limit=100)
    with pytest.raises(Unavailable, match="breaker state unreachable"):
        await RedisBreakerStore(dead_redis, BreakerSettings(), prefix="x:").allow("openai")
    with pytest.raises(Unavailable, match="rate-limit state unreachable"):
        await RedisRateLimitState(dead_redis, prefix="x:").try_acquire("openai", 10)


async def test_a_cache_on_a_dead_redis_is_a_miss(dead_redis: Any) -> None:
    lookups: list[str] = []
    cached = CachedRouter(
        FakeRouter(),
        RedisCache(dead_redis, prefix="x:", max_entries=10),
        CachePolicy(),
        on_lookup=lookups.append,
    )
    assert (await cached.generate(REQUEST)).tier is Tier.REMOTE
    assert lookups == ["error"]
