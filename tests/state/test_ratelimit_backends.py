"""Every requests-per-minute store passes the same tests as the in-process MemoryRateLimits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from gateway.state.ratelimit.memory import MemoryRateLimits
from gateway.state.ratelimit.redis import RedisRateLimitState
from gateway.state.ratelimit.sqlite import SqliteRateLimitState
from gateway.state.ratelimit.store import ProviderRateLimits
from tests.state.backends import Closer, Site, WallClock

P = "openai"
Factory = Callable[[], ProviderRateLimits]


@pytest.fixture
def make(where: Site, clock: WallClock, closing: Closer) -> Factory:
    memory = MemoryRateLimits(clock)

    def build() -> ProviderRateLimits:
        if where.backend == "memory":
            return memory
        if where.backend == "redis":
            return closing(RedisRateLimitState(where.redis, prefix=where.prefix, wall=clock))
        return closing(SqliteRateLimitState(where.path / "limits.sqlite3", wall=clock))

    return build


async def test_counts_up_to_the_limit_then_refuses(make: Factory) -> None:
    limits = make()
    assert [await limits.try_acquire(P, 3) for _ in range(4)] == [True, True, True, False]


async def test_the_window_slides(make: Factory, clock: WallClock) -> None:
    limits = make()
    assert await limits.try_acquire(P, 2)
    clock.advance(30.0)
    assert await limits.try_acquire(P, 2)
    assert not await limits.try_acquire(P, 2)
    assert await limits.free_in_s(P, 2) == pytest.approx(30.0)
    clock.advance(30.0)
    assert await limits.free_in_s(P, 2) == 0.0
    assert await limits.try_acquire(P, 2)
    assert not await limits.try_acquire(P, 2)


async def test_zero_means_unlimited(make: Factory) -> None:
    limits = make()
    assert all([await limits.try_acquire(P, 0) for _ in range(100)])
    assert await limits.free_in_s(P, 0) == 0.0


async def test_providers_are_separate(make: Factory) -> None:
    limits = make()
    assert await limits.try_acquire(P, 1)
    assert await limits.try_acquire("anthropic", 1)
    assert not await limits.try_acquire(P, 1)


async def test_processes_share_one_window(make: Factory) -> None:
    first, second = make(), make()
    assert await first.try_acquire(P, 2)
    assert await second.try_acquire(P, 2)
    assert not await first.try_acquire(P, 2)
    assert not await second.try_acquire(P, 2)


async def test_concurrent_requests_never_pass_the_limit(make: Factory) -> None:
    stores = [make(), make()]
    granted = await asyncio.gather(*(stores[i % 2].try_acquire(P, 50) for i in range(200)))
    assert sum(granted) == 50
