"""Ollama specifics beyond the contract suite: adapters as models, keep_alive, /api/ps, the logprobs fallback."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.core.contracts import AdapterRef, BackendCall, Message, Role
from gateway.core.errors import BackendError
from local_models.ollama_backend import OllamaBackend, OllamaSettings, adapter_model_name, modelfile
from tests.fakes.ollama_server import BASE_MODEL, FakeOllama

CALL = BackendCall("r", (Message(Role.USER, "trend?"),), max_tokens=4, labels=("up", "down"))


@pytest.fixture
async def fake() -> AsyncIterator[FakeOllama]:
    server = await FakeOllama().start()
    yield server
    await server.stop()


def backend(fake: FakeOllama, **settings: object) -> OllamaBackend:
    return OllamaBackend(OllamaSettings(host=fake.host, model=BASE_MODEL, **settings))  # type: ignore[arg-type]


@pytest.fixture
def adapter(tmp_path: Path) -> AdapterRef:
    (tmp_path / "adapter_model.safetensors").write_bytes(b"weights")
    (tmp_path / "adapter_config.json").write_text('{"r": 8}')
    return AdapterRef("trend", "v3", str(tmp_path))


async def test_adapter_becomes_a_model_from_base_plus_adapter_blobs(fake: FakeOllama, adapter: AdapterRef) -> None:
    ollama = backend(fake)
    try:
        completion = await ollama.generate(BackendCall("r", CALL.messages, 4, adapter=adapter))
        await ollama.generate(BackendCall("r", CALL.messages, 4, adapter=adapter))
    finally:
        await ollama.aclose()
    assert completion.model == "trend" and completion.text == "up"
    assert len(fake.creates) == 1  # created once, then reused
    created = fake.creates[0]
    assert created["model"] == adapter_model_name(adapter) == "trend:v3"
    assert created["from"] == BASE_MODEL
    digest = "sha256:" + hashlib.sha256(b"weights").hexdigest()
    assert created["adapters"]["adapter_model.safetensors"] == digest and digest in fake.blobs
    assert [c.model for c in fake.chats] == ["trend:v3", "trend:v3"]
    assert modelfile(BASE_MODEL, adapter.path) == f"FROM {BASE_MODEL}\nADAPTER {adapter.path}\n"


async def test_a_deleted_adapter_model_is_created_again(fake: FakeOllama, adapter: AdapterRef) -> None:
    ollama = backend(fake)
    try:
        await ollama.generate(BackendCall("r", CALL.messages, 4, adapter=adapter))
        del fake.models["trend:v3"]  # someone ran `ollama rm trend:v3`
        completion = await ollama.generate(BackendCall("r", CALL.messages, 4, adapter=adapter))
    finally:
        await ollama.aclose()
    assert completion.text == "up" and len(fake.creates) == 2


async def test_request_carries_keep_alive_options_and_logprobs(fake: FakeOllama) -> None:
    ollama = backend(fake, keep_alive="-1", context_length=1024, label_top_logprobs=7)
    try:
        await ollama.generate(CALL)
        residency = await ollama.read_residency()
    finally:
        await ollama.aclose()
    body = fake.chats[0].body
    assert body["keep_alive"] == -1.0 and body["logprobs"] is True and body["top_logprobs"] == 7
    assert body["options"] == {"num_predict": 4, "temperature": 0.0, "num_ctx": 1024}
    assert residency.models == frozenset({BASE_MODEL})


async def test_missing_logprobs_fall_back_to_no_confidence_or_fail_when_required(fake: FakeOllama) -> None:
    fake.logprobs_supported = False
    lenient, strict = backend(fake), backend(fake, require_logprobs=True)
    try:
        completion = await lenient.generate(CALL)
        with pytest.raises(BackendError, match="require_logprobs"):
            await strict.generate(CALL)
    finally:
        await lenient.aclose()
        await strict.aclose()
    assert completion.tokens == () and completion.text and lenient.logprobs_missing


async def test_load_counts_in_flight_and_the_queue(fake: FakeOllama) -> None:
    ollama = backend(fake, max_in_flight=3, parallel=1)
    try:
        assert ollama.load().in_flight == 0
        ollama._runtime.in_flight, ollama._runtime.avg_request_s = 3, 2.0  # three accepted, one decoding at a time
        load = ollama.load()
    finally:
        await ollama.aclose()
    assert (load.in_flight, load.max_in_flight, load.est_wait_s) == (3, 3, 6.0)
