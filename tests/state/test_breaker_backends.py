"""Every breaker store (memory, SQLite, Redis) passes the same state-machine tests, plus sharing and the probe lease."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from gateway.state.breaker.machine import BreakerSettings, BreakerState
from gateway.state.breaker.memory import MemoryBreakerStore
from gateway.state.breaker.redis import RedisBreakerStore
from gateway.state.breaker.sqlite import SqliteBreakerStore
from gateway.state.breaker.store import BreakerStore
from gateway.state.redis_client import open_redis
from tests.state.backends import Closer, Site, WallClock

SETTINGS = BreakerSettings(failures=3, window_s=10.0, cooldown_s=30.0)
P = "openai"
Factory = Callable[..., BreakerStore]


@pytest.fixture
def make(where: Site, clock: WallClock, closing: Closer) -> Factory:
    shared_memory: dict[BreakerSettings, MemoryBreakerStore] = {}

    def build(settings: BreakerSettings = SETTINGS, lease_s: float | None = None) -> BreakerStore:
        if where.backend == "memory":
            return shared_memory.setdefault(settings, MemoryBreakerStore(settings, lease_s=lease_s, wall=clock))
        if where.backend == "redis":
            return closing(RedisBreakerStore(where.redis, settings, prefix=where.prefix, lease_s=lease_s, wall=clock))
        return closing(SqliteBreakerStore(where.path / "limits.sqlite3", settings, lease_s=lease_s, wall=clock))

    return build


async def test_opens_after_n_failures_within_the_window(make: Factory) -> None:
    store = make()
    for _ in range(2):
        await store.record_failure(P)
        assert await store.allow(P) is not None
    await store.record_failure(P)
    assert await store.state(P) is BreakerState.OPEN
    assert await store.allow(P) is None
    assert "circuit open" in await store.describe(P)


async def test_failures_spread_beyond_the_window_do_not_open_it(make: Factory, clock: WallClock) -> None:
    store = make()
    for _ in range(5):
        await store.record_failure(P)
        clock.advance(6.0)
    assert await store.state(P) is BreakerState.CLOSED


async def test_a_success_resets_the_count(make: Factory) -> None:
    store = make(BreakerSettings(failures=2, window_s=10.0, cooldown_s=30.0))
    await store.record_failure(P)
    await store.record_success(P)
    await store.record_failure(P)
    assert await store.state(P) is BreakerState.CLOSED


async def test_half_open_lets_exactly_one_probe_through_and_success_closes(make: Factory, clock: WallClock) -> None:
    store = make(BreakerSettings(failures=1, window_s=10.0, cooldown_s=30.0))
    await store.record_failure(P)
    clock.advance(29.0)
    assert await store.allow(P) is None
    clock.advance(1.0)
    assert await store.state(P) is BreakerState.HALF_OPEN
    probe = await store.allow(P)
    assert probe is not None and probe.probe
    assert await store.allow(P) is None
    await store.record_success(P)
    assert await store.state(P) is BreakerState.CLOSED
    assert await store.allow(P) is not None


async def test_failed_probe_opens_for_another_cooldown(make: Factory, clock: WallClock) -> None:
    store = make(BreakerSettings(failures=1, window_s=10.0, cooldown_s=30.0))
    await store.record_failure(P)
    clock.advance(30.0)
    assert await store.allow(P) is not None
    await store.record_failure(P)
    assert await store.state(P) is BreakerState.OPEN
    clock.advance(29.0)
    assert await store.allow(P) is None
    clock.advance(1.0)
    assert await store.allow(P) is not None


async def test_released_probe_can_be_taken_again(make: Factory, clock: WallClock) -> None:
    store = make(BreakerSettings(failures=1, window_s=10.0, cooldown_s=30.0))
    await store.record_failure(P)
    clock.advance(30.0)
    probe = await store.allow(P)
    assert probe is not None
    await store.release(P, probe)
    assert await store.allow(P) is not None


async def test_block_for_refuses_until_the_provider_said(make: Factory, clock: WallClock) -> None:
    store = make()
    await store.block_for(P, 60.0)
    assert await store.allow(P) is None
    assert await store.state(P) is BreakerState.OPEN
    assert "Retry-After" in await store.describe(P)
    clock.advance(60.0)
    assert await store.allow(P) is not None


async def test_providers_are_separate_and_listed(make: Factory) -> None:
    store = make(BreakerSettings(failures=1, window_s=10.0, cooldown_s=30.0))
    await store.record_failure(P)
    await store.record_success("anthropic")
    assert await store.allow("anthropic") is not None
    assert await store.states() == {P: BreakerState.OPEN, "anthropic": BreakerState.CLOSED}


async def test_a_breaker_opened_by_one_process_is_open_for_another(make: Factory, clock: WallClock) -> None:
    settings = BreakerSettings(failures=2, window_s=10.0, cooldown_s=30.0)
    first, second = make(settings), make(settings)
    await first.record_failure(P)
    await second.record_failure(P)
    assert await first.state(P) is BreakerState.OPEN
    clock.advance(30.0)
    assert await second.allow(P) is not None  # the one probe
    assert await first.allow(P) is None


async def test_a_probe_lease_runs_out_if_its_holder_never_reports(make: Factory, clock: WallClock) -> None:
    store = make(BreakerSettings(failures=1, window_s=10.0, cooldown_s=30.0), lease_s=5.0)
    await store.record_failure(P)
    clock.advance(30.0)
    assert await store.allow(P) is not None
    clock.advance(4.0)
    assert await store.allow(P) is None
    clock.advance(1.0)
    assert await store.allow(P) is not None


async def test_more_concurrent_reports_than_pooled_connections_all_complete(
    redis_server: Any, redis_prefix: str
) -> None:
    """Each report holds one pooled connection at a time: none waits for a second while holding the first."""
    client = open_redis(redis_server.url, max_connections=2, wait_s=2.0)
    store = RedisBreakerStore(client, SETTINGS, prefix=redis_prefix)
    try:
        await asyncio.gather(*(store.record_success(P) for _ in range(50)))
        assert await store.states() == {P: BreakerState.CLOSED}
    finally:
        await store.aclose()
        await client.aclose()
