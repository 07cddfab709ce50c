"""Two gateway processes sharing one Redis: one daily budget that concurrent load cannot overrun, one cache.

Both gateways use the echo backend locally and escalate requests tagged
route=remote (a routing rule) to the OpenAI stand-in; every budget, cache entry
and usage record lives in the real redis-server the tests start.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.providers import TEST_KEYS
from tests.fakes.threaded import serving_in_thread
from tests.gateway_process import GatewayProcess, start_gateway
from tests.redis_server import RedisServer

BUDGET = 1000
REQUESTS = 400

CONFIG = """
cache_dir = "{cache_dir}"
state_dir = "{cache_dir}/state"

[server]
default_max_tokens = 8
drain_timeout_s = 5

[local]
backend = "echo"

[routing]
escalation_order = ["openai"]

[[routing.rules]]
match_tag = {{ route = "remote" }}
escalate = true

[providers.openai]
model = "gpt-test"
base_url = "{base_url}"
daily_token_budget = {budget}
max_retries = 0
timeout_s = 10

[state]
backend = "redis"
url = "{redis_url}"
key_prefix = "{prefix}"
"""


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeOpenAI]:
    with serving_in_thread(FakeOpenAI()) as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture(scope="module")
def replicas(
    redis_server: RedisServer, provider: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[GatewayProcess]]:
    prefix = f"replicas-{uuid.uuid4().hex[:8]}:"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OPENAI_API_KEY", TEST_KEYS["OPENAI_API_KEY"])
        workdirs = [tmp_path_factory.mktemp(f"replica-{name}") for name in ("a", "b")]
        configs = [
            CONFIG.format(
                cache_dir=workdir / "cache",  # each replica its own folder: nothing shared but Redis
                base_url=provider.base_url,
                budget=BUDGET,
                redis_url=redis_server.url,
                prefix=prefix,
            )
            for workdir in workdirs
        ]
        with ThreadPoolExecutor(2) as pool:  # start both at once
            futures = [
                pool.submit(start_gateway, c, w, ready_timeout_s=60) for c, w in zip(configs, workdirs, strict=True)
            ]
        started = [f.result() for f in futures if f.exception() is None]
        try:
            if len(started) < len(futures):
                raise next(e for f in futures if (e := f.exception()) is not None)
            yield started
        finally:
            for gateway in started:
                gateway.stop()


def ask(text: str, *, remote: bool) -> pb.GenerateRequest:
    return pb.GenerateRequest(
        messages=[pb.ChatMessage(role="user", content=text)],
        tags={"route": "remote"} if remote else {},
    )


async def test_concurrent_load_on_two_replicas_never_overruns_the_shared_budget(
    replicas: list[GatewayProcess], provider: FakeOpenAI
) -> None:
    channels = [grpc.aio.insecure_channel(g.target) for g in replicas]
    stubs = [pb_grpc.InferenceGatewayStub(c) for c in channels]
    try:

        async def one(i: int) -> pb.GenerateResponse | grpc.StatusCode:
            try:
                return await stubs[i % 2].Generate(ask(f"q{i}: is the trend up or down", remote=True), timeout=60)
            except grpc.aio.AioRpcError as exc:
                return exc.code()

        outcomes = await asyncio.gather(*(one(i) for i in range(REQUESTS)))
        answered = [o for o in outcomes if isinstance(o, pb.GenerateResponse)]
        refused = [o for o in outcomes if not isinstance(o, pb.GenerateResponse)]
        assert answered and refused, "the budget should admit some requests and refuse the rest"
        assert set(refused) == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert all(r.tier == pb.TIER_REMOTE and r.provider == "openai" for r in answered)
        billed = sum(r.usage.prompt_tokens + r.usage.completion_tokens for r in answered)
        assert billed <= BUDGET
        assert provider.requests == len(answered)  # nothing reached the provider without a reservation

        usages = [await stub.GetUsage(pb.GetUsageRequest(), timeout=10) for stub in stubs]
        for usage in usages:
            (row,) = [p for p in usage.providers if p.provider == "openai"]
            assert (row.tokens_used, row.token_budget, row.requests) == (billed, BUDGET, len(answered))
        final = usages[-1]  # both replicas' records are written by now: each GetUsage flushed its own
        assert final.requests_by_tier["remote"] == len(answered)
        assert final.escalations_by_reason["rule"] == len(answered)
    finally:
        for channel in channels:
            await channel.close()


async def test_an_answer_cached_by_one_replica_is_a_hit_in_the_other(replicas: list[GatewayProcess]) -> None:
    first, second = replicas
    question = ask(f"cache me {uuid.uuid4().hex}", remote=False)
    async with grpc.aio.insecure_channel(first.target) as a, grpc.aio.insecure_channel(second.target) as b:
        original = await pb_grpc.InferenceGatewayStub(a).Generate(question, timeout=10)
        again = await pb_grpc.InferenceGatewayStub(b).Generate(question, timeout=10)
    assert original.tier == pb.TIER_LOCAL
    assert again.tier == pb.TIER_CACHE
    assert (again.provider, again.model, again.text) == (original.provider, original.model, original.text)


def test_replicas_log_where_their_shared_state_lives(replicas: list[GatewayProcess], redis_server: RedisServer) -> None:
    for gateway in replicas:
        line = gateway.wait_for_log("shared state: redis at")
        assert f"127.0.0.1:{redis_server.port}" in line
