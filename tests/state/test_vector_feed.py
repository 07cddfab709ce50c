"""Semantic-cache entries shared by replicas through a Redis stream (real redis-server)."""

from __future__ import annotations

from typing import Any

from gateway.routing.cache_policy import CachePolicy
from gateway.routing.semantic_cache import Probe, SemanticCache, SemanticSettings
from gateway.routing.semantic_guard import facts
from gateway.state.cache.vector_feed import RedisVectorFeed
from gateway.state.cache.vector_index import VectorIndex
from tests.unit.test_semantic_cache import TableEmbedder

ABOVE = "Will BTC close above 60k today?"
AGAIN = "Is BTC going to close above 60k today?"
BELOW = "Is BTC going to close below 60k today?"
VECTOR = (1.0, 0.0, 0.0, 0.0)


def replica(client: Any, prefix: str, name: str) -> tuple[SemanticCache, VectorIndex]:
    index = VectorIndex(dimensions=4, max_entries=100)
    feed = RedisVectorFeed(client, prefix=prefix, max_len=100, origin=name)
    cache = SemanticCache(TableEmbedder(), index, CachePolicy(), SemanticSettings(0.9), feed=feed, feed_interval_s=0)
    return cache, index


def probe(text: str) -> Probe:
    return Probe("scope", text, VECTOR, facts(text))


async def test_an_entry_one_replica_indexes_is_found_by_another(redis_client: Any, redis_prefix: str) -> None:
    first, _ = replica(redis_client, redis_prefix, "a")
    second, index = replica(redis_client, redis_prefix, "b")
    await first.remember(probe(ABOVE), "exact-key-1")
    await second.catch_up()
    assert len(index) == 1
    assert [m.key for m in second.matches(probe(AGAIN))] == ["exact-key-1"]
    assert second.matches(probe(BELOW)) == []  # the guard holds for shared entries too


async def test_a_replica_skips_its_own_entries_and_a_late_one_reads_the_earlier_ones(
    redis_client: Any, redis_prefix: str
) -> None:
    first, _ = replica(redis_client, redis_prefix, "a")
    await first.remember(probe(ABOVE), "exact-key-1")
    assert await RedisVectorFeed(redis_client, prefix=redis_prefix, max_len=100, origin="a").read(10) == []
    late, index = replica(redis_client, redis_prefix, "c")
    await late.catch_up()
    assert len(index) == 1
    await late.catch_up()
    assert len(index) == 1  # each entry is read once
