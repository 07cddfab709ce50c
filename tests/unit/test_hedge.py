"""Hedged URGENT requests: a slow local tier raced by the OpenAI stand-in through the real remote tier and ledger.

The local stand-in answers only when released, so each test decides which side
comes first without timing anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.config import RoutingConfig, TaskConfig
from gateway.core.contracts import Escalation, Message, Priority, Privacy, Request, Result, Role, Tier
from gateway.remote.estimate import CharEstimator
from gateway.remote.providers.registry import build_provider
from gateway.remote.tier import RemoteTier
from gateway.remote.types import ProviderSlot
from gateway.routing.local_latency import LocalLatency
from gateway.routing.router import Router
from gateway.routing.tasks import ChainedTasks, ConfigTasks
from gateway.state.budget.ledger import utc_day
from gateway.state.budget.sqlite import SqliteLedger
from tests.fakes.base import FakeProviderServer, Fault
from tests.fakes.gated_local import GatedLocal
from tests.fakes.providers import TEST_KEYS, provider_config, running
from tests.waiting import wait_until_async

TASKS = ChainedTasks(ConfigTasks({"trend": TaskConfig(labels=("up", "down"), min_confidence=0.7)}))


def urgent(**fields: object) -> Request:
    return Request("r1", (Message(Role.USER, "trend?"),), 4, task="trend", priority=Priority.URGENT, **fields)  # type: ignore[arg-type]


@dataclass
class Hedged:
    router: Router
    local: GatedLocal
    fake: FakeProviderServer
    ledger: SqliteLedger

    async def used(self) -> tuple[int, int]:
        spend = (await self.ledger.usage(utc_day(datetime.now(UTC)))).get("openai")
        return (spend.tokens_used, spend.requests) if spend else (0, 0)

    async def open_reservations(self) -> int:
        return await self.ledger.settle_expired(datetime.now(UTC) + timedelta(days=1))

    def estimate(self, request: Request) -> int:
        return CharEstimator()(self.router.decide(request).call)

    async def hedge_at_provider(self) -> asyncio.Task[Result]:
        """An urgent request started, once its hedge has reached the provider (the local side still held)."""
        pending = asyncio.create_task(self.router.generate(urgent()))
        await wait_until_async(lambda: self.fake.requests, timeout_s=30, what="the hedge to reach the provider")
        return pending


Build = Callable[..., Awaitable[Hedged]]


@pytest.fixture
async def build(tmp_path: Path) -> AsyncIterator[Build]:
    """build(prob=0.9, **routing) -> a router over a gated local tier and the OpenAI stand-in."""
    opened: list[tuple[RemoteTier, SqliteLedger]] = []
    async with running("openai") as fakes:
        fake = fakes["openai"]

        async def make(prob: float = 0.9, **routing: object) -> Hedged:
            backend = build_provider("openai", provider_config("openai", fake), TEST_KEYS["OPENAI_API_KEY"])
            ledger = SqliteLedger(tmp_path / f"ledger{len(opened)}.sqlite3")
            tier = RemoteTier([ProviderSlot(backend, max_retries=0)], ledger)
            opened.append((tier, ledger))
            local = GatedLocal(prob=prob)
            config = RoutingConfig(escalation_order=("openai",), **routing)  # type: ignore[arg-type]
            return Hedged(Router(local, TASKS, config, remote=tier), local, fake, ledger)

        yield make
        for tier, ledger in opened:
            await tier.aclose()
            await ledger.aclose()


def outcomes(result: object) -> list[tuple[str, str]]:
    return [(a.provider, a.outcome) for a in result.attempts]  # type: ignore[attr-defined]


async def test_a_slow_local_tier_loses_to_the_provider_and_is_cancelled(build: Build) -> None:
    h = await build(hedge_after_ms=0)
    result = await h.router.generate(urgent())
    assert (result.tier, result.provider, result.text) == (Tier.REMOTE, "openai", h.fake.reply.text)
    assert outcomes(result) == [("gated", "cancelled"), ("openai", "ok")]
    assert result.attempts[0].error.startswith("hedged: openai answered first")
    assert result.escalation is Escalation.LOCAL_CAPACITY and result.confidence is None
    assert (h.local.cancelled, h.local.in_flight) == (1, 0)
    assert await h.used() == (sum(h.fake.last_usage), 1)  # reconciled to what the provider reported
    assert await h.open_reservations() == 0


async def test_a_local_answer_that_comes_first_wins_and_the_provider_call_is_cancelled(build: Build) -> None:
    h = await build(hedge_after_ms=0)
    h.fake.fail(Fault(delay_s=30.0))
    pending = await h.hedge_at_provider()
    h.local.release()
    result = await pending
    assert (result.tier, result.text, result.escalation) == (Tier.LOCAL, "up", Escalation.NONE)
    assert result.confidence == pytest.approx(0.9)
    assert outcomes(result) == [("gated", "ok"), ("openai", "cancelled")]
    assert result.attempts[1].error == "hedged: the local answer came first"
    # The request had reached the provider, which may bill for it: its estimate stays spent, settled.
    assert await h.used() == (h.estimate(urgent()), 1)
    assert await h.open_reservations() == 0


async def test_a_local_answer_below_the_threshold_waits_for_the_provider(build: Build) -> None:
    h = await build(prob=0.6, hedge_after_ms=0)
    h.fake.fail(Fault(delay_s=0.5))
    pending = await h.hedge_at_provider()
    h.local.release()
    result = await pending
    assert (result.tier, result.provider, result.escalation) == (Tier.REMOTE, "openai", Escalation.LOW_CONFIDENCE)
    assert result.confidence == pytest.approx(0.6) and result.local_text == "up"
    assert outcomes(result) == [("gated", "low_confidence"), ("openai", "ok")]


async def test_a_failing_provider_leaves_the_local_answer(build: Build) -> None:
    h = await build(prob=0.6, hedge_after_ms=0)
    h.fake.fail(Fault(status=500))
    pending = await h.hedge_at_provider()
    h.local.release()
    result = await pending
    assert (result.tier, result.text, result.escalation) == (Tier.LOCAL, "up", Escalation.LOW_CONFIDENCE)
    assert outcomes(result) == [("gated", "low_confidence"), ("openai", "error")]
    assert await h.used() == (0, 0) and await h.open_reservations() == 0  # a 500 is not billed


async def test_a_local_answer_within_the_delay_is_not_hedged(build: Build) -> None:
    h = await build(hedge_after_ms=60_000)
    h.local.release()
    result = await h.router.generate(urgent())
    assert result.tier is Tier.LOCAL and outcomes(result) == [("gated", "ok")]
    assert h.fake.requests == 0


async def test_local_only_and_normal_priority_requests_are_never_hedged(build: Build) -> None:
    h = await build(hedge_after_ms=0)
    local_only = urgent(privacy=Privacy.LOCAL_ONLY)
    normal = Request("r2", (Message(Role.USER, "trend?"),), 4, task="trend")
    for request in (local_only, normal):
        h.local.gate.clear()
        h.local.started.clear()
        pending = asyncio.create_task(h.router.generate(request))
        await asyncio.wait_for(h.local.started.wait(), 30)
        h.local.release()
        result = await pending
        assert result.tier is Tier.LOCAL and outcomes(result) == [("gated", "ok")]
    assert h.fake.requests == 0


async def test_the_default_delay_is_the_task_s_observed_p95_once_known(build: Build) -> None:
    """No hedge on a cold tier; after 20 quick local answers a stuck one is raced (after hedge_min_ms)."""
    h = await build()  # hedge_after_ms unset
    h.local.release()
    for _ in range(19):
        assert outcomes(await h.router.generate(urgent())) == [("gated", "ok")]
    assert h.fake.requests == 0
    await h.router.generate(Request("r", (Message(Role.USER, "trend?"),), 4, task="trend"))  # the 20th answer
    h.local.gate.clear()
    result = await h.router.generate(urgent())
    assert outcomes(result) == [("gated", "cancelled"), ("openai", "ok")]


async def test_a_caller_that_leaves_cancels_both_sides_and_settles_the_budget(build: Build) -> None:
    h = await build(hedge_after_ms=0)
    h.fake.fail(Fault(delay_s=30.0))
    pending = await h.hedge_at_provider()
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    assert (h.local.cancelled, h.local.in_flight) == (1, 0)
    assert await h.used() == (h.estimate(urgent()), 1) and await h.open_reservations() == 0


def test_local_latency_p95_over_a_window_and_none_before_enough_answers() -> None:
    latency = LocalLatency(window=100, min_samples=20, recompute_every=1)
    for ms in range(1, 20):
        latency.observe("trend", ms / 1000)
    assert latency.quantile_s("trend") is None and latency.quantile_s("other") is None
    for ms in range(20, 101):
        latency.observe("trend", ms / 1000)
    assert latency.quantile_s("trend") == pytest.approx(0.095)
    for _ in range(100):  # the window forgets the old answers
        latency.observe("trend", 0.005)
    assert latency.quantile_s("trend") == pytest.approx(0.005)
    with pytest.raises(ValueError, match="quantile"):
        LocalLatency(quantile=0)
