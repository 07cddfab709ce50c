"""The semantic cache through the CachedRouter: what may hit, in which scope, and what is never indexed.

The embedder here is a table: texts it was told are paraphrases share a vector,
everything else gets one of its own, so each test says exactly how close two prompts
are and the behaviour under test (scope, guard, opt-in, what is stored) decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import pytest

from gateway.core.contracts import Escalation, Message, Request, Role, Tier
from gateway.core.embedding import Embeddings
from gateway.core.errors import Unavailable
from gateway.routing.cache_policy import CachePolicy
from gateway.routing.cached_router import CachedRouter
from gateway.routing.semantic_cache import SemanticCache, SemanticSettings, normalise
from gateway.state.cache.memory import MemoryCache
from gateway.state.cache.vector_index import VectorIndex
from tests.unit.test_cache import FakeRouter

DIMS = 4


@dataclass
class TableEmbedder:
    """Texts in one group share a unit vector; any other text gets a vector orthogonal to every group's."""

    groups: Sequence[Sequence[str]] = ()
    calls: list[list[str]] = field(default_factory=list)
    fail: bool = False
    name: str = "table"
    dimensions: int = DIMS

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        self.calls.append(list(texts))
        if self.fail:
            raise RuntimeError("model file unreadable")
        return Embeddings(tuple(self._vector(t) for t in texts), tuple(len(t.split()) for t in texts))

    def _vector(self, text: str) -> tuple[float, ...]:
        for i, group in enumerate(self.groups):
            if text in group:
                return tuple(1.0 if d == i else 0.0 for d in range(DIMS))
        return (0.0, 0.0, 0.0, 1.0)

    async def aclose(self) -> None:
        return None


def ask(text: str, **changes: object) -> Request:
    request = Request("r1", (Message(Role.USER, text),), 8, task="trend")
    return replace(request, **changes)  # type: ignore[arg-type]


def make(
    *groups: Sequence[str], router: FakeRouter | None = None, tasks: frozenset[str] = frozenset({"trend"}), **kw: object
) -> tuple[CachedRouter, FakeRouter, TableEmbedder, MemoryCache]:
    router = router or FakeRouter()
    embedder = TableEmbedder(groups, **kw)  # type: ignore[arg-type]
    policy = CachePolicy()
    cache = MemoryCache(max_entries=100)
    index = VectorIndex(dimensions=DIMS, max_entries=100)
    semantic = SemanticCache(embedder, index, policy, SemanticSettings(threshold=0.9, tasks=tasks))
    outcomes: list[str] = []
    cached = CachedRouter(router, cache, policy, semantic=semantic, on_lookup=outcomes.append)  # type: ignore[arg-type]
    return cached, router, embedder, cache


ABOVE = "Will BTC close above 60k today?"
ABOVE_AGAIN = "will  BTC close above 60k  today ?"
BELOW = "Will BTC close below 60k today?"


async def test_a_paraphrase_in_the_same_scope_is_answered_from_the_cache() -> None:
    cached, router, _, _ = make([ABOVE, normalise(ABOVE_AGAIN)])
    first = await cached.generate(ask(ABOVE))
    second = await cached.generate(ask(ABOVE_AGAIN))
    assert len(router.calls) == 1
    assert second.tier is Tier.CACHE and second.text == first.text
    assert second.attempts[0].outcome == "semantic_hit"


async def test_above_is_never_answered_with_below_even_at_similarity_one() -> None:
    cached, router, _, _ = make([ABOVE, BELOW])  # the embedder calls them identical
    await cached.generate(ask(ABOVE))
    answer = await cached.generate(ask(BELOW))
    assert len(router.calls) == 2
    assert answer.tier is Tier.REMOTE


async def test_a_neighbour_below_the_threshold_is_not_a_hit() -> None:
    cached, router, _, _ = make([ABOVE], ["BTC above 60k today, will it close there?"])
    await cached.generate(ask(ABOVE))
    await cached.generate(ask("BTC above 60k today, will it close there?"))
    assert len(router.calls) == 2


async def test_a_hit_needs_the_same_scope_caller_parameters_and_system_prompt() -> None:
    for change in (
        {"client": "desk-2"},
        {"max_tokens": 9},
        {"messages": (Message(Role.SYSTEM, "Be terse."), Message(Role.USER, ABOVE_AGAIN))},
    ):
        cached, router, _, _ = make([ABOVE, normalise(ABOVE_AGAIN)])
        await cached.generate(ask(ABOVE))
        await cached.generate(ask(ABOVE_AGAIN, **change))
        assert len(router.calls) == 2, change


