"""A slow provider under a burst: the gateway holds every call it can answer in time, and the local tier keeps
its own room.

200 concurrent calls pinned to a provider that takes 2 s, on one channel with an 8 s deadline: with the
old fixed `max_concurrent_rpcs = 64` 136 of them were refused although the provider could answer all of
them in time. The provider's own limit (routing/admission.py) holds or queues them instead, and a request
the local tier answers goes through meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.fakes.base import Fault
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.providers import TEST_KEYS
from tests.fakes.threaded import serving_in_thread
from tests.gateway_process import GatewayProcess, start_gateway
from tests.waiting import wait_until_async

CALLS = 200
PROVIDER_S = 2.0
DEADLINE_S = 8.0


@pytest.fixture
def slow_gateway(tmp_path: Path) -> Iterator[tuple[GatewayProcess, FakeOpenAI]]:
    fake = FakeOpenAI()
    fake.always(Fault(delay_s=PROVIDER_S))
    with serving_in_thread(fake) as openai:
        config = f"""
[local]
backend = "echo"
[cache]
enabled = false
[routing]
escalation_order = ["openai"]
[providers.openai]
model = "gpt-test"
base_url = "{openai.origin}/v1"
api_key_env = "OPENAI_API_KEY"
max_retries = 0
timeout_s = 30
"""
        gateway = start_gateway(config, tmp_path, env=TEST_KEYS)
        yield gateway, fake
        gateway.stop()


async def _calls(target: str, provider: FakeOpenAI) -> tuple[list[str], str]:
    """The status of each pinned call, and of one local call sent while they wait on the provider."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.InferenceGatewayStub(channel)

        async def one(request: pb.GenerateRequest) -> str:
            try:
                await stub.Generate(request, timeout=DEADLINE_S)
            except grpc.aio.AioRpcError as exc:
                return f"{exc.code().name}: {exc.details()}"
            return "OK"

        def ask(i: int, model: str = "", privacy: pb.Privacy.ValueType = pb.PRIVACY_DEFAULT) -> pb.GenerateRequest:
            message = pb.ChatMessage(role="user", content=f"quote {i}")
            return pb.GenerateRequest(messages=[message], max_tokens=4, model=model, privacy=privacy)

        pinned = [asyncio.create_task(one(ask(i, "openai/gpt-test"))) for i in range(CALLS)]
        # the provider holds 160 of them (the NORMAL share of its first limit, 200), the rest wait in its queue
        await wait_until_async(lambda: provider.requests >= 100, timeout_s=DEADLINE_S, what="calls at the provider")
        local = await one(ask(-1, privacy=pb.PRIVACY_LOCAL_ONLY))
        return list(await asyncio.gather(*pinned)), local


def test_a_slow_provider_answers_every_call_that_fits_its_deadline_and_leaves_the_local_tier_free(
    slow_gateway: tuple[GatewayProcess, FakeOpenAI],
) -> None:
    gateway, provider = slow_gateway
    pinned, local = asyncio.run(_calls(gateway.target, provider))
    failed = sorted({outcome[:160] for outcome in pinned if outcome != "OK"})
    assert pinned.count("OK") == CALLS, f"{CALLS - pinned.count('OK')} of {CALLS} not answered: {failed}"
    assert local == "OK"
