"""The vLLM server killed mid-request, and restarted by its supervisor, behind a real gateway process.

The gateway's local tier is the session's real vLLM server (tests/vllm_session.py,
run under the same VllmSupervisor that `[local.vllm] supervise = true` uses); the
OpenAI stand-in is the escalation target. As documented in docs/operations.md
("Faults"): requests in flight when vLLM dies escalate (or, when local-only, fail
with a clean error) at once; while it is down the backend reports no capacity,
so requests go straight to the provider or are refused quickly; once vLLM is
healthy again the same gateway process answers locally by itself.

Marked slow (vLLM takes tens of seconds to start again on CPU): `make test-vllm`
and `make test-slow` run it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.providers import TEST_KEYS, base_url
from tests.fakes.threaded import serving_in_thread
from tests.gateway_process import GatewayProcess, start_gateway
from tests.vllm_session import VllmTestServer, shared_vllm
from tests.waiting import wait_until, wait_until_async

LONG = "Count from 1 to 300, separated by commas."

CONFIG = """
[server]
default_max_tokens = 8

[local]
backend = "vllm"

[local.vllm]
base_url = "{vllm}"
served_model_name = "{served}"
metrics_poll_s = 0.2

[cache]
enabled = false

[routing]
escalation_order = ["openai"]

[providers.openai]
model = "gpt-test"
base_url = "{openai}"
max_retries = 0
"""


@pytest.fixture
def vllm_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> VllmTestServer:
    return shared_vllm(request, tmp_path_factory.getbasetemp() / "vllm-session")


@pytest.fixture
def gateway(vllm_server: VllmTestServer, tmp_path: Path) -> Iterator[tuple[GatewayProcess, FakeOpenAI]]:
    with serving_in_thread(FakeOpenAI()) as openai:
        text = CONFIG.format(vllm=vllm_server.base_url, served=vllm_server.served_name, openai=base_url(openai))
        process = start_gateway(text, tmp_path, env=TEST_KEYS, ready_timeout_s=60)
        try:
            yield process, openai  # type: ignore[misc]
        finally:
            process.stop()


def ask(text: str, *, max_tokens: int = 4, local_only: bool = False) -> pb.GenerateRequest:
    return pb.GenerateRequest(
        messages=[pb.ChatMessage(role="user", content=text)],
        max_tokens=max_tokens,
        min_confidence=0.0,  # any local answer is kept: the test is about where it is answered
        privacy=pb.PRIVACY_LOCAL_ONLY if local_only else pb.PRIVACY_DEFAULT,
    )


async def outcome(
    stub: pb_grpc.InferenceGatewayStub, request: pb.GenerateRequest
) -> pb.GenerateResponse | grpc.aio.AioRpcError:
    try:
        response: pb.GenerateResponse = await stub.Generate(request, timeout=60)
        return response
    except grpc.aio.AioRpcError as exc:
        return exc


@pytest.mark.slow  # about 2 minutes, most of it vLLM starting again on CPU: make test-slow or make test-vllm
async def test_vllm_killed_mid_request_then_restarted(
    vllm_server: VllmTestServer, gateway: tuple[GatewayProcess, FakeOpenAI]
) -> None:
    process, _openai = gateway
    supervisor = vllm_server.supervisor
    async with grpc.aio.insecure_channel(process.target) as channel:
        stub = pb_grpc.InferenceGatewayStub(channel)
        first = await stub.Generate(ask("Is the trend up?"), timeout=120)
        assert (first.tier, first.provider) == (pb.TIER_LOCAL, "vllm")

        # Two long requests in flight at vLLM, one of them local-only; then vLLM dies (its whole process group).
        in_flight = [
            asyncio.ensure_future(outcome(stub, ask(LONG, max_tokens=300))),
            asyncio.ensure_future(outcome(stub, ask(LONG, max_tokens=300, local_only=True))),
        ]
        await asyncio.to_thread(
            wait_until, lambda: process.metric("gateway_local_in_flight") >= 2, timeout_s=30, what="two at vLLM"
        )
        pid, restarts = supervisor.pid, supervisor.restarts
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)
        killed = time.monotonic()
        escalated, refused = await asyncio.gather(*in_flight)

        assert isinstance(escalated, pb.GenerateResponse), escalated
        assert (escalated.tier, escalated.escalation) == (pb.TIER_REMOTE, pb.ESCALATION_LOCAL_ERROR)
        assert [(a.provider, a.outcome) for a in escalated.attempts] == [("vllm", "error"), ("openai", "ok")]
        assert isinstance(refused, grpc.aio.AioRpcError)
        assert refused.code() == grpc.StatusCode.UNAVAILABLE, refused
        assert time.monotonic() - killed < 10  # at once, not after the request's own time

        # While it is down: no capacity, said quickly; escalated or, when local-only, refused.
        async def down_is_reported() -> pb.GenerateResponse | None:
            answer = await stub.Generate(ask("Is the trend down?"), timeout=10)
            return answer if answer.escalation == pb.ESCALATION_LOCAL_CAPACITY else None

        skipped = await wait_until_async(down_is_reported, timeout_s=10, what="vLLM reported as no capacity")
        assert skipped.tier == pb.TIER_REMOTE and skipped.attempts[0].outcome == "skipped"
        assert "local backend down: vllm is not healthy" in skipped.attempts[0].error
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as no_room:
            await stub.Generate(ask("Is the trend flat?", local_only=True), timeout=10)
        assert no_room.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "vllm is not healthy" in (no_room.value.details() or "")
        assert time.monotonic() - started < 1.0

        # The supervisor restarts vLLM; the same gateway answers locally again by itself.
        async def local_again() -> bool:
            answer = await outcome(stub, ask("Is the trend up?"))
            return isinstance(answer, pb.GenerateResponse) and answer.tier == pb.TIER_LOCAL

        await wait_until_async(local_again, timeout_s=600, what="local answers after vLLM restarted", interval_s=1.0)
        assert supervisor.restarts == restarts + 1 and supervisor.pid not in (None, pid)
        assert process.process.poll() is None  # the gateway was never restarted