async def test_the_request_opts_in_or_out_whatever_its_task_says() -> None:
    cached, router, _, _ = make([ABOVE, normalise(ABOVE_AGAIN)])
    await cached.generate(ask(ABOVE))
    await cached.generate(ask(ABOVE_AGAIN, semantic_cache=False))
    assert len(router.calls) == 2

    cached, router, embedder, _ = make([ABOVE, normalise(ABOVE_AGAIN)], tasks=frozenset())
    await cached.generate(ask(ABOVE))
    await cached.generate(ask(ABOVE_AGAIN))
    assert len(router.calls) == 2 and embedder.calls == []  # not opted in: nothing embedded
    await cached.generate(ask(ABOVE, semantic_cache=True, request_id="r2", max_tokens=7))
    hit = await cached.generate(ask(ABOVE_AGAIN, semantic_cache=True, max_tokens=7))
    assert hit.tier is Tier.CACHE and len(router.calls) == 3


async def test_a_low_confidence_local_answer_is_neither_stored_nor_indexed() -> None:
    router = FakeRouter(tier=Tier.LOCAL, escalation=Escalation.LOW_CONFIDENCE)
    cached, router, _, cache = make([ABOVE, normalise(ABOVE_AGAIN)], router=router)
    await cached.generate(ask(ABOVE))
    await cached.generate(ask(ABOVE_AGAIN))
    assert len(router.calls) == 2 and await cache.size() == 0


async def test_errors_are_not_indexed() -> None:
    class Failing(FakeRouter):
        async def generate(self, request: Request):  # type: ignore[no-untyped-def]
            self.calls.append(request)
            raise Unavailable("no tier")

    cached, router, _, cache = make([ABOVE, normalise(ABOVE_AGAIN)], router=Failing())
    for text in (ABOVE, ABOVE_AGAIN):
        with pytest.raises(Unavailable):
            await cached.generate(ask(text))
    assert len(router.calls) == 2 and await cache.size() == 0


async def test_an_embedder_that_fails_leaves_the_exact_cache_working() -> None:
    cached, router, _, _ = make([ABOVE], fail=True)
    await cached.generate(ask(ABOVE))
    repeat = await cached.generate(ask(ABOVE))
    assert repeat.tier is Tier.CACHE and repeat.attempts[0].outcome == "hit"
    assert len(router.calls) == 1


async def test_a_streamed_paraphrase_is_one_piece_from_the_cache() -> None:
    cached, router, _, _ = make([ABOVE, normalise(ABOVE_AGAIN)])
    [event async for event in cached.stream(ask(ABOVE))]
    events = [event async for event in cached.stream(ask(ABOVE_AGAIN))]
    assert len(router.calls) == 1
    assert events[-1].tier is Tier.CACHE  # type: ignore[union-attr]


def test_normalise_keeps_case_and_collapses_space() -> None:
    assert normalise("  BTC\u00a0 above\n60k ") == "BTC above 60k"


async def test_a_conversation_ending_with_an_assistant_turn_is_not_looked_up_by_meaning() -> None:
    cached, _, embedder, _ = make([ABOVE, normalise(ABOVE_AGAIN)])
    prefill = (Message(Role.USER, ABOVE), Message(Role.ASSISTANT, "The answer is"))
    await cached.generate(ask(ABOVE, messages=prefill))
    assert embedder.calls == []


async def test_a_broken_index_is_a_miss_and_never_a_failed_request() -> None:
    class BrokenIndex(VectorIndex):
        def search(self, *args: object, **kwargs: object) -> list:  # type: ignore[override,type-arg]
            raise RuntimeError("index file corrupt")

        def add(self, *args: object, **kwargs: object) -> None:  # type: ignore[override]
            raise RuntimeError("index file corrupt")

    router = FakeRouter()
    policy = CachePolicy()
    semantic = SemanticCache(
        TableEmbedder([[ABOVE]]),
        BrokenIndex(dimensions=DIMS, max_entries=4),
        policy,
        SemanticSettings(0.9, tasks=frozenset({"trend"})),
    )
    cached = CachedRouter(router, MemoryCache(max_entries=10), policy, semantic=semantic)  # type: ignore[arg-type]
    first = await cached.generate(ask(ABOVE))
    assert first.tier is Tier.REMOTE
    again = await cached.generate(ask(ABOVE_AGAIN))
    assert again.tier is Tier.REMOTE and len(router.calls) == 2
