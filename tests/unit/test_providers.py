"""Every provider through its official SDK against its wire stand-in: answers, usage, logprobs, faults."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator

import pytest

from gateway.core.contracts import Backend, BackendCall, Completion, Delta, Message, Role
from gateway.remote.providers.errors import ProviderError
from gateway.remote.providers.registry import build_provider
from tests.fakes.base import FakeProviderServer, Fault
from tests.fakes.providers import KINDS, TEST_KEYS, provider_config

ALL = sorted(KINDS)
CALL = BackendCall(
    request_id="r1",
    messages=(Message(Role.SYSTEM, "answer in one word"), Message(Role.USER, "is the trend up or down")),
    max_tokens=16,
)


@pytest.fixture(params=ALL)
async def setup(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, FakeProviderServer, Backend]]:
    kind = KINDS[request.param]
    fake = kind.fake()
    await fake.start()
    provider = build_provider(kind.name, provider_config(kind.name, fake), TEST_KEYS[kind.key_env])
    yield kind.name, fake, provider
    await provider.aclose()
    await fake.stop()


async def test_generate_returns_text_usage_and_model(setup: tuple[str, FakeProviderServer, Backend]) -> None:
    name, fake, provider = setup
    completion = await provider.generate(CALL)
    assert completion.text == "The trend is up"
    assert completion.provider == name
    assert completion.model == KINDS[name].model
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == fake.last_usage
    assert completion.finish_reason == "stop"
    assert fake.requests == 1


async def test_logprobs_are_reported_where_the_api_has_them(setup: tuple[str, FakeProviderServer, Backend]) -> None:
    name, _, provider = setup
    completion = await provider.generate(CALL)
    if KINDS[name].logprobs:
        assert [t.token for t in completion.tokens] == ["The ", "trend ", "is ", "up"]
        assert completion.tokens[0].logprob == pytest.approx(-0.10536, abs=1e-4)
        assert len(completion.tokens[0].top) == 2
    else:
        assert completion.tokens == ()


async def test_request_carries_model_limit_system_prompt_and_key(
    setup: tuple[str, FakeProviderServer, Backend],
) -> None:
    name, fake, provider = setup
    await provider.generate(BackendCall("r2", CALL.messages, max_tokens=7, model="pinned-model"))
    seen = fake.seen[0]
    headers = {k.lower(): v for k, v in seen.headers.items()}
    key = TEST_KEYS[KINDS[name].key_env]
    assert key in (headers.get("authorization", "") + headers.get("x-api-key", "") + headers.get("x-goog-api-key", ""))
    if name == "google":
        assert "/models/pinned-model:generateContent" in seen.path
        assert seen.body["generationConfig"]["maxOutputTokens"] == 7
        assert seen.body["systemInstruction"]["parts"][0]["text"] == "answer in one word"
        assert [c["role"] for c in seen.body["contents"]] == ["user"]
    elif name == "anthropic":
        assert seen.body["model"] == "pinned-model"
        assert seen.body["max_tokens"] == 7
        assert seen.body["system"] == "answer in one word"
        assert [m["role"] for m in seen.body["messages"]] == ["user"]
    else:
        assert seen.body["model"] == "pinned-model"
        assert seen.body.get("max_completion_tokens", seen.body.get("max_tokens")) == 7
        assert [m["role"] for m in seen.body["messages"]] == ["system", "user"]


async def test_stop_sequences_travel_in_each_apis_own_field(setup: tuple[str, FakeProviderServer, Backend]) -> None:
    name, fake, provider = setup
    completion = await provider.generate(BackendCall("r3", CALL.messages, max_tokens=16, stop=(" is", "\n")))
    assert (completion.text, completion.finish_reason) == ("The trend", "stop")
    body = fake.seen[0].body
    sent = {
        "google": body.get("generationConfig", {}).get("stopSequences"),
        "anthropic": body.get("stop_sequences"),
    }.get(name, body.get("stop"))
    assert sent == [" is", "\n"]
    await provider.generate(CALL)
    assert not {"stop", "stop_sequences"} & fake.seen[1].body.keys()
    assert "stopSequences" not in fake.seen[1].body.get("generationConfig", {})


async def test_stream_yields_deltas_then_one_completion(setup: tuple[str, FakeProviderServer, Backend]) -> None:
    _, fake, provider = setup
    events = [event async for event in provider.stream(CALL)]
    deltas = [e for e in events[:-1] if isinstance(e, Delta)]
    final = events[-1]
    assert isinstance(final, Completion)
    assert all(isinstance(e, Delta) for e in events[:-1])
    assert "".join(d.text for d in deltas) == "The trend is up" == final.text
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == fake.last_usage


async def test_429_is_retryable_with_retry_after_and_sdk_does_not_retry(
    setup: tuple[str, FakeProviderServer, Backend],
) -> None:
    _, fake, provider = setup
    fake.fail(Fault(status=429, retry_after="2"))
    with pytest.raises(ProviderError) as info:
        await provider.generate(CALL)
    assert info.value.retryable
    assert info.value.status_code == 429
    assert info.value.retry_after_s == 2.0
    assert not info.value.maybe_billed
    assert fake.requests == 1  # the SDK's own retries are off


@pytest.mark.parametrize(
    ("fault", "retryable", "maybe_billed", "health"),
    [
        (Fault(status=503), True, False, True),
        (Fault(status=500), True, False, True),
        (Fault(status=400), False, False, False),
        (Fault(status=401), False, False, True),
        (Fault(reset_mid_body=True), True, True, True),
        (Fault(malformed_json=True), False, True, True),
    ],
    ids=["503", "500", "400", "401", "reset", "malformed"],
)
async def test_faults_map_to_backend_errors(
    setup: tuple[str, FakeProviderServer, Backend], fault: Fault, retryable: bool, maybe_billed: bool, health: bool
) -> None:
    name, fake, provider = setup
    fake.fail(fault)
    with pytest.raises(ProviderError) as info:
        await provider.generate(CALL)
    error = info.value
    assert (error.retryable, error.maybe_billed, error.counts_against_health) == (retryable, maybe_billed, health)
    assert error.message.startswith(f"{name}:")
    assert TEST_KEYS[KINDS[name].key_env] not in error.message
    assert fake.requests == 1


async def test_stream_reset_mid_body_is_a_provider_error(setup: tuple[str, FakeProviderServer, Backend]) -> None:
    _, fake, provider = setup
    fake.fail(Fault(reset_mid_body=True))
    with pytest.raises(ProviderError) as info:
        async for _ in provider.stream(CALL):
            pass
    assert info.value.retryable


async def test_no_client_is_built_at_import_time() -> None:
    for module in ("openai", "anthropic", "google", "xai", "huggingface"):
        loaded = importlib.import_module(f"gateway.remote.providers.{module}")
        assert not [v for v in vars(loaded).values() if type(v).__module__.split(".")[0] in {"openai", "anthropic"}]


async def test_gemini_retry_delay_in_the_error_body_counts_as_retry_after() -> None:
    kind = KINDS["google"]
    async with kind.fake() as fake:
        provider = build_provider("google", provider_config("google", fake), TEST_KEYS[kind.key_env])
        try:
            fake.fail(Fault(status=429))
            with pytest.raises(ProviderError) as info:
                await provider.generate(CALL)
            assert info.value.retryable
            assert info.value.retry_after_s == 7.0
        finally:
            await provider.aclose()
