"""A LoRA adapter served by task over gRPC: its card's threshold decides escalation; new versions swap in live."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.fakes.base import FakeProviderServer
from tests.fakes.providers import TEST_KEYS, base_url, running
from tests.gateway_process import start_gateway
from tests.waiting import wait_until_async

peft = pytest.importorskip("peft")
SYSTEM = "Answer with one word: yes or no."


def write_adapter(base_dir: Path, root: Path, version: str, threshold: float, age_s: float) -> None:
    """A small real PEFT adapter (zero-initialised LoRA B: same answers as the base) with its card."""
    import torch
    from transformers import AutoModelForCausalLM

    from local_models.adapters import AdapterCard, PromptSpec, model_content_hash, write_card

    folder = root / "yesno" / version
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(folder)
    card = AdapterCard(
        name="yesno-lora",
        version=version,
        task="yesno",
        labels=("yes", "no"),
        base_model=str(base_dir),
        base_model_sha256=model_content_hash(base_dir),
        prompt=PromptSpec(SYSTEM),
        threshold=threshold,
        metrics={"accuracy": 0.5},
        created_at=(datetime.now(UTC) - timedelta(seconds=age_s)).isoformat(),
    )
    write_card(card, folder)


@pytest.fixture
async def openai() -> AsyncIterator[FakeProviderServer]:
    async with running("openai") as fakes:
        yield fakes["openai"]


async def test_card_threshold_decides_and_a_new_version_swaps_in(openai: FakeProviderServer, tmp_path: Path) -> None:
    from local_models.model_store import ensure_embedded_model

    base_dir = ensure_embedded_model(Path.home() / ".cache" / "trading-gateway")
    adapters = tmp_path / "adapters"
    await asyncio.to_thread(write_adapter, base_dir, adapters, "v1", 1.0, 60)  # nothing is confident enough
    config = f"""
[adapters]
dir = "{adapters}"
watch_s = 0.5

[routing]
escalation_order = ["openai"]

[providers.openai]
model = "gpt-test"
base_url = "{base_url(openai)}"
api_key_env = "OPENAI_API_KEY"
daily_token_budget = 15000
"""
    gateway = await asyncio.to_thread(start_gateway, config, tmp_path, env=TEST_KEYS)
    question = pb.GenerateRequest(
        messages=[pb.ChatMessage(role="user", content="Is water wet?")], task="yesno", max_tokens=3, bypass_cache=True
    )
    try:
        async with grpc.aio.insecure_channel(gateway.target) as channel:
            stub = pb_grpc.InferenceGatewayStub(channel)
            listed = {m.name: m for m in (await stub.ListModels(pb.ListModelsRequest(), timeout=10)).models}
            assert listed["yesno-lora"].task == "yesno" and listed["yesno-lora"].metrics["threshold"] == 1.0

            escalated = await stub.Generate(question, timeout=120)
            assert (escalated.tier, escalated.escalation) == (pb.TIER_REMOTE, pb.ESCALATION_LOW_CONFIDENCE)
            assert (escalated.attempts[0].provider, escalated.attempts[0].model) == ("transformers", "yesno-lora")
            assert escalated.HasField("confidence") and escalated.confidence < 1.0

            await asyncio.to_thread(write_adapter, base_dir, adapters, "v2", 0.0, 0)  # a new version, always local

            async def new_version_listed() -> bool:
                listed = {m.name: m for m in (await stub.ListModels(pb.ListModelsRequest(), timeout=10)).models}
                return bool(listed["yesno-lora"].metrics["threshold"] == 0.0)

            await wait_until_async(
                new_version_listed, timeout_s=30, what="the watcher to serve the new version", interval_s=0.2
            )

            kept = await stub.Generate(question, timeout=120)
            assert (kept.tier, kept.provider, kept.model) == (pb.TIER_LOCAL, "transformers", "yesno-lora")
            assert kept.escalation == pb.ESCALATION_NONE and kept.text.strip().lower().startswith(("yes", "no"))
            assert openai.requests == 1
    finally:
        await asyncio.to_thread(gateway.stop)
