"""Three gateway processes sharing one Redis, behind a round-robin client: one budget per provider that
concurrent load and a restart cannot overrun, one cache, one set of usage figures.

Every gateway uses the echo backend locally and escalates requests tagged
route=remote (a routing rule) to the OpenAI stand-in, then the Anthropic one
once OpenAI's budget is spent. The stand-ins count the tokens they served.
Every budget, cache entry and usage record lives in the real redis-server the
tests start; each replica has its own folder, so nothing else is shared.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.fakes.anthropic_fake import FakeAnthropic
from tests.fakes.base import NO_FAULT, Fault
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.providers import TEST_KEYS
from tests.fakes.threaded import serving_in_thread
from tests.gateway_process import GatewayProcess, start_gateway
from tests.redis_server import RedisServer
from tests.waiting import wait_until_async

BUDGETS = {"openai": 1000, "anthropic": 600}
BEFORE_RESTART = 20  # remote requests while all three replicas serve
DURING_DRAIN = 12  # remote requests in flight at the provider when one replica gets SIGTERM
WHILE_DOWN = 6  # remote requests sent round-robin while that replica is gone
AFTER_RESTART = 240  # remote requests once it is back: more than both budgets cover
SLOW_PROVIDER_S = 2.0  # provider latency while one replica drains (its drain_timeout_s is 5)

CONFIG = """
[server]
default_max_tokens = 8
drain_timeout_s = 5

[local]
backend = "echo"

[routing]
escalation_order = ["openai", "anthropic"]

[[routing.rules]]
match_tag = {{ route = "remote" }}
escalate = true

[providers.openai]
model = "gpt-test"
base_url = "{openai_url}"
daily_token_budget = {openai_budget}
max_retries = 0
timeout_s = 10

[providers.anthropic]
model = "claude-test"
base_url = "{anthropic_url}"
daily_token_budget = {anthropic_budget}
max_retries = 0
timeout_s = 10

