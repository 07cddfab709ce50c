"""Stand-ins for all five providers, and the config that points each SDK at its stand-in."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from gateway.config import ProviderConfig
from tests.fakes.anthropic_fake import FakeAnthropic
from tests.fakes.base import FakeProviderServer
from tests.fakes.gemini_fake import FakeGemini
from tests.fakes.hf_fake import FakeHuggingFace
from tests.fakes.openai_fake import FakeOpenAI

TEST_KEYS = {
    "OPENAI_API_KEY": "sk-test-openai-0123456789",
    "ANTHROPIC_API_KEY": "sk-ant-test-0123456789",
    "GEMINI_API_KEY": "gemini-test-0123456789",
    "XAI_API_KEY": "xai-test-0123456789",
    "HF_TOKEN": "hf_test0123456789",
}


@dataclass(frozen=True)
class Kind:
    name: str
    fake: Callable[[], FakeProviderServer]
    key_env: str
    model: str
    logprobs: bool  # does the stand-in return logprobs when the provider asks for them


KINDS = {
    "openai": Kind("openai", FakeOpenAI, "OPENAI_API_KEY", "gpt-test", True),
    "anthropic": Kind("anthropic", FakeAnthropic, "ANTHROPIC_API_KEY", "claude-test", False),
    "google": Kind("google", FakeGemini, "GEMINI_API_KEY", "gemini-test", True),
    "xai": Kind("xai", FakeOpenAI, "XAI_API_KEY", "grok-test", True),
    "huggingface": Kind("huggingface", FakeHuggingFace, "HF_TOKEN", "org/hf-test", True),
}


def base_url(fake: FakeProviderServer) -> str:
    return str(fake.base_url)  # type: ignore[attr-defined]


def provider_config(kind: str, fake: FakeProviderServer, **overrides: object) -> ProviderConfig:
    values: dict[str, object] = {
        "model": KINDS[kind].model,
        "base_url": base_url(fake),
        "timeout_s": 5.0,
        "top_logprobs": 2,
        "max_retries": 0,
    }
    values.update(overrides)
    return ProviderConfig.model_validate(values)


@asynccontextmanager
async def running(*kinds: str) -> AsyncIterator[dict[str, FakeProviderServer]]:
    fakes = {kind: KINDS[kind].fake() for kind in kinds}
    for fake in fakes.values():
        await fake.start()
    try:
        yield fakes
    finally:
        for fake in fakes.values():
            await fake.stop()
