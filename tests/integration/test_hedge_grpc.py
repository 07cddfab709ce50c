"""A hedged URGENT request over real gRPC: a gateway process whose local tier is slow, the OpenAI stand-in fast."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc

from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.fakes.providers import TEST_KEYS, base_url, running
from tests.gateway_process import start_gateway


def ask(**fields: object) -> pb.GenerateRequest:
    message = pb.ChatMessage(role="user", content="is the trend up")
    return pb.GenerateRequest(messages=[message], max_tokens=4, **fields)  # type: ignore[arg-type]


async def test_a_slow_local_answer_is_raced_and_the_provider_wins(tmp_path: Path) -> None:
    async with running("openai") as fakes:
        config = f"""
[local]
backend = "echo"
[local.echo]
delay_ms = 1500
[routing]
escalation_order = ["openai"]
hedge_after_ms = 50
[providers.openai]
model = "gpt-test"
base_url = "{base_url(fakes["openai"])}"
api_key_env = "OPENAI_API_KEY"
max_retries = 0
"""
        gateway = await asyncio.to_thread(start_gateway, config, tmp_path, env=TEST_KEYS)
        try:
            async with grpc.aio.insecure_channel(gateway.target) as channel:
                stub = pb_grpc.InferenceGatewayStub(channel)
                hedged = await stub.Generate(ask(priority=pb.PRIORITY_URGENT), timeout=30)
                assert (hedged.tier, hedged.provider) == (pb.TIER_REMOTE, "openai")
                assert [(a.provider, a.outcome) for a in hedged.attempts] == [("echo", "cancelled"), ("openai", "ok")]
                assert hedged.attempts[0].error.startswith("hedged: openai answered first")

                kept = await stub.Generate(
                    ask(priority=pb.PRIORITY_URGENT, privacy=pb.PRIVACY_LOCAL_ONLY, bypass_cache=True), timeout=30
                )
                assert kept.tier == pb.TIER_LOCAL and [(a.provider, a.outcome) for a in kept.attempts] == [
                    ("echo", "ok")
                ]
            assert fakes["openai"].requests == 1
        finally:
            gateway.stop()
