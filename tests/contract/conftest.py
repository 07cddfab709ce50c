"""The subjects of the contract suite: every local backend and every commercial provider.

Each `Subject` wraps one backend or provider with what it can be put through:
  transformers  in-process, the embedded model and a real LoRA adapter
  llamacpp      llama.cpp in process (xllamacpp), the embedded GGUF file and the same adapter, converted to GGUF
  vllm          a real vLLM server (CPU build here), one per session (tests/vllm_session.py)
  ollama        the official client against tests/fakes/ollama_server.py; `ollama-nologprobs` is a
                server that returns no logprobs (Ollama before 0.12.11)
  openai, anthropic, google, xai, huggingface   their official SDKs against tests/fakes
`provoke(kind)` arms a fault and returns the call that meets it, or None when the subject
cannot be made to fail that way (the test is then skipped, with the reason).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gateway.core.contracts import AdapterRef, Backend, BackendCall, LocalBackend, Message, Role
from tests.fakes.base import FakeProviderServer, Fault, Reply
from tests.fakes.ollama_server import BASE_MODEL, FakeOllama
from tests.fakes.providers import KINDS, TEST_KEYS, provider_config
from tests.gateway_process import free_port
from tests.vllm_session import VllmTestServer, make_lora_adapter, shared_vllm

LOCAL = ("transformers", "llamacpp", "vllm", "ollama", "ollama-nologprobs")
PROVIDERS = tuple(sorted(KINDS))
SHORT = (Message(Role.USER, "Is the trend up or down? Answer in one word."),)
LONG = (Message(Role.USER, "Count from 1 to 200, separated by commas."),)
FAULTS = ("bad_request", "server_error", "overloaded", "slow")


def call(messages: tuple[Message, ...] = SHORT, **fields: object) -> BackendCall:
    values: dict[str, object] = {"request_id": "contract", "messages": messages, "max_tokens": 8}
    values.update(fields)
    return BackendCall(**values)  # type: ignore[arg-type]


@dataclass
class Subject:
    name: str
    backend: Backend
    logprobs: bool  # does it report token logprobs
    adapter: AdapterRef | None = None  # an adapter it can select; None: no adapters
    stopped: Callable[[], Awaitable[bool]] | None = None  # after a cancel: did the server stop generating
    unreachable: Callable[[], Backend] | None = None  # the same backend pointed at a closed port
    provoke: Callable[[str], BackendCall | None] = lambda kind: None
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    slow_down: Callable[[], None] = lambda: None  # stand-ins: stream slowly enough to be cancelled mid-way
    answer_json: Callable[[str], None] = lambda text: None  # stand-ins: the JSON a structured request gets
    last_body: Callable[[], dict[str, Any]] | None = None  # stand-ins: the body of the last request they saw

    @property
    def local(self) -> bool:
        return isinstance(self.backend, LocalBackend)


# -- local subjects ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def embedded_model_dir() -> Path:
    from local_models.model_store import ensure_embedded_model

    return ensure_embedded_model(Path.home() / ".cache" / "trading-gateway")


@pytest.fixture(scope="session")
def contract_adapter(embedded_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> AdapterRef:
    folder = make_lora_adapter(embedded_model_dir, tmp_path_factory.mktemp("contract") / "trend-v1", seed=1)
    return AdapterRef("trend", "v1", str(folder))


def _past_context(context_length: int) -> BackendCall:
    return call(max_tokens=context_length + 1)  # more than the context holds: the backend must refuse it


def _slow(seconds: float = 0.3) -> BackendCall:
    return call(LONG, max_tokens=400, deadline=time.monotonic() + seconds)


async def transformers_subject(model_dir: Path, adapter: AdapterRef) -> Subject:
    from local_models.transformers_backend import TransformersBackend, TransformersSettings

    backend = await asyncio.to_thread(
        TransformersBackend, TransformersSettings(model_dir=model_dir, model_name="smollm2-135m-instruct")
    )

    def provoke(kind: str) -> BackendCall | None:
        return {"bad_request": _past_context(backend.context_length), "slow": _slow()}.get(kind)

    async def stopped() -> bool:
        return backend.load().in_flight == 0

    return Subject("transformers", backend, True, adapter, stopped, None, provoke, [backend.aclose])


async def llamacpp_subject(adapter: AdapterRef, cache: Path) -> Subject:
    from local_models.llamacpp_backend import LlamaCppBackend, LlamaCppSettings
    from local_models.model_store import EMBEDDED_NAME, find_gguf

    settings = LlamaCppSettings(model_path=find_gguf(), model_name=EMBEDDED_NAME, adapter_cache=cache)
    backend = await asyncio.to_thread(LlamaCppBackend, settings)

    def provoke(kind: str) -> BackendCall | None:
        return {"bad_request": _past_context(backend.context_length), "slow": _slow()}.get(kind)

    async def stopped() -> bool:  # llama.cpp's own count of requests it is generating
        for _ in range(20):
            if (await backend.engine_requests()).processing == 0:
                return True
            await asyncio.sleep(0.05)
        return False

    return Subject("llamacpp", backend, True, adapter, stopped, None, provoke, [backend.aclose])


def vllm_subject(server: VllmTestServer) -> Subject:
    from local_models.vllm_backend import VllmBackend, VllmSettings

    def make(base_url: str) -> VllmBackend:
        return VllmBackend(VllmSettings(base_url=base_url, model=server.served_name, timeout_s=120))

    backend = make(server.base_url)

    async def stopped() -> bool:
        for _ in range(15):  # vLLM aborts a dropped request at its next scheduling step
            state = await backend.read_state()
            if state is not None and state.running == 0:
                return True
            await asyncio.sleep(0.1)
        return False

    def provoke(kind: str) -> BackendCall | None:
        return {"bad_request": _past_context(backend.context_length), "slow": _slow(1.5)}.get(kind)

    unreachable = lambda: make(f"http://127.0.0.1:{free_port()}")  # noqa: E731
    return Subject("vllm", backend, True, server.adapter, stopped, unreachable, provoke, [backend.aclose])


async def ollama_subject(name: str, *, logprobs: bool, adapter: AdapterRef) -> Subject:
    from local_models.ollama_backend import OllamaBackend, OllamaSettings

    fake = await FakeOllama(logprobs_supported=logprobs).start()

    def make(host: str) -> OllamaBackend:
        return OllamaBackend(OllamaSettings(host=host, model=BASE_MODEL, timeout_s=10))

    backend = make(fake.host)

    async def stopped() -> bool:
        for _ in range(20):
            if fake.dropped_streams == 1 and fake.active_streams == 0:
                return True
            await asyncio.sleep(0.05)
        return False

    def provoke(kind: str) -> BackendCall | None:
        if kind == "slow":
            fake.token_delay_s = 0.2
            return _slow()
        status, message = {
            "bad_request": (400, "invalid options"),
            "server_error": (500, "llama runner process has terminated"),
            "overloaded": (503, "server busy, please try again.  maximum pending requests exceeded"),
        }[kind]
        fake.fail_next_chat(status, message)
        return call()

    def slow_down() -> None:
        fake.token_delay_s = 0.05

    def answer_json(text: str) -> None:
        fake.json_reply = text

    unreachable = lambda: make(f"http://127.0.0.1:{free_port()}")  # noqa: E731
    return Subject(
        name,
        backend,
        logprobs,
        adapter,
        stopped,
        unreachable,
        provoke,
        [backend.aclose, fake.stop],
        slow_down,
        answer_json,
        lambda: fake.chats[-1].body,
    )


# -- providers --------------------------------------------------------------------------------


async def provider_subject(kind_name: str) -> Subject:
    from gateway.remote.providers.registry import build_provider

    kind = KINDS[kind_name]
    fake: FakeProviderServer = kind.fake()
    await fake.start()
    backend = build_provider(kind.name, provider_config(kind.name, fake, timeout_s=1.0), TEST_KEYS[kind.key_env])

    def provoke(what: str) -> BackendCall | None:
        fault = {
            "bad_request": Fault(status=400),
            "server_error": Fault(status=500),
            "overloaded": Fault(status=429, retry_after="2"),
            "slow": Fault(delay_s=3.0),
        }[what]
        fake.fail(fault)
        return call()

    def unreachable() -> Backend:
        closed = kind.fake()
        closed._port = free_port()  # never started: nothing listens there
        return build_provider(kind.name, provider_config(kind.name, closed, timeout_s=1.0), TEST_KEYS[kind.key_env])

    def answer_json(text: str) -> None:
        fake.reply = Reply(text)

    return Subject(
        kind_name,
        backend,
        kind.logprobs,
        None,
        None,
        unreachable,
        provoke,
        [backend.aclose, fake.stop],
        answer_json=answer_json,
        last_body=lambda: fake.seen[-1].body,
    )


# -- the parameterised fixture -----------------------------------------------------------------


@pytest.fixture(params=LOCAL + PROVIDERS)
async def subject(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Subject]:
    name: str = request.param
    if name == "transformers":
        made = await transformers_subject(
            request.getfixturevalue("embedded_model_dir"), request.getfixturevalue("contract_adapter")
        )
    elif name == "llamacpp":
        made = await llamacpp_subject(
            request.getfixturevalue("contract_adapter"), tmp_path_factory.mktemp("llamacpp-adapters")
        )
    elif name == "vllm":
        made = vllm_subject(shared_vllm(request, tmp_path_factory.getbasetemp() / "vllm-session"))
    elif name.startswith("ollama"):
        made = await ollama_subject(
            name, logprobs=name == "ollama", adapter=request.getfixturevalue("contract_adapter")
        )
    else:
        made = await provider_subject(name)
    try:
        yield made
    finally:
        for close in made.closers:
            await close()
