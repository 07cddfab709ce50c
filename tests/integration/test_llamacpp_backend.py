"""The llama.cpp backend beyond the shared contract: its slots, what load() says about them, and adapter versions.

Real llama.cpp (xllamacpp) on the embedded GGUF file, in this process. Every assertion is
about order or state (which answer finished first, what llama.cpp counts, what the estimate
says), never about how long something took.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.core.contracts import AdapterRef, BackendCall, Completion, Delta, Message, Role
from gateway.core.errors import DeadlineExceeded
from gateway.routing.capacity import check_capacity
from local_models.llamacpp_backend import LlamaCppBackend, LlamaCppSettings
from local_models.model_store import EMBEDDED_NAME, ensure_embedded_model, find_gguf
from tests.waiting import wait_until_async

LONG = (Message(Role.USER, "Count from 1 to 300, separated by commas."),)
SHORT = (Message(Role.USER, "Is the trend up or down? Answer in one word."),)
ADAPTER_SCRIPT = (
    "import sys, torch, peft\n"
    "from transformers import AutoModelForCausalLM\n"
    "torch.manual_seed(int(sys.argv[3]))\n"
    "model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)\n"
    "config = peft.LoraConfig(r=8, lora_alpha=16, init_lora_weights=False,\n"
    "    target_modules=['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'])\n"
    "peft.get_peft_model(model, config).save_pretrained(sys.argv[2])\n"
)


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> tuple[AdapterRef, AdapterRef]:
    """Two versions of one task's adapter (every linear layer, random weights), as PEFT folders only."""
    base = ensure_embedded_model(Path.home() / ".cache" / "trading-gateway")
    root = tmp_path_factory.mktemp("llamacpp-adapters")
    refs = []
    for version, seed in (("v1", 1), ("v2", 2)):
        folder = root / "trend" / version
        subprocess.run([sys.executable, "-c", ADAPTER_SCRIPT, str(base), str(folder), str(seed)], check=True)
        refs.append(AdapterRef("trend", version, str(folder)))
    return refs[0], refs[1]


@contextlib.asynccontextmanager
async def llamacpp(tmp_path: Path, **settings: object) -> AsyncIterator[LlamaCppBackend]:
    values: dict[str, object] = {"model_path": find_gguf(), "model_name": EMBEDDED_NAME, "adapter_cache": tmp_path}
    values.update(settings)
    backend = await asyncio.to_thread(LlamaCppBackend, LlamaCppSettings(**values))  # type: ignore[arg-type]
    try:
        yield backend
    finally:
        await backend.aclose()


async def finishing_order(backend: LlamaCppBackend, first: BackendCall, second: BackendCall) -> list[str]:
    """Start `first`; once it streams, start `second`; the request ids in the order their answers completed."""
    done: list[str] = []
    streaming = asyncio.Event()

    async def run(call: BackendCall) -> None:
        async for event in backend.stream(call):
            if isinstance(event, Delta):
                streaming.set()
            elif isinstance(event, Completion):
                done.append(call.request_id)

    running = asyncio.create_task(run(first))
    await asyncio.wait_for(streaming.wait(), timeout=60)
    await run(second)
    await running
    return done


async def test_a_request_starts_beside_a_running_one_while_a_slot_is_free(tmp_path: Path) -> None:
    async with llamacpp(tmp_path, slots=2) as backend:
        order = await finishing_order(
            backend, BackendCall("long", LONG, max_tokens=150), BackendCall("short", SHORT, max_tokens=3)
        )
    assert order == ["short", "long"]  # continuous batching: it did not wait for the long answer


async def test_with_every_slot_taken_a_request_waits_and_the_estimate_says_so(tmp_path: Path) -> None:
    async with llamacpp(tmp_path, slots=1) as backend:
        assert check_capacity(backend.load(), remaining_s=30.0, max_tokens=3).ok  # idle: a slot is free
        streaming = asyncio.Event()

        async def long() -> None:
            async for event in backend.stream(BackendCall("long", LONG, max_tokens=150)):
                if isinstance(event, Delta):
                    streaming.set()

        running = asyncio.create_task(long())
        await asyncio.wait_for(streaming.wait(), timeout=60)
        load = backend.load()
        assert load.in_flight == 1 and load.measured and load.est_wait_s > 0
        refused = check_capacity(load, remaining_s=load.est_wait_s / 2, max_tokens=3)
        assert not refused.ok and "would answer" in refused.reason
        queued = asyncio.create_task(backend.generate(BackendCall("short", SHORT, max_tokens=3)))
        await wait_until_async(lambda: backend.load().in_flight == 2, timeout_s=10, what="the second admitted")

        async def deferred() -> bool:
            return (await backend.engine_requests()).deferred == 1

        await wait_until_async(deferred, timeout_s=10, what="llama.cpp holding the second request back")
        assert (await backend.engine_requests()).processing == 1
        assert not queued.done()
        await running
        answer = await queued
        assert answer.queued_s is not None and answer.queued_s > 0  # it waited for the slot
        await wait_until_async(lambda: backend.load().in_flight == 0, timeout_s=10, what="nothing in flight")


