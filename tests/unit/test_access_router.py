"""AccessRouter: the caller's key decides which tasks, which tiers and how much, in front of the real Router."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.core.contracts import Result, Tier
from gateway.core.errors import BackendError, GatewayError, PermissionDenied, ResourceExhausted, Unauthenticated
from gateway.remote.estimate import CharEstimator
from gateway.routing.access import AccessRouter, usage_scope
from gateway.state.budget.memory import MemoryLedger
from gateway.state.keys.memory import MemoryKeyStore
from gateway.state.keys.store import ApiKey
from gateway.state.keys.table import KeyTable
from gateway.state.ratelimit.memory import MemoryRateLimits
from tests.unit.test_router import ScriptedLocal, ScriptedRemote, req, router

NOW = datetime(2026, 11, 18, 8, 26, 40, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.wall = NOW
        self.mono = 1000.0

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


async def make(
    *keys: ApiKey, local_prob: float = 0.6, local_error: Exception | None = None
) -> tuple[AccessRouter, ScriptedRemote, MemoryLedger, Clock, MemoryKeyStore]:
    store = MemoryKeyStore()
    for key in keys:
        await store.add(key)
    table = KeyTable(store, refresh_s=60)
    await table.load()
    remote, quotas, clock = ScriptedRemote(), MemoryLedger(), Clock()
    access = AccessRouter(
        router(ScriptedLocal(prob=local_prob, error=local_error), remote),
        table,
        quotas,
        MemoryRateLimits(lambda: clock.mono),
        estimate=CharEstimator(3.0),
        wall=lambda: clock.wall,
    )
    return access, remote, quotas, clock, store


def key(name: str, **policy: object) -> ApiKey:
    return ApiKey(name, name.encode().hex()[:12].ljust(12, "0"), "0" * 64, **policy)  # type: ignore[arg-type]


async def test_without_keys_requests_pass_unchanged() -> None:
    access, remote, *_ = await make()
    result = await access.generate(req(task="trend"))
    assert result.tier is Tier.REMOTE and remote.orders  # low confidence escalates as usual


async def test_with_keys_an_anonymous_or_unknown_caller_is_unauthenticated() -> None:
    access, remote, *_ = await make(key("desk-1"))
    with pytest.raises(Unauthenticated, match="missing API key"):
        await access.generate(req(task="trend"))
    with pytest.raises(Unauthenticated, match="'ghost' has no active API key"):
        await access.generate(req(task="trend", client="ghost"))
    assert remote.orders == []


async def test_a_key_limited_to_tasks_is_denied_the_others() -> None:
    access, *_ = await make(key("desk-1", tasks=("trend",)))
    assert (await access.generate(req(task="trend", client="desk-1"))).text
    with pytest.raises(PermissionDenied, match="task: API key 'desk-1' may ask only the tasks trend"):
        await access.generate(req(task="sentiment", client="desk-1"))
    with pytest.raises(PermissionDenied, match="asked no task"):
        await access.generate(req(client="desk-1"))


async def test_a_local_only_key_never_reaches_the_remote_tier_whatever_the_request_says() -> None:
    access, remote, *_ = await make(key("desk-1", local_only=True), local_prob=0.1)
    result = await access.generate(req(task="trend", client="desk-1"))  # low confidence: would escalate
    assert result.tier is Tier.LOCAL and remote.orders == []
    events = [e async for e in access.stream(req(task="trend", client="desk-1"))]
    assert isinstance(events[-1], Result) and events[-1].tier is Tier.LOCAL and remote.orders == []
    with pytest.raises(PermissionDenied, match="'desk-1' is local-only and 'openai/gpt-4o' is a remote provider"):
        await access.generate(req(model="openai/gpt-4o", client="desk-1"))
    assert remote.orders == []


async def test_over_the_requests_per_minute_is_resource_exhausted_until_the_window_has_room() -> None:
    access, _, _, clock, _ = await make(key("desk-1", rpm=2))
    await access.generate(req(task="trend", client="desk-1"))
    clock.advance(10)
    await access.generate(req(task="trend", client="desk-1"))
    with pytest.raises(ResourceExhausted, match="over its limit of 2 requests per minute") as caught:
        await access.generate(req(task="trend", client="desk-1"))
    assert caught.value.resets_at == NOW + timedelta(seconds=60)  # when the first request leaves the window
    assert "2026-11-18T08:27:40Z" in caught.value.message
    clock.advance(50)
    await access.generate(req(task="trend", client="desk-1"))


async def test_the_daily_quota_counts_the_tokens_used_and_says_when_it_resets() -> None:
    # each request: estimate ceil(6/3) + 4 + 3 + max_tokens 4 = 13 tokens; used: local 5+1, remote 9+1 -> 16
    access, _, quotas, clock, _ = await make(key("desk-1", daily_tokens=30), local_prob=0.9)
    await access.generate(req(task="trend", client="desk-1"))
    assert (await quotas.usage("2026-11-18"))["desk-1"].tokens_used == 6  # reconciled to the tokens used
    await access.generate(req(task="trend", client="desk-1"))
    await access.generate(req(task="trend", client="desk-1"))
    assert (await quotas.usage("2026-11-18"))["desk-1"].tokens_used == 18
    with pytest.raises(ResourceExhausted, match="daily quota of 30 tokens") as caught:
        await access.generate(req(task="trend", client="desk-1"))  # 18 + 13 > 30
    assert caught.value.resets_at == datetime(2026, 11, 19, tzinfo=UTC)
    assert "resets at 2026-11-19T00:00:00Z" in caught.value.message
    clock.advance(16 * 3600)  # the next UTC day
    await access.generate(req(task="trend", client="desk-1"))


async def test_a_failed_request_gives_its_reservation_back() -> None:
    local_error = BackendError("the local model failed")
    access, _, quotas, *_ = await make(key("desk-1", daily_tokens=100, local_only=True), local_error=local_error)
    with pytest.raises(GatewayError):  # local-only, and the local tier failed
        await access.generate(req(task="trend", client="desk-1"))
    with pytest.raises(GatewayError):
        [e async for e in access.stream(req(task="trend", client="desk-1"))]
    assert await quotas.usage("2026-11-18") == {}


async def test_usage_scope_lets_admins_read_anyone_and_others_only_themselves() -> None:
    store = MemoryKeyStore()
    table = KeyTable(store, refresh_s=60)
    await table.load()
    assert usage_scope(table, "", "desk-2") == "desk-2"  # no keys: as today
    await store.add(key("ops", admin=True))
    await store.add(key("desk-1"))
    await table.load()
    assert usage_scope(table, "ops", "desk-2") == "desk-2" and usage_scope(table, "ops", "") == ""
    assert usage_scope(table, "desk-1", "") == "desk-1" and usage_scope(table, "desk-1", "desk-1") == "desk-1"
    with pytest.raises(PermissionDenied, match="may read only its own usage"):
        usage_scope(table, "desk-1", "desk-2")
    with pytest.raises(Unauthenticated):
        usage_scope(table, "", "")
