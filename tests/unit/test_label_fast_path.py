"""The label fast path gives the decode loop's answers: same labels, same text, confidences within 1e-4.

Both paths run on the real embedded model with real LoRA adapters: a small random one
built here, and every adapter published under artifacts/adapters in this checkout, on
its own card's prompt.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from gateway.core.confidence import score
from gateway.core.contracts import AdapterRef, BackendCall, Completion, Message, Role
from tests.waiting import wait_until_async

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = ROOT / "artifacts" / "adapters"
HEADLINES = ROOT / "finetune" / "data" / "sentiment_headlines.jsonl"
TOLERANCE = 1e-4

pytestmark = pytest.mark.asyncio(loop_scope="module")  # the two backends serve every test of this file

if TYPE_CHECKING:
    from local_models.transformers_backend import TransformersBackend


@pytest.fixture(scope="module")
def base_dir() -> Path:
    from local_models.model_store import ensure_embedded_model

    return ensure_embedded_model(Path.home() / ".cache" / "trading-gateway")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def backends(base_dir: Path) -> AsyncIterator[tuple[TransformersBackend, TransformersBackend]]:
    """(decode loop, fast path) over the same base model."""
    from local_models.transformers_backend import TransformersBackend, TransformersSettings

    slow = TransformersBackend(TransformersSettings(base_dir, "base", label_fast_path=False))
    fast = TransformersBackend(TransformersSettings(base_dir, "base", prefix_cache=4, prefill_threads=2))
    yield slow, fast
    await slow.aclose()
    await fast.aclose()


def random_adapter(base_dir: Path, folder: Path, seed: int) -> AdapterRef:
    """A real PEFT LoRA adapter with random non-zero weights (q_proj, v_proj), so it changes every answer."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft.get_peft_model(model, config).save_pretrained(folder)
    return AdapterRef(folder.name, "v1", str(folder))


def calls(
    system: str, inputs: Sequence[str], labels: tuple[str, ...], adapter: AdapterRef | None, max_tokens: int = 8
) -> list[BackendCall]:
    return [
        BackendCall(
            f"r{i}",
            (Message(Role.SYSTEM, system), Message(Role.USER, text)),
            max_tokens=max_tokens,
            adapter=adapter,
            labels=labels,
        )
        for i, text in enumerate(inputs)
    ]


async def answers(backend: TransformersBackend, batch: Sequence[BackendCall]) -> list[Completion]:
    """All calls in flight at once, so they are micro-batched as under load."""
    return list(await asyncio.gather(*(backend.generate(c) for c in batch)))


def assert_same(slow: Sequence[Completion], fast: Sequence[Completion], labels: Sequence[str]) -> None:
    for before, after in zip(slow, fast, strict=True):
        assert after.text == before.text
        assert after.finish_reason == before.finish_reason and after.usage == before.usage
        assert [t.token for t in after.tokens] == [t.token for t in before.tokens]
        for a, b in zip(after.tokens, before.tokens, strict=True):
            assert a.logprob == pytest.approx(b.logprob, abs=TOLERANCE)
        old, new = score(before.text, before.tokens, labels), score(after.text, after.tokens, labels)
        assert new.label == old.label
        assert (new.confidence is None) == (old.confidence is None)
        if old.confidence is not None and new.confidence is not None:
            assert new.confidence == pytest.approx(old.confidence, abs=TOLERANCE)


async def test_random_adapter_and_base_model_answer_as_the_decode_loop_does(
    backends: tuple[TransformersBackend, TransformersBackend], base_dir: Path, tmp_path: Path
) -> None:
    slow, fast = backends
    one = random_adapter(base_dir, tmp_path / "one", seed=1)
    two = random_adapter(base_dir, tmp_path / "two", seed=2)
    system = "Answer with one word: up, down or flat."
    labels = ("up", "down", "flat")
    inputs = ["AAPL 5-day trend?", "Is MSFT going up or down today?", "flat market, low volume, tiny range", "down?"]
    for adapter in (None, one, two):
        for max_tokens in (1, 2, 8):
            batch = calls(system, inputs, labels, adapter, max_tokens)
            assert_same(await answers(slow, batch), await answers(fast, batch), labels)
    # the prefix cache is keyed by adapter: alternating adapters still gives each one its own answers
    mixed = calls(system, inputs, labels, one) + calls(system, inputs, labels, two)
    before, after = await answers(slow, mixed), await answers(fast, mixed)
    assert_same(before, after, labels)
    assert [c.tokens for c in after[:4]] != [c.tokens for c in after[4:]]  # the two adapters answer differently


