"""A burst of 96 calls on one connection from raw stubs, past the local tier's limit: each is answered or
refused at once with RESOURCE_EXHAUSTED and a retry-after; none waits out its deadline, none is UNAVAILABLE.

The echo backend holds each call 300 ms and the local tier's limit is pinned at 8, so most of the
burst cannot be taken; what matters is that the refusals are clean, not how many there are.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.gateway_process import GatewayProcess, start_gateway

BURST = 96
DEADLINE_S = 20.0  # far past what a refusal takes: a call that waits it out is a failure, not slowness
CONFIG = """
[local]
backend = "echo"
[local.echo]
delay_ms = 300
[admission]
local_initial = 8
local_max = 8
[cache]
enabled = false
"""


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    process = start_gateway(CONFIG, tmp_path)
    yield process
    process.stop()


async def _burst(target: str) -> list[tuple[str, str, dict[str, str]]]:
    """(status name, details, trailing metadata) of each call, all sent at once on one channel."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.InferenceGatewayStub(channel)

        async def one(i: int) -> tuple[str, str, dict[str, str]]:
            request = pb.GenerateRequest(
                messages=[pb.ChatMessage(role="user", content=f"quote {i}")],
                max_tokens=4,
                privacy=pb.PRIVACY_LOCAL_ONLY,
            )
            call = stub.Generate(request, timeout=DEADLINE_S)
            try:
                await call
                return "OK", "", {}
            except grpc.aio.AioRpcError as exc:
                trailers = {str(k): str(v) for k, v in (exc.trailing_metadata() or ())}
                return exc.code().name, exc.details() or "", trailers

        return await asyncio.gather(*(one(i) for i in range(BURST)))


def test_a_burst_on_one_connection_is_answered_or_refused_cleanly(gateway: GatewayProcess) -> None:
    outcomes = asyncio.run(_burst(gateway.target))
    codes = sorted({code for code, _, _ in outcomes})
    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}, codes
    refused = [o for o in outcomes if o[0] == "RESOURCE_EXHAUSTED"]
    assert refused, "96 calls of 300 ms each against a limit of 8 cannot all be taken at once"
    assert any(code == "OK" for code, _, _ in outcomes)
    assert all("local tier" in details for _, details, _ in refused), refused[0]
    assert all(trailers.get("retry-after", "").isdigit() for _, _, trailers in refused), refused[0]
