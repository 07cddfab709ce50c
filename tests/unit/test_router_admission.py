"""The router under admission: a slow provider holds its own room, never the local tier's, and refusals say when."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from gateway.config import RoutingConfig, RuleConfig, TaskConfig
from gateway.core.contracts import (
    Attempt,
    BackendCall,
    Completion,
    Delta,
    LocalLoad,
    Message,
    Priority,
    Request,
    Role,
    StreamEvent,
    Tier,
    TokenLogprob,
    Usage,
)
from gateway.core.errors import ResourceExhausted
from gateway.routing.admission import Admission, AdmissionSettings, TierLimits
from gateway.routing.gradient import GradientSettings
from gateway.routing.router import Router
from gateway.routing.tasks import ChainedTasks, ConfigTasks
from tests.waiting import wait_until_async


@dataclass
class Local:
    hold: asyncio.Event | None = None
    name: str = "scripted"
    model: str = "tiny"
    context_length: int = 100
    started: int = 0
    saturated: str = ""

    def load(self) -> LocalLoad:
        return LocalLoad(0, 64, 0.0, saturated=self.saturated)

    async def generate(self, call: BackendCall) -> Completion:
        self.started += 1
        if self.hold is not None:
            await self.hold.wait()
        tokens = (TokenLogprob("up", math.log(0.99), {"down": math.log(0.01)}),)
        return Completion("up", self.name, self.model, Usage(5, 1), "stop", tokens)

    async def stream(self, call: BackendCall) -> AsyncIterator[StreamEvent]:
        yield Delta("up")
        yield await self.generate(call)

    async def aclose(self) -> None:
        return None


@dataclass(frozen=True)
class Answer:
    completion: Completion
    attempts: tuple[Attempt, ...]


@dataclass
class SlowRemote:
    release: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: int = 0

    def providers(self) -> tuple[str, ...]:
        return ("openai",)

    def models(self) -> list[object]:
        return []

    async def complete(
        self, call: BackendCall, *, order: tuple[str, ...], deadline: float | None, urgent: bool = False
    ) -> Answer:
        self.waiting += 1
        await self.release.wait()
        return Answer(Completion("down", "openai", "big", Usage(9, 1), "stop"), (Attempt("openai", "big", "ok", 1.0),))

    async def stream(
        self, call: BackendCall, *, order: tuple[str, ...], deadline: float | None, urgent: bool = False
    ) -> AsyncIterator[Delta | Answer]:
        yield await self.complete(call, order=order, deadline=deadline, urgent=urgent)


def admission(local: int = 8, provider: int = 2) -> Admission:
    return Admission(
        AdmissionSettings(urgent_share=0.0),
        TierLimits(
            local=GradientSettings(initial=local, min_limit=1, max_limit=100),
            provider=GradientSettings(initial=provider, min_limit=1, max_limit=100),
        ),
    )


def build(local: Local, remote: SlowRemote | None, gates: Admission) -> Router:
    tasks = ChainedTasks(ConfigTasks({"trend": TaskConfig(labels=("up", "down"), min_confidence=0.5)}))
    rules = (RuleConfig(match_tag={"route": "remote"}, escalate=True),)
    return Router(local, tasks, RoutingConfig(rules=rules, hedge=False), remote=remote, admission=gates)  # type: ignore[arg-type]


def ask(*, remote: bool = False, deadline_s: float | None = None, priority: Priority = Priority.NORMAL) -> Request:
    return Request(
        "r",
        (Message(Role.USER, "AAPL?"),),
        8,
        task="trend",
        priority=priority,
        tags={"route": "remote"} if remote else {},
        deadline=None if deadline_s is None else time.monotonic() + deadline_s,
    )


async def test_a_slow_provider_at_its_limit_leaves_the_local_tier_its_room() -> None:
    local, remote = Local(), SlowRemote()
    router = build(local, remote, admission(provider=2))
    held = [asyncio.create_task(router.generate(ask(remote=True))) for _ in range(2)]
    await wait_until_async(lambda: remote.waiting == 2, timeout_s=10, what="two calls at the provider")
    answered = await asyncio.wait_for(router.generate(ask()), 10)
    assert answered.tier is Tier.LOCAL
    with pytest.raises(ResourceExhausted, match="provider openai had no room") as caught:
        await router.generate(ask(remote=True, deadline_s=0.05))
    assert caught.value.resets_at is not None  # the doors send it as retry-after
    assert remote.waiting == 2  # the refused call never reached the provider
    remote.release.set()
    assert all(r.tier is Tier.REMOTE for r in await asyncio.gather(*held))


async def test_a_queued_provider_call_goes_ahead_when_room_frees() -> None:
    remote = SlowRemote()
    router = build(Local(), remote, admission(provider=1))
    first = asyncio.create_task(router.generate(ask(remote=True)))
    await wait_until_async(lambda: remote.waiting == 1, timeout_s=10, what="the first call at the provider")
    second = asyncio.create_task(router.generate(ask(remote=True, deadline_s=30)))
    await asyncio.sleep(0)
    assert remote.waiting == 1
    remote.release.set()
    assert (await asyncio.wait_for(second, 10)).tier is Tier.REMOTE
    await first


async def test_a_full_local_limit_escalates_and_says_why() -> None:
    hold = asyncio.Event()
    local, remote = Local(hold=hold), SlowRemote()
    remote.release.set()
    router = build(local, remote, admission(local=1))
    busy = asyncio.create_task(router.generate(ask()))
    await wait_until_async(lambda: local.started == 1, timeout_s=10, what="a local call in flight")
    escalated = await asyncio.wait_for(router.generate(ask()), 10)
    assert escalated.tier is Tier.REMOTE
    assert "local tier concurrency limit reached" in escalated.attempts[0].error
    hold.set()
    assert (await busy).tier is Tier.LOCAL


async def test_a_saturated_local_backend_takes_urgent_work_and_sends_the_rest_elsewhere() -> None:
    local, remote = Local(saturated="vllm has 7 requests waiting, the limit is 5"), SlowRemote()
    remote.release.set()
    router = build(local, remote, admission())
    normal = await router.generate(ask())
    assert normal.tier is Tier.REMOTE and "saturated" in normal.attempts[0].error
    assert (await router.generate(ask(priority=Priority.URGENT))).tier is Tier.LOCAL


async def test_a_local_only_request_the_local_tier_cannot_take_is_told_when_to_retry() -> None:
    hold = asyncio.Event()
    local = Local(hold=hold)
    router = build(local, None, admission(local=1))  # no provider: the request stays on the box
    busy = asyncio.create_task(router.generate(ask()))
    await wait_until_async(lambda: local.started == 1, timeout_s=10, what="a local call in flight")
    with pytest.raises(ResourceExhausted, match="local tier concurrency limit reached") as caught:
        await router.generate(ask())
    assert caught.value.resets_at is not None
    hold.set()
    await busy
