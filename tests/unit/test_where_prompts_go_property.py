"""Random requests, keys, rules and configs through the whole request path: two promises hold for all of them.

The front as the server builds it (recording with the audit as an observer ->
API-key access -> response cache -> router -> remote tier with retries), with
stand-ins only for the local model and the commercial providers:

1. a request that may not leave the box (a local-only key, PRIVACY_LOCAL_ONLY,
   `offline`, or a first matching rule with `local_only`) never produces a
   provider call: not by escalation, hedge, audit or retry (every provider call
   carries its request's id);
2. a cached answer is served only to a request that would have been allowed to
   produce it: the same caller (unless the cache is shared), the same question,
   a provider's answer only when it may leave the box, a local one only when it
   tries the local tier and the answer meets its threshold.

Whether a request may leave the box is worked out here from the config, the key
and the request, not asked of the gateway.
"""

from __future__ import annotations

import asyncio
import math
import random
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import RoutingConfig, RuleConfig, TaskConfig
from gateway.core.contracts import (
    BackendCall,
    Completion,
    Delta,
    LocalLoad,
    Message,
    Priority,
    Privacy,
    Request,
    Result,
    Role,
    StreamEvent,
    Tier,
    TokenLogprob,
    Usage,
)
from gateway.core.errors import BackendError, GatewayError
from gateway.remote.estimate import CharEstimator
from gateway.remote.tier import RemoteTier
from gateway.remote.types import ProviderSlot
from gateway.routing.access import AccessRouter
from gateway.routing.accuracy import GuardSettings, ThresholdGuard
from gateway.routing.audit import Auditor
from gateway.routing.cache_policy import CachePolicy
from gateway.routing.cached_router import CachedRouter
from gateway.routing.recording_router import RecordingRouter
from gateway.routing.router import Router
from gateway.routing.tasks import ChainedTasks, ConfigTasks
from gateway.state.budget.memory import MemoryLedger
from gateway.state.cache.memory import MemoryCache
from gateway.state.keys.memory import MemoryKeyStore
from gateway.state.keys.store import ApiKey
from gateway.state.keys.table import KeyTable
from gateway.state.learning.sqlite import SqliteTrainingStore
from gateway.state.ratelimit.memory import MemoryRateLimits

PROVIDERS = ("openai", "anthropic")
QUESTIONS = {"Closes rose 10 days.": 0.95, "Volume doubled.": 0.75, "Nothing happened.": 0.3}  # local confidence
TAGS = st.dictionaries(st.sampled_from(["desk", "learn"]), st.sampled_from(["a", "b", "false"]), max_size=2)


@dataclass
class Counter:
    value: int = 0

    def next(self) -> int:
        self.value += 1
        return self.value


@dataclass
class Local:
    """The local model: answers "up" with the confidence its question has; every answer's text is unique."""

    counter: Counter
    name: str = "local"
    model: str = "tiny"
    context_length: int = 4096

    def load(self) -> LocalLoad:
        return LocalLoad(0, 64, 0.0)

    async def generate(self, call: BackendCall) -> Completion:
        await asyncio.sleep(0)  # a hedge with no delay starts its provider meanwhile
        p = QUESTIONS[call.messages[-1].content]
        tokens = (TokenLogprob("up", math.log(p), {"down": math.log(1 - p)}),)
        return Completion(f"up L{self.counter.next()}", self.name, self.model, Usage(5, 2), "stop", tokens)

    async def stream(self, call: BackendCall) -> AsyncIterator[StreamEvent]:
        completion = await self.generate(call)
        yield Delta(completion.text)
        yield completion

    async def aclose(self) -> None:
        return None


@dataclass
class Provider:
    """A commercial API: records every call it is sent; a flaky one fails each request's first try (retryable)."""

    name: str
    counter: Counter
    flaky: bool
    calls: list[BackendCall]
    model: str = "big"
    _tried: set[str] = field(default_factory=set)

    async def generate(self, call: BackendCall) -> Completion:
        self.calls.append(call)
        if self.flaky and call.request_id not in self._tried:
            self._tried.add(call.request_id)
            raise BackendError(f"{self.name}: overloaded", retryable=True)
        return Completion(f"down R{self.counter.next()}", self.name, self.model, Usage(9, 2), "stop")

    async def stream(self, call: BackendCall) -> AsyncIterator[StreamEvent]:
        completion = await self.generate(call)
        yield Delta(completion.text)
        yield completion

    async def aclose(self) -> None:
        return None