async def test_label_answers_that_are_not_labels_and_sampled_ones_still_work(
    backends: tuple[TransformersBackend, TransformersBackend],
) -> None:
    """Answers that run on past the label fall back to the decode loop; temperature > 0 samples as before."""
    slow, fast = backends
    labels = ("the", "a")  # the base model rarely answers with just one of these
    batch = calls("Describe the market in one sentence.", ["Tell me about bonds.", "And stocks?"], labels, None, 12)
    before, after = await answers(slow, batch), await answers(fast, batch)
    assert_same(before, after, labels)
    assert all(len(c.tokens) > 2 for c in after)
    # each answer says how long it waited for the model (the trace's gateway.local.queue span)
    assert all(c.queued_s is not None and 0 <= c.queued_s < 60 for c in before + after)
    # the capacity check now expects label answers to run as long as this batch did, not one pass (the worker
    # thread records the batch's steps just after it hands back the last answer, hence the short wait)
    longest = max(len(c.tokens) for c in after)
    await wait_until_async(lambda: fast.load().label_steps >= longest, timeout_s=10, what="the batch's label steps")
    assert slow.load().label_steps == 0  # no fast-path label batch there: label answers count as max_tokens
    sampled = BackendCall(
        "s", (Message(Role.USER, "Pick: red or blue?"),), max_tokens=4, temperature=1.0, labels=("red", "blue")
    )
    assert (await fast.generate(sampled)).tokens


def published() -> list[Path]:
    return sorted(p.parent for p in PUBLISHED.glob("*/*/card.json"))


@pytest.mark.parametrize("folder", published(), ids=lambda p: f"{p.parent.name}-{p.name}")
async def test_published_adapters_answer_as_their_cards_were_measured(
    backends: tuple[TransformersBackend, TransformersBackend], folder: Path
) -> None:
    slow, fast = backends
    card = json.loads((folder / "card.json").read_text())
    labels = tuple(card["labels"])
    ref = AdapterRef(card["name"], card["version"], str(folder))
    rng = random.Random(13)
    if card["task"] == "sentiment":
        rows = [json.loads(line)["prompt"] for line in HEADLINES.read_text().splitlines()[:300]]
        inputs = rng.sample(rows, 16)
    else:  # price tasks: 5 bars of 4 digits, as finetune.data.price_tasks encodes them
        inputs = [" ".join("".join(str(rng.randrange(10)) for _ in range(4)) for _ in range(5)) for _ in range(16)]
    batch = calls(card["prompt"]["system"], [card["prompt"]["user"].replace("{input}", x) for x in inputs], labels, ref)
    before, after = await answers(slow, batch), await answers(fast, batch)
    assert_same(before, after, labels)


async def test_int8_quantisation_is_opt_in_and_still_serves_adapters(
    backends: tuple[TransformersBackend, TransformersBackend], base_dir: Path, tmp_path: Path
) -> None:
    """quantize_int8 keeps LoRA adapters working (peft wraps the int8 layers); its numbers differ."""
    from local_models.transformers_backend import TransformersBackend, TransformersSettings

    adapter = random_adapter(base_dir, tmp_path / "one", seed=1)
    batch = calls("Answer with one word: up, down or flat.", ["AAPL 5-day trend?", "down?"], ("up", "down"), adapter)
    quantized = TransformersBackend(TransformersSettings(base_dir, "base", quantize_int8=True))
    try:
        int8 = await answers(quantized, batch)
    finally:
        await quantized.aclose()
    float32 = await answers(backends[1], batch)
    assert all(c.tokens and c.model == adapter.name for c in int8)
    assert [c.tokens[0].logprob for c in int8] != pytest.approx([c.tokens[0].logprob for c in float32], abs=TOLERANCE)