[state]
backend = "redis"
url = "{redis_url}"
key_prefix = "{prefix}"
"""


@dataclass
class CountingOpenAI(FakeOpenAI):
    """The OpenAI stand-in, adding up the tokens of every answer it sent."""

    tokens_served: int = 0

    def _usage(self, body: dict[str, Any]) -> dict[str, int]:
        usage = super()._usage(body)
        self.tokens_served += usage["total_tokens"]
        return usage


@dataclass
class CountingAnthropic(FakeAnthropic):
    """The Anthropic stand-in, adding up the tokens of every answer it sent."""

    tokens_served: int = 0

    def _usage(self, body: dict[str, Any]) -> tuple[int, int]:
        usage = super()._usage(body)
        self.tokens_served += sum(usage)
        return usage


@dataclass(frozen=True)
class Providers:
    openai: CountingOpenAI
    anthropic: CountingAnthropic

    def served(self, name: str) -> int:
        return self.openai.tokens_served if name == "openai" else self.anthropic.tokens_served

    def calls(self, name: str) -> int:
        return self.openai.requests if name == "openai" else self.anthropic.requests


@dataclass
class Cluster:
    """The replicas in service now, all with one config; the test swaps a restarted one in."""

    config: str
    new_folder: Callable[[], Path]
    replicas: list[GatewayProcess] = field(default_factory=list)

    def start(self, count: int) -> None:
        with ThreadPoolExecutor(count) as pool:  # start them at once
            futures = [pool.submit(self.start_one, self.new_folder()) for _ in range(count)]
        self.replicas += [f.result() for f in futures if f.exception() is None]
        if failed := next((e for f in futures if (e := f.exception()) is not None), None):
            raise failed

    def start_one(self, workdir: Path) -> GatewayProcess:
        """Each replica its own folder: nothing is shared but Redis."""
        folders = f'cache_dir = "{workdir}/cache"\nstate_dir = "{workdir}/state"\n'
        return start_gateway(folders + self.config, workdir, ready_timeout_s=60)

    def stop_all(self) -> None:
        for gateway in self.replicas:
            gateway.stop()


@pytest.fixture(scope="module")
def providers() -> Iterator[Providers]:
    with serving_in_thread(CountingOpenAI()) as openai, serving_in_thread(CountingAnthropic()) as anthropic:
        yield Providers(openai, anthropic)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def cluster(
    redis_server: RedisServer, providers: Providers, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    config = CONFIG.format(
        openai_url=providers.openai.base_url,
        openai_budget=BUDGETS["openai"],
        anthropic_url=providers.anthropic.base_url,
        anthropic_budget=BUDGETS["anthropic"],
        redis_url=redis_server.url,
        prefix=f"replicas-{uuid.uuid4().hex[:8]}:",
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OPENAI_API_KEY", TEST_KEYS["OPENAI_API_KEY"])
        env.setenv("ANTHROPIC_API_KEY", TEST_KEYS["ANTHROPIC_API_KEY"])
        cluster = Cluster(config, lambda: tmp_path_factory.mktemp("replica"))
        try:
            cluster.start(3)
            yield cluster
        finally:
            cluster.stop_all()


@dataclass(frozen=True)
class Outcome:
    replica: str  # the target that answered (or refused)
    response: pb.GenerateResponse | None
    code: grpc.StatusCode | None


class RoundRobin:
    """A client-side round robin over the replicas in rotation; a replica that is UNAVAILABLE is passed over."""

    def __init__(self) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._retired: list[grpc.aio.Channel] = []  # taken out of rotation; calls on them may still be in flight
        self._turn = itertools.count()

    def add(self, target: str) -> None:
        self._channels[target] = grpc.aio.insecure_channel(target)

    def remove(self, target: str) -> None:
        self._retired.append(self._channels.pop(target))

    async def generate(self, request: pb.GenerateRequest) -> Outcome:
        rotation = list(self._channels.items())
        first = next(self._turn)
        for step in range(len(rotation)):
            target, channel = rotation[(first + step) % len(rotation)]
            stub = pb_grpc.InferenceGatewayStub(channel)
            try:
                return Outcome(target, await stub.Generate(request, timeout=30), None)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE:
                    return Outcome(target, None, exc.code())
        raise AssertionError(f"no replica in rotation answered: {[target for target, _ in rotation]}")

    async def aclose(self) -> None:
        for channel in (*self._channels.values(), *self._retired):
            await channel.close()


def ask(text: str, *, remote: bool) -> pb.GenerateRequest:
    return pb.GenerateRequest(
        messages=[pb.ChatMessage(role="user", content=text)],
        tags={"route": "remote"} if remote else {},
    )


def questions(prefix: str, count: int) -> list[pb.GenerateRequest]:
    return [ask(f"{prefix}{i}: is the trend up or down", remote=True) for i in range(count)]


async def usage_of(target: str) -> pb.GetUsageResponse:
    async with grpc.aio.insecure_channel(target) as channel:
        usage: pb.GetUsageResponse = await pb_grpc.InferenceGatewayStub(channel).GetUsage(
            pb.GetUsageRequest(), timeout=10
        )
        return usage


async def test_three_replicas_with_one_restarted_mid_run_never_overrun_any_budget_and_agree_on_usage(
    cluster: Cluster, providers: Providers
) -> None:
    client = RoundRobin()
    for gateway in cluster.replicas:
        client.add(gateway.target)
    outcomes: list[Outcome] = []
    try:

        async def send(requests: list[pb.GenerateRequest]) -> list[Outcome]:
            done = await asyncio.gather(*(client.generate(r) for r in requests))
            outcomes.extend(done)
            return done

        # 1. All three serve.
        before = await send(questions("before", BEFORE_RESTART))
        assert {o.replica for o in before} == {g.target for g in cluster.replicas}, "round robin reaches every one"

        # 2. The provider slows down; once every request of this wave waits at it, one replica gets SIGTERM.
        restarted = cluster.replicas[1]
        providers.openai.always(Fault(delay_s=SLOW_PROVIDER_S))
        seen = providers.calls("openai")
        wave = asyncio.ensure_future(send(questions("drain", DURING_DRAIN)))
        await wait_until_async(
            lambda: providers.calls("openai") >= seen + DURING_DRAIN, timeout_s=30, what="the wave at the provider"
        )
        restarted.process.terminate()
        await asyncio.to_thread(restarted.wait_for_log, "draining")
        while_down = await send(questions("down", WHILE_DOWN))  # its address is still in rotation for this wave
        client.remove(restarted.target)
        drained = await wave
        providers.openai.always(NO_FAULT)
        assert await asyncio.to_thread(restarted.process.wait, 30) == 0  # drained, stopped cleanly
        assert restarted.target in {o.replica for o in drained}
        assert all(o.response is not None for o in drained), [(o.replica, o.code) for o in drained]
        assert all(o.response is not None for o in while_down), [(o.replica, o.code) for o in while_down]

        # 3. It comes back (a new process, a new address) and rejoins; the load now exceeds every budget.
        back = await asyncio.to_thread(cluster.start_one, cluster.new_folder())
        cluster.replicas[1] = back
        client.add(back.target)
        after = await send(questions("after", AFTER_RESTART))
        assert any(o.replica == back.target and o.response is not None for o in after), "the new replica answers"

        # 4. No token over any budget; every token billed is one the stand-ins served.
        answered = [o.response for o in outcomes if o.response is not None]
        refused = Counter(o.code for o in outcomes if o.response is None)
        assert set(refused) == {grpc.StatusCode.RESOURCE_EXHAUSTED}, refused
        assert all(r.tier == pb.TIER_REMOTE for r in answered)
        by_provider = {name: [r for r in answered if r.provider == name] for name in BUDGETS}
        assert sum(len(rs) for rs in by_provider.values()) == len(answered)
        billed = {
            name: sum(r.usage.prompt_tokens + r.usage.completion_tokens for r in rs) for name, rs in by_provider.items()
        }
        for name, budget in BUDGETS.items():
            assert by_provider[name], f"{name} answered nothing: failover after OpenAI's budget did not happen"
            assert billed[name] <= budget, f"{name}: {billed[name]} tokens over a budget of {budget}"
            assert providers.served(name) == billed[name]
            assert providers.calls(name) == len(by_provider[name]), "nothing reached a provider without a reservation"

        # 5. Every replica reports the same usage: the ledger exactly, and every replica's records.
        targets = [g.target for g in cluster.replicas]
        for target in targets:  # each GetUsage also writes out that replica's queued records
            await usage_of(target)
        usages = [await usage_of(target) for target in targets]
        for usage in usages:
            rows = {p.provider: (p.tokens_used, p.token_budget, p.requests) for p in usage.providers}
            assert rows == {name: (billed[name], BUDGETS[name], len(by_provider[name])) for name in BUDGETS}
            assert dict(usage.requests_by_tier) == dict(usages[0].requests_by_tier)
            assert dict(usage.escalations_by_reason) == dict(usages[0].escalations_by_reason)
        assert usages[0].requests_by_tier["remote"] == len(answered)  # the drained replica's records too
        assert usages[0].escalations_by_reason["rule"] == len(answered)

        # 6. The new replica finds answers cached before it existed.
        first_answer = before[0].response
        assert first_answer is not None
        async with grpc.aio.insecure_channel(back.target) as channel:
            again = await pb_grpc.InferenceGatewayStub(channel).Generate(questions("before", 1)[0], timeout=10)
        assert again.tier == pb.TIER_CACHE
        assert (again.provider, again.text) == (first_answer.provider, first_answer.text)
    finally:
        providers.openai.always(NO_FAULT)
        await client.aclose()


async def test_an_answer_cached_by_any_replica_is_a_hit_in_every_other(cluster: Cluster) -> None:
    channels = {g.target: grpc.aio.insecure_channel(g.target) for g in cluster.replicas}
    try:
        for origin, channel in channels.items():
            question = ask(f"cache me {uuid.uuid4().hex}", remote=False)
            original = await pb_grpc.InferenceGatewayStub(channel).Generate(question, timeout=10)
            assert original.tier == pb.TIER_LOCAL
            for target in channels.keys() - {origin}:
                again = await pb_grpc.InferenceGatewayStub(channels[target]).Generate(question, timeout=10)
                assert again.tier == pb.TIER_CACHE, f"{target} missed what {origin} cached"
                assert (again.provider, again.model, again.text) == (original.provider, original.model, original.text)
    finally:
        for channel in channels.values():
            await channel.close()


def test_replicas_log_where_their_shared_state_lives(cluster: Cluster, redis_server: RedisServer) -> None:
    for gateway in cluster.replicas:
        line = gateway.wait_for_log("shared state: redis at")
        assert f"127.0.0.1:{redis_server.port}" in line
