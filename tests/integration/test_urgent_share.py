"""URGENT work keeps its reserved share of the local tier while NORMAL work floods it.

The echo backend holds each call 4 s and the local tier's limit is pinned at 8, of which NORMAL calls
may hold 6 (20 % is kept for URGENT). Once a flood of NORMAL LOCAL_ONLY calls fills its 6, a further
NORMAL call is refused at once and URGENT calls are still taken.
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
from tests.waiting import wait_until_async

NORMAL_SHARE = 6
CONFIG = """
[local]
backend = "echo"
[local.echo]
delay_ms = 4000
[admission]
local_initial = 8
local_max = 8
urgent_share = 0.2
[cache]
enabled = false
"""


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    process = start_gateway(CONFIG, tmp_path)
    yield process
    process.stop()


def ask(i: int, priority: pb.Priority.ValueType) -> pb.GenerateRequest:
    message = pb.ChatMessage(role="user", content=f"quote {i}")
    return pb.GenerateRequest(messages=[message], max_tokens=4, privacy=pb.PRIVACY_LOCAL_ONLY, priority=priority)


async def _flood(gateway: GatewayProcess) -> tuple[str, list[str]]:
    """(the status of one NORMAL call sent into the full share, the statuses of two URGENT calls sent with it)."""
    async with grpc.aio.insecure_channel(gateway.target) as channel:
        stub = pb_grpc.InferenceGatewayStub(channel)

        async def one(request: pb.GenerateRequest) -> str:
            try:
                await stub.Generate(request, timeout=30)
            except grpc.aio.AioRpcError as exc:
                return str(exc.code().name)
            return "OK"

        flood = [asyncio.create_task(one(ask(i, pb.PRIORITY_NORMAL))) for i in range(NORMAL_SHARE)]
        await wait_until_async(
            lambda: gateway.metric("gateway_local_in_flight") >= NORMAL_SHARE,
            timeout_s=30,
            what="the NORMAL share full",
        )
        late_normal, *urgent = await asyncio.gather(
            one(ask(100, pb.PRIORITY_NORMAL)), one(ask(101, pb.PRIORITY_URGENT)), one(ask(102, pb.PRIORITY_URGENT))
        )
        assert set(await asyncio.gather(*flood)) == {"OK"}
        return late_normal, urgent


def test_urgent_calls_are_taken_while_normal_ones_fill_their_share(gateway: GatewayProcess) -> None:
    late_normal, urgent = asyncio.run(_flood(gateway))
    assert late_normal == "RESOURCE_EXHAUSTED"
    assert urgent == ["OK", "OK"]
