"""End to end: gRPC client -> gateway process with backend = "vllm" -> real vLLM (CPU build) with a LoRA
adapter -> confidence -> escalation decision -> response, with a provider stand-in as the remote tier."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import httpx
import pytest

from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.fakes.base import FakeProviderServer
from tests.fakes.providers import TEST_KEYS, base_url, running
from tests.gateway_process import GatewayProcess, start_gateway
from tests.vllm_session import VllmTestServer, shared_vllm
from tests.waiting import wait_until_async

SYSTEM = "Answer with one word: up or down."
QUESTION = "Closes rose ten days in a row. Is the trend up or down?"


def ask(task: str, min_confidence: float | None = None) -> pb.GenerateRequest:
    request = pb.GenerateRequest(
        messages=[pb.ChatMessage(role="user", content=QUESTION)], max_tokens=3, bypass_cache=True, task=task
    )
    if min_confidence is not None:
        request.min_confidence = min_confidence
    return request


def gateway_config(server: VllmTestServer, fakes: dict[str, FakeProviderServer], extra: str = "") -> str:
    return f"""
[local]
backend = "vllm"

[local.vllm]
base_url = "{server.base_url}"
served_model_name = "{server.served_name}"
metrics_poll_s = 0.5

[routing]
escalation_order = ["openai"]

[tasks.direction]
labels = ["up", "down"]
system_prompt = "{SYSTEM}"

