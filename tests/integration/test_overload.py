"""A burst at the embedded model: what is admitted finishes within its deadline, the rest is refused at once.

96 concurrent LOCAL_ONLY requests (12 tokens, 2 s deadline) are far more than the
model on two cores can answer in 2 s, while one alone fits with room to spare (at 24
tokens a lone request's estimate sat at the deadline on a slower run, ~74 ms a step, and
nothing could be admitted: the property needs something admissible). The gateway must refuse what it cannot finish
(RESOURCE_EXHAUSTED, with a reason) and finish in time what it admits: the share of
admitted requests answered within their deadline is the property checked, not speed.
The burst is the first traffic a freshly started gateway sees: its estimates come
from the start-up warm-up alone (the hardest case).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.gateway_process import GatewayProcess, start_gateway
from tests.integration.conftest import MODEL_CONFIG

BURST = 96
DEADLINE_S = 2.0
TOKENS = 12


def _request(i: int) -> pb.GenerateRequest:
    return pb.GenerateRequest(
        messages=[pb.ChatMessage(role="user", content=f"Write a sentence about the market on day {i}.")],
        max_tokens=TOKENS,
        privacy=pb.PRIVACY_LOCAL_ONLY,
    )


async def _burst(target: str) -> list[tuple[str, float, str]]:
    """(status name, seconds from the burst's start, details) for each request."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.InferenceGatewayStub(channel)
        outcomes: list[tuple[str, float, str]] = []

        async def one(i: int, started: float) -> None:
            try:
                await stub.Generate(_request(i), timeout=DEADLINE_S)
                outcomes.append(("OK", time.perf_counter() - started, ""))
            except grpc.aio.AioRpcError as exc:
                outcomes.append((exc.code().name, time.perf_counter() - started, exc.details() or ""))

        started = time.perf_counter()
        await asyncio.gather(*(one(i, started) for i in range(BURST)))
        return outcomes


@pytest.fixture
def cold_gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    """A gateway of its own, started for this test: nothing but its start-up warm-up has run on the model."""
    gateway = start_gateway(MODEL_CONFIG + "\n[cache]\nenabled = false\n", tmp_path)
    yield gateway
    gateway.stop()


def test_a_burst_at_a_freshly_started_embedded_model_finishes_what_it_admits_and_refuses_the_rest(
    cold_gateway: GatewayProcess,
) -> None:
    outcomes = asyncio.run(_burst(cold_gateway.target))
    refused = [o for o in outcomes if o[0] == "RESOURCE_EXHAUSTED"]
    admitted = [o for o in outcomes if o[0] != "RESOURCE_EXHAUSTED"]
    in_time = [o for o in admitted if o[0] == "OK" and o[1] <= DEADLINE_S]
    summary = sorted({(code, details[:120]) for code, _, details in outcomes})
    assert refused, f"a burst this size cannot all finish in {DEADLINE_S} s, yet nothing was refused: {summary}"
    assert any("local tier" in details for _, _, details in refused), summary  # the local estimate said no
    assert all(details for _, _, details in refused), "every refusal says why"
    assert admitted, f"nothing was admitted: {summary}"
    assert len(in_time) / len(admitted) >= 0.9, (
        f"{len(in_time)} of {len(admitted)} admitted requests answered within {DEADLINE_S} s: {summary}"
    )
