"""The semantic cache's vector index: scopes kept apart, nearest first, expiry and the size bound."""

from __future__ import annotations

import math

import pytest

from gateway.state.cache.vector_index import IndexedPrompt, VectorIndex


def unit(*xs: float) -> tuple[float, ...]:
    norm = math.sqrt(sum(x * x for x in xs))
    return tuple(x / norm for x in xs)


def entry(key: str, scope: str = "s", expires_at: float = 100.0) -> IndexedPrompt:
    return IndexedPrompt(scope, key, f"prompt {key}", expires_at)


def index(max_entries: int = 10, now: float = 0.0) -> tuple[VectorIndex, list[float]]:
    clock = [now]
    return VectorIndex(dimensions=3, max_entries=max_entries, now=lambda: clock[0]), clock


def test_the_nearest_entry_of_the_scope_comes_first_with_its_cosine() -> None:
    vectors, _ = index()
    vectors.add(unit(1, 0, 0), entry("a"))
    vectors.add(unit(1, 1, 0), entry("b"))
    found = vectors.search(unit(1, 0.1, 0), scope="s", count=2)
    assert [n.entry.key for n in found] == ["a", "b"]
    assert found[0].similarity == pytest.approx(1 / math.sqrt(1.01), abs=1e-4)


def test_another_scope_is_never_searched() -> None:
    vectors, _ = index()
    vectors.add(unit(1, 0, 0), entry("a", scope="desk-1"))
    assert vectors.search(unit(1, 0, 0), scope="desk-2", count=4) == []
    assert [n.entry.key for n in vectors.search(unit(1, 0, 0), scope="desk-1", count=4)] == ["a"]


def test_expired_entries_are_skipped_and_dropped() -> None:
    vectors, clock = index()
    vectors.add(unit(1, 0, 0), entry("a", expires_at=10.0))
    clock[0] = 10.0
    assert vectors.search(unit(1, 0, 0), scope="s", count=4) == []
    assert len(vectors) == 0


def test_the_oldest_entries_go_past_the_size_bound() -> None:
    vectors, _ = index(max_entries=2)
    for key, vector in (("a", unit(1, 0, 0)), ("b", unit(0, 1, 0)), ("c", unit(0, 0, 1))):
        vectors.add(vector, entry(key))
    assert len(vectors) == 2
    assert {n.entry.key for n in vectors.search(unit(1, 1, 1), scope="s", count=4)} == {"b", "c"}


def test_a_refreshed_answer_replaces_its_entry() -> None:
    vectors, _ = index()
    vectors.add(unit(1, 0, 0), entry("a"))
    vectors.add(unit(0, 1, 0), entry("a"))
    assert len(vectors) == 1
    assert vectors.search(unit(0, 1, 0), scope="s", count=4)[0].similarity == pytest.approx(1.0, abs=1e-5)


def test_a_vector_of_the_wrong_size_is_refused_naming_both_sizes() -> None:
    vectors, _ = index()
    with pytest.raises(ValueError, match="2 dimensions; the index holds 3"):
        vectors.add((1.0, 0.0), entry("a"))