async def test_a_deadline_passing_while_queued_ends_the_call_and_the_slot_is_not_lost(tmp_path: Path) -> None:
    async with llamacpp(tmp_path, slots=1) as backend:
        streaming = asyncio.Event()

        async def long() -> None:
            async for event in backend.stream(BackendCall("long", LONG, max_tokens=400)):
                if isinstance(event, Delta):
                    streaming.set()

        running = asyncio.create_task(long())
        await asyncio.wait_for(streaming.wait(), timeout=60)
        with pytest.raises(DeadlineExceeded):
            await backend.generate(BackendCall("late", SHORT, max_tokens=3, deadline=time.monotonic() + 0.3))
        assert not running.done()  # the request holding the slot went on
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await wait_until_async(lambda: backend.load().in_flight == 0, timeout_s=10, what="nothing in flight")
        answer = await backend.generate(BackendCall("after", SHORT, max_tokens=3))  # the engine serves again
        assert answer.usage.completion_tokens > 0


async def test_a_new_adapter_version_is_served_without_a_restart(
    tmp_path: Path, adapters: tuple[AdapterRef, AdapterRef]
) -> None:
    v1, v2 = adapters
    async with llamacpp(tmp_path, adapters=(v1,)) as backend:
        first = await backend.generate(BackendCall("v1", SHORT, max_tokens=3, adapter=v1))
        base = await backend.generate(BackendCall("base", SHORT, max_tokens=3))
        streaming = asyncio.Event()
        long_answer: list[Completion] = []

        async def long_on_v1() -> None:  # still running on the engine that has v1 only when v2 arrives
            async for event in backend.stream(BackendCall("long", LONG, max_tokens=60, adapter=v1)):
                if isinstance(event, Delta):
                    streaming.set()
                elif isinstance(event, Completion):
                    long_answer.append(event)

        running = asyncio.create_task(long_on_v1())
        await asyncio.wait_for(streaming.wait(), timeout=60)
        second = await backend.generate(BackendCall("v2", SHORT, max_tokens=3, adapter=v2))
        await running
        again = await backend.generate(BackendCall("v1-again", SHORT, max_tokens=3, adapter=v1))
    assert long_answer and long_answer[0].finish_reason in {"stop", "length"}  # finished on the engine it began on
    assert first.model == second.model == "trend" and base.model == EMBEDDED_NAME
    firsts = [a.tokens[0].logprob for a in (first, second, base)]
    assert min(abs(x - y) for i, x in enumerate(firsts) for y in firsts[i + 1 :]) > 1e-3  # three different models
    assert again.text == first.text
    assert math.isclose(again.tokens[0].logprob, first.tokens[0].logprob, abs_tol=1e-3)
    assert (tmp_path / "trend" / "v2.gguf").is_file()  # converted once, into the cache


async def test_label_calls_arriving_together_with_a_new_adapter_all_finish(
    tmp_path: Path, adapters: tuple[AdapterRef, AdapterRef]
) -> None:
    """The labels are tokenized once while the engine is replaced by one with the adapter; the old engine is
    closed only after nothing uses it (closing one that is still answering would never return)."""
    v1, _ = adapters
    async with llamacpp(tmp_path) as backend:
        calls = [
            BackendCall(f"l{i}", SHORT, max_tokens=2, adapter=v1 if i % 2 else None, labels=("up", "down"))
            for i in range(16)
        ]
        answers = await asyncio.wait_for(asyncio.gather(*(backend.generate(c) for c in calls)), timeout=300)
    assert {a.model for a in answers} == {"trend", EMBEDDED_NAME}
    assert all(a.tokens and a.tokens[0].top for a in answers)
