"""The llama.cpp backend's own logic over a stand-in engine: when an engine may be closed, the in-flight limit,
and the engine told to stop at the next token once the caller has gone."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from gateway.core.contracts import AdapterRef, BackendCall, Delta, Message, Role
from gateway.core.errors import BackendError, CapacityExceeded
from local_models.llamacpp_backend import LlamaCppBackend, LlamaCppSettings
from local_models.llamacpp_engine import EngineRequests, EngineSettings
from tests.waiting import wait_until_async

SHORT = (Message(Role.USER, "Up or down?"),)


class StandInEngine:
    """Answers with `tokens` tokens; tokenize waits for `gate`; records what was used after close."""

    made: ClassVar[list[StandInEngine]] = []
    gate = threading.Event()
    tokens = 3

    def __init__(self, settings: EngineSettings, adapters: Sequence[Path]) -> None:
        self.adapters = tuple(adapters)
        self.busy = 0
        self.closed_while_busy = False
        self.closed = False
        self.stopped_after: int | None = None
        StandInEngine.made.append(self)

    def lora_scales(self, adapter: Path | None) -> list[dict[str, float]]:
        return [{"id": i, "scale": float(path == adapter)} for i, path in enumerate(self.adapters)]

    def chat(self, body: Mapping[str, Any], on_chunk: Callable[[Mapping[str, Any]], bool]) -> None:
        self.busy += 1
        try:
            for i in range(self.tokens):
                entry = {
                    "token": f" t{i}",
                    "logprob": -0.1,
                    "top_logprobs": [{"id": 7, "token": " up", "logprob": -0.1}],
                }
                chunk = {
                    "choices": [{"index": 0, "delta": {"content": f" t{i}"}, "logprobs": {"content": [entry]}}],
                    "timings": {
                        "prompt_n": 3,
                        "cache_n": 0,
                        "prompt_ms": 1.0,
                        "predicted_n": i + 1,
                        "predicted_ms": 1.0,
                    },
                }
                if on_chunk(chunk):
                    self.stopped_after = i + 1
                    return
            on_chunk({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})
            on_chunk({"choices": [], "usage": {"prompt_tokens": 3}})
        finally:
            self.busy -= 1

    def tokenize(self, text: str) -> list[tuple[int, str]]:
        self.busy += 1
        try:
            assert StandInEngine.gate.wait(timeout=30)
            return [(7, text[:3])]
        finally:
            self.busy -= 1

    def requests(self) -> EngineRequests:
        return EngineRequests(self.busy, 0)

    def close(self) -> None:
        self.closed_while_busy = self.busy > 0
        self.closed = True


@pytest.fixture
def stand_in() -> type[StandInEngine]:
    StandInEngine.made = []
    StandInEngine.gate = threading.Event()
    StandInEngine.tokens = 3
    return StandInEngine


def backend(tmp_path: Path, **settings: Any) -> LlamaCppBackend:
    values: dict[str, Any] = {
        "model_path": tmp_path / "model.gguf",
        "model_name": "m",
        "adapter_cache": tmp_path,
        "warm_up": False,
    }
    values.update(settings)
    return LlamaCppBackend(LlamaCppSettings(**values), engine_factory=StandInEngine)  # type: ignore[arg-type]


def adapter(tmp_path: Path) -> AdapterRef:
    folder = tmp_path / "trend" / "v1"
    folder.mkdir(parents=True)
    (folder / "adapter_model.gguf").write_bytes(b"")  # the stand-in never reads it
    return AdapterRef("trend", "v1", str(folder))


async def test_an_engine_replaced_while_tokenizing_is_closed_only_after_it(
    tmp_path: Path, stand_in: type[StandInEngine]
) -> None:
    b = backend(tmp_path)
    labelled = asyncio.create_task(b.generate(BackendCall("l", SHORT, max_tokens=3, labels=("up", "down"))))
    await wait_until_async(lambda: stand_in.made[0].busy >= 1, timeout_s=10, what="the labels being tokenized")
    tuned = await b.generate(BackendCall("a", SHORT, max_tokens=3, adapter=adapter(tmp_path)))  # a new engine
    old, new = stand_in.made
    assert tuned.model == "trend" and len(new.adapters) == 1
    assert not old.closed  # still tokenizing
    stand_in.gate.set()
    answer = await labelled
    assert answer.tokens[0].top == {" up": -0.1}
    await wait_until_async(lambda: old.closed, timeout_s=10, what="the old engine closed")
    assert not old.closed_while_busy
    await b.aclose()
    assert new.closed and not new.closed_while_busy


async def test_the_in_flight_limit_is_capacity(tmp_path: Path, stand_in: type[StandInEngine]) -> None:
    b = backend(tmp_path, max_in_flight=1)
    stand_in.tokens = 10**6  # never finishes by itself
    started = asyncio.Event()

    async def hold() -> None:
        async for event in b.stream(BackendCall("hold", SHORT, max_tokens=100)):
            if isinstance(event, Delta):
                started.set()

    holding = asyncio.create_task(hold())
    await asyncio.wait_for(started.wait(), timeout=10)
    with pytest.raises(CapacityExceeded):
        await b.generate(BackendCall("more", SHORT, max_tokens=3))
    holding.cancel()
    await wait_until_async(lambda: stand_in.made[0].stopped_after is not None, timeout_s=10, what="the engine stopped")
    assert b.load().in_flight == 0
    await b.aclose()


async def test_an_adapter_that_cannot_convert_does_not_keep_the_backend_from_starting(
    tmp_path: Path, stand_in: type[StandInEngine]
) -> None:
    from local_models.model_store import find_gguf

    folder = tmp_path / "dora" / "v1"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 8, "use_dora": true}')
    broken, good = AdapterRef("dora", "v1", str(folder)), adapter(tmp_path)
    b = backend(tmp_path, model_path=find_gguf(), adapters=(broken, good))
    (engine,) = stand_in.made
    assert [p.name for p in engine.adapters] == ["adapter_model.gguf"]  # the good one only
    assert (await b.generate(BackendCall("g", SHORT, max_tokens=3, adapter=good))).model == "trend"
    with pytest.raises(BackendError, match="DoRA"):
        await b.generate(BackendCall("d", SHORT, max_tokens=3, adapter=broken))
    await b.aclose()
