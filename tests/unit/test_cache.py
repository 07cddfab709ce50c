"""The response cache: what the key covers, which answers are kept, and what a hit looks like."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field, replace

import pytest

from gateway.config import RoutingConfig
from gateway.core.contracts import (
    AdapterRef,
    Attempt,
    BackendCall,
    Delta,
    Escalation,
    Message,
    ModelEntry,
    Privacy,
    Request,
    Result,
    Role,
    TaskSpec,
    Tier,
    Usage,
)
from gateway.core.errors import InvalidArgument, Unavailable
from gateway.routing import policy
from gateway.routing.cache_policy import CachePolicy
from gateway.routing.cached_router import CachedRouter
from gateway.routing.decision import Decision
from gateway.state.cache.memory import MemoryCache
from gateway.state.cache.store import CachedAnswer

ADAPTER = AdapterRef("trend-lora", "3", "/adapters/trend/3")
REQUEST = Request(request_id="r1", messages=(Message(Role.USER, "is AAPL trending up?"),), max_tokens=8, task="trend")


@dataclass
class Tasks:
    adapter: AdapterRef | None = ADAPTER

    def get(self, name: str) -> TaskSpec | None:
        if name == "":
            return TaskSpec(name="")
        return TaskSpec(name=name, adapter=self.adapter) if name == "trend" else None

    def all(self) -> list[TaskSpec]:
        return [TaskSpec(name="trend", adapter=self.adapter)]


ROUTING = RoutingConfig(escalation_order=("openai",), default_min_confidence=0.4)


@dataclass
class FakeRouter:
    """Decides as the Router does (the real policy); answers as scripted."""

    tier: Tier = Tier.REMOTE
    escalation: Escalation = Escalation.LOW_CONFIDENCE
    calls: list[Request] = field(default_factory=list)
    tasks: Tasks = field(default_factory=Tasks)

    def decide(self, request: Request) -> Decision:
        task = self.tasks.get(request.task)
        if task is None:
            raise InvalidArgument(f"task: unknown task '{request.task}'")
        plan = policy.plan(
            request, task, ROUTING, offline=False, providers=("openai",), local_models=frozenset({"smollm2"})
        )
        request = policy.effective(request, plan)
        call = BackendCall(request.request_id, request.messages, request.max_tokens, request.temperature, task.adapter)
        return Decision(request, task, plan, call)

    async def execute(self, decision: Decision) -> Result:
        return await self.generate(decision.request)

    async def execute_stream(self, decision: Decision) -> AsyncGenerator[Delta | Result, None]:
        async for event in self.stream(decision.request):
            yield event

    async def generate(self, request: Request) -> Result:
        self.calls.append(request)
        return Result(
            request_id=request.request_id,
            text="up",
            tier=self.tier,
            provider="openai" if self.tier is Tier.REMOTE else "transformers",
            model="gpt-test" if self.tier is Tier.REMOTE else "smollm2",
            confidence=0.42,
            escalation=self.escalation,
            usage=Usage(20, 1),
            attempts=(Attempt("openai", "gpt-test", "ok", 120.0),),
            finish_reason="stop",
            latency_ms=150.0,
            task=request.task,
        )

    async def stream(self, request: Request) -> AsyncIterator[Delta | Result]:
        yield Delta("u")
        yield Delta("p")
        yield await self.generate(request)

    def models(self) -> list[ModelEntry]:
        return [ModelEntry("smollm2", Tier.LOCAL, "transformers")]


class BrokenCache(MemoryCache):
    async def get(self, key: str) -> CachedAnswer | None:
        raise ConnectionError("redis is down")

    async def put(self, key: str, answer: CachedAnswer, ttl_s: float) -> None:
        raise ConnectionError("redis is down")


def make(
    router: FakeRouter | None = None, policy: CachePolicy | None = None, tasks: Tasks | None = None
) -> tuple[CachedRouter, FakeRouter, list[str]]:
    inner = router or FakeRouter()
    lookups: list[str] = []
    if tasks is not None:
        inner.tasks = tasks
    cached = CachedRouter(inner, MemoryCache(max_entries=100), policy or CachePolicy(), on_lookup=lookups.append)
    return cached, inner, lookups


def key(request: Request, adapter: AdapterRef | None = ADAPTER, cache: CachePolicy | None = None) -> str:
    return (cache or CachePolicy()).key(FakeRouter(tasks=Tasks(adapter)).decide(request))


# -- the key (tests/unit/test_cache_key_fields.py goes through every field) ---------------------------


def test_the_key_is_stable_and_ignores_what_does_not_change_the_answer() -> None:
    same = replace(REQUEST, request_id="other", tags={"client_id": "desk-2"}, bypass_cache=True, deadline=123.0)
    assert key(REQUEST) == key(same)


@pytest.mark.parametrize(
    "change",
    [
        {"messages": (Message(Role.USER, "is AAPL trending down?"),)},
        {"messages": (Message(Role.SYSTEM, "is AAPL trending up?"),)},
        {"messages": (Message(Role.SYSTEM, "be brief"), Message(Role.USER, "is AAPL trending up?"))},
        {"task": "risk"},
        {"model": "openai/gpt-test"},
        {"temperature": 0.7},
        {"max_tokens": 9},
        {"privacy": Privacy.LOCAL_ONLY},
        {"min_confidence": 0.9},
    ],
)
def test_every_part_of_the_normalised_request_is_in_the_key(change: dict[str, object]) -> None:
    if change.get("task") == "risk":
        change = {**change, "task": ""}  # the stand-in knows trend and the general task
    assert key(REQUEST) != key(replace(REQUEST, **change))  # type: ignore[arg-type]


def test_a_new_adapter_version_is_a_new_key() -> None:
    assert key(REQUEST) != key(REQUEST, replace(ADAPTER, version="4"))
    assert key(REQUEST) != key(REQUEST, None)


def test_entries_are_per_caller_unless_shared() -> None:
    desk1, desk2 = replace(REQUEST, client="desk-1"), replace(REQUEST, client="desk-2")
    assert key(desk1) != key(desk2)
    shared = CachePolicy(shared_across_keys=True)
    assert key(desk1, cache=shared) == key(desk2, cache=shared)


# -- what is kept ------------------------------------------------------------------------------------


async def test_a_repeat_is_a_hit_naming_the_original_provider_and_model() -> None:
    cached, inner, lookups = make()
    first = await cached.generate(REQUEST)
    hit = await cached.generate(replace(REQUEST, request_id="r2"))
    assert first.tier is Tier.REMOTE and len(inner.calls) == 1
    assert (hit.tier, hit.provider, hit.model, hit.text) == (Tier.CACHE, "openai", "gpt-test", "up")
    assert hit.request_id == "r2" and hit.escalation is Escalation.NONE
    assert hit.confidence == pytest.approx(0.42) and hit.usage == Usage(20, 1)
    assert [(a.provider, a.outcome) for a in hit.attempts] == [("cache", "hit")]
    assert lookups == ["miss", "hit"]


async def test_sampled_requests_are_not_cached_by_default() -> None:
    cached, inner, lookups = make()
    sampled = replace(REQUEST, temperature=0.7)
    await cached.generate(sampled)
    assert (await cached.generate(sampled)).tier is Tier.REMOTE
    assert len(inner.calls) == 2 and lookups == ["uncacheable", "uncacheable"]


async def test_cache_sampled_caches_them_too() -> None:
    cached, _, _ = make(policy=CachePolicy(cache_sampled=True))
    sampled = replace(REQUEST, temperature=0.7)
    await cached.generate(sampled)
    assert (await cached.generate(sampled)).tier is Tier.CACHE


async def test_bypass_cache_skips_the_lookup_but_refreshes_the_entry() -> None:
    cached, inner, lookups = make()
    await cached.generate(REQUEST)
    fresh = await cached.generate(replace(REQUEST, bypass_cache=True))
    assert fresh.tier is Tier.REMOTE and len(inner.calls) == 2
    assert (await cached.generate(REQUEST)).tier is Tier.CACHE
    assert lookups == ["miss", "bypass", "hit"]


async def test_a_request_for_token_logprobs_is_answered_by_a_tier_not_the_cache() -> None:
    """The cache keeps no logprobs: such a request skips the lookup (and still refreshes the entry)."""
    cached, inner, lookups = make()
    await cached.generate(REQUEST)
    fresh = await cached.generate(replace(REQUEST, top_logprobs=0))
    assert fresh.tier is Tier.REMOTE and len(inner.calls) == 2
    assert (await cached.generate(REQUEST)).tier is Tier.CACHE
    assert lookups == ["miss", "bypass", "hit"]


async def test_a_local_fallback_after_a_failed_escalation_is_not_cached() -> None:
    cached, inner, _ = make(FakeRouter(tier=Tier.LOCAL, escalation=Escalation.LOW_CONFIDENCE))
    await cached.generate(REQUEST)
    assert (await cached.generate(REQUEST)).tier is Tier.LOCAL
    assert len(inner.calls) == 2


async def test_a_confident_local_answer_is_cached() -> None:
    cached, _, _ = make(FakeRouter(tier=Tier.LOCAL, escalation=Escalation.NONE))
    await cached.generate(REQUEST)
    hit = await cached.generate(REQUEST)
    assert (hit.tier, hit.provider, hit.model) == (Tier.CACHE, "transformers", "smollm2")


async def test_an_unknown_task_is_rejected_by_the_decision_before_any_lookup() -> None:
    cached, inner, lookups = make()
    with pytest.raises(InvalidArgument, match="unknown task"):
        await cached.generate(replace(REQUEST, task="nope"))
    assert inner.calls == [] and lookups == []


def test_a_hit_is_served_only_to_a_request_that_could_have_produced_it() -> None:
    decided = FakeRouter().decide(REQUEST)  # may leave the box, tries the local tier, threshold 0.4
    local = CachedAnswer("up", "transformers", "smollm2", "local", Usage(5, 1), "stop", 0.42, 0.0)
    remote = replace(local, tier="remote", provider="openai", model="gpt-test")
    cache = CachePolicy()
    assert cache.servable(decided, local) and cache.servable(decided, remote)
    raised = replace(decided, plan=replace(decided.plan, threshold=0.5))  # the audit raised the threshold since
    assert not cache.servable(raised, local) and cache.servable(raised, remote)
    kept = FakeRouter().decide(replace(REQUEST, privacy=Privacy.LOCAL_ONLY))
    assert cache.servable(kept, local) and not cache.servable(kept, remote)
    escalated = replace(decided, plan=replace(decided.plan, try_local=False, rule_escalation=True))
    assert not cache.servable(escalated, local) and cache.servable(escalated, remote)


def test_a_local_answer_below_the_threshold_in_force_is_not_stored() -> None:
    decided = FakeRouter().decide(REQUEST)
    local = Result("r1", "up", Tier.LOCAL, "transformers", "smollm2", 0.42, Escalation.NONE, Usage(), (), "stop", 1.0)
    assert CachePolicy().store_allowed(decided, local)
    assert not CachePolicy().store_allowed(replace(decided, plan=replace(decided.plan, threshold=0.5)), local)
    kept_local = replace(local, confidence=0.1)  # a local-only request keeps it: escalation NONE, but below 0.4
    assert not CachePolicy().store_allowed(
        FakeRouter().decide(replace(REQUEST, privacy=Privacy.LOCAL_ONLY)), kept_local
    )


async def test_errors_are_not_cached() -> None:
    @dataclass
    class Failing(FakeRouter):
        async def generate(self, request: Request) -> Result:
            self.calls.append(request)
            raise Unavailable("no tier")

    cached, inner, _ = make(Failing())
    for _ in range(2):
        with pytest.raises(Unavailable):
            await cached.generate(REQUEST)
    assert len(inner.calls) == 2


async def test_a_broken_cache_is_a_miss_never_a_failure() -> None:
    inner = FakeRouter()
    lookups: list[str] = []
    cached = CachedRouter(inner, BrokenCache(max_entries=10), CachePolicy(), on_lookup=lookups.append)
    assert (await cached.generate(REQUEST)).tier is Tier.REMOTE
    assert lookups == ["error"]


# -- streaming -----------------------------------------------------------------------------------------


async def test_a_streamed_miss_is_stored_and_a_streamed_hit_is_one_piece() -> None:
    cached, inner, _ = make()
    first = [event async for event in cached.stream(REQUEST)]
    assert [e.text for e in first if isinstance(e, Delta)] == ["u", "p"]
    again = [event async for event in cached.stream(REQUEST)]
    assert isinstance(again[0], Delta) and again[0].text == "up"
    final = again[-1]
    assert isinstance(final, Result) and final.tier is Tier.CACHE and len(again) == 2
    assert (await cached.generate(REQUEST)).tier is Tier.CACHE
    assert len(inner.calls) == 1


async def test_a_streamed_local_answer_is_not_stored() -> None:
    cached, inner, _ = make(FakeRouter(tier=Tier.LOCAL, escalation=Escalation.NONE))
    _ = [event async for event in cached.stream(REQUEST)]
    assert (await cached.generate(REQUEST)).tier is Tier.LOCAL  # not judged on confidence while streaming
    assert len(inner.calls) == 2


def test_models_pass_through() -> None:
    cached, _, _ = make()
    assert [m.name for m in cached.models()] == ["smollm2"]


# -- the in-process tier ------------------------------------------------------------------------------


async def test_memory_cache_drops_the_least_recently_used() -> None:
    memory = MemoryCache(max_entries=2)
    entry = CachedAnswer("x", "p", "m", "local", Usage(), "stop", None, 0.0)
    await memory.put("a", entry, 60)
    await memory.put("b", entry, 60)
    assert await memory.get("a") is not None  # a is now the most recent
    await memory.put("c", entry, 60)
    assert await memory.get("b") is None
    assert await memory.get("a") is not None and await memory.get("c") is not None
