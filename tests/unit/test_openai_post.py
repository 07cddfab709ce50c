"""The OpenAI provider's plain call (the SDK's generic `post`) sends what `chat.completions.create` sends."""

from __future__ import annotations

import openai

from gateway.core.contracts import BackendCall, Message, Role
from gateway.remote.providers.openai import OpenAIProvider
from tests.fakes.providers import TEST_KEYS, base_url, provider_config, running

CALL = BackendCall(
    request_id="r1",
    messages=(Message(Role.SYSTEM, "answer in one word"), Message(Role.USER, "is the trend up ✓")),
    max_tokens=16,
    temperature=0.25,
)


async def test_the_body_path_and_auth_equal_those_of_create() -> None:
    async with running("openai") as fakes:
        fake = fakes["openai"]
        provider = OpenAIProvider("openai", provider_config("openai", fake), TEST_KEYS["OPENAI_API_KEY"])
        sdk = openai.AsyncOpenAI(api_key=TEST_KEYS["OPENAI_API_KEY"], base_url=base_url(fake), max_retries=0)
        try:
            completion = await provider.generate(CALL)
            await sdk.chat.completions.create(**provider._params(CALL))  # the same parameters
        finally:
            await provider.aclose()
            await sdk.close()
        ours, theirs = fake.seen
        assert (ours.path, ours.body) == (theirs.path, theirs.body)
        assert ours.body["logprobs"] is True and ours.body["top_logprobs"] == 2
        bearer = f"Bearer {TEST_KEYS['OPENAI_API_KEY']}"
        assert ours.headers["Authorization"] == theirs.headers["Authorization"] == bearer
        assert ours.headers["Content-Type"] == theirs.headers["Content-Type"]
        assert completion.text == fake.reply.text and completion.usage.total > 0