@dataclass(frozen=True)
class Ask:
    key: int
    question: str
    task: str
    privacy: Privacy
    priority: Priority
    tags: dict[str, str]
    min_confidence: float | None
    model: str
    stream: bool


@dataclass(frozen=True)
class Scenario:
    offline: bool
    rules: tuple[RuleConfig, ...]
    threshold: float | None
    hedge: bool
    shared: bool
    flaky: bool
    local_only_keys: tuple[bool, ...]
    asks: tuple[Ask, ...]


rules = st.builds(
    RuleConfig,
    match_task=st.sampled_from([None, "trend", ""]),
    match_tag=st.dictionaries(st.just("desk"), st.sampled_from(["a", "b"]), max_size=1),
    prefer=st.sampled_from([(), ("anthropic",)]),
    escalate=st.booleans(),
    local_only=st.booleans(),
)
FIELDS = {
    "task": st.sampled_from(["", "trend"]),
    "privacy": st.sampled_from(list(Privacy)),
    "priority": st.sampled_from(list(Priority)),
    "tags": TAGS,
    "min_confidence": st.sampled_from([None, None, 0.5, 0.9]),
    "model": st.sampled_from(["", "", "tiny", "openai/big"]),
}
questions = st.fixed_dictionaries({"question": st.sampled_from(sorted(QUESTIONS)), **FIELDS})


@st.composite
def asks(draw: st.DrawFn) -> tuple[Ask, ...]:
    """A few questions asked in turn by random keys, each turn maybe changing one field of its question:
    so the same prompt comes back under another key, rule, privacy or threshold, where a cache could mix them up."""
    pool = draw(st.lists(questions, min_size=1, max_size=3))
    turn = st.tuples(
        st.integers(0, len(pool) - 1),
        st.integers(0, 2),
        st.booleans(),
        st.one_of(st.just({}), *(st.fixed_dictionaries({name: field}) for name, field in FIELDS.items())),
    )
    turns = draw(st.lists(turn, max_size=8))
    return tuple(Ask(key=key, stream=stream, **{**pool[which], **changed}) for which, key, stream, changed in turns)


scenarios = st.builds(
    Scenario,
    offline=st.booleans(),
    rules=st.lists(rules, max_size=3).map(tuple),
    threshold=st.sampled_from([None, 0.6, 0.8]),
    hedge=st.booleans(),
    shared=st.booleans(),
    flaky=st.booleans(),
    local_only_keys=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    asks=asks(),
)


def may_leave(scenario: Scenario, ask: Ask) -> bool:
    """Worked out from the config, the key and the request: no code of the gateway's is asked."""
    if scenario.offline or scenario.local_only_keys[ask.key] or ask.privacy is Privacy.LOCAL_ONLY:
        return False
    for rule in scenario.rules:
        if rule.match_task is not None and rule.match_task != ask.task:
            continue
        if any(ask.tags.get(k) != v for k, v in rule.match_tag.items()):
            continue
        return not rule.local_only
    return True


def first_rule(scenario: Scenario, ask: Ask) -> RuleConfig | None:
    for rule in scenario.rules:
        if (rule.match_task is None or rule.match_task == ask.task) and all(
            ask.tags.get(k) == v for k, v in rule.match_tag.items()
        ):
            return rule
    return None


