"""The vLLM backend against a real vLLM server: run-time adapters, restarts that lose them, metrics, health."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.core.contracts import BackendCall, Delta, Message, Role
from gateway.core.errors import BackendError
from local_models.vllm_backend import VllmBackend, VllmSettings, lora_name
from local_models.vllm_metrics import VllmSnapshot
from tests.gateway_process import free_port
from tests.vllm_session import VllmTestServer, shared_vllm
from tests.waiting import wait_until_async

MESSAGES = (Message(Role.USER, "Is the trend up or down? Answer in one word."),)


@pytest.fixture
def vllm_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> VllmTestServer:
    return shared_vllm(request, tmp_path_factory.getbasetemp() / "vllm-session")


@pytest.fixture
async def backend(vllm_server: VllmTestServer) -> AsyncIterator[VllmBackend]:
    made = VllmBackend(VllmSettings(base_url=vllm_server.base_url, model=vllm_server.served_name, metrics_poll_s=0.2))
    yield made
    await made.aclose()


async def test_vllm_loads_a_new_adapter_version_at_run_time(vllm_server: VllmTestServer, backend: VllmBackend) -> None:
    spare = vllm_server.spare_adapter
    assert lora_name(vllm_server.adapter) in await backend.served_models()  # listed at start (--lora-modules)
    completion = await backend.generate(BackendCall("r", MESSAGES, max_tokens=3, adapter=spare))
    assert completion.model == spare.name and completion.text
    assert lora_name(spare) in await backend.served_models()  # POST /v1/load_lora_adapter


async def test_vllm_adapter_lost_by_the_server_is_loaded_again(
    vllm_server: VllmTestServer, backend: VllmBackend
) -> None:
    spare = vllm_server.spare_adapter
    await backend.generate(BackendCall("r", MESSAGES, max_tokens=2, adapter=spare))
    async with httpx.AsyncClient(base_url=vllm_server.base_url) as client:  # as a restarted server would be
        reply = await client.post("/v1/unload_lora_adapter", json={"lora_name": lora_name(spare)})
        assert reply.status_code == 200, reply.text
    completion = await backend.generate(BackendCall("r", MESSAGES, max_tokens=2, adapter=spare))
    assert completion.model == spare.name
    assert lora_name(spare) in await backend.served_models()


async def test_vllm_metrics_feed_the_load_while_a_request_runs(backend: VllmBackend) -> None:
    seen_running = 0
    long = (Message(Role.USER, "Count from 1 to 100, separated by commas."),)
    stream = backend.stream(BackendCall("r", long, max_tokens=48))
    async with contextlib.aclosing(stream) as events:
        async for event in events:
            if isinstance(event, Delta):
                state = await backend.read_state()
                seen_running = max(seen_running, state.running if state is not None else 0)
                if seen_running:
                    break
    assert seen_running >= 1
    read_after = time.monotonic()

    def reading_since() -> VllmSnapshot | None:
        snapshot = backend.snapshot
        return snapshot if snapshot is not None and snapshot.at >= read_after else None

    snapshot = await wait_until_async(reading_since, timeout_s=10, what="the background poller to read /metrics")
    assert snapshot.healthy and time.monotonic() - snapshot.at < 2


async def test_vllm_down_is_reported_by_the_poller_and_fails_fast() -> None:
    backend = VllmBackend(VllmSettings(base_url=f"http://127.0.0.1:{free_port()}", model="m", metrics_poll_s=0.2))
    try:
        backend.load()  # starts the poller
        snapshot = await wait_until_async(lambda: backend.snapshot, timeout_s=10, what="the poller's first reading")
        assert not snapshot.healthy
        started = time.monotonic()
        with pytest.raises(BackendError, match="not healthy") as caught:
            await backend.generate(BackendCall("r", MESSAGES, max_tokens=2))
        assert caught.value.retryable and time.monotonic() - started < 0.1
    finally:
        await backend.aclose()