[providers.openai]
model = "gpt-test"
base_url = "{base_url(fakes["openai"])}"
api_key_env = "OPENAI_API_KEY"
daily_token_budget = 15000
max_retries = 0
{extra}
"""


@pytest.fixture
def vllm_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> VllmTestServer:
    return shared_vllm(request, tmp_path_factory.getbasetemp() / "vllm-session")


@pytest.fixture
async def fakes() -> AsyncIterator[dict[str, FakeProviderServer]]:
    async with running("openai") as started:
        yield started


async def start(text: str, workdir: Path) -> GatewayProcess:
    return await asyncio.to_thread(start_gateway, text, workdir, env=TEST_KEYS)


async def running_requests(server: VllmTestServer) -> int:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        text = (await client.get("/metrics")).text
    return sum(
        int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines() if line.startswith("vllm:num_requests_running")
    )


async def settle(server: VllmTestServer, what: str, timeout_s: float = 10.0) -> None:
    """Wait until vLLM runs no request. The long request below asks for 400 tokens, about 30 s at vLLM's
    ~13 tokens/s on 2 cores, so idle within 10 s means it was aborted; the margin over the old 5 s is for
    a busy machine, where /metrics answers slowly."""

    async def idle() -> bool:
        return await running_requests(server) == 0

    await wait_until_async(idle, timeout_s=timeout_s, what=what, interval_s=0.1)


async def test_vllm_answer_confidence_and_escalation_over_grpc(
    vllm_server: VllmTestServer, fakes: dict[str, FakeProviderServer], tmp_path: Path
) -> None:
    gateway = await start(gateway_config(vllm_server, fakes), tmp_path)
    try:
        async with grpc.aio.insecure_channel(gateway.target) as channel:
            stub = pb_grpc.InferenceGatewayStub(channel)

            local = await stub.Generate(ask(task="direction", min_confidence=0.0), timeout=120)
            assert (local.tier, local.provider, local.escalation) == (pb.TIER_LOCAL, "vllm", pb.ESCALATION_NONE)
            assert local.text and local.HasField("confidence") and 0.0 <= local.confidence <= 1.0
            assert [(a.provider, a.outcome) for a in local.attempts] == [("vllm", "ok")]
            assert 0 < local.usage.completion_tokens <= 3

            low = await stub.Generate(ask(task="", min_confidence=1.0), timeout=120)  # free text: a token quantile
            assert (low.tier, low.provider, low.escalation) == (pb.TIER_REMOTE, "openai", pb.ESCALATION_LOW_CONFIDENCE)
            assert low.HasField("confidence") and low.confidence < 1.0  # what vLLM's answer scored
            assert [(a.provider, a.outcome) for a in low.attempts] == [("vllm", "low_confidence"), ("openai", "ok")]
            assert low.text == fakes["openai"].reply.text

            chunks = [c async for c in stub.GenerateStream(ask(task="direction", min_confidence=0.0), timeout=120)]
            final = chunks[-1].final
            assert final.provider == "vllm" and final.HasField("confidence")
            assert "".join(c.text for c in chunks[:-1]) == final.text and len(chunks) >= 2

            models = await stub.ListModels(pb.ListModelsRequest(), timeout=10)
            assert ("smollm2", "vllm") in {(m.name, m.provider) for m in models.models}
    finally:
        await asyncio.to_thread(gateway.stop)


async def test_cancelled_and_expired_grpc_calls_abort_the_vllm_request(
    vllm_server: VllmTestServer, fakes: dict[str, FakeProviderServer], tmp_path: Path
) -> None:
    gateway = await start(gateway_config(vllm_server, fakes), tmp_path)
    long = pb.GenerateRequest(
        messages=[pb.ChatMessage(role="user", content="Count from 1 to 300, separated by commas.")],
        max_tokens=400,
        bypass_cache=True,
        privacy=pb.PRIVACY_LOCAL_ONLY,
    )
    try:
        await settle(vllm_server, "vLLM to have no request running")
        async with grpc.aio.insecure_channel(gateway.target) as channel:
            stub = pb_grpc.InferenceGatewayStub(channel)
            call = stub.GenerateStream(long, timeout=120)
            async for chunk in call:
                if chunk.text:
                    break
            assert await running_requests(vllm_server) == 1
            call.cancel()
            await settle(vllm_server, "vLLM to stop generating after the gRPC call was cancelled")

            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Generate(long, timeout=2.0)
            assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            await settle(vllm_server, "vLLM to stop generating after the deadline passed")
    finally:
        await asyncio.to_thread(gateway.stop)


async def test_task_selects_the_lora_adapter_served_by_vllm(
    vllm_server: VllmTestServer, fakes: dict[str, FakeProviderServer], tmp_path: Path
) -> None:
    from local_models.adapters import AdapterCard, PromptSpec, model_content_hash, write_card

    folder = tmp_path / "adapters" / "trend" / "v1"
    folder.mkdir(parents=True)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (folder / name).write_bytes((Path(vllm_server.adapter.path) / name).read_bytes())
    card = AdapterCard(
        name="trend",
        version="v1",
        task="trend",
        labels=("up", "down"),
        base_model=str(vllm_server.model_dir),
        base_model_sha256=model_content_hash(vllm_server.model_dir),
        prompt=PromptSpec(SYSTEM),
        threshold=0.0,
        created_at=datetime.now(UTC).isoformat(),
    )
    write_card(card, folder)
    extra = f'\n[adapters]\ndir = "{tmp_path / "adapters"}"\n'
    gateway = await start(gateway_config(vllm_server, fakes, extra), tmp_path)
    try:
        async with grpc.aio.insecure_channel(gateway.target) as channel:
            stub = pb_grpc.InferenceGatewayStub(channel)
            tuned = await stub.Generate(ask(task="trend"), timeout=120)
            base = await stub.Generate(ask(task="direction", min_confidence=0.0), timeout=120)
            assert (tuned.tier, tuned.provider, tuned.model) == (pb.TIER_LOCAL, "vllm", "trend")
            assert base.model == "smollm2"
            assert tuned.HasField("confidence") and tuned.escalation == pb.ESCALATION_NONE  # card threshold 0.0
            low = await stub.Generate(ask(task="trend", min_confidence=1.0), timeout=120)
            assert (low.provider, low.escalation) == ("openai", pb.ESCALATION_LOW_CONFIDENCE)
            first = low.attempts[0]
            assert (first.provider, first.model, first.outcome) == ("vllm", "trend", "low_confidence")
        async with httpx.AsyncClient(base_url=vllm_server.base_url) as client:
            served = {m["id"] for m in (await client.get("/v1/models")).json()["data"]}
        assert "trend@v1" in served
    finally:
        await asyncio.to_thread(gateway.stop)
