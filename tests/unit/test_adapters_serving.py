"""The in-process backend serves the base model and several LoRA adapters at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.core.contracts import AdapterRef, BackendCall, Message, Role

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")


@pytest.fixture(scope="module")
def base_dir() -> Path:
    from local_models.model_store import ensure_embedded_model

    return ensure_embedded_model(Path.home() / ".cache" / "trading-gateway")


def make_adapter(base_dir: Path, folder: Path, seed: int) -> Path:
    """A LoRA adapter with random (non-zero) weights, so it visibly changes the output."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = peft.LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft.get_peft_model(model, config).save_pretrained(folder)
    return folder


def call(adapter: AdapterRef | None) -> BackendCall:
    messages = (Message(Role.USER, "Name a colour."),)
    return BackendCall("r", messages, max_tokens=6, adapter=adapter, labels=("red", "blue"))


async def test_base_and_two_adapters_are_served_side_by_side(base_dir: Path, tmp_path: Path) -> None:
    from local_models.transformers_backend import TransformersBackend, TransformersSettings

    one = AdapterRef("one", "v1", str(make_adapter(base_dir, tmp_path / "one", seed=1)))
    two = AdapterRef("two", "v1", str(make_adapter(base_dir, tmp_path / "two", seed=2)))
    backend = TransformersBackend(TransformersSettings(model_dir=base_dir, model_name="base", max_adapters=8))
    try:
        base_before = await backend.generate(call(None))
        mixed = await asyncio.gather(*(backend.generate(call(ref)) for ref in (one, two, None, one)))
        base_after = await backend.generate(call(None))
    finally:
        await backend.aclose()
    first = [c.tokens[0].logprob for c in (base_before, *mixed, base_after)]
    assert base_before.model == "base" and mixed[0].model == "one" and mixed[1].model == "two"
    assert base_after.text == base_before.text and first[-1] == pytest.approx(first[0], abs=1e-4)
    assert mixed[2].text == base_before.text  # the base answer between adapter batches is untouched
    assert mixed[3].text == mixed[0].text  # the same adapter twice gives the same answer
    assert len({round(x, 3) for x in first[:3]}) == 3  # base, one and two all differ


async def test_a_missing_adapter_fails_only_its_request(base_dir: Path, tmp_path: Path) -> None:
    from local_models.transformers_backend import TransformersBackend, TransformersSettings

    backend = TransformersBackend(TransformersSettings(model_dir=base_dir, model_name="base"))
    try:
        with pytest.raises(Exception, match="adapter"):
            await backend.generate(call(AdapterRef("gone", "v1", str(tmp_path / "missing"))))
        assert (await backend.generate(call(None))).text
    finally:
        await backend.aclose()