async def run(scenario: Scenario, store: SqliteTrainingStore) -> None:
    counter, calls = Counter(), list[BackendCall]()
    tasks = {"trend": TaskConfig(labels=("up", "down"), min_confidence=scenario.threshold, learn=True)}
    routing = RoutingConfig(escalation_order=PROVIDERS, rules=scenario.rules, hedge=scenario.hedge, hedge_after_ms=0.0)
    guard = ThresholdGuard(
        ChainedTasks(ConfigTasks(tasks)), store, GuardSettings(min_audits=10**6), default_threshold=0.6
    )
    slots = [ProviderSlot(Provider(name, counter, scenario.flaky, calls), max_retries=1) for name in PROVIDERS]
    remote = RemoteTier(slots, MemoryLedger(), rng=random.Random(0), sleep=lambda _: asyncio.sleep(0))
    router = Router(Local(counter), guard, routing, remote=remote, offline=scenario.offline)
    auditor = Auditor(
        router,
        guard,
        guard,
        store,
        MemoryLedger(),
        {name: 0 for name in PROVIDERS},
        learning={"trend"},
        rate=1.0,
        budget_share=1.0,
        estimate=CharEstimator(),
        rng=random.Random(0),
    )
    keys = MemoryKeyStore()
    for index, local_only in enumerate(scenario.local_only_keys):
        await keys.add(ApiKey(f"desk-{index}", f"{index:012x}", "0" * 64, local_only=local_only))
    table = KeyTable(keys, refresh_s=60)
    await table.load()
    cache = CachedRouter(router, MemoryCache(max_entries=100), CachePolicy(shared_across_keys=scenario.shared))
    access = AccessRouter(cache, table, MemoryLedger(), MemoryRateLimits(lambda: 0.0), estimate=CharEstimator())
    front = RecordingRouter(access, on_answer=[auditor.observe])

    produced: dict[str, tuple[Ask, Result]] = {}  # answer text -> the request that produced it
    served: list[tuple[Ask, Result]] = []
    for index, ask in enumerate(scenario.asks):
        request = Request(
            f"r{index}",
            (Message(Role.USER, ask.question),),
            8,
            task=ask.task,
            model=ask.model,
            priority=ask.priority,
            privacy=ask.privacy,
            min_confidence=ask.min_confidence,
            tags=ask.tags,
            client=f"desk-{ask.key}",
        )
        try:
            if ask.stream:
                result = [e async for e in front.stream(request) if isinstance(e, Result)][-1]
            else:
                result = await front.generate(request)
        except GatewayError:
            continue  # refused (a remote pin on a local-only request) or no tier could answer
        served.append((ask, result))
        if result.tier is not Tier.CACHE:
            produced.setdefault(result.text, (ask, result))
    await auditor.wait_idle()
    check(scenario, calls, produced, served, guard)


def check(
    scenario: Scenario,
    calls: list[BackendCall],
    produced: dict[str, tuple[Ask, Result]],
    served: list[tuple[Ask, Result]],
    guard: ThresholdGuard,
) -> None:
    """The two promises, for every request of the scenario."""
    for index, ask in enumerate(scenario.asks):
        if not may_leave(scenario, ask):
            sent = [call for call in calls if call.request_id == f"r{index}"]
            assert not sent, f"request r{index} may not leave the box but reached {len(sent)} provider call(s)"

    for ask, hit in served:
        if hit.tier is not Tier.CACHE:
            continue
        maker, original = produced[hit.text]
        assert (maker.question, maker.task) == (ask.question, ask.task), "a hit for another question"
        assert scenario.shared or maker.key == ask.key, "a hit across API keys"
        if original.tier is Tier.REMOTE:
            assert may_leave(scenario, ask), "a provider's answer served to a request that may not leave the box"
        else:
            rule = first_rule(scenario, ask)
            escalates_at_once = may_leave(scenario, ask) and rule is not None and rule.escalate
            assert not escalates_at_once and "/" not in ask.model, "a local answer to a request that skips local"
            threshold = ask.min_confidence if ask.min_confidence is not None else guard.threshold(ask.task)
            assert hit.confidence is not None and hit.confidence >= threshold, "a local answer below its threshold"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios)
def test_no_request_that_must_stay_leaves_and_no_hit_is_served_to_a_request_that_could_not_make_it(
    scenario: Scenario,
) -> None:
    with tempfile.TemporaryDirectory() as folder:

        async def once() -> None:
            store = SqliteTrainingStore(Path(folder) / "training.sqlite3")
            try:
                await run(scenario, store)
            finally:
                await store.aclose()

        asyncio.run(once())
