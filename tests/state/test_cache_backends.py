"""Every response cache backend passes the same tests: TTL, size bound, replace, sharing between instances."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.core.contracts import Usage
from gateway.state.cache.memory import MemoryCache
from gateway.state.cache.redis import RedisCache
from gateway.state.cache.sqlite import SqliteCache
from gateway.state.cache.store import Cache, CachedAnswer
from gateway.state.cache.tiered import TieredCache
from tests.state.backends import Closer, Site, WallClock

MAX = 5
TTL = 60.0
Factory = Callable[[], Cache]
# tiered: an in-process front tier over SQLite
pytestmark = pytest.mark.parametrize("where", ["sqlite", "redis", "memory", "tiered"], indirect=True)


def answer(text: str = "up", confidence: float | None = 0.9) -> CachedAnswer:
    return CachedAnswer(text, "openai", "gpt-test", "remote", Usage(12, 3), "stop", confidence, 1_795_000_000.0)


@pytest.fixture
def make(where: Site, clock: WallClock, closing: Closer) -> Factory:
    """A factory: each call is another process's view of the same cache (memory: the same instance)."""
    memory = MemoryCache(max_entries=MAX, now=clock)

    def build() -> Cache:
        cache: Cache
        if where.backend == "memory":
            return memory
        if where.backend == "redis":
            cache = RedisCache(where.redis, prefix=where.prefix, max_entries=MAX, now=clock)
        else:
            cache = SqliteCache(where.path / "cache.sqlite3", max_entries=MAX, now=clock)
        if where.backend == "tiered":
            cache = TieredCache(MemoryCache(max_entries=2, now=clock), cache, ttl_s=TTL, now=clock)
        return closing(cache)

    return build


async def test_round_trip_keeps_every_field(make: Factory) -> None:
    cache = make()
    await cache.put("k", answer(), TTL)
    assert await cache.get("k") == answer()
    await cache.put("none", answer(confidence=None), TTL)
    assert (await cache.get("none")) == answer(confidence=None)


async def test_missing_key_is_a_miss(make: Factory) -> None:
    assert await make().get("absent") is None


async def test_entries_expire_after_their_ttl(make: Factory, clock: WallClock) -> None:
    cache = make()
    await cache.put("k", answer(), TTL)
    clock.advance(TTL - 1)
    assert await cache.get("k") is not None
    clock.advance(1)
    assert await cache.get("k") is None


async def test_size_bound_drops_the_oldest(make: Factory, clock: WallClock) -> None:
    cache = make()
    for i in range(MAX + 3):
        await cache.put(f"k{i}", answer(f"t{i}"), TTL)
        clock.advance(1)
    assert await cache.size() == MAX
    assert await cache.get("k0") is None
    assert await cache.get("k2") is None
    assert (await cache.get(f"k{MAX + 2}")) == answer(f"t{MAX + 2}")


async def test_replacing_a_key_keeps_one_entry(make: Factory) -> None:
    cache = make()
    await cache.put("k", answer("old"), TTL)
    await cache.put("k", answer("new"), TTL)
    assert await cache.size() == 1
    hit = await cache.get("k")
    assert hit is not None and hit.text == "new"


async def test_clear_empties_it(make: Factory) -> None:
    cache = make()
    await cache.put("k", answer(), TTL)
    await cache.clear()
    assert await cache.get("k") is None
    assert await cache.size() == 0


async def test_an_entry_written_by_one_instance_is_a_hit_in_another(make: Factory) -> None:
    writer, reader = make(), make()
    await writer.put("shared", answer("from the writer"), TTL)
    hit = await reader.get("shared")
    assert hit is not None and hit.text == "from the writer"
